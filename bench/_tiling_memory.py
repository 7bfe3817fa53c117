"""One memory case of the tiling benchmark, run in a fresh process so its peaks are its own.

``python bench/_tiling_memory.py SLIDE --workers 2`` runs the whole pipeline once: a
``LocalCluster`` (processes, one thread each), ``tissue_mask`` + ``plan_tiles`` in this process,
then ``map_batches`` reading every planned tile on the workers. It prints one JSON object:

* ``driver_maxrss``: this process's peak RSS (``VmHWM``; see ``_tiling_work.self_peak_rss`` for
  why not ``ru_maxrss``): imports, the mask, the plan, the scheduler and the nannies (which live
  in this process in a LocalCluster).
* ``worker_maxrss``: each worker process's peak RSS, reported by the worker itself.
* ``sum_maxrss``: driver + workers, an upper bound of the peak of their sum.
* ``sampled_peak``: the largest sum of RSS over this process and its descendants, sampled with
  psutil every 20 ms (what ``top`` would have shown at the worst moment).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time

import psutil


class _Sampler(threading.Thread):
    """Largest total RSS of this process and its descendants, polled every ``interval`` s."""

    def __init__(self, interval: float = 0.02):
        super().__init__(daemon=True)
        self.interval = interval
        self.peak = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        me = psutil.Process()
        while not self._stop_event.is_set():
            total = 0
            for proc in [me, *me.children(recursive=True)]:
                try:
                    total += proc.memory_info().rss
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    pass
            self.peak = max(self.peak, total)
            self._stop_event.wait(self.interval)

    def stop(self) -> int:
        self._stop_event.set()
        self.join()
        return self.peak


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("slide")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--mpp", type=float, default=0.5)
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=0, help="0: the library default")
    args = parser.parse_args(argv)

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import _tiling_work as work
    from slidescope.tiling.dask_read import DEFAULT_BATCH_SIZE
    from slidescope.tiling.plan import plan_tiles
    from slidescope.tiling.scales import Scale
    from slidescope.tiling.tissue import tissue_mask
    from slidescope.wsi import open_slide

    work.register_for_workers()
    batch_size = args.batch_size or DEFAULT_BATCH_SIZE
    sampler = _Sampler()
    sampler.start()
    cluster, client = work.start_cluster(args.workers)
    try:
        start = time.perf_counter()
        with open_slide(args.slide) as slide:
            mask = tissue_mask(slide)
            plan = plan_tiles(slide, mask, Scale(args.mpp, args.tile))
            table, _ = work.timed_map_batches(client, slide, plan, 0, batch_size)
        seconds = time.perf_counter() - start
        workers = work.worker_maxrss(client)
    finally:
        client.close()
        cluster.close()
    sampled = sampler.stop()
    driver = work.self_peak_rss()
    print(json.dumps({
        "slide": args.slide,
        "tiles": int(len(table)),
        "batch_size": batch_size,
        "workers": args.workers,
        "seconds": seconds,
        "driver_maxrss": driver,
        "worker_maxrss": sorted(workers.values()),
        "sum_maxrss": driver + sum(workers.values()),
        "sampled_peak": sampled,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
