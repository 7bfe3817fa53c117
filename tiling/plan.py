"""Multi-scale tile plans: which tiles to read, at which resolution, under which coarse parent.

A plan is a table, one row a tile (see :data:`PLAN_COLUMNS`). Scales are ordered coarse to fine;
the coarsest scale is a grid over the whole slide, and each finer scale is laid out *inside* each
kept tile of the scale above, so every fine tile lies within its parent and the cascade
"run the cell model only where the tissue model says so" is ``plan.children(ids)``.

Geometry is in whole level-0 pixels. The grid starts at the slide origin and each tile start is
snapped down to the read level's pixel grid, so tiles whose size is a multiple of the stored
tiles line up with them. Coarse tiles on the right and bottom edges may extend past the slide;
reads pad that part with white (as :meth:`Slide.read_region` documents).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from slidescope.wsi import Slide
from slidescope.wsi.errors import RegionError, SlideError

from .scales import Scale
from .tissue import TissueMask

__all__ = ["PLAN_COLUMNS", "TilePlan", "TilePlanError", "plan_tiles"]

#: Columns of a plan table, each named for its space.
PLAN_COLUMNS = ("tile_id", "scale", "mpp", "l0_x", "l0_y", "l0_width", "l0_height", "read_level",
                "tissue_fraction", "parent_id")


class TilePlanError(SlideError):
    """A plan cannot be made, saved or loaded as asked."""


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
        """Write the plan as Parquet (atomically); see :mod:`slidescope.tiling.plan_io`."""
        from .plan_io import save_plan

        return save_plan(self, path)

    @classmethod
    def load(cls, path: Any) -> "TilePlan":
        """Read a plan written by :meth:`save`."""
        from .plan_io import load_plan

        return load_plan(path)


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


def _snap(starts: np.ndarray, floor: np.ndarray, downsample: float) -> np.ndarray:
    """Snap starts down to the read level's pixel grid, never below ``floor`` (the parent start)."""
    step = round(downsample)
    if step <= 1 or abs(downsample - step) > 1e-6:
        return starts
    return np.maximum((starts // step) * step, floor)


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
        Any order; the plan orders them coarse (largest tile in microns) to fine.
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
        No scales, a finer scale whose tiles are larger than its parent's, a mask of another slide.
    """
    ordered = sorted([scales] if isinstance(scales, Scale) else list(scales), key=lambda s: -s.extent_um())
    if not ordered:
        raise TilePlanError("scales: expected at least one Scale, got none")
    if not 0.0 <= min_tissue <= 1.0:
        raise RegionError(f"min_tissue: expected a fraction in [0, 1], got {min_tissue!r}")
    _check_mask(slide, mask)
    width, height = slide.dimensions
    mpp_x, mpp_y = slide.mpp
    frames: list[pd.DataFrame] = []
    parents: pd.DataFrame | None = None
    next_id = 0
    for index, scale in enumerate(ordered):
        level = slide.best_level_for_mpp(scale.mpp)
        extent = (max(1, round(scale.tile * scale.mpp / mpp_x)), max(1, round(scale.tile * scale.mpp / mpp_y)))
        stride = (max(1, round(scale.stride * scale.mpp / mpp_x)), max(1, round(scale.stride * scale.mpp / mpp_y)))
        if parents is None:
            cols = 1 + max(0, math.ceil((width - extent[0]) / stride[0]))
            rows = 1 + max(0, math.ceil((height - extent[1]) / stride[1]))
            grid_y, grid_x = np.meshgrid(np.arange(rows) * stride[1], np.arange(cols) * stride[0], indexing="ij")
            zero = np.zeros(grid_x.size, dtype=np.int64)
            xs = _snap(grid_x.ravel().astype(np.int64), zero, level.downsample)
            ys = _snap(grid_y.ravel().astype(np.int64), zero, level.downsample)
            parent_ids = np.full(len(xs), -1, dtype=np.int64)
        else:
            parent_extent = (int(parents.l0_width.iloc[0]), int(parents.l0_height.iloc[0])) if len(parents) else extent
            if extent[0] > parent_extent[0] or extent[1] > parent_extent[1]:
                raise TilePlanError(
                    f"scales: a {scale.tile} px tile at {scale.mpp:g} µm/px ({extent[0]} level-0 px) is larger "
                    f"than its parent scale's tile ({parent_extent[0]} level-0 px)"
                )
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
