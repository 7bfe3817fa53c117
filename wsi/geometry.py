"""Argument parsing and box arithmetic shared by every read (no pixels here)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .errors import OutOfBoundsError, RegionError, ResolutionError
from .levels import Level

__all__ = [
    "MPP_TOLERANCE",
    "parse_size",
    "parse_locations",
    "parse_mpp",
    "best_level_for_mpp",
    "clip_box",
]

#: Relative slack when matching a requested mpp to a stored level (scanner metadata is rarely
#: more precise than this): a level within 1 % of the target is read without resampling.
MPP_TOLERANCE = 0.01


def parse_size(size: Any, what: str = "size") -> tuple[int, int]:
    """Validate ``(width, height)``: two positive integers."""
    try:
        width, height = size
    except (TypeError, ValueError):
        raise RegionError(f"{what}: expected (width, height), got {size!r}") from None
    values = []
    for value in (width, height):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer, float, np.floating)):
            raise RegionError(f"{what}: expected positive integers (width, height), got {size!r}")
        if int(value) != value or value <= 0:
            raise RegionError(f"{what}: expected positive integers (width, height), got {size!r}")
        values.append(int(value))
    return values[0], values[1]


def parse_locations(locations: Any) -> np.ndarray:
    """Validate level-0 ``(x, y)`` locations: returns an ``(N, 2)`` int64 array."""
    array = np.asarray(locations)
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2 or array.shape[1] != 2 or array.dtype.kind not in "iuf":
        raise RegionError(f"locations: expected (x, y) pairs of level-0 pixels, got {np.asarray(locations)!r}")
    if array.dtype.kind == "f" and not np.all(np.isfinite(array) & (array == np.floor(array))):
        raise RegionError("locations: expected integer level-0 pixel coordinates, got fractional values")
    return array.astype(np.int64)


def parse_mpp(mpp: Any, what: str = "mpp") -> tuple[float, float]:
    """Validate a resolution: one positive number or an ``(x, y)`` pair, in µm per pixel."""
    values: Sequence[Any] = mpp if isinstance(mpp, (tuple, list, np.ndarray)) else (mpp, mpp)
    try:
        mpp_x, mpp_y = (float(v) for v in values)
    except (TypeError, ValueError):
        raise ResolutionError(f"{what}: expected a positive number of microns per pixel, got {mpp!r}") from None
    if not (math.isfinite(mpp_x) and math.isfinite(mpp_y)) or mpp_x <= 0 or mpp_y <= 0:
        raise ResolutionError(f"{what}: expected a positive number of microns per pixel, got {mpp!r}")
    return mpp_x, mpp_y


def best_level_for_mpp(levels: Sequence[Level], mpp: float, path: str) -> Level:
    """The coarsest level at least as fine as ``mpp`` (within :data:`MPP_TOLERANCE`)."""
    level0 = levels[0]
    if mpp < level0.mpp[0] * (1.0 - MPP_TOLERANCE):
        raise ResolutionError(
            f"{path}: requested {mpp:g} µm/px is finer than level 0 ({level0.mpp[0]:g} µm/px); "
            f"expected mpp >= {level0.mpp[0]:g}"
        )
    chosen = level0
    for level in levels[1:]:
        if level.mpp[0] <= mpp * (1.0 + MPP_TOLERANCE):
            chosen = level
    return chosen


def clip_box(
    lvl_x: int, lvl_y: int, width: int, height: int, level: Level, path: str
) -> tuple[int, int, int, int]:
    """Intersect a level box with the level; raise when nothing of it lies inside.

    Returns
    -------
    tuple
        ``(x0, y0, x1, y1)`` of the intersection in level pixels.
    """
    x0, y0 = max(lvl_x, 0), max(lvl_y, 0)
    x1, y1 = min(lvl_x + width, level.width), min(lvl_y + height, level.height)
    if x0 >= x1 or y0 >= y1:
        ds = level.downsample
        raise OutOfBoundsError(
            f"{path}: region at level-0 ({round(lvl_x * ds)}, {round(lvl_y * ds)}) of "
            f"{round(width * ds)}x{round(height * ds)} level-0 px lies wholly outside the slide "
            f"({round(level.width * ds)}x{round(level.height * ds)})"
        )
    return x0, y0, x1, y1
