"""Level choice and box arithmetic shared by every read (no pixels here; arguments are parsed in
:mod:`slidescope.wsi.validation`)."""

from __future__ import annotations

from collections.abc import Sequence

from .errors import OutOfBoundsError, ResolutionError
from .levels import Level

__all__ = ["MPP_TOLERANCE", "best_level_for_mpp", "coarsest_level_within", "clip_box"]

#: Relative slack when matching a requested mpp to a stored level (scanner metadata is rarely
#: more precise than this): a level within 1 % of the target is read without resampling.
MPP_TOLERANCE = 0.01


def best_level_for_mpp(levels: Sequence[Level], mpp: float, path: str) -> Level:
    """The coarsest level at least as fine as ``mpp`` (within :data:`MPP_TOLERANCE`)."""
    level0 = levels[0]
    if mpp < level0.mpp[0] * (1.0 - MPP_TOLERANCE):
        raise ResolutionError(
            f"{path}: requested {mpp:g} µm/px is finer than level 0 ({level0.mpp[0]:g} µm/px); "
            f"expected mpp >= {level0.mpp[0]:g}"
        )
    return coarsest_level_within(levels, mpp / level0.mpp[0])


def coarsest_level_within(levels: Sequence[Level], downsample: float) -> Level:
    """The coarsest level whose downsample is at most ``downsample`` (within :data:`MPP_TOLERANCE`), else level 0."""
    chosen = levels[0]
    for level in levels[1:]:
        if level.downsample <= downsample * (1.0 + MPP_TOLERANCE):
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
