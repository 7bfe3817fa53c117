"""A pyramid level as a lazy Dask array whose chunks are whole stored tiles."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from .levels import Level

if TYPE_CHECKING:
    import dask.array

#: Reads a box ``(lvl_x, lvl_y, width, height)`` of a level (given by index) as ``(H, W, 3)`` uint8.
#: A bound ``Slide.read_level_box``: it pickles as the slide's path and options.
BoxReader = Callable[[int, tuple[int, int, int, int]], np.ndarray]

__all__ = ["level_to_dask", "chunk_sizes"]


def chunk_sizes(extent: int, chunk: int) -> tuple[int, ...]:
    """Split ``extent`` pixels into chunks of ``chunk`` (the last one shorter)."""
    full, rest = divmod(extent, chunk)
    return (chunk,) * full + ((rest,) if rest else ())


def _read_chunk(read_box: BoxReader, level: int, block_info: dict[Any, Any] | None = None) -> np.ndarray:
    (y0, y1), (x0, x1), _ = block_info[None]["array-location"]
    return read_box(level, (x0, y0, x1 - x0, y1 - y0))


def level_to_dask(read_box: BoxReader, level: Level, token: Any, *, chunk_target: int = 1024) -> "dask.array.Array":
    """Wrap a pyramid level as a Dask array.

    Parameters
    ----------
    read_box : callable
        ``read_box(level_index, (lvl_x, lvl_y, width, height))``, e.g. a slide's bound
        ``read_level_box``; it travels into tasks as the slide's path and options (never a handle).
    level : Level
        The level to expose.
    token : object
        What identifies the slide's contents in the graph's key.
    chunk_target : int
        Approximate chunk edge in pixels; rounded to a multiple of the stored tile size so that
        no stored tile is decoded by two tasks.

    Returns
    -------
    dask.array.Array
        ``(height, width, 3)`` uint8.

    Examples
    --------
    Researchers who prefer array code can filter a level with a halo:

    >>> import dask.array as da                                           # doctest: +SKIP
    >>> level = slide.to_dask(1)                                           # doctest: +SKIP
    >>> grey = level.mean(axis=2)                                          # doctest: +SKIP
    >>> blurred = grey.map_overlap(lambda b: cv2.blur(b, (9, 9)), depth=4)  # doctest: +SKIP
    """
    import dask.array as da

    tile_w, tile_h = level.tile_size or (256, 256)
    chunk_w = tile_w * max(1, math.ceil(chunk_target / tile_w))
    chunk_h = tile_h * max(1, math.ceil(chunk_target / tile_h))
    chunks = (chunk_sizes(level.height, chunk_h), chunk_sizes(level.width, chunk_w), (3,))
    return da.map_blocks(
        _read_chunk,
        read_box=read_box,
        level=level.index,
        chunks=chunks,
        dtype=np.uint8,
        meta=np.empty((0, 0, 0), dtype=np.uint8),
        name=f"slide-level{level.index}-{da.core.tokenize(token, level.index, chunks)}",
    )
