"""Whole-slide reads at a coarse resolution (thumbnails, tissue masks), in bounded memory."""

from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np

from .errors import ResolutionError

__all__ = ["mask_size", "read_whole_slide"]

#: Pixels of the source level read in one piece; bigger levels are read in horizontal bands.
BAND_PIXELS = 16 * 1024 * 1024


def _level0_mpp(slide: Any) -> float:
    mpp_x, mpp_y = slide.mpp
    return (float(mpp_x) + float(mpp_y)) / 2.0


def mask_size(slide: Any, mpp: float) -> tuple[int, int]:
    """Mask ``(width, height)`` covering the whole slide at ``mpp`` (at least 1 x 1)."""
    w0, h0 = slide.dimensions
    d = mpp / _level0_mpp(slide)
    return max(1, round(w0 / d)), max(1, round(h0 / d))


def read_whole_slide(slide: Any, mpp: float, max_pixels: int) -> np.ndarray:
    """Read the whole slide as an ``(H, W, 3)`` uint8 image at ``mpp``.

    The source is ``slide.best_level_for_mpp(mpp)``, the coarsest level at least as fine as
    ``mpp``; it is read whole if it has at most :data:`BAND_PIXELS` pixels, otherwise in
    horizontal bands, and each piece is shrunk with ``cv2.INTER_AREA``. Peak memory is one band
    plus the output, never the whole level 0 of a large single-level slide.

    Raises
    ------
    ResolutionError
        The output would exceed ``max_pixels``.
    """
    out_w, out_h = mask_size(slide, mpp)
    if out_w * out_h > max_pixels:
        raise ResolutionError(
            f"{slide.path}: a tissue mask at {mpp:g} um/px would be {out_w}x{out_h} px; expected "
            f"at most {max_pixels} px (use a coarser mpp or raise max_mask_pixels)"
        )
    level = slide.best_level_for_mpp(mpp)
    lvl_w, lvl_h = (int(v) for v in level.dimensions)
    rows_per_band = max(1, BAND_PIXELS // max(1, lvl_w))
    n_bands = math.ceil(lvl_h / rows_per_band)
    # Output rows of each band, so that band k maps level rows [src[k], src[k+1]).
    out_edges = np.linspace(0, out_h, n_bands + 1).round().astype(int)
    out = np.empty((out_h, out_w, 3), dtype=np.uint8)
    for k in range(n_bands):
        o0, o1 = int(out_edges[k]), int(out_edges[k + 1])
        if o1 <= o0:
            continue
        s0 = int(round(o0 * lvl_h / out_h))
        s1 = max(s0 + 1, int(round(o1 * lvl_h / out_h)))
        l0_y = int(round(s0 * float(level.downsample)))
        band = np.asarray(slide.read_region((0, l0_y), (lvl_w, s1 - s0), level=level.index))
        band = band[..., :3]
        if band.shape[:2] == (o1 - o0, out_w):
            out[o0:o1] = band
        else:
            out[o0:o1] = cv2.resize(band, (out_w, o1 - o0), interpolation=cv2.INTER_AREA)
    return out
