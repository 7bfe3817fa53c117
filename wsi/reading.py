"""The one pixel read path behind every :class:`~slidescope.wsi.Slide` read, in bounded memory.

A read names a stored level, level boxes (``lvl_x, lvl_y`` of the top-left corner) and an
output size with the shrink factors from the level to the output. This module

- fills the parts of a box outside the level with white and lets the backend fill the inside
  (:func:`fill_boxes`), so backends only ever see in-bounds boxes;
- for reads that shrink, holds at most :data:`READ_BUDGET_PIXELS` source pixels at a time:
  small tiles are read in groups (a stored tile shared by tiles of one group is decoded once),
  a large region is read in blocks of output rows and columns, each shrunk with
  ``cv2.INTER_AREA`` straight into its place in the output;
- reads only the part of a region that touches the slide: the output pixels wholly outside
  are white without a source pixel being allocated for them.

Blocks are whole output pixels, so a region read in blocks differs from one read in one piece
only by the rounding of block edges to source pixels (at most one source row or column of
weight per block edge).

A read that shrinks a level by a whole, even factor (2, 4, 6, 8...) whose tiles the backend can
decode smaller (JPEG) is served from tiles decoded 2, 4 or 8 times smaller where its boxes allow
(:mod:`slidescope.wsi.reduced`), unless the caller asked for ``exact`` (full decode, then
``cv2.INTER_AREA``). A box that reaches past the
reduced grid (the slide's edge) is then read in blocks, whether alone or in a batch: its blocks
along the edge in full, white outside the slide as always, the rest reduced.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

from .backends.base import Box, SlideBackend
from .errors import RegionError, ResolutionError
from .geometry import clip_box
from .levels import Level
from .reduced import best_reduced_crop, choose_reduction

__all__ = ["READ_BUDGET_PIXELS", "MAX_SHRINK", "MAX_OUTPUT_PIXELS", "fill_boxes", "read_resampled"]

#: Source pixels held at once by one read (48 MiB of RGB), whatever the region or batch size.
READ_BUDGET_PIXELS = 16 * 1024 * 1024
#: Largest shrink from the source level to the output, per axis. Past it one output pixel would
#: average more than :data:`READ_BUDGET_PIXELS` source pixels: such a read (``mpp=1e6``) is a mistake.
MAX_SHRINK = 4096.0
#: Most output pixels one call may return (3 GiB of RGB): a larger request is a typo or belongs in
#: a banded or Dask read (``Slide.to_dask``), and is refused before anything is allocated.
MAX_OUTPUT_PIXELS = 2**30


def fill_boxes(backend: SlideBackend, level: Level, boxes: Sequence[Box], outs: Sequence[np.ndarray],
               path: str) -> None:
    """Fill ``outs[i]`` with level box ``boxes[i]``: white outside the level, the backend inside.

    Raises
    ------
    OutOfBoundsError
        When a box lies wholly outside the level.
    """
    inside_boxes, views = [], []
    for (x, y, w, h), target in zip(boxes, outs):
        x0, y0, x1, y1 = clip_box(x, y, w, h, level, path)
        if (x1 - x0, y1 - y0) != (w, h):
            target.fill(255)
        inside_boxes.append((x0, y0, x1 - x0, y1 - y0))
        views.append(target[y0 - y : y1 - y, x0 - x : x1 - x])
    backend.read_boxes(level.index, inside_boxes, views)


class _Scratch:
    """One growing buffer that successive steps of a read carve their arrays from (no per-step allocation)."""

    def __init__(self) -> None:
        self._buffer = np.empty(0, np.uint8)

    def arrays(self, sizes: Sequence[tuple[int, int]]) -> list[np.ndarray]:
        """``(height, width, 3)`` uint8 arrays of ``(width, height)`` sizes, valid until the next call."""
        total = sum(3 * w * h for w, h in sizes)
        if total > self._buffer.size:
            self._buffer = np.empty(0, np.uint8)  # drop the old one before allocating the new
            self._buffer = np.empty(total, np.uint8)
        arrays, start = [], 0
        for w, h in sizes:
            arrays.append(self._buffer[start : start + 3 * w * h].reshape(h, w, 3))
            start += 3 * w * h
        return arrays


def _shrink_boxes(backend: SlideBackend, level: Level, boxes: Sequence[Box], targets: Sequence[np.ndarray],
                  path: str, reduction: int, scratch: _Scratch) -> None:
    """Fill ``targets[i]`` with level box ``boxes[i]`` area-averaged onto it (white outside the level).

    With ``reduction > 1`` each box that :func:`.best_reduced_crop` allows (up to ``reduction``)
    is read from tiles decoded that much smaller; the others, and all with 1, are read in full
    and shrunk with ``cv2.INTER_AREA``.
    """
    rest: Sequence[int] = range(len(boxes))
    if reduction > 1:
        allowed = [k for k in backend.reductions(level.index) if k <= reduction]
        crops = [best_reduced_crop(box, allowed, target.shape[1::-1], level.dimensions)
                 for box, target in zip(boxes, targets)]
        for k in sorted({crop.reduction for crop in crops if crop is not None}, reverse=True):
            chosen = [i for i, crop in enumerate(crops) if crop is not None and crop.reduction == k]
            pixels = scratch.arrays([crops[i].box[2:] for i in chosen])
            # a crop that is already the output (nothing left to shrink) goes straight into it
            pixels = [targets[i] if crops[i].box[2:] == targets[i].shape[1::-1] else p for i, p in zip(chosen, pixels)]
            backend.read_reduced_boxes(level.index, k, [crops[i].box for i in chosen], pixels)
            for i, crop_pixels in zip(chosen, pixels):
                if crop_pixels is not targets[i]:
                    _area_into(crop_pixels, targets[i])  # the crop is a whole multiple of the target
        rest = [i for i, crop in enumerate(crops) if crop is None]
    if not rest:
        return
    raws = scratch.arrays([boxes[i][2:] for i in rest])
    fill_boxes(backend, level, [boxes[i] for i in rest], raws, path)
    for i, raw in zip(rest, raws):
        _area_into(raw, targets[i])


def _area_into(source: np.ndarray, target: np.ndarray) -> None:
    """``source`` area-averaged onto ``target`` (``(H, W, 3)``, any strides; copied when the sizes match)."""
    if source.shape[:2] == target.shape[:2]:
        target[...] = source
    elif target.flags.c_contiguous:
        cv2.resize(source, target.shape[1::-1], dst=target, interpolation=cv2.INTER_AREA)
    else:
        target[...] = cv2.resize(source, target.shape[1::-1], interpolation=cv2.INTER_AREA)


def _touching(origin: int, out_extent: int, scale: float, level_extent: int) -> tuple[int, int]:
    """Output pixels ``[first, stop)`` along one axis whose footprint overlaps the level."""
    first = max(0, math.floor(-origin / scale))
    stop = min(out_extent, math.ceil((level_extent - origin) / scale))
    return first, stop


def _source_span(origin: int, first: int, stop: int, scale: float) -> tuple[int, int]:
    """Level pixels ``[start, end)`` whose area output pixels ``[first, stop)`` average."""
    start = origin + round(first * scale)
    return start, max(start + 1, origin + round(stop * scale))


def _edges(first: int, stop: int, step: int) -> list[int]:
    return list(range(first, stop, step)) + [stop]


def _reduced_edges(origin: int, edges: list[int], scale: float, level_extent: int, reduction: int) -> list[int]:
    """Block edges (output pixels along one axis), split where reading from the reduced grid becomes
    possible and where it stops being.

    The first output pixel's footprint may start before the level (white there), and the last
    ones may reach into the level's partial last block, or past the level: those become thin
    blocks of their own, read in full, so that the blocks between them can be read reduced.
    """
    first, stop = edges[0], edges[-1]
    start = first if origin + round(first * scale) >= 0 else first + 1
    whole_end = (level_extent // reduction) * reduction  # level pixels in whole blocks
    safe_stop = min(stop, max(start, math.floor((whole_end - origin) / scale)))
    while safe_stop > start and origin + round(safe_stop * scale) > whole_end:
        safe_stop -= 1
    return sorted({*edges, *(edge for edge in (start, safe_stop) if first < edge < stop)})


def _read_region_in_blocks(backend: SlideBackend, level: Level, origin: tuple[int, int], scale: tuple[float, float],
                           out: np.ndarray, path: str, reduction: int, scratch: _Scratch) -> None:
    """Fill one ``(H, W, 3)`` output, reading and shrinking it block by block (one block when it fits)."""
    out_h, out_w = out.shape[:2]
    (lvl_x, lvl_y), (scale_x, scale_y) = origin, scale
    col0, col1 = _touching(lvl_x, out_w, scale_x, level.width)
    row0, row1 = _touching(lvl_y, out_h, scale_y, level.height)
    if col0 >= col1 or row0 >= row1:  # nothing touches: clip_box raises the usual error
        clip_box(lvl_x, lvl_y, round(out_w * scale_x), round(out_h * scale_y), level, path)
    if (col0, row0, col1, row1) != (0, 0, out_w, out_h):
        out.fill(255)
    block_cols = max(1, min(col1 - col0, math.isqrt(READ_BUDGET_PIXELS) // max(1, math.ceil(scale_x))))
    block_rows = max(1, min(row1 - row0, READ_BUDGET_PIXELS // max(1, math.ceil(block_cols * scale_x * scale_y))))
    col_edges, row_edges = _edges(col0, col1, block_cols), _edges(row0, row1, block_rows)
    if reduction > 1:
        col_edges = _reduced_edges(lvl_x, col_edges, scale_x, level.width, reduction)
        row_edges = _reduced_edges(lvl_y, row_edges, scale_y, level.height, reduction)
    spans_x = [_source_span(lvl_x, c0, c1, scale_x) for c0, c1 in zip(col_edges, col_edges[1:])]
    spans_y = [_source_span(lvl_y, r0, r1, scale_y) for r0, r1 in zip(row_edges, row_edges[1:])]
    for (r0, r1), (y0, y1) in zip(zip(row_edges, row_edges[1:]), spans_y):
        for (c0, c1), (x0, x1) in zip(zip(col_edges, col_edges[1:]), spans_x):
            target = out[r0:r1, c0:c1]
            if x0 >= level.width or y0 >= level.height or x1 <= 0 or y1 <= 0:  # a thin edge block rounded off the level
                target.fill(255)
                continue
            # (_shrink_boxes reads a block reduced only where each of its output pixels covers whole blocks)
            _shrink_boxes(backend, level, [(x0, y0, x1 - x0, y1 - y0)], [target], path, reduction, scratch)


def read_resampled(backend: SlideBackend, level: Level, lvl_xy: np.ndarray, out_size: tuple[int, int],
                   scale: tuple[float, float], path: str, *, exact: bool = False) -> np.ndarray:
    """Read ``len(lvl_xy)`` regions of ``out_size`` output pixels from ``level``, shrunk by ``scale``.

    Parameters
    ----------
    backend : SlideBackend
        The open backend.
    level : Level
        The source level.
    lvl_xy : ndarray
        ``(N, 2)`` int64 top-left corners in the level's pixels.
    out_size : (int, int)
        ``(width, height)`` of each output.
    scale : (float, float)
        Level pixels per output pixel along x and y (1.0 for a read at the level's own resolution).
    path : str
        The slide's path, for messages.
    exact : bool
        Decode every stored tile in full before shrinking, even where the backend could decode
        it smaller (see the module's docstring).

    Returns
    -------
    ndarray
        ``(N, height, width, 3)`` uint8.
    """
    out_w, out_h = out_size
    scale_x, scale_y = scale
    if max(scale_x, scale_y) > MAX_SHRINK:
        raise ResolutionError(
            f"{path}: the requested resolution is {max(scale_x, scale_y):g} times coarser than the coarsest "
            f"stored level that can serve it (level {level.index}); expected at most {MAX_SHRINK:g} times "
            f"(ask for a finer mpp, or read a thumbnail)"
        )
    total = len(lvl_xy) * out_w * out_h
    if total > MAX_OUTPUT_PIXELS:
        raise RegionError(
            f"{path}: the read would return {len(lvl_xy)} x {out_w} x {out_h} px ({3 * total / 2**30:.1f} GiB); "
            f"expected at most {MAX_OUTPUT_PIXELS} px per call (read in pieces, or use to_dask)"
        )
    try:
        out = np.empty((len(lvl_xy), out_h, out_w, 3), dtype=np.uint8)
    except MemoryError:
        raise RegionError(
            f"{path}: not enough memory for {len(lvl_xy)} x {out_w} x {out_h} px ({3 * total / 2**30:.1f} GiB) of output"
        ) from None
    lvl_w, lvl_h = max(1, round(out_w * scale_x)), max(1, round(out_h * scale_y))
    if (lvl_w, lvl_h) == (out_w, out_h):  # no shrink: the backend writes straight into the output
        fill_boxes(backend, level, [(int(x), int(y), lvl_w, lvl_h) for x, y in lvl_xy], list(out), path)
        return out
    reduction = 1 if exact else choose_reduction(backend.reductions(level.index), lvl_w / out_w, lvl_h / out_h)
    scratch = _Scratch()
    group = READ_BUDGET_PIXELS // (lvl_w * lvl_h)
    if group == 0:  # each region alone is over budget: block by block
        for (x, y), target in zip(lvl_xy, out):
            _read_region_in_blocks(backend, level, (int(x), int(y)), scale, target, path, reduction, scratch)
        return out
    for start in range(0, len(lvl_xy), group):
        boxes = [(int(x), int(y), lvl_w, lvl_h) for x, y in lvl_xy[start : start + group]]
        targets = list(out[start : start + len(boxes)])
        if reduction > 1:
            # A box reaching outside the level is read in blocks: in full along the slide's edge
            # (white outside, as always), reduced inside.
            inside = [x >= 0 and y >= 0 and x + w <= level.width and y + h <= level.height for x, y, w, h in boxes]
            for box, target, is_inside in zip(boxes, targets, inside):
                if not is_inside:
                    _read_region_in_blocks(backend, level, box[:2], scale, target, path, reduction, scratch)
            boxes = [box for box, is_inside in zip(boxes, inside) if is_inside]
            targets = [target for target, is_inside in zip(targets, inside) if is_inside]
        _shrink_boxes(backend, level, boxes, targets, path, reduction, scratch)
    return out
