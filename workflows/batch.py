"""``run_batch``: the merged slide model over a batch of slides on Dask; what ``slidescope run`` and the demo call.

Engine: a :class:`dask.distributed.LocalCluster` of spawned worker processes (torch and TensorFlow
hang in forked children), or any existing cluster (``scheduler=`` address, or the caller's
``client``). This process drives every slide through its stages (:mod:`slidescope.workflows.pipeline`)
with Dask futures: the plan, then the coarse batches, then the fine batches under the flagged
tiles, then the head. Each task reads and infers its batch of tiles, so pixels never travel; the
model pickles as its directory and loads once per worker. Several slides are in flight at once
(``slides_in_flight``), so the workers never wait for one slide's stage to end.

Outputs (``OUT/``): ``slides/<slide_id>/`` (:mod:`slidescope.workflows.slide_outputs`), staged in a
hidden folder beside it and renamed into place only when complete; ``predictions.csv`` (rewritten
atomically after every slide: one row per slide, failures included); ``run.json``; ``report.html``.

Resume (the default): a slide whose folder is complete and whose ``prediction.json`` carries the same
slide hash (the configuration hash, the slide's path, size and modification time, its mpp override)
is not run again; its row is rebuilt from that file with ``resumed`` true. A run killed at any point
leaves complete folders or none, so running it again completes the batch, each slide once.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from slidescope.wsi.errors import OutputError, SlideError

from .errors import ConfigurationError, SlideFailure
from .pipeline import (SlideAssembler, SlidePlan, Settings, cell_batch, coarse_batches, fine_batches, head_batch,
                       no_tissue_message, plan_slide, tissue_batch)
from .worker_memory import release_freed_memory, worker_malloc

__all__ = ["run_batch", "BatchOptions", "BatchEvents", "RUN_KIND", "prediction_columns", "configuration_hash",
           "resolve_model_directory", "ModelRef"]

#: ``run.json``'s kind: marks a folder as a ``slidescope run`` output folder.
RUN_KIND = "slidescope-run"
#: Times a slide whose tasks kill their worker is tried (Dask's ``allowed-failures`` for each task).
WORKER_DEATHS_ALLOWED = 2
#: Dask settings of the local cluster (read by its scheduler, nannies and workers when they start; a cluster
#: of your own keeps its own). Dask's defaults cost an idle 2-worker cluster 0.16 of this machine's 2
#: cores (measured: 0.07 in this process, which holds the scheduler, and 0.09 in the workers), chiefly
#: the workers' statistical profiler, which samples every thread's stack every 10 ms, and monitors
#: polling every 20-500 ms; with these, 0.02. The dashboard's task stream, progress and memory pages
#: are unchanged; its Profile page stays empty, and system figures refresh every 2 s.
LOCAL_CLUSTER_CONFIG = {
    "distributed.worker.profile.enabled": False,
    "distributed.admin.tick.interval": "1s",  # the check that the event loop is not blocked
    "distributed.admin.system-monitor.interval": "2s",
    "distributed.worker.memory.monitor-interval": "500ms",  # still catches a worker past its memory limit
}
#: What :func:`~slidescope.wsi.atomic.atomic_path` names the staging and set-aside folders of ``slides/ID``:
#: ``.ID.<12 hex>.partial`` (``.STEM.<12 hex>.partial.SUFFIX`` when the id has a dot) and ``.ID.<12 hex>.old``.
_STAGED = re.compile(r"^\..+\.[0-9a-f]{12}\.(partial(\.[^.]+)?|old)$")


def prediction_columns(types: Sequence[str]) -> list[str]:
    """The columns of ``predictions.csv`` in order, for a model whose nucleus types are ``types``."""
    return ["slide_id", "path", "status", "error", "probability", "label", "reference_label", "tissue_area_mm2",
            "tumour_area_mm2", "nuclei_total", *[f"nuclei_{t}" for t in types], "nuclei_per_mm2", "coarse_tiles",
            "flagged_tiles", "fine_tiles", "seconds_total", "seconds_plan", "seconds_tissue", "seconds_cells",
            "seconds_head", "seconds_outputs", "resumed", "attempts", "output"]


@dataclass(frozen=True)
class ModelRef:
    """The merged model as tasks carry it: its directory and device; loaded once per worker process."""

    directory: str
    device: str = "auto"

    def get(self) -> Any:
        from .pipeline import load_slide_model

        return load_slide_model(self.directory, device=self.device)


def resolve_model_directory(model: Any) -> str:
    """The merged model directory ``model`` names (None or ``"slide"``: the shipped one).

    Raises
    ------
    ConfigurationError
        Not a merged slide model directory (a tissue or cell model alone, a checkpoint file, nothing).
    """
    from slidescope.merge.merged import SlideModel, is_merged_directory
    from slidescope.models.loading import shipped_model_dir

    if isinstance(model, SlideModel):
        if model.directory is None:
            raise ConfigurationError(f"{model!r}: a batch needs a merged model saved in a directory (write_merged)")
        return os.path.abspath(model.directory)
    if model is None or (model == "slide" and not os.path.lexists("slide")):
        return str(shipped_model_dir("slide", "torch"))
    path = os.path.abspath(os.fspath(model))
    if model in ("tissue", "cell") and not os.path.lexists(model):
        raise ConfigurationError(f"{model}: the shipped {model} model alone cannot predict slides; a batch needs a merged "
                                 f"slide model: omit --model for the shipped one (\"slide\"), or merge your own with "
                                 f"`slidescope merge`")
    if not os.path.isdir(path):
        raise ConfigurationError(f"{model}: no such merged model directory (expected a folder written by "
                                 f"`slidescope merge` or `slidescope train head`)")
    if not is_merged_directory(path):
        raise ConfigurationError(
            f"{model}: not a merged slide model (its card.json is not kind slidescope-merged-model); a tissue or cell "
            f"model alone cannot predict slides: merge it with `slidescope merge`, or omit --model for the shipped one")
    return path


def configuration_hash(card_digest: str, settings: Settings) -> str:
    """What makes two runs' outputs comparable: the model card and the settings that change results."""
    from slidescope.wsi.version import slidescope_version

    text = json.dumps({"model": card_digest, "settings": settings.identity(), "version": slidescope_version()},
                      sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _slide_hash(config: str, path: str, mpp: float | None) -> str:
    try:
        stat = os.stat(path)
        identity = [os.path.realpath(path), stat.st_size, stat.st_mtime_ns]
    except OSError:
        identity = [path, None, None]
    return hashlib.sha256(json.dumps([config, identity, mpp]).encode()).hexdigest()[:16]


@dataclass
class BatchEvents:
    """What a batch reports while it runs (the command line draws bars and lines from these).

    Every callback is optional: ``started(total_slides, dashboard_link, to_run)`` (``to_run``: the slides
    not resumed, a missing file included), ``tiles(slide_id,
    done, total)`` (tile counts of one slide grow as its stages are planned), ``finished(row)`` (a
    slide's ``predictions.csv`` row, ok, resumed or failed), ``message(text)``.
    """

    started: Callable[[int, str | None, int], None] | None = None
    tiles: Callable[[str, int, int], None] | None = None
    finished: Callable[[dict[str, Any]], None] | None = None
    message: Callable[[str], None] | None = None

    def emit(self, name: str, *args: Any) -> None:
        callback = getattr(self, name)
        if callback is not None:
            callback(*args)


@dataclass(frozen=True)
class BatchOptions:
    """How a batch runs (see :func:`run_batch`)."""

    workers: int | None = None
    threads_per_worker: int = 1
    scheduler: str | None = None
    device: str = "auto"
    resume: bool = True
    overwrite: bool = False
    report: bool = True
    slides_in_flight: int | None = None


# -- the tasks (top-level functions: Dask pickles them by name) --------------------------------------

def _reported(function: Callable[..., Any], *args: Any) -> Any:
    """Run a task's work; any failure comes back as a :class:`SlideFailure` with one line that names
    the slide (exceptions that subclass builtins such as ``OSError`` do not survive Dask's pickling)."""
    try:
        return function(*args)
    except Exception as exc:  # one slide's failure, whatever it is, is that slide's error row
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        if not isinstance(exc, (SlideError, OSError)):
            text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    finally:
        release_freed_memory()  # bounds what the workers' malloc settings keep
    # raised outside the handler, so that it carries no __context__ (Dask pickles the chain with tblib)
    raise SlideFailure(text)


def _plan_task(path: str, card: Any, settings: Settings, mpp: float | None) -> SlidePlan:
    return _reported(plan_slide, path, card, settings, mpp)


def _tissue_task(model: ModelRef, slide: Any, batch: Any, threads: int) -> dict[str, Any]:
    return _reported(lambda: tissue_batch(model.get(), slide, batch, threads))


def _cell_task(model: ModelRef, slide: Any, batch: Any, threads: int) -> dict[str, Any]:
    return _reported(lambda: cell_batch(model.get(), slide, batch, threads))


def _head_task(model: ModelRef, embedding: np.ndarray, cells: np.ndarray, gate: np.ndarray) -> dict[str, Any]:
    started = time.perf_counter()
    out = _reported(lambda: head_batch(model.get(), embedding, cells, gate))
    return {**out, "seconds": time.perf_counter() - started}


# -- one slide's progress through its stages ----------------------------------------------------------

@dataclass
class _Job:
    index: int
    slide: Any  # SlideInput
    slide_hash: str
    started: float = field(default_factory=time.perf_counter)
    stage: str = "plan"
    plan: SlidePlan | None = None
    assembler: SlideAssembler | None = None
    waiting: set = field(default_factory=set)
    flagged: np.ndarray | None = None
    tiles_total: int = 0
    tiles_done: int = 0
    staging: contextlib.ExitStack | None = None
    folder: Path | None = None
    cells: Any = None


class _Batch:
    """The client-side driver: submits each slide's stages as the previous one completes."""

    def __init__(self, client: Any, model: ModelRef, card: Any, settings: Settings, out: Path, config: str,
                 threads: int, events: BatchEvents, resources: dict[str, int] | None) -> None:
        self.client, self.model, self.card, self.settings = client, model, card, settings
        self.out, self.config, self.threads, self.events = out, config, threads, events
        self.resources = resources
        self.owner: dict[Any, tuple[_Job, str]] = {}

    def submit(self, job: _Job, kind: str, function: Callable[..., Any], *args: Any, model_task: bool = False) -> Any:
        extra = {"resources": self.resources} if model_task and self.resources else {}
        future = self.client.submit(function, *args, pure=False, key=f"{kind}-{job.slide.slide_id}-{_token()}",
                                    retries=0, **extra)
        self.owner[future] = (job, kind)
        job.waiting.add(future)
        return future

    def start(self, job: _Job) -> list[Any]:
        return [self.submit(job, "plan", _plan_task, job.slide.path, self.card, self.settings, job.slide.mpp)]

    def advance(self, job: _Job, kind: str, result: Any) -> tuple[list[Any], bool]:
        """Take one task's result; returns the new futures and whether the slide is complete."""
        if kind == "plan":
            job.plan = result
            if not len(result.coarse):
                raise SlideFailure(no_tissue_message(result, self.settings))
            self._open_staging(job)
            job.assembler = SlideAssembler(self.card, result, cell_sink=job.cells)
            batches = coarse_batches(result, self.settings.batch_size)
            job.tiles_total = len(result.coarse)
            self.events.emit("tiles", job.slide.slide_id, job.tiles_done, job.tiles_total)
            return [self.submit(job, "tissue", _tissue_task, self.model, result.handle, b, self.threads, model_task=True)
                    for b in batches], False
        if kind == "tissue":
            job.assembler.add_tissue(result)
            self._count(job, len(result["tile_id"]))
            if any(self.owner[f][1] == "tissue" for f in job.waiting):
                return [], False
            job.flagged = job.assembler.flagged(self.settings.cascade)
            batches = fine_batches(job.plan, job.flagged, self.settings.batch_size)
            job.tiles_total += sum(len(b) for b in batches)
            self.events.emit("tiles", job.slide.slide_id, job.tiles_done, job.tiles_total)
            if batches:
                return [self.submit(job, "cells", _cell_task, self.model, job.plan.handle, b, self.threads,
                                    model_task=True) for b in batches], False
            return [self._submit_head(job)], False
        if kind == "cells":
            job.assembler.add_cells(result)
            self._count(job, len(result["tile_id"]))
            if any(self.owner[f][1] == "cells" for f in job.waiting):
                return [], False
            return [self._submit_head(job)], False
        if kind == "head":
            self._finish(job, result)
            return [], True
        raise AssertionError(kind)

    def _submit_head(self, job: _Job) -> Any:
        embedding, cells, gate = job.assembler.head_inputs()
        return self.submit(job, "head", _head_task, self.model, embedding, cells, gate, model_task=True)

    def _count(self, job: _Job, tiles: int) -> None:
        job.tiles_done += tiles
        self.events.emit("tiles", job.slide.slide_id, job.tiles_done, job.tiles_total)

    def _open_staging(self, job: _Job) -> None:
        from slidescope.wsi.atomic import atomic_path

        from .slide_outputs import CellsWriter

        stack = contextlib.ExitStack()
        folder = stack.enter_context(atomic_path(self.out / "slides" / job.slide.slide_id))
        folder.mkdir()
        job.staging, job.folder = stack, folder
        job.cells = CellsWriter(folder / "cells.parquet")

    def _finish(self, job: _Job, head: dict[str, Any]) -> None:
        from slidescope.wsi.version import slidescope_version

        from .slide_outputs import write_slide_outputs

        prediction = job.assembler.finish(head, job.flagged, head["seconds"])
        started = time.perf_counter()
        record = {"slide_id": job.slide.slide_id, "path": job.slide.path, "slide_mpp": job.slide.mpp,
                  "reference_label": job.slide.label, "slide_hash": job.slide_hash, "configuration_hash": self.config,
                  "model": {"name": self.card.name, "card_sha256": self.card.digest(), "directory": self.model.directory},
                  "settings": self.settings.to_dict(), "slidescope_version": slidescope_version(),
                  "created": _now()}
        write_slide_outputs(job.folder, prediction, self.card, record, job.cells)
        prediction.seconds["outputs"] = time.perf_counter() - started
        prediction.seconds["total"] = time.perf_counter() - job.started
        data = json.loads((job.folder / "prediction.json").read_text(encoding="utf-8"))
        data["seconds"] = {k: round(float(v), 3) for k, v in prediction.seconds.items()}
        (job.folder / "prediction.json").write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n",
                                                    encoding="utf-8")
        job.staging.close()  # renames the staged folder into place
        job.staging = None

    def abandon(self, job: _Job) -> None:
        """Cancel a failed slide's tasks and remove its staging folder."""
        for future in list(job.waiting):
            self.owner.pop(future, None)
            future.cancel()
        job.waiting.clear()
        if job.cells is not None:
            with contextlib.suppress(Exception):
                job.cells.close()
        if job.staging is not None:
            with contextlib.suppress(Exception):
                job.staging.__exit__(SlideFailure, SlideFailure("abandoned"), None)
            job.staging = None


