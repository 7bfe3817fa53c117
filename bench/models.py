"""Model benchmark: tiles/s of the tissue and cell models on CPU, alone and inside ``map_batches``.

For each model (tissue, cell) and framework (torch, tf), a randomly initialised model of the default
architecture (``create_model(task, framework, seed=0, device="cpu")``, saved to a temporary folder
so that it pickles as its directory, as a loaded model does in ``slidescope predict``):

1. Model alone: ``Model.predict`` (tissue) / ``Model.detect`` (cell) over uint8 tiles already in
   memory, in the very batches ``map_batches`` makes (32 tiles), with 1 and with 2 intra-op
   threads (``torch.set_num_threads``; ``tf.config.threading.set_intra_op_parallelism_threads``,
   which TensorFlow accepts only before it starts: so each (framework, threads) configuration runs
   in its own interpreter, this script re-invoked as ``--child FRAMEWORK THREADS``).
2. The judged figure: tiles/s of ``map_batches`` with the model's batch function (``_TissueBatch`` /
   ``_CellBatch`` of ``slidescope.workflows.predict``, what ``slidescope predict`` runs) over the
   same tiles, threaded scheduler with ``dask.config.set(num_workers=2)`` (``--workers 2``), divided
   by tiles/s of the model alone on the same tiles in memory: same batches, same process, same
   2 intra-op threads. Target >= 0.9. ``num_workers=1`` is reported too, and (in the 1-thread
   interpreter) 2 workers with 1 intra-op thread each.
3. Read cost: ``map_batches`` with a no-op function (``np.zeros(len(images))``) over the same plan,
   1 and 2 workers: what the loader costs per tile.

Tiles come from a generated slide, ``make_slide(path, 40000, 30000, seed=0)`` (Aperio SVS at
0.25 µm/px; cached in ``bench/.data/``, the same file ``bench/read.py`` uses): the plan is
``tissue_mask`` + ``plan_tiles(slide, mask, [card.scale()])`` (tissue: 2 µm/px, 256 px; cell:
0.5 µm/px, 256 px, overlap 32), cut to its first N tiles in raster order (tissue 128, cell 64: the
cell U-Net runs ~10 tiles/s on one core).

Timing: one warm-up per case (a full batch for the model alone, a small ``map_batches``), then
``--repeat`` (5) interleaved rounds (``--cell-repeat``, 2, for the cell model): each round times
every case once, so background load hits all alike; before each case it waits up to
``--quiet-wait`` s (5) for other programs to keep under 0.25 cores busy (the machine may be
shared). A case's figure is its best round; ratios are between figures of the same interpreter.
Each round also records how many cores other programs kept busy meanwhile. The table goes to
stdout, the figures to ``bench/results/models.json``. Exit status 0 (a report, not a gate).

Run from the repository root: ``.venv/bin/python bench/models.py [--quick] [--out FILE]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from _tiling_data import warm_page_cache  # noqa: E402
from _framework_runs import QUIET_CORES, environment, set_threads, wait_for_quiet  # noqa: E402
from _tiling_work import CpuWatch, subplan  # noqa: E402

TASKS = ("tissue", "cell")
FRAMEWORKS = ("torch", "tf")
THREADS = (1, 2)
BATCH = 32
SLIDE_SIZE = (40_000, 30_000)
TARGET = 0.9
RESULT_MARK = "MODELS-BENCH-RESULT "  # the child's one stdout line the parent reads

Case = Callable[[], Any]


# ----------------------------------------------------------------------------- inputs


def synthetic_slide(seed: int = 0) -> Path:
    """The generated slide, made once and cached under bench/.data (about 2 minutes)."""
    from slidescope.wsi.synthetic import make_slide

    width, height = SLIDE_SIZE
    path = HERE / ".data" / f"synthetic-{width}x{height}-seed{seed}.svs"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        log(f"generating {path.relative_to(REPO)} (once; cached) ...")
        make_slide(path, width, height, seed=seed)
    return path


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def no_op(images: np.ndarray, tile_ids: np.ndarray) -> np.ndarray:
    """The read-cost batch function: nothing but one value per tile."""
    return np.zeros(len(images))


# ----------------------------------------------------------------------------- child: one (framework, threads)






def time_cases(cases: dict[str, Case], rounds: int, quiet_wait: float) -> dict[str, dict[str, list[float]]]:
    """Seconds, outside load and wait per case: ``rounds`` interleaved rounds (warm-ups are the caller's)."""
    times: dict[str, dict[str, list[float]]] = {name: {"seconds": [], "outside_cores": [], "waited_s": []}
                                                for name in cases}
    for _ in range(rounds):
        for name, case in cases.items():
            times[name]["waited_s"].append(wait_for_quiet(quiet_wait))
            watch = CpuWatch()
            start = time.perf_counter()
            case()
            times[name]["seconds"].append(time.perf_counter() - start)
            times[name]["outside_cores"].append(watch.outside_cores())
    return times


def same_work(task: str, alone: list[Any], batch_ids: list[np.ndarray], mapped: pd.DataFrame,
              class_names: tuple[str, ...]) -> dict[str, Any]:
    """Do the model alone and ``map_batches`` compute the same thing? (max |d prob| / nuclei counts)."""
    ids = np.concatenate(batch_ids)
    if task == "tissue":
        probs = np.concatenate([out["probs"] for out in alone])[np.argsort(ids)]
        theirs = mapped[[f"prob_{name}" for name in class_names]].to_numpy()
        return {"max_abs_prob_diff": float(np.abs(probs - theirs).max())}
    return {"nuclei_alone": int(sum(len(found) for found in alone)),
            "nuclei_map_batches": int(sum(len(n) for n in mapped.nuclei))}


def run_task(task: str, framework: str, threads: int, slide_path: Path, n_tiles: int, rounds: int,
             quiet_wait: float, folder: Path) -> dict[str, Any]:
    """All cases of one model in this interpreter (threads already set)."""
    import dask

    from slidescope.models import create_model, save_model
    from slidescope.tiling import map_batches, plan_tiles, tissue_mask
    from slidescope.tiling.dask_read import _batches, parallelism
    from slidescope.workflows.predict import _CellBatch, _TissueBatch
    from slidescope.wsi import open_slide

    model = create_model(task, framework, seed=0, device="cpu")
    save_model(model, folder / f"{task}-{framework}")  # now pickles as its directory, as in `slidescope predict`
    scale = model.card.scale()
    with open_slide(slide_path) as slide:
        full = plan_tiles(slide, tissue_mask(slide), [scale])
        rows = full.tiles(0).sort_values(["l0_y", "l0_x"], kind="stable").iloc[:n_tiles]
        plan = subplan(full, rows)
        # the batches map_batches makes (same split, same order) and their pixels, read once into memory
        _, batches = _batches(plan, 0, BATCH, parallelism("threads"))
        size = (scale.read_size, scale.read_size)
        images = [slide.read_tiles(locations, size, mpp=scale.mpp) for _, locations in batches]
        batch_ids = [ids for ids, _ in batches]
        infer = model.predict if task == "tissue" else model.detect
        function = (_TissueBatch if task == "tissue" else _CellBatch)(model, BATCH)
        lazy = slide.lazy_copy()
        outputs: dict[str, Any] = {}

        def alone() -> None:
            outputs["alone"] = [infer(batch, batch_size=BATCH) for batch in images]

        def mapped(key: str, workers: int, what: Callable[..., Any], on: Any = plan) -> Case:
            def run() -> None:
                with dask.config.set(num_workers=workers):  # what `slidescope predict --workers N` sets
                    outputs[key] = map_batches(what, lazy, on, 0, batch_size=BATCH, scheduler="threads")
            return run

        cases: dict[str, Case] = {"alone": alone, "map2": mapped("map2", 2, function)}
        if threads == 2:
            cases |= {"map1": mapped("map1", 1, function), "noop2": mapped("noop2", 2, no_op),
                      "noop1": mapped("noop1", 1, no_op)}
        log(f"  {task} {framework} {threads} thread(s): {len(plan)} tiles in {len(batches)} batches of "
            f"{', '.join(sorted({str(len(i)) for i in batch_ids}))}; warm-up ...")
        infer(images[0], batch_size=BATCH)
        small = subplan(plan, plan.table.iloc[: 2 * parallelism("threads")])
        for workers in (1, 2):  # opens the slide in the process cache, starts Dask's thread pools
            mapped("warm-up", workers, function, small)()
            mapped("warm-up", workers, no_op, small)()
        times = time_cases(cases, rounds, quiet_wait)
        check = same_work(task, outputs["alone"], batch_ids, outputs["map2"], model.card.class_names)
    n = len(plan)
    best = {name: n / min(t["seconds"]) for name, t in times.items()}
    median = {name: n / statistics.median(t["seconds"]) for name, t in times.items()}
    log("  " + ", ".join(f"{name} {rate:.1f}" for name, rate in best.items()) + " tiles/s")
    return {"task": task, "framework": framework, "threads": threads, "tiles": n, "batches": len(batches),
            "batch_size": BATCH, "input_px": scale.read_size, "mpp": scale.mpp,
            "architecture": model.card.architecture.to_dict(), "tiles_per_s": best,
            "median_tiles_per_s": median, "timings": times, "same_work": check}


def child(framework: str, threads: int, args: argparse.Namespace) -> int:
    """One interpreter: threads pinned first, then both models; JSON on one stdout line."""
    applied = set_threads(framework, threads)
    slide = synthetic_slide()
    warm_page_cache(slide)
    results = []
    with tempfile.TemporaryDirectory(prefix="slidescope-bench-models-") as folder:
        for task in TASKS:
            n_tiles = args.tissue_tiles if task == "tissue" else args.cell_tiles
            rounds = args.repeat if task == "tissue" else args.cell_repeat
            results.append(run_task(task, framework, threads, slide, n_tiles, rounds, args.quiet_wait, Path(folder)))
    print(RESULT_MARK + json.dumps({"framework": framework, "threads": applied, "results": results}), flush=True)
    return 0


# ----------------------------------------------------------------------------- parent: report


def run_child(framework: str, threads: int, passthrough: list[str]) -> dict[str, Any]:
    """Run one configuration in a fresh interpreter and return its figures."""
    command = [sys.executable, str(Path(__file__).resolve()), "--child", framework, str(threads), *passthrough]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, env=env, cwd=REPO)
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT_MARK)]
    if done.returncode or not lines:
        raise SystemExit(f"child {framework} {threads} failed (exit {done.returncode}):\n{done.stdout[-2000:]}")
    return json.loads(lines[-1][len(RESULT_MARK):])


