"""Batch benchmark: ``run_batch`` (the merged slide model over slides on Dask) against the model alone.

Slides: generated ``make_slide(path, 40000, 30000, seed=s, tumour=t)`` for (s, t) = (0, True), (1, True),
(2, False) (0.25 µm/px Aperio SVS, 256 px JPEG tiles; cached in ``build/bench-slides/``: about 2-4 minutes
each to make on 2 cores, made in parallel the first time; seed 0 is hard-linked from ``bench/.data/`` when
the read and model benchmarks made it already: same arguments, same bytes). ``--quick``: 8,192 x 6,144
slides, one round, a smoke run of a few minutes. The model is the shipped merged model ``"slide"``
(torch; ``load_model("slide")``), settings the defaults (``Settings()``: batch size 32, cascade on).

Clusters: the ``LocalCluster`` ``run_batch`` starts itself (its private ``_engine``: spawned workers, its
Dask configuration, so a change there is measured here), 2 workers x 1 thread (what ``run_batch`` starts on
this machine by default: one worker per core) and 1 worker x 1 thread; each passed to ``run_batch(client=...)``.
Both are started and warmed before any timing (every worker loads the model, sets its threads and runs
one batch of each part; then one untimed ``run_batch`` over a small 4,096 x 3,072 slide), so the timed
runs exclude cluster start-up and first imports (the start-up is printed apart). Each timed run writes
into a fresh output folder (deleted after its figures are read), report included.

What is timed:

- **run_batch** (end to end): the wall time of ``run_batch(slides, out, client=...)``: planning (tissue
  mask), tissue part, cascade, cell part, head, every output file, ``predictions.csv``, ``run.json`` and
  ``report.html``. Tiles = coarse tiles + fine tiles analysed (``coarse_tiles + fine_tiles`` of
  ``predictions.csv``); tiles/s = tiles / wall.
- **model only**: the merged model's parts on the same tiles, already in memory: the pipeline's own
  batches (``coarse_batches`` and ``fine_batches`` under the same flagged parents, batch size 32;
  a preparation child reads their pixels with the pipeline's ``_read`` and stores them), run with
  ``model.backend.part_outputs(coarse=batch, chunk=len(batch))`` (tissue) and
  ``model.backend.cell_logits(batch)`` (cell), exactly the calls ``tissue_batch`` / ``cell_batch`` make.
  Nothing else: no reading, no peak finding, no head, no Dask, no outputs. It runs in spawned processes
  that loaded the model and their pixels before the clock starts. **The baseline of the 2 x 1 cluster is
  2 such processes with 1 torch thread each** (the cluster's workers and threads), sharing the batches
  dynamically (one queue, each process takes the next batch when it is free, as Dask hands out tasks);
  wall = first start to last end. 1 process x 1 thread is measured once (the 1 x 1 cluster's baseline,
  and the per-core model time), and 1 process x 2 threads once, for the record.
  The model-only processes start with the environment ``run_batch``'s workers get: the variables a Dask
  nanny sets (``distributed.nanny.pre-spawn-environ``: ``MALLOC_TRIM_THRESHOLD_=65536``,
  ``OMP/MKL/OPENBLAS_NUM_THREADS=1``) and slidescope's malloc settings over them
  (``slidescope.workflows.worker_memory.WORKER_MALLOC``): the same process, minus the pipeline.
- **model only, Dask's environment** (once, a diagnosis): the same 2 x 1 model-only run in 2 more processes
  started with the nanny's variables alone (no ``WORKER_MALLOC``): what the malloc settings buy the model.
- **run_batch 2x1, Dask's environment** (once, a diagnosis): the judged run on a third 2 x 1 cluster whose
  workers start without ``WORKER_MALLOC`` (as before it existed).
- **tiles per CPU-second** (every case): tiles / CPU seconds of the processes doing the work (model only:
  its processes; run_batch: the workers plus this process, which holds the client, the driver and the
  scheduler). Other programs' load changes wall times much more than CPU time per tile, so on a shared
  machine this column says what each path costs even when ``busy`` is high.

Targets (issue 10):

1. run_batch 2 x 1 tiles/s >= 0.9 x model-only (2 processes x 1 thread) tiles/s: same tiles, same
   batches, same model, same cores, same run (rounds interleaved).
2. Cascade: cell-part work with the cascade <= the flagged fraction + 0.05 of the work with
   ``cascade=False`` (``--cell-everywhere``), on the same slides (2 x 1 cluster, one run without the
   cascade). Work = fine tiles analysed (``fine_tiles``; judged: it is what the cell part runs on) and,
   printed beside with its own verdict, cell-task seconds (``seconds_cells``: read + cell part + peak
   finding, summed over tasks). Flagged fraction = flagged coarse tiles / coarse tiles (all slides).
3. run_batch 2 x 1 >= 1.7 x run_batch 1 x 1, tiles/s on the same slides (the same as slides/s: same work).
4. For the record: slides per hour of the 2 x 1 run on the 40,000 x 30,000 slides (cascade), and peak
   resident memory per worker (``VmHWM`` of each worker process, read with ``client.run`` after all runs:
   its high-water over warm-up and every run; not ``ru_maxrss``, which a spawned child inherits from its
   parent's address space on Linux).

Order: ``--rounds`` (2) interleaved rounds of [model only 2 x 1, run_batch 2 x 1, run_batch 1 x 1]; then
the run without the cascade; then, each only while the time cap allows it (an estimate from the rounds),
model only 1 x 1, model only in Dask's environment, run_batch in Dask's environment, model only 1 x 2. A figure is its best round, the median round beside it. Before each case the script waits up to
``--quiet-wait`` s (10) for other programs to keep < 0.25 cores busy; each case records the cores other
programs kept busy meanwhile (``busy``: all busy CPU time - this process's and its descendants' / wall)
and the 1-minute load average at its start (``load``). When the best round of a judged case was busy
(>= 0.25 cores) and the time cap allows, one more round is run. ``--time-cap`` (minutes, default 30): no
round and no optional case starts when the elapsed time plus its estimated duration would pass it; the
judged cases (2 rounds and the run without the cascade) always run: about 12 min on a quiet 2-core
machine, 16 min with everything, plus about 5 min the first time for the slides (each 40,000 x 30,000
slide takes 4 min on one core).

Where the time goes (printed for the judged runs): the per-slide ``seconds`` of each ``prediction.json``
(plan, tissue = read + tissue part, cells = read + cell part + peaks, read, head, outputs; summed over
slides, task seconds), the CPU cores the workers and this process (the client: the driver, assembly,
outputs, report) used, the model's own core-seconds (model only, 1 process x 1 thread), and the
client-side functions timed in this process (``SlideAssembler`` methods, ``write_slide_outputs``,
``predictions.csv``, ``write_report``; wrapped for the run, no code changed). ``BatchEvents`` give the
moment the last tile was analysed; the tail after it is head + assembly + outputs of the last slides.

Figures go to stdout and to ``bench/results/batch.json`` (``--out``). Exit status 0: a report, not a gate.

Run from the repository root: ``.venv/bin/python bench/batch.py [--quick] [--rounds N] [--time-cap MIN]``.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import logging
import multiprocessing as mp
import os
import shutil
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any
from unittest import mock

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402

SLIDES = ((0, True), (1, True), (2, False))  # (seed, tumour)
FULL_SIZE = (40_000, 30_000)
QUICK_SIZE = (8_192, 6_144)
WARM_SIZE = (4_096, 3_072)
SLIDE_DIR = REPO / "build" / "bench-slides"
WORK_DIR = REPO / "build" / "bench-batch"
BATCH = 32  # Settings().batch_size, checked at run time
TARGET_E2E = 0.9
TARGET_CASCADE_MARGIN = 0.05
TARGET_SCALING = 1.7
BUSY = 0.25  # cores other programs may keep busy before a round counts as busy


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- slides


def _slide_path(size: tuple[int, int], seed: int, tumour: bool) -> Path:
    return SLIDE_DIR / f"batch-{size[0]}x{size[1]}-seed{seed}-{'tumour' if tumour else 'normal'}.svs"


def _make(path: str, size: tuple[int, int], seed: int, tumour: bool) -> float:
    from slidescope.wsi.synthetic import make_slide

    started = time.perf_counter()
    make_slide(path, size[0], size[1], seed=seed, tumour=tumour)
    return time.perf_counter() - started


def ensure_slides(specs: list[tuple[tuple[int, int], int, bool]]) -> list[Path]:
    """The slides, made once (in parallel, one process per core) and cached in build/bench-slides/."""
    SLIDE_DIR.mkdir(parents=True, exist_ok=True)
    paths = [_slide_path(*spec) for spec in specs]
    missing = []
    for path, (size, seed, tumour) in zip(paths, specs):
        if path.is_file():
            continue
        # bench/read.py and bench/models.py make the same file (same arguments, same bytes): reuse it
        other = HERE / ".data" / f"synthetic-{size[0]}x{size[1]}-seed{seed}.svs"
        if tumour and other.is_file():
            with contextlib.suppress(OSError):
                os.link(other, path)
                log(f"linked {path.relative_to(REPO)} to {other.relative_to(REPO)}")
                continue
        missing.append((path, size, seed, tumour))
    if missing:
        log(f"generating {len(missing)} slide(s) into {SLIDE_DIR.relative_to(REPO)} (once; cached) ...")
        with ProcessPoolExecutor(min(len(missing), os.cpu_count() or 1), mp_context=mp.get_context("spawn")) as pool:
            done = [pool.submit(_make, str(p), size, seed, tumour) for p, size, seed, tumour in missing]
            for (p, *_), future in zip(missing, done):
                log(f"  {p.name}: {future.result():.0f} s")
    return paths


# ----------------------------------------------------------------------------- CPU accounting


class Usage:
    """CPU time of this process (the client), of its descendants (the workers) and of other programs."""

    def __init__(self) -> None:
        self.load = os.getloadavg()[0]
        self._start = self._snapshot()

    @staticmethod
    def _snapshot() -> tuple[float, float, float, float, float]:
        import psutil

        times = psutil.cpu_times()
        busy = sum(times) - times.idle - getattr(times, "iowait", 0.0)
        me = psutil.Process()
        own = me.cpu_times()
        finished = os.times()
        user, system = finished.children_user, finished.children_system
        for proc in me.children(recursive=True):
            try:
                t = proc.cpu_times()
                user, system = user + t.user, system + t.system
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass
        return time.perf_counter(), busy, own.user + own.system, user, system

    def stop(self) -> dict[str, float]:
        wall0, busy0, own0, user0, sys0 = self._start
        wall1, busy1, own1, user1, sys1 = self._snapshot()
        wall = max(wall1 - wall0, 1e-9)
        client, user, system = own1 - own0, user1 - user0, sys1 - sys0
        return {"wall": wall, "client_cores": client / wall, "worker_cores": (user + system) / wall,
                "worker_sys_share": system / max(user + system, 1e-9),
                "busy": max(0.0, ((busy1 - busy0) - client - user - system) / wall), "load": self.load}


def quiet(limit: float) -> float:
    from _framework_runs import wait_for_quiet

    return wait_for_quiet(limit) if limit > 0 else 0.0


# ----------------------------------------------------------------------------- model only


def _prepare(paths: list[str], directory: str, folder: str) -> list[dict[str, Any]]:
    """(A spawned child.) Each slide's pipeline batches and their pixels: the coarse batches, the tissue part
    (to find the flagged parents, as the cascade does), the fine batches under them; pixels saved as .npy."""
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    from slidescope.models import load_model
    from slidescope.workflows.pipeline import (SlideAssembler, Settings, _read, coarse_batches, fine_batches, plan_slide,
                                               tissue_batch)

    model = load_model(directory)
    settings = Settings()
    slides = []
    for s, path in enumerate(paths):
        plan = plan_slide(path, model.card, settings)
        assembler = SlideAssembler(model.card, plan)
        files = []
        for i, batch in enumerate(coarse_batches(plan, settings.batch_size)):
            assembler.add_tissue(tissue_batch(model, plan.handle, batch))
            file = os.path.join(folder, f"s{s}-tissue-{i}.npy")
            np.save(file, _read(plan.handle, batch))
            files.append(("tissue", file, len(batch)))
        flagged = assembler.flagged(True)
        for i, batch in enumerate(fine_batches(plan, flagged, settings.batch_size)):
            file = os.path.join(folder, f"s{s}-cell-{i}.npy")
            np.save(file, _read(plan.handle, batch))
            files.append(("cell", file, len(batch)))
        plan.handle.close()
        slides.append({"path": path, "coarse": len(plan.coarse), "flagged": len(flagged),
                       "fine": sum(n for kind, _, n in files if kind == "cell"), "files": files})
    return slides


def _model_only_process(directory: str, files: list[tuple[str, str, int]], conn: Any, queue: Any) -> None:
    """(A spawned process.) Load the model and every batch's pixels, warm up, then run rounds on command."""
    import torch

    torch.set_num_threads(1)
    from slidescope.models import load_model

    model = load_model(directory)
    batches = [(kind, np.load(file)) for kind, file, _ in files]

    def run(kind: str, images: np.ndarray) -> None:
        if kind == "tissue":
            model.backend.part_outputs(coarse=images, chunk=len(images))
        else:
            model.backend.cell_logits(images)

    for kind in ("tissue", "cell"):  # first calls (allocations, kernels) off the clock
        first = next((images for k, images in batches if k == kind), None)
        if first is not None:
            run(kind, first)
    conn.send(("ready", os.getpid()))
    while True:
        command = conn.recv()
        if command[0] == "stop":
            return
        torch.set_num_threads(command[1])
        seconds = {"tissue": 0.0, "cell": 0.0}
        tiles = {"tissue": 0, "cell": 0}
        start = time.perf_counter()  # CLOCK_MONOTONIC: comparable across processes
        while True:
            index = queue.get()
            if index is None:
                break
            kind, images = batches[index]
            t = time.perf_counter()
            run(kind, images)
            seconds[kind] += time.perf_counter() - t
            tiles[kind] += len(images)
        conn.send({"start": start, "end": time.perf_counter(), "seconds": seconds, "tiles": tiles})


