"""The measurements of the tiling benchmark, one function per target of the issue.

Each returns plain dicts of figures (seconds, tiles, bytes) for :mod:`tiling` to judge and save.
Timings are wall-clock ``time.perf_counter``; repeated ones are summarised by
:func:`_tiling_report.spread` (median judged).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

import _tiling_work as work
from _tiling_report import spread
from slidescope.tiling.plan import TilePlan, plan_tiles
from slidescope.tiling.scales import Scale
from slidescope.tiling.tissue import tissue_mask
from slidescope.wsi import open_slide as _open_slide

__all__ = ["mask_times", "scaling", "end_to_end", "memory_case", "peer_comparison", "OPEN_OPTIONS"]

#: Options every case opens its slides with (``--exact-resample`` adds ``exact_resample=True``, the
#: reader before reduced-resolution decoding); slides travel to the workers with them.
OPEN_OPTIONS: dict[str, Any] = {}


def open_slide(path: Path) -> Any:
    return _open_slide(path, **OPEN_OPTIONS)

HERE = Path(__file__).resolve().parent


def _measured(run: Any, times: list[float], busy_elsewhere: list[float]) -> Any:
    """Run ``run() -> (result, seconds)``; record its seconds and the cores other programs kept busy."""
    watch = work.CpuWatch()
    result, seconds = run()
    times.append(seconds)
    busy_elsewhere.append(watch.outside_cores())
    return result

def mask_times(path: Path, repeat: int) -> dict[str, Any]:
    """(4) ``tissue_mask(slide)`` on an open slide, ``repeat`` times (the first call included)."""
    with open_slide(path) as slide:
        times, mask = [], None
        for _ in range(repeat):
            start = time.perf_counter()
            mask = tissue_mask(slide)
            times.append(time.perf_counter() - start)
        level = slide.best_level_for_mpp(mask.mpp)
        return {"seconds": spread(times), "mask_shape": list(mask.shape), "mask_mpp": mask.mpp,
                "tissue_fraction": mask.fraction, "read_level": level.index,
                "read_level_dimensions": list(level.dimensions)}


def _same_values(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    return len(a) == len(b) and np.array_equal(a.tile_id.to_numpy(), b.tile_id.to_numpy()) and np.allclose(
        a.value.to_numpy(), b.value.to_numpy())


def scaling(path: Path, scale: Scale, batch_size: int, repeat: int, log: Callable[[str], None]) -> dict[str, Any]:
    """(1) Plain loop vs ``map_batches`` on 1 and on 2 worker processes, same plan and batches.

    The loop and the 1-worker runs alternate, so a burst of outside load hits both alike.
    """
    with open_slide(path) as slide:
        plan = plan_tiles(slide, tissue_mask(slide), scale)
        tiles = len(plan)
        out: dict[str, Any] = {"tiles": tiles, "batches": -(-tiles // batch_size), "batch_size": batch_size}
        loop_times, one_times = [], []
        outside: dict[str, list[float]] = {"loop": [], "dask1": [], "dask2": []}
        start = time.perf_counter()
        cluster, client = work.start_cluster(1)
        out["cluster_start_1_s"] = time.perf_counter() - start
        try:
            work.warm_workers(client, slide, plan)
            reference, _ = work.plain_loop(slide, plan, 0, batch_size)  # warm this process alike
            for k in range(repeat):
                table = _measured(lambda: work.plain_loop(slide, plan, 0, batch_size), loop_times, outside["loop"])
                dask_table = _measured(lambda: work.timed_map_batches(client, slide, plan, 0, batch_size),
                                       one_times, outside["dask1"])
                log(f"    run {k + 1}: loop {loop_times[-1]:.2f} s, dask 1 worker {one_times[-1]:.2f} s "
                    f"(other programs busy: {outside['loop'][-1]:.2f}, {outside['dask1'][-1]:.2f} cores)")
            out["same_results"] = _same_values(reference, dask_table) and _same_values(reference, table)
        finally:
            client.close()
            cluster.close()
        two_times = []
        start = time.perf_counter()
        cluster, client = work.start_cluster(2)
        out["cluster_start_2_s"] = time.perf_counter() - start
        try:
            work.warm_workers(client, slide, plan)
            for k in range(repeat):
                _measured(lambda: work.timed_map_batches(client, slide, plan, 0, batch_size),
                          two_times, outside["dask2"])
                log(f"    run {k + 1}: dask 2 workers {two_times[-1]:.2f} s "
                    f"(other programs busy: {outside['dask2'][-1]:.2f} cores)")
        finally:
            client.close()
            cluster.close()
    out["loop_s"], out["dask1_s"], out["dask2_s"] = spread(loop_times), spread(one_times), spread(two_times)
    out["outside_cores"] = outside
    for key in ("loop", "dask1", "dask2"):
        out[f"{key}_tiles_per_s"] = tiles / out[f"{key}_s"]["median"]
    return out


def _pipeline(client: Any, path: Path, scale: Scale, batch_size: int) -> tuple[float, int, float]:
    """Open, mask, plan, read every planned tile on the cluster; (seconds, tiles, mask seconds)."""
    start = time.perf_counter()
    with open_slide(path) as slide:
        mask = tissue_mask(slide)
        mask_done = time.perf_counter()
        plan = plan_tiles(slide, mask, scale)
        work.timed_map_batches(client, slide, plan, 0, batch_size)
    end = time.perf_counter()
    return end - start, len(plan), mask_done - start


def end_to_end(client: Any, sparse: Path, dense: Path, scale: Scale, batch_size: int, repeat: int,
               log: Callable[[str], None]) -> dict[str, Any]:
    """(2) The whole pipeline on a 25 % tissue slide and an all-tissue slide of the same size.

    Runs alternate between the two slides; each slide is opened in the workers by a warm-up run
    first, so neither pays first-open costs the other does not.
    """
    results: dict[str, dict[str, list[float]]] = {name: {"s": [], "mask_s": [], "outside": []}
                                                  for name in ("sparse", "dense")}
    tiles = {}
    for name, path in (("sparse", sparse), ("dense", dense)):
        with open_slide(path) as slide:
            work.warm_workers(client, slide, plan_tiles(slide, None, scale))
    for k in range(repeat):
        for name, path in (("sparse", sparse), ("dense", dense)):
            watch = work.CpuWatch()
            seconds, tiles[name], mask_s = _pipeline(client, path, scale, batch_size)
            results[name]["outside"].append(watch.outside_cores())
            results[name]["s"].append(seconds)
            results[name]["mask_s"].append(mask_s)
        log(f"    run {k + 1}: 25 % tissue {results['sparse']['s'][-1]:.2f} s ({tiles['sparse']} tiles), "
            f"all tissue {results['dense']['s'][-1]:.2f} s ({tiles['dense']} tiles) "
            f"(other programs busy: {results['sparse']['outside'][-1]:.2f}, {results['dense']['outside'][-1]:.2f} cores)")
    return {name: {"tiles": tiles[name], "seconds": spread(r["s"]), "mask_seconds": spread(r["mask_s"]),
                   "outside_cores": r["outside"]} for name, r in results.items()}


def memory_case(path: Path, workers: int, scale: Scale, batch_size: int) -> dict[str, Any]:
    """(3) One whole pipeline in a fresh interpreter (``_tiling_memory.py``); its peak RSS figures."""
    command = [sys.executable, str(HERE / "_tiling_memory.py"), str(path), "--workers", str(workers),
               "--mpp", str(scale.mpp), "--tile", str(scale.tile), "--batch-size", str(batch_size)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"memory case failed for {path} (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _peer_run(python: Path, path: Path, scale: Scale, level: int | None, coords: Path, limit: int) -> dict[str, Any]:
    where = ["--level", str(level)] if level is not None else ["--mpp", str(scale.mpp)]
    command = [str(python), str(HERE / "_tiling_peer.py"), str(path), "--tile", str(scale.tile), *where,
               "--coords-out", str(coords), "--limit", str(limit)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"peer run failed (exit {done.returncode}): {' '.join(command)}\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _plan_of_corners(slide: Any, scale: Scale, corners: np.ndarray) -> TilePlan:
    """Our plan of the grid (no mask), cut to the tiles whose level-0 corners the peer read."""
    plan = plan_tiles(slide, None, scale)
    key = plan.table.l0_x.to_numpy() * 10_000_000 + plan.table.l0_y.to_numpy()
    wanted = corners[:, 0] * 10_000_000 + corners[:, 1]
    return work.subplan(plan, np.isin(key, wanted))


def peer_comparison(client: Any, python: Path, path: Path, scale: Scale, level: int | None, batch_size: int,
                    repeat: int, limit: int, scratch: Path) -> dict[str, Any]:
    """(5) histolab's GridTiler vs slidescope on the same slide and the very same tiles.

    The peer runs once in its own interpreter and writes the corners it extracted; slidescope
    then reads those tiles (a) in this process, one core like the peer, with the plain loop of
    ``read_tiles`` batches, and (b) with ``map_batches`` on the 2-worker cluster.
    """
    scratch.mkdir(parents=True, exist_ok=True)
    corners_path = scratch / f"peer-corners-{os.getpid()}.npy"
    try:
        watch = work.CpuWatch()
        peer = _peer_run(python, path, scale, level, corners_path, limit)
        peer["outside_cores"] = watch.outside_cores()
        corners = np.load(corners_path)
    finally:
        corners_path.unlink(missing_ok=True)
    with open_slide(path) as slide:
        plan = _plan_of_corners(slide, scale, corners)
        work.warm_workers(client, slide, plan)
        work.plain_loop(slide, plan, 0, batch_size)  # warm-up
        one, two, outside = [], [], []
        for _ in range(repeat):
            watch = work.CpuWatch()
            one.append(work.plain_loop(slide, plan, 0, batch_size)[1])
            two.append(work.timed_map_batches(client, slide, plan, 0, batch_size)[1])
            outside.append(watch.outside_cores())
    tiles = len(plan)
    ours_1 = tiles / spread(one)["median"]
    ours_2 = tiles / spread(two)["median"]
    return {"peer": peer, "tiles": tiles, "same_tiles": tiles == peer["tiles"],
            "ours_1core_s": spread(one), "ours_2workers_s": spread(two), "ours_outside_cores": outside,
            "ours_1core_tiles_per_s": ours_1, "ours_2workers_tiles_per_s": ours_2,
            "ratio_1core": ours_1 / peer["tiles_per_s"], "ratio_2workers": ours_2 / peer["tiles_per_s"]}
