"""One slide through the merged slide model: mask → coarse plan → tissue part → cascade → cell part → head.

The steps are plain functions of small, picklable arguments, so that the batch engine
(:mod:`slidescope.workflows.batch`) runs them as Dask tasks and :class:`Pipeline` runs the very same
functions in this process for a notebook:

1. :func:`plan_slide`: the tissue mask and a two-scale plan (the tissue part's coarse tiles, the cell
   part's fine tiles nested in them); the slide's tissue area.
2. :func:`tissue_batch`: read a batch of coarse tiles and run the tissue part (class probabilities
   and embeddings), in one task, so pixels never travel.
3. :func:`fine_batches`: the fine tiles under the coarse tiles the tissue part flags (its card's
   ``cascade_class`` at or above ``cascade_probability``), grouped by parent so that each batch holds
   whole parents; :func:`cell_batch` reads them and runs the cell part: each fine tile's nuclei counts
   (the peaks the merged graph counts, what the head was trained on) and the nuclei themselves in
   level-0 pixels, each once (a fine tile owns the nuclei nearest its centre; fine tiles lie inside
   their parent, so a batch of whole parents sees every tile a nucleus could be counted twice by).
4. :func:`head_batch`: the slide head over the coarse tiles (attention-pooled slide probabilities).

:class:`SlideAssembler` collects the results of one slide as they arrive (cells stream into a sink,
so a slide's memory is its tiles, not its nuclei) and :meth:`SlideAssembler.finish` gives the
:class:`SlidePrediction`.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from slidescope.wsi.validation import (
    parse_bool,
    parse_choice,
    parse_fraction,
    parse_positive_float,
    parse_positive_int,
)

__all__ = ["Settings", "SlidePlan", "Batch", "SlidePrediction", "SlideAssembler", "Pipeline", "plan_slide",
           "coarse_batches", "tissue_batch", "fine_batches", "cell_batch", "head_batch", "MAP_MPP",
           "MAP_MAX_EDGE", "DISPLAY_THRESHOLD"]

#: Preferred µm per pixel of the slide maps (coarsened so that a map has at most :data:`MAP_MAX_EDGE` px a side).
MAP_MPP = 32.0
#: Longest side of a slide map in pixels.
MAP_MAX_EDGE = 4096
#: Probability at which a coarse tile counts as tumour for areas and regions.
DISPLAY_THRESHOLD = 0.5


@dataclass(frozen=True)
class Settings:
    """How a slide is analysed (everything but the model).

    Attributes
    ----------
    min_tissue : float
        Tiles (coarse and fine) with less tissue are not analysed.
    mask_mpp : float
        µm per pixel of the tissue mask.
    method : str
        Tissue detection method (``auto``, ``otsu``, ``ihc``, ``fluorescence``).
    cascade : bool
        Run the cell part only under coarse tiles the tissue part flags (False: under every coarse tile).
    batch_size : int
        Tiles per task and model call.
    backend : str
        Slide backend (``auto``, ``openslide``, ``tiff``).
    exact_resample : bool
        Decode every stored tile in full before shrinking (``open_slide(exact_resample=True)``),
        instead of decoding JPEG tiles at reduced resolution where a read allows it.
    """

    min_tissue: float = 0.25
    mask_mpp: float = 8.0
    method: str = "auto"
    cascade: bool = True
    batch_size: int = 32
    backend: str = "auto"
    exact_resample: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "min_tissue", parse_fraction(self.min_tissue, "min_tissue"))
        object.__setattr__(self, "mask_mpp", parse_positive_float(self.mask_mpp, "mask_mpp", maximum=1000.0))
        object.__setattr__(self, "method", parse_choice(self.method, "method", ("auto", "otsu", "ihc", "fluorescence")))
        object.__setattr__(self, "batch_size", parse_positive_int(self.batch_size, "batch_size", maximum=4096))
        object.__setattr__(self, "backend", parse_choice(self.backend, "backend", ("auto", "openslide", "tiff")))
        for name in ("cascade", "exact_resample"):
            object.__setattr__(self, name, parse_bool(getattr(self, name), name, error=TypeError))

    def identity(self) -> dict[str, Any]:
        """The settings that change results (the batch size does not), for the configuration hash."""
        return {"min_tissue": self.min_tissue, "mask_mpp": self.mask_mpp, "method": self.method,
                "cascade": self.cascade, "backend": self.backend, "exact_resample": self.exact_resample}

    def to_dict(self) -> dict[str, Any]:
        return {**self.identity(), "batch_size": self.batch_size}


@dataclass
class SlidePlan:
    """What :func:`plan_slide` found: the slide's geometry, its tissue, and the two-scale plan."""

    path: str
    slide_mpp: float | None
    dimensions: tuple[int, int]
    mpp: tuple[float, float]
    tissue_area_mm2: float
    plan: Any
    seconds: float
    handle: Any = None

    @property
    def coarse(self) -> pd.DataFrame:
        return self.plan.tiles("tissue")


