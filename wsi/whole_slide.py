"""Whole-slide reads at a coarse resolution (thumbnails, tissue masks), in bounded memory.

Both go through :func:`read_whole_slide_at`: the whole of the coarsest suitable level is mapped
onto the output and read through the one read path (:mod:`slidescope.wsi.reading`), which holds
at most ``READ_BUDGET_PIXELS`` source pixels at a time. Peak memory is the output plus one block,
never a whole level 0, however large the slide.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Protocol

import cv2
import numpy as np

from .errors import ResolutionError
from .reading import MAX_SHRINK
from .validation import parse_int, parse_mpp, parse_positive_int

__all__ = ["whole_slide_size", "read_whole_slide", "read_whole_slide_at", "thumbnail"]


class Slide(Protocol):
    """What these functions use of a :class:`slidescope.wsi.Slide` (a protocol: no import cycle)."""

    path: str
    dimensions: tuple[int, int]
    associated_images: Mapping[str, np.ndarray]

    def best_level_for_mpp(self, mpp: float) -> Any: ...

    def _require_mpp(self) -> tuple[float, float]: ...

    def _read_whole_level(self, size: tuple[int, int]) -> np.ndarray: ...


def whole_slide_size(slide: Slide, mpp: Any) -> tuple[int, int]:
    """``(width, height)`` of the whole slide seen at ``mpp`` µm/px (at least 1 x 1)."""
    target_x, target_y = parse_mpp(mpp, f"{slide.path}: mpp")
    mpp_x, mpp_y = slide._require_mpp()
    width, height = slide.dimensions
    return max(1, round(width * mpp_x / target_x)), max(1, round(height * mpp_y / target_y))


def read_whole_slide_at(slide: Slide, size: tuple[int, int]) -> np.ndarray:
    """The whole slide shrunk to exactly ``size`` = ``(width, height)`` pixels.

    The source is the coarsest level at least as fine as the output (1 % slack, as for mpp
    reads). A shrink beyond ``MAX_SHRINK`` per axis goes through an intermediate image a few
    times the output's size, so a tiny thumbnail of a huge single-level slide stays cheap.
    """
    out_w, out_h = size
    width, height = slide.dimensions
    factor = max(1, math.ceil(max(width / out_w, height / out_h) / MAX_SHRINK))
    if factor > 1:
        inner = read_whole_slide_at(slide, (out_w * factor, out_h * factor))
        return cv2.resize(inner, (out_w, out_h), interpolation=cv2.INTER_AREA)
    return slide._read_whole_level(size)


def read_whole_slide(slide: Slide, mpp: Any, max_pixels: int) -> np.ndarray:
    """Read the whole slide as an ``(H, W, 3)`` uint8 image at ``mpp`` µm/px.

    Raises
    ------
    ResolutionError
        The output would exceed ``max_pixels`` pixels.
    """
    max_pixels = parse_int(max_pixels, "max_pixels", minimum=1)
    slide.best_level_for_mpp(parse_mpp(mpp)[0])  # a resolution finer than level 0 is an error
    out_w, out_h = whole_slide_size(slide, mpp)
    if out_w * out_h > max_pixels:
        raise ResolutionError(
            f"{slide.path}: a whole-slide image at {parse_mpp(mpp)[0]:g} um/px would be {out_w}x{out_h} px; "
            f"expected at most {max_pixels} px (use a coarser mpp or raise max_mask_pixels)"
        )
    return read_whole_slide_at(slide, (out_w, out_h))


def _embedded_thumbnail(slide: Slide) -> np.ndarray | None:
    if "thumbnail" not in slide.associated_images:
        return None
    return slide.associated_images["thumbnail"]


def thumbnail(slide: Slide, max_size: Any = 1024) -> np.ndarray:
    """The whole slide shrunk to fit ``max_size`` (an int or ``(width, height)``), aspect kept.

    The file's embedded thumbnail is used when it is at least as large as the result (it is a
    picture of the same whole slide, and costs one small decode); otherwise the slide is read.
    """
    if isinstance(max_size, (tuple, list)):
        if len(max_size) != 2:
            raise ResolutionError(f"{slide.path}: max_size: expected an int or (width, height), got {max_size!r}")
        max_w, max_h = (parse_positive_int(v, f"{slide.path}: max_size") for v in max_size)
    else:
        max_w = max_h = parse_positive_int(max_size, f"{slide.path}: max_size")
    width, height = slide.dimensions
    shrink = max(width / max_w, height / max_h, 1.0)
    size = (max(1, round(width / shrink)), max(1, round(height / shrink)))
    embedded = _embedded_thumbnail(slide)
    if embedded is not None and embedded.shape[1] >= size[0] and embedded.shape[0] >= size[1]:
        if embedded.shape[1::-1] == size:
            return embedded.copy()
        return cv2.resize(embedded, size, interpolation=cv2.INTER_AREA)
    return read_whole_slide_at(slide, size)