def _token() -> str:
    return os.urandom(6).hex()


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


# -- rows -------------------------------------------------------------------------------------------

def _ok_row(slide: Any, data: dict[str, Any], types: Sequence[str], resumed: bool, attempts: int) -> dict[str, Any]:
    nuclei = data.get("nuclei", {})
    seconds = data.get("seconds", {})
    tiles = data.get("tiles", {})
    row = {"slide_id": slide.slide_id, "path": slide.path, "status": "ok", "error": "",
           "probability": data.get("probability"), "label": data.get("label"),
           "reference_label": slide.label or "", "tissue_area_mm2": data.get("tissue_area_mm2"),
           "tumour_area_mm2": data.get("tumour_area_mm2"), "nuclei_total": int(sum(nuclei.values())),
           **{f"nuclei_{t}": int(nuclei.get(t, 0)) for t in types}, "nuclei_per_mm2": data.get("nuclei_per_mm2"),
           "coarse_tiles": tiles.get("coarse"), "flagged_tiles": tiles.get("flagged"), "fine_tiles": tiles.get("fine"),
           **{f"seconds_{k}": seconds.get(k) for k in ("total", "plan", "tissue", "cells", "head", "outputs")},
           "resumed": resumed, "attempts": attempts, "output": f"slides/{slide.slide_id}"}
    return row


