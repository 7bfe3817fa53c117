"""Reading planned tiles in parallel Dask tasks, a batch of tiles per task.

A task carries the slide as its path (a :class:`Slide` pickles as path and options and reopens
once per worker process), the tile ids and their level-0 boxes; it reads them with
:meth:`Slide.read_tiles` and, in :func:`map_batches`, applies the caller's function on the
worker, so only small results travel back. The same code runs on the threaded scheduler, a
``LocalCluster`` or a remote cluster.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from slidescope.wsi import Slide, open_slide
from slidescope.wsi.validation import parse_positive_int

from .errors import TileBatchError
from .plan import TilePlan
from .scales import Scale

__all__ = ["TileBatch", "read_batches", "map_batches", "parallelism", "DEFAULT_BATCH_SIZE"]

#: Tiles per task: about 0.1-0.5 s of reading for 256 px tiles on one core, so a 100,000 px
#: slide makes hundreds to a few thousand tasks, never millions.
DEFAULT_BATCH_SIZE = 128

Transform = Callable[[np.ndarray], np.ndarray]
BatchFunction = Callable[[np.ndarray, np.ndarray], Any]


@dataclass(frozen=True)
class TileBatch:
    """Pixels of a batch of planned tiles.

    Attributes
    ----------
    tile_ids : ndarray
        ``(N,)`` int64 ids of the plan rows.
    images : ndarray
        ``(N, H, W, 3)`` uint8 RGB at the scale's mpp, context margin included.
    """

    tile_ids: np.ndarray
    images: np.ndarray


def _task_slide(slide: Slide | str | os.PathLike[str], plan: TilePlan) -> Slide:
    """The slide the tasks carry, checked against the plan.

    A path is opened here only to check it, then closed; tasks get a lazy copy that opens
    through the per-process cache, so repeated calls with paths leak no file handles.
    """
    if isinstance(slide, Slide):
        plan.check_slide(slide)
        return slide
    with open_slide(slide) as opened:
        plan.check_slide(opened)
        return opened.lazy_copy()


def parallelism(scheduler: Any) -> int:
    """How many tasks ``scheduler`` runs at once (threads of a distributed client, else cores)."""
    import sys

    if scheduler in ("sync", "synchronous", "single-threaded"):
        return 1
    client = scheduler if hasattr(scheduler, "nthreads") else None
    if client is None and scheduler is None and "distributed" in sys.modules:
        try:
            client = sys.modules["distributed"].default_client()
        except ValueError:  # no client: Dask's default is the threaded scheduler
            client = None
    if client is not None:
        return max(1, sum(client.nthreads().values()))
    return os.cpu_count() or 1


def _batches(plan: TilePlan, scale: int | Scale | str, batch_size: int,
             workers: int = 1) -> tuple[Scale, list[tuple[np.ndarray, np.ndarray]]]:
    """Split a scale's tiles into evenly sized batches of at most ``batch_size`` tiles.

    The number of batches is rounded up to a multiple of ``workers`` (while batches stay
    non-empty), so a small slide does not leave a worker idle while another reads two batches.
    """
    batch_size = parse_positive_int(batch_size, "batch_size", maximum=2**20)
    workers = parse_positive_int(workers, "workers", maximum=2**20)
    index = plan.scale_index(scale)
    rows = plan.tiles(index).sort_values(["l0_y", "l0_x"], kind="stable")  # neighbours share stored tiles
    boxes = plan.read_boxes(rows, index)
    ids = rows.tile_id.to_numpy(np.int64)
    count = -(-len(ids) // batch_size)
    count = min(len(ids), -(-count // workers) * workers)
    bounds = np.linspace(0, len(ids), count + 1).round().astype(int)
    chunks = [(ids[lo:hi], boxes[lo:hi, :2]) for lo, hi in zip(bounds[:-1], bounds[1:])]
    return plan.scales[index], chunks


def _read_batch(slide: Slide, tile_ids: np.ndarray, locations: np.ndarray, scale: Scale,
                transform: Transform | None) -> TileBatch:
    images = slide.read_tiles(locations, (scale.read_size, scale.read_size), mpp=scale.mpp)
    if transform is not None:
        images = transform(images)
    return TileBatch(tile_ids, images)


def _results_frame(result: Any, tile_ids: np.ndarray) -> pd.DataFrame:
    """Normalise what a batch function returned into a table with one row per tile."""
    if isinstance(result, pd.DataFrame):
        frame = result.reset_index(drop=True)
    elif isinstance(result, dict):
        frame = pd.DataFrame({key: (list(value) if np.ndim(value) > 1 else value) for key, value in result.items()})
    else:
        array = np.asarray(result)
        if array.ndim == 1:
            frame = pd.DataFrame({"value": array})
        elif array.ndim == 2:
            frame = pd.DataFrame(array, columns=[f"value_{i}" for i in range(array.shape[1])])
        else:
            frame = pd.DataFrame({"value": list(array)})
    if len(frame) != len(tile_ids):
        raise TileBatchError(
            f"batch function: expected one result row per tile ({len(tile_ids)}), got {len(frame)}"
        )
    frame.insert(0, "tile_id", tile_ids)
    return frame


def _read_and_apply(slide: Slide, tile_ids: np.ndarray, locations: np.ndarray, scale: Scale,
                    transform: Transform | None, function: BatchFunction) -> pd.DataFrame:
    batch = _read_batch(slide, tile_ids, locations, scale, transform)
    return _results_frame(function(batch.images, batch.tile_ids), batch.tile_ids)


def read_batches(slide: Slide | str | os.PathLike[str], plan: TilePlan, scale: int | Scale | str, *,
                 batch_size: int = DEFAULT_BATCH_SIZE, transform: Transform | None = None,
                 workers: int = 1) -> list[Any]:
    """One Dask task per batch of tiles of ``scale``, each yielding a :class:`TileBatch`.

    Parameters
    ----------
    slide : Slide or path
        The planned slide (checked against the plan).
    plan : TilePlan
        The plan to read.
    scale : int, Scale or str
        Which scale of the plan (index, object or name).
    batch_size : int
        Tiles per task.
    transform : callable, optional
        Applied to each ``(N, H, W, 3)`` batch in the worker (e.g. a stain normaliser's
        ``transform``); must be picklable for process-based clusters.
    workers : int
        Tasks that will run at once; the batch count is rounded up to a multiple of it.

    Returns
    -------
    list of dask.delayed.Delayed
        Compute them with any scheduler: ``dask.compute(*tasks)``, ``client.compute(tasks)``.
    """
    import dask

    opened = _task_slide(slide, plan)
    chosen, chunks = _batches(plan, scale, batch_size, workers)
    read = dask.delayed(_read_batch, pure=True)
    return [read(opened, ids, locations, chosen, transform) for ids, locations in chunks]


def _empty_result(function: BatchFunction, scale: Scale, transform: Transform | None) -> pd.DataFrame:
    """The result table of a scale without tiles: ``function``'s columns and dtypes, no rows.

    ``function`` is called once, here, on one white tile (what a read past the slide's edge
    returns) at the scale's read size, through ``transform``, and its one row is dropped: an empty
    batch would break functions that do not expect one (``images.reshape(len(images), -1)``,
    Keras ``predict``), one tile works wherever a real batch does.
    """
    images = np.full((1, scale.read_size, scale.read_size, 3), 255, dtype=np.uint8)
    tile_ids = np.full(1, -1, dtype=np.int64)
    try:
        result = function(images if transform is None else transform(images), tile_ids)
    except Exception as exc:
        raise TileBatchError(
            f"batch function: the scale ({scale.tile} px at {scale.mpp:g} µm/px) has no tiles, so the function was "
            f"called on one white {scale.read_size} x {scale.read_size} tile to learn the result's columns; "
            f"expected a result, got {type(exc).__name__}: {exc}"
        ) from exc
    return _results_frame(result, tile_ids).iloc[:0].reset_index(drop=True)


def map_batches(function: BatchFunction, slide: Slide | str | os.PathLike[str], plan: TilePlan,
                scale: int | Scale | str, *, batch_size: int = DEFAULT_BATCH_SIZE,
                transform: Transform | None = None, scheduler: Any = None) -> pd.DataFrame:
    """Apply ``function(images, tile_ids)`` to every batch on the workers and gather a table.

    ``function`` returns one result per tile: a 1-D array (column ``value``), a 2-D array
    (columns ``value_0``...), a dict of per-tile arrays, or a DataFrame. Reading and applying
    happen in the same task, so pixels never leave the worker.

    A scale without tiles (a slide without tissue) gives an empty table with the same columns and
    dtypes as a full one: ``function`` is then called once, in this process, on a batch of one
    white tile (tile id -1, through ``transform``) whose row is dropped.

    Parameters
    ----------
    scheduler : optional
        Passed to ``dask.compute``: ``"threads"``, ``"sync"``, ``"processes"`` or a
        ``distributed.Client``; None uses Dask's default (the active Client, if any).

    Returns
    -------
    pandas.DataFrame
        ``tile_id`` (int64) plus the function's columns, sorted by ``tile_id``.

    Raises
    ------
    TileBatchError
        ``function`` returned other than one row per tile, or (no tiles) raised on the white tile.
    """
    import dask

    opened = _task_slide(slide, plan)
    chosen, chunks = _batches(plan, scale, batch_size, parallelism(scheduler))
    if not chunks:
        return _empty_result(function, chosen, transform)
    apply = dask.delayed(_read_and_apply, pure=True)
    tasks = [apply(opened, ids, locations, chosen, transform, function) for ids, locations in chunks]
    frames = dask.compute(*tasks, scheduler=scheduler)
    return pd.concat(frames, ignore_index=True).sort_values("tile_id", kind="stable").reset_index(drop=True)