@dataclass
class Batch:
    """A task's tiles: their plan rows (``tile_id``, ``parent_id``, level-0 core box), the level-0
    boxes to read, and the scale; small, so that a task carries no plan and no pixels."""

    rows: pd.DataFrame
    boxes: np.ndarray
    scale: Any

    def __len__(self) -> int:
        return len(self.rows)


def plan_slide(path: str, card: Any, settings: Settings, slide_mpp: float | None = None) -> SlidePlan:
    """The tissue mask and the two-scale plan of the slide at ``path`` for the merged ``card``.

    Raises
    ------
    SlideError
        A slide that cannot be opened, lacks an mpp (and ``slide_mpp`` is None), or has no tissue method fit.
    """
    from slidescope.tiling import MIN_MASK_EDGE, DarkFieldError, MaskTooSmallError, plan_tiles, tissue_mask
    from slidescope.wsi import open_slide
    from slidescope.wsi.errors import MissingMppError

    from .errors import UnsuitableSlideError

    started = time.perf_counter()
    try:
        slide = open_slide(path, mpp=slide_mpp, backend=settings.backend, exact_resample=settings.exact_resample)
    except MissingMppError:
        raise UnsuitableSlideError(
            f"{path}: the slide has no microns-per-pixel (mpp) metadata; give it in the manifest's mpp column "
            f"(slidescope run) or as Pipeline(slide_mpp=...)") from None
    with slide:
        if settings.method == "fluorescence":
            raise UnsuitableSlideError(f"{path}: not analysed: the slide model reads brightfield (H&E) slides, and "
                                       f"method 'fluorescence' is for dark-field ones")
        try:
            mask = tissue_mask(slide, mpp=settings.mask_mpp, method=settings.method)
        except MaskTooSmallError as exc:
            (w0, h0), (mx, my) = slide.dimensions, slide.mpp
            hint = ("" if exc.finest_mpp is None else
                    f"; a finer tissue mask (--mask-mpp, Settings(mask_mpp=) at most {exc.finest_mpp:.3g}) would fit it")
            raise UnsuitableSlideError(
                f"{path}: the slide is too small to analyse: {w0} x {h0} px ({w0 * mx:.0f} x {h0 * my:.0f} µm); "
                f"its tissue mask at {settings.mask_mpp:g} µm/px would be {exc.mask_size[0]} x {exc.mask_size[1]} px, "
                f"under {MIN_MASK_EDGE} px a side{hint}") from None
        except DarkFieldError as exc:
            raise UnsuitableSlideError(
                f"{path}: not analysed: the image looks dark-field (fluorescence): background brightness "
                f"{exc.background:.0f} of 255; the slide model reads brightfield (H&E) slides (method 'otsu' "
                f"forces brightfield tissue detection if the slide is brightfield after all)") from None
        plan = plan_tiles(slide, mask, [card.tissue.scale(), card.cell.scale()], min_tissue=settings.min_tissue)
        width, height = slide.dimensions
        mask_h, mask_w = mask.array.shape
        pixel_um2 = (width / mask_w * slide.mpp[0]) * (height / mask_h * slide.mpp[1])
        area = float(np.count_nonzero(mask.array)) * pixel_um2 / 1e6
        return SlidePlan(os.path.abspath(path), slide_mpp, (int(width), int(height)),
                         (float(slide.mpp[0]), float(slide.mpp[1])), area, plan, time.perf_counter() - started,
                         slide.lazy_copy())