def _error_row(slide: Any, message: str, types: Sequence[str], attempts: int, seconds: float) -> dict[str, Any]:
    row = {column: None for column in prediction_columns(types)}
    row.update({"slide_id": slide.slide_id, "path": slide.path, "status": "error", "error": message,
                "reference_label": slide.label or "", "seconds_total": round(seconds, 3), "resumed": False,
                "attempts": attempts, "output": ""})
    return row


def _describe(exc: BaseException, slide: Any) -> str:
    """One line for a slide's failure: the error's own message (it names the file), or what killed the worker."""
    from distributed import KilledWorker

    if isinstance(exc, KilledWorker):
        return (f"{slide.path}: the worker running this slide died {WORKER_DEATHS_ALLOWED + 1} times (killed, or out of "
                f"memory); the slide was given up")
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if not isinstance(exc, (SlideError, OSError, ValueError)):
        text = f"{type(exc).__name__}: {text}"
    if slide.path not in text and os.path.basename(slide.path) not in text:
        text = f"{slide.path}: {text}"
    return text


def _write_predictions(out: Path, rows: dict[int, dict[str, Any]], types: Sequence[str]) -> pd.DataFrame:
    from slidescope.wsi.atomic import atomic_path

    frame = pd.DataFrame([rows[i] for i in sorted(rows)], columns=prediction_columns(types))
    # counts stay whole numbers (pandas' nullable integers: empty, not NaN, on error rows)
    for column in ("nuclei_total", *[f"nuclei_{t}" for t in types], "coarse_tiles", "flagged_tiles", "fine_tiles",
                   "attempts"):
        frame[column] = pd.to_numeric(frame[column]).round().astype("Int64")
    with atomic_path(out / "predictions.csv") as temporary:
        frame.to_csv(temporary, index=False)
    return frame