class ModelOnly:
    """Model-only processes that hold the pixels; ``run(processes, threads)`` times one pass over every batch."""

    def __init__(self, directory: str, files: list[tuple[str, str, int]], processes: int,
                 environ: dict[str, str] | None = None) -> None:
        context = mp.get_context("spawn")
        self.files = files
        self.queue = context.Queue()
        self.pipes, self.procs = [], []
        # a spawned child starts from this process's environment (patch.dict restores it after)
        with mock.patch.dict(os.environ, environ or {}):
            for _ in range(processes):
                parent, child = context.Pipe()
                proc = context.Process(target=_model_only_process, args=(directory, files, child, self.queue),
                                       daemon=True)
                proc.start()
                self.pipes.append(parent)
                self.procs.append(proc)
        for pipe in self.pipes:
            if pipe.recv()[0] != "ready":
                raise SystemExit("a model-only process failed to start")

    def run(self, processes: int, threads: int) -> dict[str, Any]:
        for index in range(len(self.files)):
            self.queue.put(index)
        for _ in range(processes):
            self.queue.put(None)
        time.sleep(0.2)  # the queue's feeder thread has flushed the indices
        usage = Usage()
        for pipe in self.pipes[:processes]:
            pipe.send(("go", threads))
        parts = [pipe.recv() for pipe in self.pipes[:processes]]
        used = usage.stop()
        wall = max(p["end"] for p in parts) - min(p["start"] for p in parts)
        tiles = sum(sum(p["tiles"].values()) for p in parts)
        return {**used, "wall": wall, "tiles": tiles, "tiles_per_s": tiles / wall,
                "tiles_per_cpu_s": tiles / (used["worker_cores"] * used["wall"]),
                "model_core_s": {k: sum(p["seconds"][k] for p in parts) for k in ("tissue", "cell")},
                "tiles_by_part": {k: sum(p["tiles"][k] for p in parts) for k in ("tissue", "cell")},
                "per_process_tiles": [sum(p["tiles"].values()) for p in parts]}

    def close(self) -> None:
        if not self.procs:
            return
        for pipe in self.pipes:
            with contextlib.suppress(OSError):
                pipe.send(("stop",))
        for proc in self.procs:
            proc.join(10)
        self.procs, self.pipes = [], []