def coarse_batches(plan: SlidePlan, batch_size: int) -> list[Batch]:
    """The coarse tiles in batches of at most ``batch_size`` (evenly sized)."""
    rows = plan.coarse
    if not len(rows):
        return []
    bounds = np.linspace(0, len(rows), math.ceil(len(rows) / batch_size) + 1).round().astype(int)
    return [_batch(plan, rows.iloc[start:stop], "tissue") for start, stop in zip(bounds[:-1], bounds[1:]) if stop > start]


_BATCH_COLUMNS = ["tile_id", "parent_id", "l0_x", "l0_y", "l0_width", "l0_height"]


def _batch(plan: SlidePlan, rows: pd.DataFrame, scale: str) -> Batch:
    return Batch(rows[_BATCH_COLUMNS].reset_index(drop=True), plan.plan.read_boxes(rows, scale),
                 plan.plan.scales[plan.plan.scale_index(scale)])


def _read(slide: Any, batch: Batch) -> np.ndarray:
    size = batch.scale.read_size
    return slide.read_tiles(batch.boxes[:, :2], (size, size), mpp=batch.scale.mpp)


_THREADS: list[int] = []


def _limit_threads(model: Any, threads: int | None) -> None:
    """Give the framework ``threads`` intra-op threads, once per process (a Dask worker's share of cores)."""
    if threads is None or _THREADS:
        return
    _THREADS.append(threads)
    if model.framework == "torch":
        import torch

        torch.set_num_threads(threads)


def tissue_batch(model: Any, slide: Any, batch: Batch, threads: int | None = None) -> dict[str, Any]:
    """Read a batch of coarse tiles and run the tissue part: ``tile_id``, ``probs`` (N, K), ``embedding`` (N, C)."""
    _limit_threads(model, threads)
    started = time.perf_counter()
    rows = batch.rows
    images = _read(slide, batch)
    read = time.perf_counter() - started
    out = model.backend.part_outputs(coarse=images, chunk=len(images))
    return {"tile_id": rows.tile_id.to_numpy(np.int64), "probs": out["tissue_probs"].astype(np.float32),
            "embedding": out["embedding"].astype(np.float32), "read_seconds": read,
            "seconds": time.perf_counter() - started}


def flagged_parents(card: Any, tile_ids: np.ndarray, probs: np.ndarray, cascade: bool) -> np.ndarray:
    """The coarse tiles whose fine tiles the cell part reads: those the tissue part flags, or all."""
    if not cascade:
        return np.asarray(tile_ids, np.int64)
    gate = probs[:, card.tissue.class_names.index(card.tissue.cascade_class)]
    return np.asarray(tile_ids, np.int64)[gate >= float(card.tissue.thresholds["cascade_probability"])]


def fine_batches(plan: SlidePlan, parents: Iterable[int], batch_size: int) -> list[Batch]:
    """The fine tiles under ``parents``, in batches of whole parents of about ``batch_size`` tiles."""
    children = plan.plan.children(parents)
    children = children[children.scale == plan.plan.scale_index("cell")]
    batches: list[pd.DataFrame] = []
    pending: list[pd.DataFrame] = []
    size = 0
    for _, group in children.groupby("parent_id", sort=True):
        if pending and size + len(group) > batch_size:
            batches.append(_batch(plan, pd.concat(pending), "cell"))
            pending, size = [], 0
        pending.append(group)
        size += len(group)
    if pending:
        batches.append(_batch(plan, pd.concat(pending), "cell"))
    return batches


