"""The work the tiling benchmark times: a cheap batch function, a plain loop, Dask clusters.

:func:`tile_means` runs inside Dask workers. ``bench/`` is not an installed package, so
:func:`register_for_workers` asks cloudpickle to ship this module's functions by value; the
workers then need nothing but slidescope itself.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import numpy as np
import pandas as pd

from slidescope.tiling.dask_read import DEFAULT_BATCH_SIZE, _batches, map_batches
from slidescope.tiling.plan import TilePlan
from slidescope.wsi import Slide

__all__ = [
    "tile_means",
    "plain_loop",
    "timed_map_batches",
    "start_cluster",
    "warm_workers",
    "register_for_workers",
    "subplan",
    "worker_maxrss",
    "self_peak_rss",
    "CpuWatch",
]


def tile_means(images: np.ndarray, tile_ids: np.ndarray) -> np.ndarray:
    """The cheap per-batch function: mean intensity of each tile on a sparse 8 px lattice.

    A few microseconds per tile, so the benchmark measures reading and scheduling, not this.
    """
    return images[:, ::8, ::8].reshape(len(images), -1).mean(axis=1)


def register_for_workers() -> None:
    """Pickle this module's functions by value, so spawned Dask workers need not import it."""
    import sys

    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])


def plain_loop(slide: Slide, plan: TilePlan, scale: int = 0, batch_size: int = DEFAULT_BATCH_SIZE,
               function=tile_means) -> tuple[pd.DataFrame, float]:
    """The same batches and ``read_tiles`` calls as ``map_batches``, in this process, no Dask.

    Batches come from ``dask_read._batches`` (private) on purpose: the baseline must issue the
    very calls the Dask tasks issue, in the same order, or the comparison means nothing.

    Returns
    -------
    (table, seconds)
        One row per tile (``tile_id``, ``value``) and the wall time of the loop.
    """
    start = time.perf_counter()
    chosen, chunks = _batches(plan, scale, batch_size)
    size = (chosen.read_size, chosen.read_size)
    frames = []
    for ids, locations in chunks:
        images = slide.read_tiles(locations, size, mpp=chosen.mpp)
        frames.append(pd.DataFrame({"tile_id": ids, "value": function(images, ids)}))
    table = pd.concat(frames, ignore_index=True).sort_values("tile_id", kind="stable").reset_index(drop=True)
    return table, time.perf_counter() - start


def timed_map_batches(client: Any, slide: Slide, plan: TilePlan, scale: int = 0,
                      batch_size: int = DEFAULT_BATCH_SIZE, function=tile_means) -> tuple[pd.DataFrame, float]:
    """``map_batches`` on ``client``'s cluster; returns the table and its wall time."""
    start = time.perf_counter()
    table = map_batches(function, slide, plan, scale, batch_size=batch_size, scheduler=client)
    return table, time.perf_counter() - start


def subplan(plan: TilePlan, rows: pd.DataFrame | np.ndarray) -> TilePlan:
    """A plan holding only some rows of ``plan`` (same scales and slide)."""
    table = plan.table[rows] if isinstance(rows, np.ndarray) else rows
    return TilePlan(table, plan.scales, plan.slide)


def start_cluster(n_workers: int) -> tuple[Any, Any]:
    """A ``LocalCluster`` of ``n_workers`` processes with one thread each, and its client.

    No dashboard (it would cost CPU on a 2-core machine and needs a free port); distributed's
    own log lines are silenced below warnings.
    """
    from dask.distributed import Client, LocalCluster

    for name in ("distributed", "distributed.worker", "distributed.scheduler", "distributed.nanny"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                           dashboard_address=None, silence_logs=logging.CRITICAL)
    client = Client(cluster)
    client.wait_for_workers(n_workers)
    return cluster, client


def _touch(slide: Slide) -> int:
    """Open ``slide`` in this worker (the per-process handle tasks reuse) and read one tile."""
    slide.read_tiles([(0, 0)], (16, 16), level=len(slide.levels) - 1)
    return os.getpid()


def warm_workers(client: Any, slide: Slide, plan: TilePlan, scale: int = 0) -> None:
    """Import slidescope, open the slide and run one tiny ``map_batches`` on every worker.

    The timed runs then measure steady-state reading, as a long slide job sees it, not process
    start-up and first imports (those are reported separately as cluster start time).
    """
    client.run(_touch, slide)
    rows = plan.tiles(scale).iloc[: 2 * len(client.scheduler_info()["workers"])]
    map_batches(tile_means, slide, subplan(plan, rows), scale, batch_size=1, scheduler=client)


def worker_maxrss(client: Any) -> dict[str, int]:
    """Peak resident set size (bytes) of every worker process (see :func:`self_peak_rss`)."""
    return client.run(self_peak_rss)


def self_peak_rss() -> int:
    """Peak RSS of this process in bytes: ``VmHWM`` of ``/proc/self/status`` where there is one.

    Not ``getrusage(RUSAGE_SELF).ru_maxrss``: on Linux that survives ``exec`` and starts from the
    high-water mark of the address space being replaced, i.e. of the *parent* at fork/vfork. A
    child started by a 400 MB benchmark or spawned by a Dask nanny would report the parent's
    peak. ``VmHWM`` belongs to the current address space only.
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024  # kB
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


class CpuWatch:
    """How many cores *other* programs kept busy while a timed case ran.

    The machine is shared: ``outside_cores`` = (all busy CPU time - CPU time of this process and
    its children, i.e. our Dask workers) / wall time. About 0 means the figure is clean; 1 on a
    2-core machine means another program held a whole core.
    """

    def __init__(self) -> None:
        self._start = self._snapshot()

    @staticmethod
    def _snapshot() -> tuple[float, float, float]:
        import psutil

        times = psutil.cpu_times()
        busy = sum(times) - times.idle - getattr(times, "iowait", 0.0)
        finished = os.times()  # children that have ended and been waited for (peer runs, old workers)
        ours = finished.children_user + finished.children_system
        me = psutil.Process()
        for proc in [me, *me.children(recursive=True)]:
            try:
                t = proc.cpu_times()
                ours += t.user + t.system
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass
        return time.perf_counter(), busy, ours

    def outside_cores(self) -> float:
        wall0, busy0, ours0 = self._start
        wall1, busy1, ours1 = self._snapshot()
        return max(0.0, ((busy1 - busy0) - (ours1 - ours0)) / max(wall1 - wall0, 1e-9))