def _write_json(path: Path, data: dict[str, Any]) -> None:
    from slidescope.wsi.atomic import atomic_path

    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")


# -- the output folder ------------------------------------------------------------------------------

def _changes(previous: dict[str, Any], current: dict[str, Any]) -> str:
    """What differs between a previous ``run.json`` and this run (``current``: the same keys), in words."""
    changes = []
    old_model, new_model = previous.get("model") or {}, current["model"]
    if old_model.get("card_sha256") != new_model["card_sha256"]:
        changes.append(f"model {old_model.get('name')} ({str(old_model.get('card_sha256'))[:8]}) -> "
                       f"{new_model['name']} ({new_model['card_sha256'][:8]})")
    old_settings = previous.get("settings") or {}
    for key, value in current["settings"].items():
        if old_settings.get(key) != value:
            changes.append(f"{key} {old_settings.get(key)} -> {value}")
    old_version = (previous.get("versions") or {}).get("slidescope")
    if old_version != current["version"]:
        changes.append(f"slidescope {old_version} -> {current['version']}")
    return ", ".join(changes) or "another model or settings"


def _check_out(out: Path, slides: Sequence[Any], config: str, options: BatchOptions,
               current: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """Refuse an output folder that is a slide, holds foreign files, or holds another run (without overwrite);
    returns the previous ``run.json`` when the folder holds a run."""
    from slidescope.wsi.atomic import check_parent

    if os.path.lexists(out) and not out.is_dir():
        raise OutputError(f"{out}: --out must be a folder; a file is there")
    check_parent(out / "run.json")
    resolved = os.path.realpath(out)
    for slide in slides:
        real = os.path.realpath(slide.path)
        for name in ("predictions.csv", "run.json", "report.html"):
            if real == os.path.join(resolved, name):
                raise OutputError(f"{slide.path}: a slide of the batch is at the output {name}; choose another --out")
        if real == resolved or real.startswith(os.path.join(resolved, "slides") + os.sep):
            raise OutputError(f"{slide.path}: a slide of the batch lies in the output folder's slides/; "
                              f"choose another --out")
    if not out.is_dir():
        return None
    previous = None
    try:
        previous = json.loads((out / "run.json").read_text(encoding="utf-8"))
        if not isinstance(previous, dict) or previous.get("kind") != RUN_KIND:
            previous = None
    except (OSError, ValueError):
        previous = None
    names = set(os.listdir(out))
    if previous is None and names and not options.overwrite:
        raise ConfigurationError(f"{out}: the folder is not empty and holds no slidescope run (no run.json); "
                                 f"choose a new or empty --out, or pass --overwrite to write beside its files")
    if previous is not None and previous.get("configuration_hash") != config and options.resume and not options.overwrite:
        raise ConfigurationError(
            f"{out}: holds a run with another configuration ({_changes(previous, current) if current else 'another model or settings'}"
            f"; configuration hash {previous.get('configuration_hash')}, this run {config}); choose another --out, or "
            f"pass --overwrite to redo its slides with this configuration")
    return previous


def _clean_staging(out: Path) -> None:
    """Remove staging folders a killed run left in ``slides/`` (never complete outputs)."""
    folder = out / "slides"
    if not folder.is_dir():
        return
    for entry in os.scandir(folder):
        if _STAGED.match(entry.name):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)