def cell_batch(model: Any, slide: Any, batch: Batch, threads: int | None = None) -> dict[str, Any]:
    """Read a batch of fine tiles (whole parents) and run the cell part.

    Returns ``tile_id``, ``parent_id``, ``raw_counts`` (N, T: every peak of each tile, the merged
    graph's count, what the head reads), ``owned_counts`` (N, T: the nuclei each tile owns) and
    ``cells`` (a table ``l0_x, l0_y, type, score, tile_id``: each nucleus once).
    """
    from slidescope.merge.head import peak_positions
    from slidescope.models.peaks import deduplicate

    _limit_threads(model, threads)
    started = time.perf_counter()
    card = model.card.cell
    rows, boxes = batch.rows, batch.boxes
    images = _read(slide, batch)
    read = time.perf_counter() - started
    logits = model.backend.cell_logits(images)
    size = images.shape[1]
    out_px_um = card.input.mpp * card.scale().read_size / size  # µm per pixel of the logits
    min_distance_px = float(card.thresholds["min_distance_um"]) / out_px_um
    image, y, x, kind, score = peak_positions(logits["heatmap"], logits["types"], min_distance_px=min_distance_px,
                                              threshold=float(card.thresholds["nucleus_score"]))
    names = np.asarray(card.class_names, dtype=object)
    types = len(names)
    raw = np.bincount(image * types + kind, minlength=len(images) * types).reshape(len(images), types)
    heat = logits["heatmap"].shape[1]
    tile_ids = rows.tile_id.to_numpy(np.int64)
    found = pd.DataFrame({
        "l0_x": boxes[image, 0] + (x + 0.5) * boxes[image, 2] / heat,
        "l0_y": boxes[image, 1] + (y + 0.5) * boxes[image, 3] / heat,
        "type": names[kind], "score": score, "tile_id": tile_ids[image]})
    # level-0 px per µm, from the scale: a tile's core box is ``tile`` px at the scale's mpp
    l0_per_um = float(rows.l0_width.iloc[0]) / (batch.scale.tile * batch.scale.mpp) if len(rows) else 1.0
    min_distance_l0 = float(card.thresholds["min_distance_um"]) * l0_per_um
    kept = deduplicate(found, rows[["tile_id", "l0_x", "l0_y", "l0_width", "l0_height"]], min_distance_l0=min_distance_l0)
    cells = kept[["l0_x", "l0_y", "type", "score", "tile_id"]].reset_index(drop=True)
    cells["type"] = cells["type"].astype(str)
    row_of = pd.Index(tile_ids).get_indexer(cells.tile_id.to_numpy())
    codes = pd.Index(list(names)).get_indexer(cells.type.to_numpy())
    owned = np.bincount(row_of * types + codes, minlength=len(images) * types).reshape(len(images), types)
    return {"tile_id": tile_ids, "parent_id": rows.parent_id.to_numpy(np.int64), "raw_counts": raw.astype(np.int64),
            "owned_counts": owned.astype(np.int64), "cells": cells, "read_seconds": read,
            "seconds": time.perf_counter() - started}


def head_batch(model: Any, embedding: np.ndarray, cells: np.ndarray, gate: np.ndarray) -> dict[str, np.ndarray]:
    """The slide head over one slide's coarse tiles: ``slide_probs`` and ``attention``."""
    return model.backend.head_outputs(embedding, cells, gate)


@dataclass
class SlidePrediction:
    """One slide's prediction, as data (what a notebook gets, and what the outputs are written from).

    Attributes
    ----------
    probability : float
        The slide-level probability of the positive class (the head's last class, ``tumour``).
    label : str
        The most probable slide class.
    probabilities : dict
        Every slide class's probability.
    tiles : pandas.DataFrame
        Coarse and analysed fine tiles: ``tile_id, scale`` (``tissue`` or ``cell``), ``l0_x, l0_y,
        l0_width, l0_height``, ``tissue_fraction``, ``parent_id``, ``prob_<class>``, ``attention``,
        ``flagged`` (coarse rows), ``count_<type>`` (nuclei owned: a coarse tile's children's).
    cells : pandas.DataFrame or None
        ``l0_x, l0_y, type, score, tile_id``, each nucleus once (None when streamed to a file).
    nuclei : dict
        Nuclei by type; ``nuclei_per_mm2`` is their total over the tissue of the analysed coarse tiles.
    maps : dict
        Slide maps at ``map_mpp`` µm/px: ``prob_<class>``, ``attention``, ``nuclei_density`` (per mm²);
        NaN where nothing was analysed.
    """

    path: str
    dimensions: tuple[int, int]
    mpp: tuple[float, float]
    probability: float
    label: str
    probabilities: dict[str, float]
    tiles: pd.DataFrame
    cells: pd.DataFrame | None
    tissue_area_mm2: float
    tumour_area_mm2: float
    analysed_area_mm2: float
    nuclei: dict[str, int]
    nuclei_per_mm2: float
    maps: dict[str, np.ndarray]
    map_mpp: float
    plan: Any
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def coarse(self) -> pd.DataFrame:
        return self.tiles[self.tiles.scale == "tissue"]

    def top_tiles(self, count: int = 6) -> pd.DataFrame:
        """The coarse tiles with the most attention (where the decision came from)."""
        return self.coarse.sort_values("attention", ascending=False).head(count)


