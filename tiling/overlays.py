"""Drawing a heatmap (e.g. :func:`~slidescope.tiling.stitch.stitch`'s output) over a slide thumbnail."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from slidescope.wsi import Slide
from slidescope.wsi.atomic import atomic_path
from slidescope.wsi.errors import ParameterError
from slidescope.wsi.validation import parse_fraction, parse_number, parse_path

from .errors import OverlayError
from .stitching import _resize

__all__ = ["COLORMAPS", "OverlayError", "overlay"]

#: OpenCV colormaps by lower-case name (``"jet"``, ``"viridis"``...), as this OpenCV build has them.
COLORMAPS: dict[str, int] = {
    name[len("COLORMAP_"):].lower(): int(getattr(cv2, name)) for name in dir(cv2) if name.startswith("COLORMAP_")
}

# A heatmap's aspect ratio may differ from the slide's by rounding (stitch rounds its size up):
# allow this much before calling it another slide's heatmap.
_ASPECT_SLACK_PX, _ASPECT_SLACK_FRACTION = 2.0, 0.05


def _colormap(name: Any) -> int:
    if isinstance(name, str):
        key = name.lower().removeprefix("colormap_")
        if key in COLORMAPS:
            return COLORMAPS[key]
    raise ParameterError(f"colormap: expected one of {', '.join(sorted(COLORMAPS))}; got {name!r}")


def _check_heatmap(heatmap: Any) -> Any:
    """The heatmap as a numpy array, or left lazy (zarr, dask) when it has a 2-D shape."""
    if not all(hasattr(heatmap, name) for name in ("shape", "dtype", "__getitem__")):
        heatmap = np.asarray(heatmap)
    shape = tuple(heatmap.shape)
    if len(shape) != 2:
        raise OverlayError(f"heatmap: expected a 2-D (H, W) array, got shape {shape}")
    if shape[0] == 0 or shape[1] == 0:
        raise OverlayError(f"heatmap: expected a non-empty array, got shape {shape}")
    kind = np.dtype(heatmap.dtype).kind
    if kind not in "biuf":
        raise OverlayError(f"heatmap: expected numbers, got dtype {heatmap.dtype}")
    return heatmap


def _check_aspect(slide: Slide, shape: tuple[int, int]) -> None:
    """Refuse a heatmap whose shape cannot be this slide's (transposed, or another slide's)."""
    (width, height), (mpp_x, mpp_y) = slide.dimensions, slide.mpp
    expected = shape[1] * (height * mpp_y) / (width * mpp_x)
    if abs(shape[0] - expected) > _ASPECT_SLACK_PX + _ASPECT_SLACK_FRACTION * expected:
        raise OverlayError(
            f"heatmap: expected the aspect ratio of {slide.path} ({width}x{height} px), i.e. about "
            f"{expected:.0f} rows for {shape[1]} columns; got shape {shape}"
        )


def _reduced(heatmap: Any, size: tuple[int, int]) -> np.ndarray:
    """The heatmap as float32 numpy, no larger than about twice ``size`` when it is lazy.

    A lazy array (zarr, dask) is read as every k-th row and column, so a huge one is never
    loaded whole; the result is then shrunk with INTER_AREA by :func:`_resize`.
    """
    if not isinstance(heatmap, np.ndarray):
        rows, cols = heatmap.shape
        step = max(1, min(rows // size[1], cols // size[0]))
        heatmap = np.asarray(heatmap[::step, ::step])
    return np.asarray(heatmap, dtype=np.float32)


def _png_path(out: Any) -> Path:
    path = Path(parse_path(out, "out"))
    if path.suffix.lower() != ".png":
        raise ParameterError(f"out: expected a .png path, got {str(path)!r}")
    return path


def overlay(
    slide: Slide,
    heatmap: Any,
    *,
    colormap: str = "jet",
    alpha: float = 0.5,
    vmin: float | None = None,
    vmax: float | None = None,
    max_size: int = 2048,
    out: str | os.PathLike[str] | None = None,
) -> np.ndarray:
    """A heatmap drawn over the slide's thumbnail.

    Parameters
    ----------
    slide : Slide
        The slide the heatmap covers (whole slide, any resolution).
    heatmap : array-like or zarr.Array
        2-D float ``(H, W)``, NaN where there is no value; e.g. :func:`stitch`'s output. A lazy
        array (zarr, dask) is read at a reduced size, never whole.
    colormap : str
        An OpenCV colormap by name (:data:`COLORMAPS`: ``"jet"``, ``"viridis"``, ``"turbo"``...).
    alpha : float
        Weight of the colour where the heatmap has a value, in [0, 1].
    vmin, vmax : float, optional
        Values drawn as the ends of the colormap; default the heatmap's finite min and max.
    max_size : int
        Longest side of the thumbnail (passed to ``slide.thumbnail``).
    out : path, optional
        Also write the result as a PNG here (atomically).

    Returns
    -------
    numpy.ndarray
        ``(h, w, 3)`` uint8 RGB, the thumbnail's size: the thumbnail where the heatmap is NaN,
        ``(1 - alpha) * thumbnail + alpha * colour`` elsewhere.

    Raises
    ------
    OverlayError
        A heatmap that is not 2-D numbers or whose aspect ratio is not the slide's.
    ParameterError
        An unknown colormap, alpha outside [0, 1], vmin/vmax not finite or ``vmax <= vmin``,
        ``out`` not a .png path.
    """
    code = _colormap(colormap)
    alpha = parse_fraction(alpha, "alpha")
    low = None if vmin is None else parse_number(vmin, "vmin")
    high = None if vmax is None else parse_number(vmax, "vmax")
    if low is not None and high is not None and high <= low:
        raise ParameterError(f"vmax: expected more than vmin ({low:g}), got {high:g}")
    heatmap = _check_heatmap(heatmap)
    path = None if out is None else _png_path(out)
    _check_aspect(slide, tuple(heatmap.shape))

    thumbnail = slide.thumbnail(max_size)
    size = (thumbnail.shape[1], thumbnail.shape[0])
    values = _resize(_reduced(heatmap, size), size)
    finite = np.isfinite(values)
    result = thumbnail.copy()
    if finite.any():
        low = float(values[finite].min()) if low is None else low
        high = float(values[finite].max()) if high is None else high
        span = high - low
        # matplotlib's convention: a constant heatmap with default limits takes the low end.
        scaled = np.zeros_like(values) if span <= 0 else (np.where(finite, values, low) - low) / span
        levels = np.rint(np.clip(scaled, 0.0, 1.0) * 255).astype(np.uint8)
        colour = cv2.applyColorMap(levels, code)[:, :, ::-1]  # OpenCV colormaps come out BGR
        mixed = cv2.addWeighted(thumbnail, 1.0 - alpha, np.ascontiguousarray(colour), alpha, 0.0)
        result[finite] = mixed[finite]
    if path is not None:
        ok, encoded = cv2.imencode(".png", np.ascontiguousarray(result[:, :, ::-1]))  # imencode takes BGR
        if not ok:
            raise OverlayError(f"out: OpenCV could not encode a {result.shape} image as PNG for {path}")
        # imencode, not imwrite: the temporary name's suffix is not .png, and imwrite picks the format by suffix.
        with atomic_path(path) as temporary:
            temporary.write_bytes(encoded.tobytes())
    return result
