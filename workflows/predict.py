"""One model over one slide: tissue mask, the plan at the card's scale, ``map_batches`` with the model.

What ``slidescope predict`` runs, and its Python form :func:`predict_slide`. Reading and inference
happen in the same Dask task (a batch of tiles), so pixels never travel; the model pickles as its
directory and loads once per process.

Outputs, all written together (each file staged beside its target and renamed into place only
once every one is complete):

- both: ``prediction.json``, the manifest (slide path, size and mpp; model name, task, framework
  and card sha256; the options; the outputs; tile and nucleus counts; timings; slidescope version
  and date), written last;
- tissue model: ``tiles.parquet`` (the plan's columns, ``l0_x, l0_y, l0_width, l0_height`` among
  them, plus ``prob_<class>`` for every class), ``heatmap.png`` (the cascade class's probability
  over the thumbnail), ``cam.zarr`` (a zarr v3 group with one float32 array per class: the
  stitched class activation map at the feature stride; attributes say the µm/px and classes);
- cell model: ``cells.parquet`` (one row a nucleus: ``l0_x, l0_y, type, score, tile_id``, each
  nucleus once: every tile owns its core, and detections closer than the card's minimum distance
  across tile borders are merged) and ``tiles.parquet`` with ``count_<type>`` per tile (the
  nuclei each tile owns, so the counts add up to the rows of ``cells.parquet``).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from slidescope.wsi import Slide, open_slide

__all__ = ["PredictResult", "predict_slide", "output_names", "read_manifest", "TABLE_METADATA_KEY", "CAM_ATTRIBUTE",
           "MANIFEST", "MANIFEST_KEY", "HEATMAP_MAX_EDGE"]

#: Parquet schema-metadata key that marks the tables ``predict`` writes (the output guard looks for it).
TABLE_METADATA_KEY = b"slidescope.predict"
#: Attribute of the ``cam.zarr`` group that marks it as this command's output.
CAM_ATTRIBUTE = "slidescope_cam"
#: The file that says what a prediction folder holds: slide, model, options, outputs, figures.
MANIFEST = "prediction.json"
#: Key that marks :data:`MANIFEST` as this command's own.
MANIFEST_KEY = "slidescope_prediction"
#: Longest side of the stitched heatmap and CAM canvases, in pixels.
HEATMAP_MAX_EDGE = 4096


def output_names(task: str) -> tuple[str, ...]:
    """The files a prediction of ``task`` writes into its folder, the manifest last."""
    names = ("tiles.parquet", "heatmap.png", "cam.zarr") if task == "tissue" else ("cells.parquet", "tiles.parquet")
    return (*names, MANIFEST)


def read_manifest(folder: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The manifest of a prediction folder, or None when there is none or it is not this command's."""
    try:
        with open(Path(os.fspath(folder)) / MANIFEST, encoding="utf-8") as stream:
            data = json.load(stream)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get(MANIFEST_KEY) == 1 else None


@dataclass
class PredictResult:
    """What :func:`predict_slide` did: the files it wrote and its figures."""

    task: str
    outputs: dict[str, str]
    tiles: int
    nuclei: int | None = None
    seconds: dict[str, float] = field(default_factory=dict)


class _TissueBatch:
    """The batch function of a tissue model: class probabilities and CAMs of each tile."""

    def __init__(self, model: Any, batch_size: int):
        self.model, self.batch_size = model, batch_size

    def __call__(self, images: np.ndarray, tile_ids: np.ndarray) -> dict[str, Any]:
        out = self.model.predict(images, batch_size=self.batch_size)
        columns: dict[str, Any] = {f"prob_{name}": out["probs"][:, k] for k, name in enumerate(self.model.card.class_names)}
        columns["cam"] = out["cam"]
        return columns


