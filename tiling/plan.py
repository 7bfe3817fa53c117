"""Multi-scale tile plans: which tiles to read, at which resolution, under which coarse parent.

A plan is a table, one row a tile (see :data:`PLAN_COLUMNS`). Scales are ordered coarse to fine
by resolution (largest µm per pixel first), whatever the order they were passed in; the coarsest
scale is a grid over the whole slide, and each finer scale is laid out *inside* each kept tile of
the scale above, so every fine tile lies within its parent and the cascade "run the cell model only
where the tissue model says so" is ``plan.children(ids)``. A finer scale whose tiles are larger (in
microns) than the tiles of the coarser scale above cannot nest and is refused.

Geometry is in whole level-0 pixels. The grid starts at the slide origin and each tile start is
snapped down to the read level's pixel grid, so tiles whose size is a multiple of the stored
tiles line up with them. Coarse tiles on the right and bottom edges may extend past the slide;
reads pad that part with white (as :meth:`Slide.read_region` documents).

A plan has at most :data:`MAX_TILES_PER_SCALE` candidate tiles at any scale (the whole grid at the
coarsest scale; tiles per parent times kept parents at a finer one). A larger plan is refused with a
:class:`TilePlanError` before anything is allocated: each candidate costs a few hundred bytes while
planning, so an unbounded count (1 px tiles at 0.25 µm/px) would exhaust memory.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from slidescope.wsi import Slide
from slidescope.wsi.errors import MissingMppError, ParameterError
from slidescope.wsi.validation import parse_fraction

from .errors import TilePlanError
from .plan_io import PLAN_COLUMNS, read_plan_table, write_plan_table
from .scales import Scale
from .tissue import TissueMask

__all__ = ["MAX_TILES_PER_SCALE", "PLAN_COLUMNS", "TilePlan", "TilePlanError", "plan_tiles"]

#: Most candidate tiles one scale of a plan may have (about 0.5 GB of planning memory). Real plans are
#: far below: a 100,000 px slide at 0.25 µm/px in 224 px tiles at 0.5 µm/px is about 50,000 tiles.
MAX_TILES_PER_SCALE = 2_000_000


@dataclass(frozen=True)
class SlideRef:
    """What a plan remembers of its slide, to refuse being used with another one."""

    path: str
    dimensions: tuple[int, int]
    mpp: tuple[float, float]

    @classmethod
    def of(cls, slide: Slide) -> "SlideRef":
        return cls(slide.path, tuple(slide.dimensions), tuple(slide.mpp))  # type: ignore[arg-type]


class TilePlan:
    """Tiles of a slide at one or more scales.

    Attributes
    ----------
    table : pandas.DataFrame
        One row a tile, columns :data:`PLAN_COLUMNS`.
    scales : tuple of Scale
        Scales ordered coarse to fine; ``table.scale`` indexes into it.
    slide : SlideRef
        Path, level-0 dimensions and mpp of the planned slide.
    """

    def __init__(self, table: pd.DataFrame, scales: Sequence[Scale], slide: SlideRef):
        self.table = table.reset_index(drop=True)
        self.scales = tuple(scales)
        self.slide = slide

    def __len__(self) -> int:
        return len(self.table)

    def __repr__(self) -> str:
        counts = ", ".join(f"{s.mpp:g} µm/px x{s.tile}: {int((self.table.scale == i).sum())}"
                           for i, s in enumerate(self.scales))
        return f"<TilePlan {self.slide.path!r} ({counts})>"

    def scale_index(self, scale: int | Scale | str) -> int:
        """Index of a scale given as an index, a :class:`Scale` or its name."""
        if isinstance(scale, Scale):
            matches = [i for i, s in enumerate(self.scales) if s == scale]
        elif isinstance(scale, str):
            matches = [i for i, s in enumerate(self.scales) if s.name == scale]
        elif isinstance(scale, (int, np.integer)) and not isinstance(scale, bool) and 0 <= scale < len(self.scales):
            matches = [int(scale)]
        else:
            matches = []
        if not matches:
            known = ", ".join(f"{i} ({s.name or s.mpp})" for i, s in enumerate(self.scales))
            raise TilePlanError(f"scale: expected one of {known}; got {scale!r}")
        return matches[0]

    def tiles(self, scale: int | Scale | str) -> pd.DataFrame:
        """The rows of one scale."""
        return self.table[self.table.scale == self.scale_index(scale)]

    def children(self, ids: Iterable[int]) -> pd.DataFrame:
        """The tiles of the next finer scale whose parents are ``ids`` (the cascade)."""
        wanted = np.asarray(list(ids), dtype=np.int64)
        return self.table[self.table.parent_id.isin(wanted)]

    def read_boxes(self, rows: pd.DataFrame, scale: int | Scale | str) -> np.ndarray:
        """Level-0 ``(N, 4)`` boxes to read for ``rows``: the tile plus the scale's context margin."""
        s = self.scales[self.scale_index(scale)]
        margin_x = round(s.context * s.mpp / self.slide.mpp[0])
        margin_y = round(s.context * s.mpp / self.slide.mpp[1])
        boxes = rows[["l0_x", "l0_y", "l0_width", "l0_height"]].to_numpy(np.int64).copy()
        boxes[:, :2] -= (margin_x, margin_y)
        boxes[:, 2:] += (2 * margin_x, 2 * margin_y)
        return boxes

    def check_slide(self, slide: Slide) -> None:
        """Raise unless ``slide`` is the slide this plan was made for (same size and mpp)."""
        ref = SlideRef.of(slide)
        if ref.dimensions != self.slide.dimensions or not np.allclose(ref.mpp, self.slide.mpp, rtol=1e-6):
            raise TilePlanError(
                f"{slide.path}: the plan was made for {self.slide.path} ({self.slide.dimensions[0]}x"
                f"{self.slide.dimensions[1]} at {self.slide.mpp[0]:g} µm/px), got a slide of "
                f"{ref.dimensions[0]}x{ref.dimensions[1]} at {ref.mpp[0]:g} µm/px"
            )

    def save(self, path: Any) -> str:
        """Write the plan as Parquet (atomically), scales and slide in its metadata; returns the path."""
        metadata = {
            "scales": [scale.to_dict() for scale in self.scales],
            "slide": {"path": self.slide.path, "dimensions": list(self.slide.dimensions),
                      "mpp": list(self.slide.mpp)},
        }
        return write_plan_table(self.table, metadata, path)

    @classmethod
    def load(cls, path: Any) -> "TilePlan":
        """Read a plan written by :meth:`save`.

        Raises
        ------
        TilePlanError
            Not a plan file, or its metadata is malformed (the message names the file).
        """
        frame, metadata = read_plan_table(path)
        try:
            scales = [Scale.from_dict(entry) for entry in metadata["scales"]]
            slide = metadata["slide"]
            ref = SlideRef(str(slide["path"]), tuple(int(v) for v in slide["dimensions"]),  # type: ignore[arg-type]
                           tuple(float(v) for v in slide["mpp"]))  # type: ignore[arg-type]
        except (KeyError, TypeError, ValueError) as exc:
            raise TilePlanError(f"{path}: malformed plan metadata ({type(exc).__name__}: {exc})") from exc
        return cls(frame, scales, ref)


