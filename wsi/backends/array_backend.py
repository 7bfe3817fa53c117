"""An in-memory numpy pyramid behind the Slide API (tests, masks, heatmaps)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import AssociatedImageNotFoundError, RegionError, UnsupportedFormatError
from ..levels import SlideInfo, openslide_downsample
from ._properties import standard_properties
from .base import Box, SlideBackend

__all__ = ["ArrayBackend"]


def _as_rgb_level(index: int, array: np.ndarray) -> np.ndarray:
    array = np.asarray(array)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        raise UnsupportedFormatError(
            f"array slide level {index}: expected a uint8 (H, W, 3) RGB array, "
            f"got {array.dtype} {array.shape}"
        )
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise RegionError(f"array slide level {index}: expected a non-empty image, got shape {array.shape}")
    return array


class ArrayBackend(SlideBackend):
    """A pyramid of numpy arrays, finest first.

    Parameters
    ----------
    levels : sequence of ndarray
        ``(H, W, 3)`` uint8 RGB arrays, each level smaller than the one before.
    mpp : tuple[float, float] or None
        Microns per pixel of level 0.
    name : str
        What :attr:`path` reports (there is no file).
    """

    name = "array"
    shared = False  # nothing to share: the arrays travel with the slide

    def __init__(self, levels: Sequence[np.ndarray], mpp: tuple[float, float] | None, name: str = "<array>"):
        if len(levels) == 0:
            raise RegionError("array slide: expected at least one level, got none")
        self.levels = [_as_rgb_level(i, level) for i, level in enumerate(levels)]
        for i in range(1, len(self.levels)):
            prev, cur = self.levels[i - 1].shape, self.levels[i].shape
            if cur[0] > prev[0] or cur[1] > prev[1]:
                raise RegionError(
                    f"array slide level {i}: expected a level no larger than level {i - 1} {prev[:2]}, got {cur[:2]}"
                )
        self.path = name
        self._mpp = mpp
        dims = tuple((int(a.shape[1]), int(a.shape[0])) for a in self.levels)
        downsamples = tuple(openslide_downsample(dims[0], d) for d in dims)
        tile_sizes = tuple(None for _ in dims)
        # The openslide.* keys that mean something for arrays: no tiles, comment or hash.
        properties = standard_properties(vendor="array", level_dimensions=dims, level_downsamples=downsamples,
                                         tile_sizes=tile_sizes, mpp=mpp)
        properties["slidescope.backend"] = "array"
        self.info = SlideInfo(
            vendor="array",
            level_dimensions=dims,
            level_downsamples=downsamples,
            mpp=mpp,
            tile_sizes=tile_sizes,
            properties=properties,
        )

    def read_boxes(self, level: int, boxes: Sequence[Box], outs: Sequence[np.ndarray]) -> None:
        source = self.levels[level]
        for (x, y, w, h), out in zip(boxes, outs):
            out[...] = source[y : y + h, x : x + w]

    def associated_image(self, name: str) -> np.ndarray:
        raise AssociatedImageNotFoundError(
            f"{self.path}: no associated image {name!r}; an array slide has none (available: [])"
        )

    def reopen_args(self) -> tuple:
        return (self.levels, self._mpp, self.path)

    @classmethod
    def path_of(cls, args: tuple) -> str:
        return str(args[2])

    def token(self) -> str:
        from dask.base import tokenize

        return f"array:{tokenize(*self.levels)}"