class _CellBatch:
    """The batch function of a cell model: the nuclei of each tile, in input pixels."""

    def __init__(self, model: Any, batch_size: int):
        self.model, self.batch_size = model, batch_size

    def __call__(self, images: np.ndarray, tile_ids: np.ndarray) -> pd.DataFrame:
        found = self.model.detect(images, batch_size=self.batch_size)
        names = {name: k for k, name in enumerate(self.model.card.class_names)}
        per_tile = [np.zeros((0, 4), np.float64)] * len(images)
        for image, rows in found.groupby("image", sort=False):
            per_tile[int(image)] = np.column_stack([rows.x.to_numpy(np.float64), rows.y.to_numpy(np.float64),
                                                    rows.type.map(names).to_numpy(np.float64),
                                                    rows.score.to_numpy(np.float64)])
        return pd.DataFrame({"nuclei": pd.Series(per_tile, dtype=object)})


def _canvas_mpp(slide_dimensions: tuple[int, int], slide_mpp: tuple[float, float], wanted: float) -> float:
    """``wanted`` µm/px, coarsened so that the canvas has at most :data:`HEATMAP_MAX_EDGE` px a side."""
    longest_um = max(slide_dimensions[0] * slide_mpp[0], slide_dimensions[1] * slide_mpp[1])
    return max(wanted, longest_um / HEATMAP_MAX_EDGE)


def _write_table(frame: pd.DataFrame, path: Path, info: dict[str, Any]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(frame, preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}),
                                           TABLE_METADATA_KEY: json.dumps(info).encode()})
    pq.write_table(table, path)


def _write_manifest(path: Path, manifest: dict[str, Any], paths: dict[str, Path]) -> None:
    data = {**manifest, "outputs": [p.name for p in paths.values()]}
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _write_png(image: np.ndarray, path: Path) -> None:
    import cv2

    if not cv2.imwrite(str(path), np.ascontiguousarray(image[..., ::-1])):
        raise OSError(f"OpenCV could not write {path}")


def _write_cams(canvas: np.ndarray, classes: tuple[str, ...], mpp: float, path: Path, info: dict[str, Any]) -> None:
    import zarr

    group = zarr.open_group(str(path), mode="w", zarr_format=3)
    group.attrs.update({CAM_ATTRIBUTE: 1, "mpp": mpp, "classes": list(classes), "axes": ["y", "x"], **info})
    for k, name in enumerate(classes):
        array = group.create_array(name, shape=canvas.shape[:2], dtype="float32",
                                   chunks=(min(1024, canvas.shape[0]), min(1024, canvas.shape[1])), fill_value=np.nan)
        array[...] = canvas[..., k]


def _stitched(plan: Any, scale: Any, values: np.ndarray, tile_ids: np.ndarray, out_mpp: float) -> np.ndarray:
    """The canvas in memory (small by construction: at most :data:`HEATMAP_MAX_EDGE` px a side)."""
    from slidescope.tiling import stitch

    return np.asarray(stitch(plan, scale, values, tile_ids=tile_ids, out_mpp=out_mpp))