# ----------------------------------------------------------------------------- clusters


def dask_worker_environ() -> dict[str, str]:
    """The environment variables a Dask nanny sets before it starts a worker (``pre-spawn-environ``, ``environ``)."""
    import dask
    import distributed  # noqa: F401 - loads distributed's configuration defaults

    environ = {**dask.config.get("distributed.nanny.pre-spawn-environ", {}), **dask.config.get("distributed.nanny.environ", {})}
    return {key: str(value) for key, value in environ.items() if value is not None}


def start_cluster(stack: contextlib.ExitStack, workers: int, threads: int, dask_malloc: bool = False) -> tuple[Any, float]:
    """The local cluster ``run_batch`` itself starts (its private ``_engine``, the same code path), kept open on
    ``stack``; its client and its start-up seconds. ``dask_malloc``: the workers start with Dask's environment
    alone, without ``WORKER_MALLOC`` (the diagnosis run: ``run_batch`` as it was before those settings)."""
    from slidescope.workflows import batch
    from slidescope.workflows.batch import BatchEvents, BatchOptions, _engine
    from slidescope.workflows.worker_memory import WORKER_MALLOC, worker_malloc

    started = time.perf_counter()
    with mock.patch.dict(os.environ), contextlib.ExitStack() as patches:  # os.environ restored after
        if dask_malloc:
            # the nanny leaves its variables in *this* process's os.environ after it spawns, and a value there
            # wins over its configuration: drop those the earlier clusters left
            for key in {**dask_worker_environ(), **WORKER_MALLOC}:
                os.environ.pop(key, None)
            patches.enter_context(mock.patch.object(batch, "worker_malloc", lambda: worker_malloc({})))
        client, _ = stack.enter_context(_engine(None, BatchOptions(workers=workers, threads_per_worker=threads),
                                                BatchEvents()))
    client.wait_for_workers(workers)
    return client, time.perf_counter() - started