def _check_mask(slide: Slide, mask: TissueMask | None) -> None:
    if mask is None:
        return
    if not isinstance(mask, TissueMask):
        raise TilePlanError(f"mask: expected a TissueMask or None, got {type(mask).__name__}")
    if tuple(mask.slide_dimensions) != tuple(slide.dimensions):
        raise TilePlanError(
            f"{slide.path}: the tissue mask belongs to another slide ({mask.slide_path or 'unknown'}, "
            f"{mask.slide_dimensions[0]}x{mask.slide_dimensions[1]}); expected one of "
            f"{slide.dimensions[0]}x{slide.dimensions[1]}"
        )


def _offsets(parent_extent: int, extent: int, stride: int) -> np.ndarray:
    """Tile starts covering ``[0, parent_extent)`` with tiles inside it; the last one flush."""
    if extent >= parent_extent:
        return np.zeros(1, dtype=np.int64)
    starts = np.arange(0, parent_extent - extent + 1, stride, dtype=np.int64)
    if starts[-1] + extent < parent_extent:
        starts = np.append(starts, parent_extent - extent)
    return starts


def _offset_count(parent_extent: int, extent: int, stride: int) -> int:
    """``len(_offsets(parent_extent, extent, stride))``, without building the array."""
    if extent >= parent_extent:
        return 1
    span = parent_extent - extent
    return span // stride + 1 + (1 if span % stride else 0)