def _manifest(model: Any, slide: Slide, seconds: dict[str, float], options: dict[str, Any]) -> dict[str, Any]:
    """What the manifest records of this run (outputs and counts are added by the writers)."""
    import datetime

    from slidescope.wsi.version import slidescope_version

    card = model.card
    return {
        MANIFEST_KEY: 1,
        "slide": {"path": os.path.realpath(slide.path) if os.path.exists(slide.path) else slide.path,
                  "dimensions": list(slide.dimensions), "mpp": list(slide.mpp) if slide.mpp else None},
        "model": {"name": card.name, "version": card.version, "task": card.task, "framework": card.framework,
                  "card_sha256": card.digest(), "directory": model.directory, "device": model.device},
        "options": options,
        "seconds": dict(seconds),
        "slidescope_version": slidescope_version(),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


@contextmanager
def _opened(slide: Any, backend: str, slide_mpp: float | None, exact_resample: bool) -> Iterator[Slide]:
    """``slide`` itself when it is an open :class:`Slide` (the caller closes it), else the file opened here."""
    if isinstance(slide, Slide):
        yield slide
        return
    with open_slide(slide, backend=backend, mpp=slide_mpp, exact_resample=exact_resample) as opened:
        yield opened


def predict_slide(model: Any, slide: Any, out: Any, *, batch_size: int = 32, workers: int = 2,
                  min_tissue: float = 0.25, slide_mpp: float | None = None, backend: str = "auto",
                  mask_mpp: float = 8.0, method: str = "auto", exact_resample: bool = False,
                  progress: Callable[[int, int], None] | None = None,
                  write: Callable[[list[Path]], Any] | None = None) -> PredictResult:
    """Run one model over one slide and write its outputs into the folder ``out``.

    Parameters
    ----------
    model : Model
        A tissue or cell model (:func:`slidescope.models.load_model`).
    slide : str, PathLike or Slide
        The slide file, or an open slide (left open).
    out : str or PathLike
        The output folder (it must exist; the command line creates it).
    batch_size : int
        Tiles per Dask task and per model call.
    workers : int
        Tasks in flight at once (threads of this process: one reads while another infers).
    min_tissue : float
        Tiles with less tissue are skipped.
    slide_mpp : float, optional
        Level-0 µm/px of a slide that lacks it.
    exact_resample : bool
        Open the slide with ``exact_resample=True`` (full JPEG decodes; ignored for an open slide).
    progress : callable, optional
        ``progress(done_tiles, total_tiles)`` after each batch.
    write : callable, optional
        A context-manager factory ``write(paths) -> temporaries`` that stages the outputs (default
        :func:`slidescope.wsi.atomic.atomic_paths`); the command line passes the output guard's.

    Returns
    -------
    PredictResult
    """
    import dask

    from slidescope.tiling import map_batches, overlay, plan_tiles, tissue_mask
    from slidescope.wsi.atomic import atomic_paths
    from slidescope.wsi.validation import parse_positive_int

    from .progress import tile_progress

    batch_size = parse_positive_int(batch_size, "batch_size", maximum=4096)
    workers = parse_positive_int(workers, "workers", maximum=256)
    card = model.card
    folder = Path(os.fspath(out))
    seconds: dict[str, float] = {}
    info = {"model": card.name, "model_card_sha256": card.digest(), "task": card.task,
            "framework": card.framework, "slide": slide.path if isinstance(slide, Slide) else os.fspath(slide)}
    with _opened(slide, backend, slide_mpp, exact_resample) as opened:
        start = time.perf_counter()
        mask = tissue_mask(opened, mpp=mask_mpp, method=method)
        plan = plan_tiles(opened, mask, [card.scale()], min_tissue=min_tissue)
        seconds["mask_and_plan"] = time.perf_counter() - start
        tiles = plan.tiles(card.task)
        function = (_TissueBatch if card.task == "tissue" else _CellBatch)(model, batch_size)
        start = time.perf_counter()
        with dask.config.set(num_workers=workers), tile_progress(len(tiles), progress):
            results = map_batches(function, opened.lazy_copy(), plan, card.task, batch_size=batch_size,
                                  scheduler="threads")
        seconds["inference"] = time.perf_counter() - start
        staged = atomic_paths if write is None else write
        start = time.perf_counter()
        manifest = _manifest(model, opened, seconds, {
            "batch_size": batch_size, "workers": workers, "min_tissue": min_tissue, "mask_mpp": mask_mpp,
            "method": method, "slide_mpp": slide_mpp, "backend": backend,
            "exact_resample": opened.exact_resample})
        if card.task == "tissue":
            written = _tissue_outputs(model, opened, plan, tiles, results, folder, info, staged, overlay, manifest)
            nuclei = None
        else:
            written, nuclei = _cell_outputs(model, opened, plan, tiles, results, folder, info, staged, manifest)
        seconds["outputs"] = time.perf_counter() - start
    return PredictResult(card.task, written, len(tiles), nuclei, seconds)


def _tissue_outputs(model: Any, slide: Any, plan: Any, tiles: pd.DataFrame, results: pd.DataFrame, folder: Path,
                    info: dict[str, Any], staged: Any, overlay: Any, manifest: dict[str, Any]) -> dict[str, str]:
    from slidescope.models.architectures import feature_size

    card = model.card
    probs = [f"prob_{name}" for name in card.class_names]
    table = tiles.merge(results[["tile_id", *probs]], on="tile_id", how="left", validate="one_to_one")
    ids = results.tile_id.to_numpy(np.int64)
    cams = (np.stack(results.cam.to_list()).astype(np.float32) if len(results)
            else np.zeros((0, 1, 1, len(probs)), np.float32))
    side = feature_size(card.architecture, card.input.size)  # the CAM's own resolution
    cam_mpp = _canvas_mpp(plan.slide.dimensions, plan.slide.mpp, card.input.mpp * card.input.size / side)
    cam_canvas = _stitched(plan, card.task, cams, ids, cam_mpp)
    if cam_canvas.ndim == 2:
        cam_canvas = cam_canvas[..., None]
    heat_mpp = _canvas_mpp(plan.slide.dimensions, plan.slide.mpp, card.input.mpp * card.input.tile / 8)
    cascade = f"prob_{card.cascade_class}"
    heatmap = _stitched(plan, card.task, results[cascade].to_numpy(np.float32), ids, heat_mpp)
    picture = overlay(slide, heatmap, vmin=0.0, vmax=1.0)
    paths = {"tiles": folder / "tiles.parquet", "heatmap": folder / "heatmap.png", "cam": folder / "cam.zarr",
             "manifest": folder / MANIFEST}
    with staged(list(paths.values())) as (tiles_tmp, heatmap_tmp, cam_tmp, manifest_tmp):
        _write_table(table, tiles_tmp, {**info, "table": "tiles"})
        _write_png(picture, heatmap_tmp)
        _write_cams(cam_canvas, card.class_names, cam_mpp, cam_tmp, info)
        _write_manifest(manifest_tmp, {**manifest, "cam_mpp": cam_mpp, "tiles": len(table)}, paths)
    return {key: str(path) for key, path in paths.items()}


def _cell_outputs(model: Any, slide: Any, plan: Any, tiles: pd.DataFrame, results: pd.DataFrame, folder: Path,
                  info: dict[str, Any], staged: Any, manifest: dict[str, Any]) -> tuple[dict[str, str], int]:
    from slidescope.models.peaks import deduplicate, to_level0

    card = model.card
    names = card.class_names
    rows = plan.tiles(card.task).set_index("tile_id").loc[results.tile_id].reset_index()
    boxes = plan.read_boxes(rows, card.task)
    counts = [len(n) for n in results.nuclei]
    found = np.concatenate([n for n in results.nuclei], axis=0) if counts else np.zeros((0, 4))
    image = np.repeat(np.arange(len(results)), counts)
    detections = pd.DataFrame({"image": image, "x": found[:, 0].astype(np.int64), "y": found[:, 1].astype(np.int64),
                               "type": np.asarray(names, dtype=object)[found[:, 2].astype(np.int64)],
                               "score": found[:, 3].astype(np.float32),
                               "tile_id": results.tile_id.to_numpy(np.int64)[image]})
    located = to_level0(detections, boxes, card.scale().read_size)
    min_distance = card.thresholds["min_distance_um"] / float(min(plan.slide.mpp))
    kept = deduplicate(located, tiles, min_distance_l0=min_distance)
    cells = kept[["l0_x", "l0_y", "type", "score", "tile_id"]].reset_index(drop=True)
    cells["type"] = cells["type"].astype(str)  # the same column type when there are no nuclei
    owned = pd.crosstab(cells.tile_id, pd.Categorical(cells.type, categories=list(names)), dropna=False)
    owned = owned.reindex(index=tiles.tile_id, fill_value=0)
    table = tiles.reset_index(drop=True).copy()
    for name in names:
        table[f"count_{name}"] = owned[name].to_numpy(np.int64) if name in owned else np.zeros(len(table), np.int64)
    paths = {"cells": folder / "cells.parquet", "tiles": folder / "tiles.parquet", "manifest": folder / MANIFEST}
    with staged(list(paths.values())) as (cells_tmp, tiles_tmp, manifest_tmp):
        _write_table(cells, cells_tmp, {**info, "table": "cells"})
        _write_table(table, tiles_tmp, {**info, "table": "tiles"})
        _write_manifest(manifest_tmp, {**manifest, "tiles": len(table), "nuclei": len(cells)}, paths)
    return {key: str(path) for key, path in paths.items()}, len(cells)