def busy(result: dict[str, Any], case: str) -> float:
    """Cores other programs kept busy during the case's best round (the one its figure comes from)."""
    timings = result["timings"][case]
    return timings["outside_cores"][int(np.argmin(timings["seconds"]))]


def summarise(children: dict[tuple[str, int], dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (model, framework): the figures and ratios the README reports."""
    rows = []
    for task in TASKS:
        for framework in FRAMEWORKS:
            one = next(r for r in children[framework, 1]["results"] if r["task"] == task)
            two = next(r for r in children[framework, 2]["results"] if r["task"] == task)
            if one["architecture"] != two["architecture"]:  # the code changed between the two interpreters
                raise SystemExit(f"{task} {framework}: the 1- and 2-thread runs built different architectures "
                                 f"({one['architecture']} vs {two['architecture']}); run again")
            rate, n = two["tiles_per_s"], two["tiles"]
            ratio = rate["map2"] / rate["alone"]
            read_ms = 1000 / rate["noop1"]
            infer_ms = 1000 / rate["alone"]
            rows.append({
                "task": task, "framework": framework, "tiles": n, "batch_size": two["batch_size"],
                "widths": two["architecture"]["widths"],
                "alone_1t": one["tiles_per_s"]["alone"], "alone_2t": rate["alone"],
                "thread_scaling": rate["alone"] / one["tiles_per_s"]["alone"],
                "map2": rate["map2"], "map1": rate["map1"], "map2_1t": one["tiles_per_s"]["map2"],
                "ratio": ratio,
                "ratio_of_medians": two["median_tiles_per_s"]["map2"] / two["median_tiles_per_s"]["alone"],
                "ratio_1_worker": rate["map1"] / rate["alone"],
                "ratio_2_workers_1_thread": one["tiles_per_s"]["map2"] / rate["alone"],
                "target": TARGET, "verdict": "PASS" if ratio >= TARGET else "FAIL",
                "noop1": rate["noop1"], "noop2": rate["noop2"], "read_ms_per_tile": read_ms,
                "read_ms_per_tile_2_workers": 1000 / rate["noop2"], "infer_ms_per_tile": infer_ms,
                "serial_bound": 1 / (1 + read_ms / infer_ms),
                "busy_judged": max(busy(two, "alone"), busy(two, "map2")),
                "busy": {f"{case} {t}t": busy(result, case) for t, result in ((1, one), (2, two))
                         for case in result["timings"]},
                "same_work": two["same_work"],
            })
    return rows


def print_tables(rows: list[dict[str, Any]]) -> None:
    print("\nModel alone: Model.predict (tissue) / detect (cell) on tiles in memory, tiles/s (best round)")
    print(f"  {'model':<8}{'framework':<11}{'widths':<16}{'tiles':>6}{'1 thread':>10}{'2 threads':>11}{'2 / 1':>7}")
    for r in rows:
        widths = "(" + ", ".join(map(str, r["widths"])) + ")"
        print(f"  {r['task']:<8}{r['framework']:<11}{widths:<16}{r['tiles']:>6}{r['alone_1t']:>10.1f}"
              f"{r['alone_2t']:>11.1f}{r['thread_scaling']:>7.2f}")
    print("\nmap_batches with the model (threaded scheduler, 2 intra-op threads) / the model alone, same tiles")
    print(f"  {'model':<8}{'framework':<11}{'alone':>7}{'2 workers':>11}{'ratio':>7}{'target':>8}{'verdict':>9}"
          f"{'median':>8}{'1 worker':>10}{'ratio':>7}{'2w x 1t':>9}{'ratio':>7}{'busy':>6}")
    for r in rows:
        print(f"  {r['task']:<8}{r['framework']:<11}{r['alone_2t']:>7.1f}{r['map2']:>11.1f}{r['ratio']:>7.2f}"
              f"{'>= ' + format(r['target'], 'g'):>8}{r['verdict']:>9}{r['ratio_of_medians']:>8.2f}"
              f"{r['map1']:>10.1f}{r['ratio_1_worker']:>7.2f}{r['map2_1t']:>9.1f}{r['ratio_2_workers_1_thread']:>7.2f}"
              f"{r['busy_judged']:>6.2f}")
    print("\nRead cost (map_batches with a no-op function) against inference (model alone, 2 threads)")
    print(f"  {'model':<8}{'framework':<11}{'no-op 1w':>10}{'ms/tile':>9}{'no-op 2w':>10}{'ms/tile':>9}"
          f"{'infer ms/tile':>15}{'serial bound':>14}  same work")
    for r in rows:
        work = ", ".join(f"{k} {v:.2g}" if isinstance(v, float) else f"{k} {v}" for k, v in r["same_work"].items())
        print(f"  {r['task']:<8}{r['framework']:<11}{r['noop1']:>10.0f}{r['read_ms_per_tile']:>9.2f}"
              f"{r['noop2']:>10.0f}{r['read_ms_per_tile_2_workers']:>9.2f}{r['infer_ms_per_tile']:>15.1f}"
              f"{r['serial_bound']:>14.2f}  {work}")
    print("\n  ratio = map_batches tiles/s / model-alone tiles/s (2 intra-op threads, same interpreter), best rounds;"
          "\n  median = the same ratio of median rounds; 2w x 1t = 2 workers with 1 intra-op thread each (the 1-thread"
          "\n  interpreter) / the 2-thread model alone; serial bound = 1 / (1 + read ms / infer ms), what reading then"
          "\n  inferring one batch after the other would give; busy = cores other programs kept busy in the best round"
          "\n  of alone or 2 workers, the larger: near 0, the figures are clean.")




def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer tiles, one round: a smoke run")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "models.json", help="JSON output")
    parser.add_argument("--tissue-tiles", type=int, help="tissue tiles (default 128; quick 64)")
    parser.add_argument("--cell-tiles", type=int, help="cell tiles (default 64; quick 32)")
    parser.add_argument("--repeat", type=int, help="timed rounds, tissue model (default 5; quick 1)")
    parser.add_argument("--cell-repeat", type=int, help="timed rounds, cell model (default 2; quick 1)")
    parser.add_argument("--quiet-wait", type=float, help="before each timed case, wait up to this many seconds "
                        "for other programs to keep < 0.25 cores busy (default 5; quick 0)")
    parser.add_argument("--child", nargs=2, metavar=("FRAMEWORK", "THREADS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.tissue_tiles = args.tissue_tiles or (64 if args.quick else 128)
    args.cell_tiles = args.cell_tiles or (32 if args.quick else 64)
    args.repeat = args.repeat or (1 if args.quick else 5)
    args.cell_repeat = args.cell_repeat or (1 if args.quick else 2)
    args.quiet_wait = args.quiet_wait if args.quiet_wait is not None else (0.0 if args.quick else 5.0)
    if args.child:
        return child(args.child[0], int(args.child[1]), args)

    env = environment(("numpy", "torch", "tensorflow-cpu", "tensorflow", "keras", "dask"))
    print(f"slidescope model benchmark - {env['date']}, {env['cpus']} CPUs, Python {env['python']}, "
          f"torch {env['torch']}, tensorflow {env['tensorflow-cpu'] or env['tensorflow']}, keras {env['keras']}, "
          f"batch {BATCH}, tissue {args.tissue_tiles} tiles, cell {args.cell_tiles} tiles", flush=True)
    started = time.perf_counter()
    synthetic_slide()  # generate once here, not in a child
    passthrough = ["--tissue-tiles", str(args.tissue_tiles), "--cell-tiles", str(args.cell_tiles),
                   "--repeat", str(args.repeat), "--cell-repeat", str(args.cell_repeat),
                   "--quiet-wait", str(args.quiet_wait)]
    children = {}
    for framework in FRAMEWORKS:
        for threads in THREADS:
            log(f"{framework}, {threads} intra-op thread(s) (own interpreter) ...")
            children[framework, threads] = run_child(framework, threads, passthrough)
    rows = summarise(children)
    print_tables(rows)
    seconds = time.perf_counter() - started
    verdicts = [r["verdict"] for r in rows]
    print(f"\ntarget map_batches / alone >= {TARGET:g}: {verdicts.count('PASS')} PASS, {verdicts.count('FAIL')} FAIL"
          f" ({seconds:.0f} s)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {"environment": env, "quick": args.quick, "seconds": seconds, "batch": BATCH,
              "quiet_wait_s": args.quiet_wait, "quiet_cores": QUIET_CORES,
              "rounds": {"tissue": args.repeat, "cell": args.cell_repeat}, "slide": f"{SLIDE_SIZE[0]}x{SLIDE_SIZE[1]}",
              "summary": rows, "children": [{"framework": fw, "threads_asked": t, **children[fw, t]}
                                            for fw, t in children]}
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"figures written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