def map_mpp_for(dimensions: tuple[int, int], mpp: tuple[float, float]) -> float:
    """:data:`MAP_MPP`, coarsened so that the map has at most :data:`MAP_MAX_EDGE` px a side."""
    longest_um = max(dimensions[0] * mpp[0], dimensions[1] * mpp[1])
    return max(MAP_MPP, longest_um / MAP_MAX_EDGE)


class SlideAssembler:
    """Collects one slide's batch results as they arrive and assembles its :class:`SlidePrediction`.

    Parameters
    ----------
    card : MergedCard
    plan : SlidePlan
    cell_sink : callable, optional
        ``cell_sink(cells_table)`` takes each fine batch's nuclei (the batch engine streams them into
        ``cells.parquet``); without one the nuclei are kept and returned in the prediction.
    """

    def __init__(self, card: Any, plan: SlidePlan, cell_sink: Callable[[pd.DataFrame], None] | None = None) -> None:
        self.card, self.plan, self.cell_sink = card, plan, cell_sink
        coarse = plan.coarse
        self.coarse_ids = coarse.tile_id.to_numpy(np.int64)
        self._row = pd.Index(self.coarse_ids)
        kt, tt = len(card.tissue.class_names), len(card.cell.class_names)
        self.probs = np.full((len(coarse), kt), np.nan, np.float32)
        self.embedding = np.zeros((len(coarse), card.head.embedding), np.float32)
        self.raw_children = np.zeros((len(coarse), tt), np.int64)
        self.owned_children = np.zeros((len(coarse), tt), np.int64)
        self.fine: list[pd.DataFrame] = []
        self.cells: list[pd.DataFrame] = []
        self.map_mpp = map_mpp_for(plan.dimensions, plan.mpp)
        shape = self._map_shape()
        self.density = np.zeros(shape, np.float64)
        self.seconds = {"plan": plan.seconds, "tissue": 0.0, "cells": 0.0, "head": 0.0, "read": 0.0}

    def _map_shape(self) -> tuple[int, int]:
        width_um, height_um = self.plan.dimensions[0] * self.plan.mpp[0], self.plan.dimensions[1] * self.plan.mpp[1]
        return max(1, math.ceil(height_um / self.map_mpp)), max(1, math.ceil(width_um / self.map_mpp))

    def add_tissue(self, result: dict[str, Any]) -> None:
        rows = self._row.get_indexer(result["tile_id"])
        self.probs[rows] = result["probs"]
        self.embedding[rows] = result["embedding"]
        self.seconds["tissue"] += result["seconds"]
        self.seconds["read"] += result["read_seconds"]

    def flagged(self, cascade: bool) -> np.ndarray:
        """The coarse tiles whose fine tiles the cell part reads (after every tissue batch was added)."""
        return flagged_parents(self.card, self.coarse_ids, self.probs, cascade)

    def add_cells(self, result: dict[str, Any]) -> None:
        parents = self._row.get_indexer(result["parent_id"])
        np.add.at(self.raw_children, parents, result["raw_counts"])
        np.add.at(self.owned_children, parents, result["owned_counts"])
        fine = pd.DataFrame({"tile_id": result["tile_id"]})
        for k, name in enumerate(self.card.cell.class_names):
            fine[f"count_{name}"] = result["owned_counts"][:, k]
        self.fine.append(fine)
        cells = result["cells"]
        if len(cells):
            col = np.clip((cells.l0_x.to_numpy() * self.plan.mpp[0] / self.map_mpp).astype(np.int64), 0,
                          self.density.shape[1] - 1)
            row = np.clip((cells.l0_y.to_numpy() * self.plan.mpp[1] / self.map_mpp).astype(np.int64), 0,
                          self.density.shape[0] - 1)
            np.add.at(self.density, (row, col), 1.0)
        if self.cell_sink is not None:
            self.cell_sink(cells)
        else:
            self.cells.append(cells)
        self.seconds["cells"] += result["seconds"]
        self.seconds["read"] += result["read_seconds"]

    def head_inputs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """What the head reads: embeddings, cell features (log1p of children's counts) and gate."""
        gate = self.probs[:, self.card.tissue.class_names.index(self.card.tissue.cascade_class)]
        return self.embedding, np.log1p(self.raw_children.astype(np.float64)).astype(np.float32), gate.astype(np.float32)

    def finish(self, head: dict[str, np.ndarray], flagged: np.ndarray, head_seconds: float = 0.0) -> SlidePrediction:
        """The slide's prediction from the head's outputs."""
        from slidescope.tiling import stitch

        card, plan = self.card, self.plan
        self.seconds["head"] = head_seconds
        classes = list(card.head.classes)
        slide_probs = np.asarray(head["slide_probs"], np.float64)
        attention = np.asarray(head["attention"], np.float32)
        coarse = plan.coarse.reset_index(drop=True).copy()
        coarse["scale"] = "tissue"
        for k, name in enumerate(card.tissue.class_names):
            coarse[f"prob_{name}"] = self.probs[:, k]
        coarse["attention"] = attention
        coarse["flagged"] = np.isin(self.coarse_ids, flagged)
        for k, name in enumerate(card.cell.class_names):
            coarse[f"count_{name}"] = self.owned_children[:, k]
        analysed = pd.concat(self.fine) if self.fine else pd.DataFrame({"tile_id": np.zeros(0, np.int64)})
        fine = plan.plan.table[plan.plan.table.tile_id.isin(analysed.tile_id)]
        fine = fine.merge(analysed, on="tile_id", how="left", validate="one_to_one")
        fine["scale"] = "cell"
        fine["flagged"] = False
        tiles = pd.concat([coarse, fine], ignore_index=True)
        for name in card.tissue.class_names:
            tiles[f"prob_{name}"] = tiles[f"prob_{name}"].astype(np.float32)
        tiles["attention"] = tiles["attention"].astype(np.float32)
        tiles["flagged"] = tiles["flagged"].astype(bool)
        for name in card.cell.class_names:
            tiles[f"count_{name}"] = tiles[f"count_{name}"].fillna(0).astype(np.int64)
        um2 = plan.mpp[0] * plan.mpp[1]
        tile_tissue_mm2 = (coarse.l0_width * coarse.l0_height * coarse.tissue_fraction).to_numpy(np.float64) * um2 / 1e6
        tumour = coarse[f"prob_{card.tissue.cascade_class}"].to_numpy() >= DISPLAY_THRESHOLD
        analysed_area = float(tile_tissue_mm2[coarse.flagged.to_numpy()].sum())
        nuclei = {name: int(self.owned_children[:, k].sum()) for k, name in enumerate(card.cell.class_names)}
        total = sum(nuclei.values())
        maps = self._maps(stitch, coarse, analysed.tile_id.to_numpy(np.int64))
        positive = len(classes) - 1
        cells = None
        if self.cell_sink is None:
            cells = (pd.concat(self.cells, ignore_index=True) if self.cells else
                     pd.DataFrame({"l0_x": np.zeros(0), "l0_y": np.zeros(0), "type": np.zeros(0, object),
                                   "score": np.zeros(0, np.float32), "tile_id": np.zeros(0, np.int64)}))
        return SlidePrediction(
            path=plan.path, dimensions=plan.dimensions, mpp=plan.mpp, probability=float(slide_probs[positive]),
            label=classes[int(slide_probs.argmax())],
            probabilities={name: float(p) for name, p in zip(classes, slide_probs)}, tiles=tiles, cells=cells,
            tissue_area_mm2=plan.tissue_area_mm2, tumour_area_mm2=float(tile_tissue_mm2[tumour].sum()),
            analysed_area_mm2=analysed_area, nuclei=nuclei,
            nuclei_per_mm2=float(total / analysed_area) if analysed_area > 0 else 0.0,
            maps=maps, map_mpp=self.map_mpp, plan=plan.plan, seconds=dict(self.seconds))

    def _maps(self, stitch: Any, coarse: pd.DataFrame, fine_ids: np.ndarray) -> dict[str, np.ndarray]:
        plan, card = self.plan, self.card
        ids = coarse.tile_id.to_numpy(np.int64)
        values = np.column_stack([self.probs, coarse.attention.to_numpy(np.float32)]).astype(np.float32)
        canvas = np.asarray(stitch(plan.plan, "tissue", values, tile_ids=ids, out_mpp=self.map_mpp), np.float32)
        canvas = _fit(canvas.reshape(canvas.shape[0], canvas.shape[1], -1), self.density.shape)
        maps = {f"prob_{name}": canvas[..., k] for k, name in enumerate(card.tissue.class_names)}
        maps["attention"] = canvas[..., len(card.tissue.class_names)]
        pixel_mm2 = (self.map_mpp / 1000.0) ** 2
        density = (self.density / pixel_mm2).astype(np.float32)
        if len(fine_ids):
            covered = np.asarray(stitch(plan.plan, "cell", np.ones(len(fine_ids), np.float32), tile_ids=fine_ids,
                                        out_mpp=self.map_mpp), np.float32)
            covered = _fit(covered.reshape(covered.shape[0], covered.shape[1], 1), self.density.shape)[..., 0]
            density[~np.isfinite(covered)] = np.nan
        else:
            density[:] = np.nan
        maps["nuclei_density"] = density
        return maps