# -- the engine -------------------------------------------------------------------------------------

@contextlib.contextmanager
def _engine(client: Any, options: BatchOptions, events: BatchEvents) -> Any:
    """The Dask client to use: the caller's, one connected to ``options.scheduler``, or a new local cluster."""
    import dask
    from distributed import Client, LocalCluster

    if client is not None:
        yield client, None
        return
    with dask.config.set({"distributed.scheduler.allowed-failures": WORKER_DEATHS_ALLOWED,
                          "distributed.worker.multiprocessing-method": "spawn", **LOCAL_CLUSTER_CONFIG}):
        if options.scheduler is not None:
            try:
                connected = Client(options.scheduler, timeout="20s")
            except (OSError, TimeoutError) as exc:
                raise ConfigurationError(f"--scheduler {options.scheduler}: cannot connect to a Dask scheduler there "
                                         f"({exc})") from None
            with connected:
                yield connected, None
            return
        workers = options.workers or max(1, (os.cpu_count() or 2) // max(1, options.threads_per_worker))
        resources = {"GPU": 1} if options.device == "cuda" else None
        with worker_malloc():  # the workers keep freed memory for the next batch (the module says why)
            cluster = LocalCluster(n_workers=workers, threads_per_worker=options.threads_per_worker, processes=True,
                                   dashboard_address=":0", resources=resources, silence_logs=logging.CRITICAL)
        with cluster, Client(cluster) as local:
            yield local, cluster


def run_batch(inputs: Sequence[Any] | Any, out: Any, *, model: Any = None, client: Any = None,
              settings: Settings | None = None, workers: int | None = None, threads_per_worker: int = 1,
              scheduler: str | None = None, device: str = "auto", resume: bool = True, overwrite: bool = False,
              cascade: bool | None = None, report: bool = True, slides_in_flight: int | None = None,
              events: BatchEvents | None = None) -> pd.DataFrame:
    """Run the merged slide model over every slide of ``inputs`` and write the batch's outputs into ``out``.

    Parameters
    ----------
    inputs : path or sequence of paths
        Slide files, folders (searched for slides) or manifest CSVs (:func:`~slidescope.workflows.inputs.resolve_inputs`).
    out : path
        The output folder (created when its parent exists; a previous run there is resumed).
    model : path, optional
        A merged slide model directory (default: the shipped one).
    client : distributed.Client, optional
        Run on this client's cluster (it is left running).
    settings : Settings, optional
        Tissue, tiling and batch settings; ``cascade`` overrides its ``cascade``.
    workers, threads_per_worker : int
        The local cluster's worker processes (default: one per core) and threads each.
    scheduler : str, optional
        Address of an existing Dask scheduler to run on instead of a local cluster.
    device : {"auto", "cpu", "cuda"}
        Where the model runs; with ``cuda``, model tasks take the worker resource ``GPU=1``.
    resume : bool
        Skip slides whose complete outputs exist with the same configuration (default True).
    overwrite : bool
        Write into a folder holding other files or a run of another configuration.
    report : bool
        Write ``report.html`` at the end.
    slides_in_flight : int, optional
        Slides whose tasks are in flight at once (default: twice the workers' threads, at least 2).
    events : BatchEvents, optional
        Progress callbacks.

    Returns
    -------
    pandas.DataFrame
        ``predictions.csv``: one row per slide, in input order (:func:`prediction_columns`).

    Raises
    ------
    InputError, ConfigurationError, OutputError
        Before any slide runs: inputs that name no slide, a model that is not a merged one, an output
        folder that may not be used. A slide's own failure never raises: it is its row's ``error``.
    """
    from slidescope.merge.merged import MergedCard
    from slidescope.merge.checkpoint import file_sha256
    from slidescope.wsi.validation import parse_choice, parse_positive_int
    from slidescope.wsi.version import slidescope_version

    from .inputs import resolve_inputs

    events = events or BatchEvents()
    settings = settings or Settings()
    if cascade is not None:
        settings = Settings(**{**settings.to_dict(), "cascade": bool(cascade)})
    if settings.method == "fluorescence":
        raise ConfigurationError("method 'fluorescence' (--method fluorescence) finds tissue on dark-field slides; "
                                 "the slide model reads brightfield (H&E) slides, so a batch cannot use it")
    device = parse_choice(device, "device", ("auto", "cpu", "cuda"))
    threads_per_worker = parse_positive_int(threads_per_worker, "threads_per_worker", maximum=256)
    if workers is not None:
        workers = parse_positive_int(workers, "workers", maximum=1024)
    if device == "cuda" and client is None and scheduler is None:  # a local cluster: this machine's GPU, checked now
        from slidescope.models.registry import backend_class

        backend_class("torch").resolve_device("cuda")
    options = BatchOptions(workers, threads_per_worker, scheduler, device, resume, overwrite, report, slides_in_flight)
    slides = resolve_inputs([inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs))
    directory = resolve_model_directory(model)
    card = MergedCard.load(directory)
    weights = os.path.join(directory, card.weights["file"]) if card.weights else None
    if weights is None or not os.path.isfile(weights) or file_sha256([weights]) != card.weights["sha256"]:
        raise ConfigurationError(f"{directory}: its weights file is missing or its sha256 is not the one card.json "
                                 f"records")
    config = configuration_hash(card.digest(), settings)
    out = Path(os.path.abspath(os.fspath(out)))
    current = {"model": {"name": card.name, "card_sha256": card.digest()}, "settings": settings.identity(),
               "version": slidescope_version()}
    previous = _check_out(out, slides, config, options, current)
    out.mkdir(exist_ok=True)
    (out / "slides").mkdir(exist_ok=True)
    _clean_staging(out)
    types = list(card.cell.class_names)
    rows: dict[int, dict[str, Any]] = {}
    to_run: list[tuple[int, Any, str]] = []
    for index, slide in enumerate(slides):
        slide_hash = _slide_hash(config, slide.path, slide.mpp)
        if resume and (previous is not None or (out / "slides" / slide.slide_id).is_dir()):
            from .slide_outputs import read_prediction

            data = read_prediction(out / "slides" / slide.slide_id)
            if data is not None and data.get("slide_hash") == slide_hash:
                rows[index] = _ok_row(slide, data, types, resumed=True, attempts=0)
                continue
        if not os.path.lexists(slide.path):  # what its plan task would say, without a cluster to say it
            rows[index] = _error_row(slide, f"{slide.path}: no such slide file", types, 1, 0.0)
            continue
        to_run.append((index, slide, slide_hash))
    run_info = {"kind": RUN_KIND, "format_version": 1, "configuration_hash": config, "started": _now(), "ended": None,
                "status": "running", "host": socket.gethostname(), "python": sys.version.split()[0],
                "versions": _versions(), "model": {"directory": directory, "name": card.name,
                                                   "card_sha256": card.digest(), "card": card.to_dict()},
                "settings": settings.to_dict(), "options": {**options.__dict__},
                "inputs": [os.fspath(i) for i in ([inputs] if isinstance(inputs, (str, os.PathLike)) else inputs)],
                "slides": len(slides)}
    _write_json(out / "run.json", run_info)
    dashboard = None
    # slides not done already: to run, or failed before any task (a missing file)
    not_done = len(slides) - sum(1 for row in rows.values() if row["resumed"])
    try:
        for index in sorted(rows):
            events.emit("finished", rows[index])
        _write_predictions(out, rows, types)
        if to_run:
            with _engine(client, options, events) as (active, cluster):
                dashboard = getattr(active, "dashboard_link", None)
                events.emit("started", len(slides), dashboard, not_done)
                info = active.scheduler_info()
                workers_info = info.get("workers", {})
                threads = max(1, min(w.get("nthreads", 1) for w in workers_info.values())) if workers_info else 1
                total_threads = sum(w.get("nthreads", 1) for w in workers_info.values()) or 1
                in_flight = slides_in_flight or max(2, 2 * total_threads)
                resources = {"GPU": 1} if device == "cuda" else None
                driver = _Batch(active, ModelRef(directory, device), card, settings, out, config, threads, events,
                                resources)
                _drive(driver, to_run, rows, types, out, in_flight, events)
        else:
            events.emit("started", len(slides), None, not_done)
    except BaseException as exc:  # Ctrl-C, a cluster that cannot start: run.json says so, the rows done are kept
        _write_predictions(out, rows, types)
        run_info.update({"ended": _now(), "dashboard": dashboard,
                         "status": "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed",
                         "error": (str(exc).strip().splitlines() or [type(exc).__name__])[0]})
        _write_json(out / "run.json", run_info)
        raise
    frame = _write_predictions(out, rows, types)
    failed = int((frame.status == "error").sum())
    run_info.update({"ended": _now(), "status": "complete", "dashboard": dashboard,
                     "counts": {"slides": len(frame), "ok": int((frame.status == "ok").sum()), "failed": failed,
                                "resumed": int(frame.resumed.fillna(False).astype(bool).sum())}})
    _write_json(out / "run.json", run_info)
    if report:
        from .report import write_report

        write_report(out / "report.html", frame, run=run_info, out_dir=out)
    return frame


def _drive(driver: _Batch, to_run: list[tuple[int, Any, str]], rows: dict[int, dict[str, Any]], types: Sequence[str],
           out: Path, in_flight: int, events: BatchEvents) -> None:
    """Feed slides to the cluster, ``in_flight`` at a time, and take their results as they come."""
    from distributed import as_completed

    pending = list(reversed(to_run))
    completed = as_completed()
    active: dict[int, _Job] = {}

    def launch() -> None:
        while pending and len(active) < in_flight:
            index, slide, slide_hash = pending.pop()
            job = _Job(index, slide, slide_hash)
            active[index] = job
            for future in driver.start(job):
                completed.add(future)

    def fail(job: _Job, message: str) -> None:
        driver.abandon(job)
        active.pop(job.index, None)
        rows[job.index] = _error_row(job.slide, message, types, 1, time.perf_counter() - job.started)
        _write_predictions(out, rows, types)
        events.emit("finished", rows[job.index])

    launch()
    while active:
        future = next(completed)
        owner = driver.owner.pop(future, None)
        if owner is None:  # a cancelled slide's task
            continue
        job, kind = owner
        job.waiting.discard(future)
        try:
            result = future.result()
            future.release()
            new, done = driver.advance(job, kind, result)
        except Exception as exc:  # the slide's own failure: its row says why, the batch goes on
            fail(job, _describe(exc, job.slide))
            launch()
            continue
        for f in new:
            completed.add(f)
        if done:
            active.pop(job.index, None)
            data = json.loads((out / "slides" / job.slide.slide_id / "prediction.json").read_text(encoding="utf-8"))
            rows[job.index] = _ok_row(job.slide, data, types, resumed=False, attempts=1)
            _write_predictions(out, rows, types)
            events.emit("finished", rows[job.index])
        launch()


def _versions() -> dict[str, str]:
    from importlib import metadata

    from slidescope.wsi.version import slidescope_version

    versions = {"slidescope": slidescope_version()}
    for name in ("numpy", "dask", "distributed", "torch", "tensorflow-cpu", "keras", "openslide-python", "tifffile",
                 "zarr", "ome-zarr"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    return versions