def _check_count(slide: Slide, scale: Scale, count: int, where: str) -> None:
    """Refuse a scale whose candidate tiles would exceed :data:`MAX_TILES_PER_SCALE`."""
    if count > MAX_TILES_PER_SCALE:
        raise TilePlanError(
            f"{slide.path}: scale {_label(scale)} would make {count:,} candidate tiles {where}; expected at "
            f"most {MAX_TILES_PER_SCALE:,} per scale (MAX_TILES_PER_SCALE); use larger tiles or a coarser mpp"
        )


def _snap(starts: np.ndarray, floor: np.ndarray, downsample: float) -> np.ndarray:
    """Snap starts down to the read level's pixel grid, never below ``floor`` (the parent start)."""
    step = round(downsample)
    if step <= 1 or abs(downsample - step) > 1e-6:
        return starts
    return np.maximum((starts // step) * step, floor)


def _label(scale: Scale) -> str:
    name = f"{scale.name!r}: " if scale.name else ""
    return f"{name}{scale.tile} px at {scale.mpp:g} µm/px ({scale.extent_um():g} µm)"


def _order_scales(scales: Sequence[Scale] | Scale) -> list[Scale]:
    """The scales coarse to fine: largest mpp first; at equal mpp, larger tiles first (stable)."""
    given = [scales] if isinstance(scales, Scale) else scales
    if isinstance(given, (str, bytes)) or not isinstance(given, Sequence):
        raise ParameterError(f"scales: expected a Scale or a sequence of Scale, got {type(given).__name__}")
    given = list(given)
    if not given:
        raise TilePlanError("scales: expected at least one Scale, got none")
    for i, scale in enumerate(given):
        if not isinstance(scale, Scale):
            raise ParameterError(f"scales[{i}]: expected a Scale, got {scale!r}")
    names = [s.name for s in given if s.name is not None]
    if len(set(names)) != len(names):
        raise TilePlanError(f"scales: expected distinct names, got {names}")
    return sorted(given, key=lambda s: (-s.mpp, -s.extent_um()))


def _extent(scale: Scale, mpp: tuple[float, float], value: int) -> tuple[int, int]:
    """``value`` target pixels of ``scale`` in level-0 pixels along x and y (at least 1)."""
    return max(1, round(value * scale.mpp / mpp[0])), max(1, round(value * scale.mpp / mpp[1]))


def _check_nesting(ordered: list[Scale], mpp: tuple[float, float]) -> None:
    """Refuse a finer scale whose tiles do not fit inside the tiles of the coarser scale above."""
    for parent, child in zip(ordered, ordered[1:]):
        outer, inner = _extent(parent, mpp, parent.tile), _extent(child, mpp, child.tile)
        if inner[0] > outer[0] or inner[1] > outer[1]:
            raise TilePlanError(
                f"scales: tiles nest coarse to fine (largest µm/px first), each inside a tile of the coarser "
                f"scale above; expected the finer scale's tiles to fit in the coarser one's, got {_label(child)} "
                f"under {_label(parent)}; make the coarser tiles at least {child.extent_um():g} µm or the finer "
                f"ones at most {parent.extent_um():g} µm"
            )


def plan_tiles(
    slide: Slide, mask: TissueMask | None, scales: Sequence[Scale] | Scale, *, min_tissue: float = 0.25
) -> TilePlan:
    """Plan tiles of ``slide`` at every scale, fine tiles nested in their coarse parents.

    Parameters
    ----------
    slide : Slide
        The slide to tile.
    mask : TissueMask or None
        Its tissue mask; None keeps every tile (tissue fraction NaN).
    scales : Scale or sequence of Scale
        Any order: the plan orders them coarse to fine by resolution (largest µm/px first; at
        equal mpp, larger tiles first), so ``plan.scales[0]`` is the coarsest and the ``scale``
        column indexes ``plan.scales``. Each scale keeps its values and name: find yours with
        ``plan.tiles(scale)`` or ``plan.tiles("name")`` whatever the order you passed.
    min_tissue : float
        Keep a tile when its tissue fraction is at least this and above zero (a scale's own
        ``min_tissue`` wins). A finer tile is considered only inside kept parents.

    Returns
    -------
    TilePlan

    Raises
    ------
    ResolutionError
        A scale finer than the slide's level 0.
    TilePlanError
        No scales, two scales of one name, a finer scale whose tiles are larger (in µm) than the
        coarser scale's above it, a mask of another slide, or a scale with more than
        :data:`MAX_TILES_PER_SCALE` candidate tiles (checked before any is made).
    ParameterError
        ``min_tissue`` not a fraction, ``scales`` not Scale objects.
    MissingMppError
        The slide has no mpp.
    """
    ordered = _order_scales(scales)
    min_tissue = parse_fraction(min_tissue, "min_tissue")
    _check_mask(slide, mask)
    if slide.mpp is None:
        raise MissingMppError(slide.path)
    width, height = slide.dimensions
    mpp = (float(slide.mpp[0]), float(slide.mpp[1]))
    _check_nesting(ordered, mpp)
    frames: list[pd.DataFrame] = []
    parents: pd.DataFrame | None = None
    next_id = 0
    for index, scale in enumerate(ordered):
        level = slide.best_level_for_mpp(scale.mpp)
        extent, stride = _extent(scale, mpp, scale.tile), _extent(scale, mpp, scale.stride)
        if parents is None:
            cols = 1 + max(0, math.ceil((width - extent[0]) / stride[0]))
            rows = 1 + max(0, math.ceil((height - extent[1]) / stride[1]))
            _check_count(slide, scale, cols * rows, f"over the {width}x{height} px slide ({cols}x{rows})")
            grid_y, grid_x = np.meshgrid(np.arange(rows) * stride[1], np.arange(cols) * stride[0], indexing="ij")
            zero = np.zeros(grid_x.size, dtype=np.int64)
            xs = _snap(grid_x.ravel().astype(np.int64), zero, level.downsample)
            ys = _snap(grid_y.ravel().astype(np.int64), zero, level.downsample)
            parent_ids = np.full(len(xs), -1, dtype=np.int64)
        else:
            parent_extent = _extent(ordered[index - 1], mpp, ordered[index - 1].tile)  # >= extent: checked
            per_parent = (_offset_count(parent_extent[0], extent[0], stride[0])
                          * _offset_count(parent_extent[1], extent[1], stride[1]))
            _check_count(slide, scale, per_parent * len(parents),
                         f"({per_parent:,} per parent x {len(parents):,} kept parents)")
            off_y, off_x = np.meshgrid(_offsets(parent_extent[1], extent[1], stride[1]),
                                       _offsets(parent_extent[0], extent[0], stride[0]), indexing="ij")
            px, py = parents.l0_x.to_numpy(), parents.l0_y.to_numpy()
            xs = _snap((px[:, None] + off_x.ravel()[None, :]).ravel(), np.repeat(px, off_x.size), level.downsample)
            ys = _snap((py[:, None] + off_y.ravel()[None, :]).ravel(), np.repeat(py, off_y.size), level.downsample)
            parent_ids = np.repeat(parents.tile_id.to_numpy(), off_x.size)
            inside = (xs < width) & (ys < height)  # children of edge parents may lie past the slide
            xs, ys, parent_ids = xs[inside], ys[inside], parent_ids[inside]
        boxes = np.stack([xs, ys, np.full_like(xs, extent[0]), np.full_like(ys, extent[1])], axis=1)
        if mask is None:
            fractions = np.full(len(xs), np.nan)
            keep = np.ones(len(xs), dtype=bool)
        else:
            fractions = mask.fractions_in(boxes) if len(boxes) else np.zeros(0)
            threshold = min_tissue if scale.min_tissue is None else scale.min_tissue
            keep = (fractions >= threshold) & (fractions > 0)
        kept = int(keep.sum())
        frame = pd.DataFrame({
            "tile_id": np.arange(next_id, next_id + kept, dtype=np.int64),
            "scale": np.full(kept, index, dtype=np.int16),
            "mpp": np.full(kept, scale.mpp, dtype=np.float64),
            "l0_x": xs[keep], "l0_y": ys[keep],
            "l0_width": np.full(kept, extent[0], dtype=np.int64),
            "l0_height": np.full(kept, extent[1], dtype=np.int64),
            "read_level": np.full(kept, level.index, dtype=np.int16),
            "tissue_fraction": fractions[keep].astype(np.float32),
            "parent_id": parent_ids[keep],
        })
        next_id += kept
        frames.append(frame)
        parents = frame
    return TilePlan(pd.concat(frames, ignore_index=True), ordered, SlideRef.of(slide))