def _fit(canvas: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``canvas`` cropped or NaN-padded to ``shape`` (stitching rounds the canvas size its own way)."""
    out = np.full((*shape, canvas.shape[2]), np.nan, np.float32)
    h, w = min(shape[0], canvas.shape[0]), min(shape[1], canvas.shape[1])
    out[:h, :w] = canvas[:h, :w]
    return out


class Pipeline:
    """The merged slide model over one slide at a time, in this process (for a notebook).

    >>> pipe = Pipeline()                                  # doctest: +SKIP
    >>> tiles = pipe.tissue("slide.svs")                   # coarse tiles and their class probabilities
    >>> cells = pipe.cells("slide.svs", where="flagged")   # nuclei under the tiles the tissue part flags
    >>> result = pipe.predict("slide.svs")                 # SlidePrediction: probability, label, tables, maps

    Parameters
    ----------
    model : path, name or SlideModel, optional
        A merged slide model (default: the shipped one, ``"slide"``).
    settings : Settings, optional
    device : str
    slide_mpp : float, optional
        Level-0 µm/px of slides that lack it.
    """

    def __init__(self, model: Any = None, *, settings: Settings | None = None, device: str = "auto",
                 slide_mpp: float | None = None) -> None:
        self.model = load_slide_model(model, device=device)
        self.settings = settings or Settings()
        self.slide_mpp = slide_mpp

    def plan(self, slide: Any) -> SlidePlan:
        from slidescope.wsi import Slide
        from slidescope.wsi.errors import ParameterError

        # the slide is reopened by path with the settings' options: an open slide's own must agree
        if isinstance(slide, Slide) and slide.exact_resample != self.settings.exact_resample:
            raise ParameterError(
                f"{slide.path}: the slide was opened with exact_resample={slide.exact_resample}, the pipeline's "
                f"settings say exact_resample={self.settings.exact_resample}; open it with the same, or pass "
                f"Pipeline(settings=Settings(exact_resample={slide.exact_resample}))")
        return plan_slide(_path_of(slide), self.model.card, self.settings, self.slide_mpp)

    def _tissue(self, plan: SlidePlan) -> SlideAssembler:
        assembler = SlideAssembler(self.model.card, plan)
        for batch in coarse_batches(plan, self.settings.batch_size):
            assembler.add_tissue(tissue_batch(self.model, plan.handle, batch))
        return assembler

    def tissue(self, slide: Any) -> pd.DataFrame:
        """The coarse tiles with ``prob_<class>`` and ``flagged`` (the tiles the cascade reads under)."""
        plan = self.plan(slide)
        assembler = self._tissue(plan)
        table = plan.coarse.reset_index(drop=True).copy()
        for k, name in enumerate(self.model.card.tissue.class_names):
            table[f"prob_{name}"] = assembler.probs[:, k]
        table["flagged"] = np.isin(table.tile_id, assembler.flagged(True))
        return table

    def cells(self, slide: Any, where: Any = "flagged") -> pd.DataFrame:
        """Nuclei (``l0_x, l0_y, type, score, tile_id``) under ``where``: ``"flagged"`` (the cascade),
        ``"all"`` (every coarse tile), or coarse tile ids (e.g. ``tiles.tile_id[tiles.prob_tumour > 0.9]``)."""
        plan = self.plan(slide)
        if isinstance(where, str):
            where = parse_choice(where, "where", ("flagged", "all"))
            assembler = self._tissue(plan) if where == "flagged" else SlideAssembler(self.model.card, plan)
            parents = assembler.flagged(True) if where == "flagged" else assembler.coarse_ids
        else:
            parents = np.asarray(list(where), np.int64)
            unknown = np.setdiff1d(parents, plan.coarse.tile_id.to_numpy())
            if len(unknown):
                from slidescope.wsi.errors import ParameterError

                raise ParameterError(f"where: expected coarse tile ids of {plan.path}, got {unknown[:5].tolist()}")
            assembler = SlideAssembler(self.model.card, plan)
        for batch in fine_batches(plan, parents, self.settings.batch_size):
            assembler.add_cells(cell_batch(self.model, plan.handle, batch))
        return (pd.concat(assembler.cells, ignore_index=True) if assembler.cells
                else pd.DataFrame(columns=["l0_x", "l0_y", "type", "score", "tile_id"]))

    def predict(self, slide: Any) -> SlidePrediction:
        """The whole pipeline over ``slide``: its :class:`SlidePrediction`."""
        from .errors import SlideFailure

        plan = self.plan(slide)
        if not len(plan.coarse):
            raise SlideFailure(no_tissue_message(plan, self.settings))
        assembler = self._tissue(plan)
        flagged = assembler.flagged(self.settings.cascade)
        for batch in fine_batches(plan, flagged, self.settings.batch_size):
            assembler.add_cells(cell_batch(self.model, plan.handle, batch))
        started = time.perf_counter()
        head = head_batch(self.model, *assembler.head_inputs())
        return assembler.finish(head, flagged, time.perf_counter() - started)


def no_tissue_message(plan: SlidePlan, settings: Settings) -> str:
    return (f"{plan.path}: no coarse tile has tissue fraction >= {settings.min_tissue:g} (tissue area "
            f"{plan.tissue_area_mm2:.2f} mm², method {settings.method}); a blank slide, or check the mask with "
            f"`slidescope tissue`")


def _path_of(slide: Any) -> str:
    from slidescope.wsi import Slide

    return slide.path if isinstance(slide, Slide) else os.fspath(slide)


def load_slide_model(model: Any = None, *, device: str = "auto") -> Any:
    """A merged slide model: ``model`` itself, a merged directory, or the shipped one (None, ``"slide"``).

    Raises
    ------
    ConfigurationError
        A model directory that is not a merged slide model (a tissue or cell model alone).
    """
    from slidescope.merge.merged import SlideModel
    from slidescope.models import load_model

    from .errors import ConfigurationError

    if isinstance(model, SlideModel):
        return model
    loaded = load_model("slide" if model is None else model, device=device)
    if not isinstance(loaded, SlideModel):
        raise ConfigurationError(
            f"{model}: a {loaded.card.task} model alone; slidescope run needs a merged slide model (tissue + cell + "
            f"head): make one with `slidescope merge` and `slidescope train head`, or omit --model for the shipped one")
    return loaded