def _worker_environ() -> dict[str, str | None]:
    """(On each worker.) The allocator and thread variables its process started with."""
    return {key: os.environ.get(key) for key in ("MALLOC_ARENA_MAX", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_",
                                                 "OMP_NUM_THREADS")}


def _warm_worker(directory: str, threads: int) -> int:
    """(On each worker.) Load the model as tasks do, set the threads as the first task would, run both parts once."""
    from slidescope.workflows.batch import ModelRef
    from slidescope.workflows.pipeline import _limit_threads

    model = ModelRef(directory, "auto").get()
    _limit_threads(model, threads)
    tissue, cell = model.card.tissue.scale().read_size, model.card.cell.scale().read_size
    rng = np.random.default_rng(0)
    model.backend.part_outputs(coarse=rng.integers(0, 256, (BATCH, tissue, tissue, 3), dtype=np.uint8), chunk=BATCH)
    model.backend.cell_logits(rng.integers(0, 256, (BATCH, cell, cell, 3), dtype=np.uint8))
    return os.getpid()


def _worker_peak_rss() -> int:
    """(On each worker.) ``VmHWM``: the peak resident memory of this process, bytes."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


@contextlib.contextmanager
def client_profile() -> Any:
    """Wall seconds of the client-side steps of ``run_batch`` in this process (wrapped, restored after)."""
    from slidescope.workflows import batch, pipeline, report, slide_outputs

    spent: dict[str, float] = {}
    targets = [(pipeline.SlideAssembler, "add_tissue", "assemble: add_tissue"),
               (pipeline.SlideAssembler, "add_cells", "assemble: add_cells (+ cells.parquet)"),
               (pipeline.SlideAssembler, "head_inputs", "assemble: head_inputs"),
               (pipeline.SlideAssembler, "finish", "assemble: finish (tables, maps)"),
               (slide_outputs, "write_slide_outputs", "outputs: slide files"),
               (batch, "_write_predictions", "outputs: predictions.csv"),
               (report, "write_report", "outputs: report.html")]
    saved = []
    for owner, name, label in targets:
        original = getattr(owner, name)
        saved.append((owner, name, original))

        def wrapped(*args: Any, __original: Any = original, __label: str = label, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return __original(*args, **kwargs)
            finally:
                spent[__label] = spent.get(__label, 0.0) + time.perf_counter() - t

        setattr(owner, name, functools.wraps(original)(wrapped))
    try:
        yield spent
    finally:
        for owner, name, original in saved:
            setattr(owner, name, original)


def timed_batch(client: Any, slides: list[Path], cascade: bool, tag: str) -> dict[str, Any]:
    """One ``run_batch`` on ``client`` into a fresh folder; its figures."""
    import pandas as pd

    from slidescope.workflows import BatchEvents, run_batch

    out = WORK_DIR / f"out-{tag}"
    shutil.rmtree(out, ignore_errors=True)
    marks: dict[str, Any] = {"started": None, "first_tile": None, "last_tile": None, "finished": {}}
    totals: dict[str, int] = {}

    def on_tiles(slide_id: str, done: int, total: int) -> None:
        if done > totals.get(slide_id, 0):
            marks["last_tile"] = time.perf_counter()
            marks["first_tile"] = marks["first_tile"] or marks["last_tile"]
        totals[slide_id] = done

    events = BatchEvents(started=lambda *a: marks.__setitem__("started", time.perf_counter()), tiles=on_tiles,
                         finished=lambda row: marks["finished"].__setitem__(row["slide_id"], time.perf_counter()))
    with client_profile() as spent:
        usage = Usage()
        begin = time.perf_counter()
        frame = run_batch([str(p) for p in slides], out, client=client, cascade=cascade, events=events)
        end = time.perf_counter()
        used = usage.stop()
    if (frame.status != "ok").any():
        raise SystemExit(f"run_batch {tag}: a slide failed: {frame[frame.status != 'ok'][['slide_id', 'error']]}")
    seconds: dict[str, float] = {}
    for slide_id in frame.slide_id:
        data = json.loads((out / "slides" / slide_id / "prediction.json").read_text(encoding="utf-8"))
        for key, value in data["seconds"].items():
            seconds[key] = seconds.get(key, 0.0) + float(value)
    shutil.rmtree(out, ignore_errors=True)
    wall = end - begin
    coarse, fine, flagged = (int(frame[c].sum()) for c in ("coarse_tiles", "fine_tiles", "flagged_tiles"))
    return {**used, "wall": wall, "slides": len(frame), "tiles": coarse + fine, "coarse": coarse, "fine": fine,
            "flagged": flagged, "tiles_per_s": (coarse + fine) / wall, "slides_per_h": 3600 * len(frame) / wall,
            "tiles_per_cpu_s": (coarse + fine) / ((used["worker_cores"] + used["client_cores"]) * used["wall"]),
            "task_seconds": seconds, "client_steps": dict(spent),
            "first_tile_s": (marks["first_tile"] or begin) - begin,
            "tail_s": end - (marks["last_tile"] or end),
            "rows": pd.DataFrame(frame[["slide_id", "coarse_tiles", "flagged_tiles", "fine_tiles", "seconds_total",
                                        "seconds_plan", "seconds_tissue", "seconds_cells", "seconds_head",
                                        "seconds_outputs", "probability", "label"]]).to_dict("records")}


# ----------------------------------------------------------------------------- report


def best(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return max(runs, key=lambda r: r["tiles_per_s"])


def median_rate(runs: list[dict[str, Any]]) -> float:
    return statistics.median(r["tiles_per_s"] for r in runs)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def _ratio(runs: list[dict[str, Any]], key: str, other: dict[str, Any]) -> float | None:
    return best(runs)[key] / other[key] if runs else None


def summarise(results: dict[str, Any]) -> dict[str, Any]:
    cases = results["cases"]
    mo2, a, b, e = cases["model_2x1"], cases["batch_2x1"], cases["batch_1x1"], cases["batch_2x1_everywhere"]
    ba, bmo2, bb = best(a), best(mo2), best(b)
    e2e = ba["tiles_per_s"] / bmo2["tiles_per_s"]
    e2e_median = median_rate(a) / median_rate(mo2)
    scaling = ba["tiles_per_s"] / bb["tiles_per_s"]
    scaling_median = median_rate(a) / median_rate(b)
    ev = e[0]
    flagged_fraction = ba["flagged"] / ba["coarse"]
    work_tiles = ba["fine"] / ev["fine"] if ev["fine"] else float("nan")
    cells_everywhere = ev["task_seconds"].get("cells", 0.0)
    work_seconds = ba["task_seconds"].get("cells", 0.0) / cells_everywhere if cells_everywhere else float("nan")
    limit = flagged_fraction + TARGET_CASCADE_MARGIN
    per_slide = []
    for ra, re in zip(ba["rows"], ev["rows"]):
        per_slide.append({"slide_id": ra["slide_id"], "coarse": ra["coarse_tiles"], "flagged": ra["flagged_tiles"],
                          "flagged_fraction": ra["flagged_tiles"] / ra["coarse_tiles"], "fine_cascade": ra["fine_tiles"],
                          "fine_everywhere": re["fine_tiles"],
                          "tiles_ratio": ra["fine_tiles"] / re["fine_tiles"] if re["fine_tiles"] else float("nan"),
                          "cells_s_cascade": ra["seconds_cells"], "cells_s_everywhere": re["seconds_cells"]})
    rss = results["peak_rss"]
    return {
        "e2e": {"ratio": e2e, "ratio_of_medians": e2e_median, "target": TARGET_E2E, "verdict": verdict(e2e >= TARGET_E2E),
                "batch_tiles_per_s": ba["tiles_per_s"], "model_tiles_per_s": bmo2["tiles_per_s"],
                "busy": max(ba["busy"], bmo2["busy"]),
                "cpu_ratio": ba["tiles_per_cpu_s"] / bmo2["tiles_per_cpu_s"],
                # diagnoses (None where the time cap skipped the case)
                "dask_env_rate_ratio": _ratio(cases["model_2x1_dask_env"], "tiles_per_s", bmo2),
                "dask_env_cpu_ratio": _ratio(cases["model_2x1_dask_env"], "tiles_per_cpu_s", bmo2),
                "dask_malloc_batch_rate_ratio": _ratio(cases["batch_2x1_dask_malloc"], "tiles_per_s", bmo2),
                "dask_malloc_batch_cpu_ratio": _ratio(cases["batch_2x1_dask_malloc"], "tiles_per_cpu_s", bmo2),
                "batch_1x1_vs_model_1x1": (bb["tiles_per_s"] / cases["model_1x1"][0]["tiles_per_s"]
                                           if cases["model_1x1"] else None),
                "batch_2x1_vs_model_1x2": (ba["tiles_per_s"] / cases["model_1x2"][0]["tiles_per_s"]
                                           if cases["model_1x2"] else None)},
        "cascade": {"flagged_fraction": flagged_fraction, "limit": limit, "tiles_ratio": work_tiles,
                    "seconds_ratio": work_seconds, "verdict": verdict(work_tiles <= limit),
                    "seconds_verdict": verdict(work_seconds <= limit), "per_slide": per_slide},
        "scaling": {"ratio": scaling, "ratio_of_medians": scaling_median, "target": TARGET_SCALING,
                    "verdict": verdict(scaling >= TARGET_SCALING), "busy": max(ba["busy"], bb["busy"])},
        "record": {"slides_per_h": ba["slides_per_h"], "slides_per_h_1x1": bb["slides_per_h"],
                   "slides_per_h_everywhere": ev["slides_per_h"],
                   "peak_rss_mb": {name: [v / 2**20 for v in workers.values()] for name, workers in rss.items()}},
    }


def _fmt(value: float | None, spec: str = ".2f") -> str:
    return "skipped" if value is None else format(value, spec)


NAMES = {"model_2x1": "model only, 2 proc x 1 thread", "batch_2x1": "run_batch 2x1, cascade",
         "batch_1x1": "run_batch 1x1, cascade", "batch_2x1_everywhere": "run_batch 2x1, cell everywhere",
         "model_1x1": "model only, 1 proc x 1 thread", "model_2x1_dask_env": "model only 2x1, Dask's env (no WORKER_MALLOC)",
         "batch_2x1_dask_malloc": "run_batch 2x1, Dask's env (no WORKER_MALLOC)", "model_1x2": "model only, 1 proc x 2 threads"}


def print_report(results: dict[str, Any], summary: dict[str, Any]) -> None:
    env, cases = results["environment"], results["cases"]
    print(f"\nslidescope batch benchmark - {env['date']}, {env['cpus']} CPUs, {env['machine']}, Python {env['python']}, "
          f"torch {env['torch']}, dask {env['dask']}")
    print(f"  {len(results['slides'])} slides {results['size'][0]} x {results['size'][1]} ("
          f"{', '.join(Path(p).name for p in results['slides'])}); model {results['model']}; batch {BATCH}; "
          "cluster start-up (excluded): " + ", ".join(f"{k} {v:.1f} s" for k, v in results["startup_s"].items()))
    print(f"\n  {'case':<42}{'round':>6}{'tiles':>7}{'wall s':>8}{'tiles/s':>9}{'slides/h':>10}{'tiles/cpu-s':>12}"
          f"{'workers':>9}{'sys':>6}{'client':>8}{'busy':>6}{'load':>6}")
    for key, label in NAMES.items():
        for i, r in enumerate(cases.get(key, [])):
            slides_h = f"{r['slides_per_h']:>10.1f}" if "slides_per_h" in r else f"{'':>10}"
            print(f"  {label:<42}{i + 1:>6}{r['tiles']:>7}{r['wall']:>8.1f}{r['tiles_per_s']:>9.2f}{slides_h}"
                  f"{r['tiles_per_cpu_s']:>12.2f}{r['worker_cores']:>9.2f}{r['worker_sys_share']:>6.2f}"
                  f"{r['client_cores']:>8.2f}{r['busy']:>6.2f}{r['load']:>6.2f}")
    print("  (tiles/cpu-s: tiles per CPU second of the workers (model only: its processes) + this process (run_batch"
          " only: the client and scheduler);\n   workers / client / busy: cores used by the workers (or model-only"
          " processes), by this process, by other programs; sys: the workers' share of CPU time in the kernel;\n"
          "   load: 1-min load average at the start)")
    if results["skipped"]:
        print(f"  skipped by the time cap: {', '.join(results['skipped'])}")
    s, e = summary, summary["e2e"]
    print("\nTargets")
    print(f"  (1) run_batch 2x1 / model only 2x1 tiles/s: {e['batch_tiles_per_s']:.2f} / {e['model_tiles_per_s']:.2f} = "
          f"{e['ratio']:.2f} (medians {e['ratio_of_medians']:.2f}), target >= {TARGET_E2E}: {e['verdict']}")
    print(f"      tiles per CPU-second, run_batch 2x1 / model only 2x1: {e['cpu_ratio']:.2f}; model only in Dask's "
          f"environment alone / model only: tiles/s {_fmt(e['dask_env_rate_ratio'])}, per CPU-s {_fmt(e['dask_env_cpu_ratio'])}; "
          f"run_batch 2x1 in Dask's environment alone / model only: tiles/s {_fmt(e['dask_malloc_batch_rate_ratio'])}, "
          f"per CPU-s {_fmt(e['dask_malloc_batch_cpu_ratio'])}")
    print(f"      run_batch 1x1 / model only 1x1: {_fmt(e['batch_1x1_vs_model_1x1'])}; run_batch 2x1 / model only 1 process "
          f"x 2 threads: {_fmt(e['batch_2x1_vs_model_1x2'])}")
    c = s["cascade"]
    print(f"  (2) cascade fine tiles / everywhere: {c['tiles_ratio']:.3f}, flagged fraction {c['flagged_fraction']:.3f} "
          f"+ {TARGET_CASCADE_MARGIN} = {c['limit']:.3f}: {c['verdict']}   [cell-task seconds: {c['seconds_ratio']:.3f}, "
          f"{c['seconds_verdict']}]")
    for p in c["per_slide"]:
        print(f"        {p['slide_id']:<36} coarse {p['coarse']:>4} flagged {p['flagged']:>4} ({p['flagged_fraction']:.3f})"
              f" fine {p['fine_cascade']:>5} / {p['fine_everywhere']:>5} ({p['tiles_ratio']:.3f}); cells s "
              f"{p['cells_s_cascade']:.1f} / {p['cells_s_everywhere']:.1f}")
    print(f"  (3) run_batch 2x1 / 1x1 tiles/s: {s['scaling']['ratio']:.2f} (medians {s['scaling']['ratio_of_medians']:.2f}), "
          f"target >= {TARGET_SCALING}: {s['scaling']['verdict']}")
    r = s["record"]
    rss = "; ".join(f"{name} [{', '.join(f'{v:.0f}' for v in values)}]" for name, values in r["peak_rss_mb"].items())
    print(f"  (4) slides/h (2x1, cascade): {r['slides_per_h']:.1f} (1x1 {r['slides_per_h_1x1']:.1f}; 2x1 everywhere "
          f"{r['slides_per_h_everywhere']:.1f}); peak RSS per worker, MB: {rss}")
    print(f"      workers' environment: " + "; ".join(f"{name} {list(w.values())[0]}"
                                                      for name, w in results["worker_environ"].items()))
    print("\nWhere the time goes (best rounds; task seconds summed over slides and tasks, from prediction.json)")
    for key in ("batch_2x1", "batch_1x1", "batch_2x1_everywhere", "batch_2x1_dask_malloc"):
        if not cases[key]:
            continue
        run = best(cases[key])
        t = run["task_seconds"]
        print(f"  {NAMES[key]}: wall {run['wall']:.1f} s, workers {run['worker_cores']:.2f} cores, client "
              f"{run['client_cores']:.2f}; tasks: plan {t.get('plan', 0):.1f}, tissue {t.get('tissue', 0):.1f}, cells "
              f"{t.get('cells', 0):.1f} (read {t.get('read', 0):.1f} of both), head {t.get('head', 0):.2f}; outputs "
              f"{t.get('outputs', 0):.1f}; first batch back after {run['first_tile_s']:.1f} s, tail after last tile "
              f"{run['tail_s']:.1f} s")
        print("      client: " + ", ".join(f"{k} {v:.1f}" for k, v in run["client_steps"].items()))
    for key in ("model_2x1", "model_1x1", "model_2x1_dask_env"):
        if cases[key]:
            m = best(cases[key])
            print(f"  {NAMES[key]}: {m['wall']:.1f} s for {m['tiles']} tiles; model seconds summed over processes: tissue "
                  f"{m['model_core_s']['tissue']:.1f} s / {m['tiles_by_part']['tissue']} tiles, cell "
                  f"{m['model_core_s']['cell']:.1f} s / {m['tiles_by_part']['cell']} tiles")


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="8,192 x 6,144 slides, one round: a smoke run")
    parser.add_argument("--rounds", type=int, help="interleaved rounds of the judged cases (default 2; quick 1)")
    parser.add_argument("--time-cap", type=float, default=30.0, help="minutes; no round starts that would pass it")
    parser.add_argument("--quiet-wait", type=float, help="seconds to wait for a quiet machine before a case "
                        "(default 10; quick 0)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "batch.json", help="JSON output")
    args = parser.parse_args(argv)
    rounds = args.rounds or (1 if args.quick else 2)
    wait = args.quiet_wait if args.quiet_wait is not None else (0.0 if args.quick else 10.0)
    cap = args.time_cap * 60
    t0 = time.perf_counter()
    from _framework_runs import environment

    from slidescope.workflows.batch import resolve_model_directory
    from slidescope.workflows.pipeline import Settings

    if Settings().batch_size != BATCH:
        raise SystemExit(f"Settings().batch_size is {Settings().batch_size}; this script assumes {BATCH}")
    env = environment(("numpy", "torch", "dask", "distributed"))
    size = QUICK_SIZE if args.quick else FULL_SIZE
    slides = ensure_slides([(size, seed, tumour) for seed, tumour in SLIDES])
    warm_slide = ensure_slides([(WARM_SIZE, 100, True)])[0]
    directory = resolve_model_directory("slide")
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    tiles_dir = WORK_DIR / "tiles"
    shutil.rmtree(tiles_dir, ignore_errors=True)
    tiles_dir.mkdir()
    log("preparing the model-only batches (plan, tissue part, cascade, pixels) ...")
    with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
        prepared = pool.submit(_prepare, [str(p) for p in slides], directory, str(tiles_dir)).result()
    files = [f for s in prepared for f in s["files"]]
    log(f"  {sum(n for *_, n in files)} tiles in {len(files)} batches; starting 2 model-only processes ...")
    from slidescope.workflows.worker_memory import WORKER_MALLOC

    environ = dask_worker_environ()
    model_only = ModelOnly(directory, files, 2, {**environ, **WORKER_MALLOC})
    log(f"  and 2 more in the environment a Dask nanny gives its workers alone ({environ}) ...")
    model_only_dask_env = ModelOnly(directory, files, 2, environ)
    results: dict[str, Any] = {"environment": env, "size": size, "slides": [str(p) for p in slides], "model": directory,
                               "batch_size": BATCH, "prepared": [{k: v for k, v in s.items() if k != "files"}
                                                                 for s in prepared],
                               "rounds": rounds, "time_cap_min": args.time_cap, "dask_worker_environ": environ,
                               "skipped": [], "startup_s": {}, "worker_environ": {}, "peak_rss": {},
                               "cases": {k: [] for k in ("model_2x1", "batch_2x1", "batch_1x1", "batch_2x1_everywhere",
                                                         "model_1x1", "model_2x1_dask_env", "batch_2x1_dask_malloc",
                                                         "model_1x2")}}
    cases = results["cases"]
    stack = contextlib.ExitStack()
    clients: dict[str, Any] = {}

    def cluster(name: str, workers: int, dask_malloc: bool = False) -> Any:
        log(f"starting the {name} cluster and warming it ...")
        client, seconds = start_cluster(stack, workers, 1, dask_malloc)
        results["startup_s"][name] = seconds
        results["worker_environ"][name] = client.run(_worker_environ)
        client.run(_warm_worker, directory, 1)
        timed_batch(client, [warm_slide], True, "warm-up")
        clients[name] = client
        return client

    def within_cap(what: str, estimate: float) -> bool:
        if time.perf_counter() - t0 + estimate <= cap:
            return True
        log(f"time cap: {what} skipped (about {estimate:.0f} s; {(time.perf_counter() - t0) / 60:.1f} min gone)")
        results["skipped"].append(what)
        return False

    try:
        client2 = cluster("2x1", 2)
        client1 = cluster("1x1", 1)

        def one_round(number: int) -> None:
            log(f"round {number}: model only 2x1 ...")
            quiet(wait)
            cases["model_2x1"].append(model_only.run(2, 1))
            log(f"  {cases['model_2x1'][-1]['tiles_per_s']:.2f} tiles/s; run_batch 2x1 ...")
            quiet(wait)
            cases["batch_2x1"].append(timed_batch(client2, slides, True, "2x1"))
            log(f"  {cases['batch_2x1'][-1]['tiles_per_s']:.2f} tiles/s; run_batch 1x1 ...")
            quiet(wait)
            cases["batch_1x1"].append(timed_batch(client1, slides, True, "1x1"))
            log(f"  {cases['batch_1x1'][-1]['tiles_per_s']:.2f} tiles/s")

        durations: list[float] = []
        for number in range(1, rounds + 1):
            if durations and not within_cap(f"round {number}", durations[-1]):
                break
            started = time.perf_counter()
            one_round(number)
            durations.append(time.perf_counter() - started)
        log("run_batch 2x1 with the cell part everywhere (once) ...")
        quiet(wait)
        cases["batch_2x1_everywhere"].append(timed_batch(client2, slides, False, "2x1-everywhere"))
        results["peak_rss"]["2x1"] = client2.run(_worker_peak_rss)
        results["peak_rss"]["1x1"] = client1.run(_worker_peak_rss)
        model_rate = best(cases["model_2x1"])["tiles_per_s"]
        n_tiles = best(cases["model_2x1"])["tiles"]
        if within_cap("model only 1x1", 1.9 * n_tiles / model_rate):
            log("model only, 1 process x 1 thread (once) ...")
            quiet(wait)
            cases["model_1x1"].append(model_only.run(1, 1))
        if within_cap("model only 2x1, Dask env", 1.6 * n_tiles / model_rate):
            log("model only 2x1 in Dask's environment alone (once) ...")
            quiet(wait)
            cases["model_2x1_dask_env"].append(model_only_dask_env.run(2, 1))
        model_only_dask_env.close()
        if within_cap("run_batch 2x1, Dask's environment", 30 + best(cases["batch_2x1"])["wall"]):
            client3 = cluster("2x1-dask-malloc", 2, dask_malloc=True)
            log("run_batch 2x1 on workers in Dask's environment alone (once) ...")
            quiet(wait)
            cases["batch_2x1_dask_malloc"].append(timed_batch(client3, slides, True, "2x1-dask-malloc"))
        if within_cap("model only 1x2", 1.9 * n_tiles / model_rate):
            log("model only, 1 process x 2 threads (once) ...")
            quiet(wait)
            cases["model_1x2"].append(model_only.run(1, 2))
        was_busy = max(best(cases["batch_2x1"])["busy"], best(cases["model_2x1"])["busy"],
                       best(cases["batch_1x1"])["busy"]) >= BUSY
        if was_busy and within_cap("extra round", durations[-1]):
            log("a judged best round ran while other programs were busy: one more round ...")
            one_round(len(durations) + 1)
            results["extra_round"] = True
    finally:
        model_only.close()
        model_only_dask_env.close()
        for name in ("distributed", "distributed.scheduler", "distributed.core", "distributed.nanny",
                     "distributed.worker"):  # their INFO lines at close
            logging.getLogger(name).setLevel(logging.CRITICAL)
        with contextlib.suppress(Exception):
            stack.close()
        shutil.rmtree(tiles_dir, ignore_errors=True)
    results["elapsed_s"] = time.perf_counter() - t0
    # the same work: the model-only batches are the ones run_batch analysed
    ran = best(cases["batch_2x1"])
    results["same_work"] = {
        "run_batch": [(r["coarse_tiles"], r["flagged_tiles"], r["fine_tiles"]) for r in ran["rows"]],
        "model_only": [(s["coarse"], s["flagged"], s["fine"]) for s in prepared]}
    results["same_work"]["equal"] = results["same_work"]["run_batch"] == results["same_work"]["model_only"]
    summary = summarise(results)
    results["summary"] = summary
    print_report(results, summary)
    print(f"\n  same work (coarse, flagged, fine per slide) in run_batch and model only: {results['same_work']['equal']}"
          f"; elapsed {results['elapsed_s'] / 60:.1f} min (cap {args.time_cap:g})")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=float) + "\n")
    print(f"  figures: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
