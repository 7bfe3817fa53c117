"""Training loader benchmark: does the loader keep the model busy while it trains?

For each model (tissue, cell) and framework (torch, tf), with the settings of the shipped-model
recipe (``slidescope.models.recipes.train_settings``, read at run time: tissue batches of 16 and cell
batches of 8 whole 256 px tiles in Keras and 16 windows of 128 px in torch; the card's defaults;
augmentation on), on three generated slides (``make_slide(path, 12288, 9216, seed=0..2)``, the
recipe's training-slide size, cached in ``bench/.data/``), the training set, batch makers and trainer are built as
:func:`slidescope.models.training.train` builds them (``build_training_set``, ``_makers``,
``trainer_class``), then, per round (the first ``--skip`` + ``--steps`` keys of a training
epoch, 4 + 24 of the recipe's 40 or 60; round r takes epoch r's keys):

1. **make**: the round's batches made with the ``BatchMaker`` in this process, one after the
   other, kept in memory: the loader's own cost, ms per tile (wall and CPU).
2. **memory**: ``trainer.train_step`` over those batches (no loader at all): the model's speed.
3. **loader**: ``trainer.train_step`` over the same keys drawn from the real ``Loader`` (2 spawned
   workers, prefetch 2, as ``train`` runs it; the workers persist across rounds). Batches are
   compared with those of (1): a batch is a pure function of its key.
4. **loader alone**: the same loader with no training step: what 2 workers deliver by themselves.

The first ``--skip`` (4 = workers x prefetch) batches of every epoch are not timed: worker
start-up (spawn, imports, slides opened) and the queue filled meanwhile would flatter or spoil the
figure; the steady part that follows is. The judged figure is **(3) / (2)** in steps/s, target
>= 0.9 ("the loader keeps the model busy"); each figure is its best round (medians are kept too).

Threads: every (model, framework, training threads) runs in its own interpreter (this script
re-invoked as ``--child TASK FRAMEWORK THREADS``), with ``torch.set_num_threads`` or TensorFlow's
intra-op threads set before the framework starts; 1 and 2 threads are measured. The loader workers
are separate processes on the same 2 cores. CPU time of the trainer process and of its workers is
recorded per case, and so is the CPU other programs took meanwhile (``busy``, in cores: near 0,
the figures are clean).

Run from the repository root: ``.venv/bin/python bench/training.py [--quick] [--out FILE]``.
The table goes to stdout, every figure to ``bench/results/training.json``. Exit status 0 (a
report, not a gate).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from _framework_runs import QUIET_CORES, environment, set_threads, wait_for_quiet  # noqa: E402

TASKS = ("tissue", "cell")
FRAMEWORKS = ("torch", "tf")
THREADS = (1, 2)
SLIDE_SIZE = (12_288, 9_216)
SLIDE_SEEDS = (0, 1, 2)
WORKERS = 2
PREFETCH = 2
TARGET = 0.9
RESULT_MARK = "TRAINING-BENCH-RESULT "  # the child's one stdout line the parent reads


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- inputs


def slides() -> list[Path]:
    """The generated training slides, made once and cached under bench/.data (a few seconds each)."""
    from slidescope.wsi.synthetic import make_slide

    width, height = SLIDE_SIZE
    paths = []
    for seed in SLIDE_SEEDS:
        path = HERE / ".data" / f"training-{width}x{height}-seed{seed}.svs"
        if not path.is_file() or not path.with_name(path.stem + ".truth.npz").is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            log(f"generating {path.relative_to(REPO)} (once; cached) ...")
            make_slide(path, width, height, seed=seed)
        paths.append(path)
    return paths


# ----------------------------------------------------------------------------- measuring


class Meter:
    """Wall time and CPU time (cores) of this process, of its children, and of other programs."""

    def __init__(self) -> None:
        self._start = self._snapshot()

    @staticmethod
    def _snapshot() -> tuple[float, float, float, float]:
        import psutil

        times = psutil.cpu_times()
        busy = sum(times) - times.idle - getattr(times, "iowait", 0.0)
        me = psutil.Process()
        mine = me.cpu_times()
        finished = os.times()  # children that have ended and been waited for
        children = finished.children_user + finished.children_system
        for proc in me.children(recursive=True):
            try:
                t = proc.cpu_times()
                children += t.user + t.system
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass
        return time.perf_counter(), mine.user + mine.system, children, busy

    def read(self) -> dict[str, float]:
        """Seconds since the start and the cores kept busy meanwhile: ``main``, ``workers``, ``outside``."""
        wall0, main0, children0, busy0 = self._start
        wall1, main1, children1, busy1 = self._snapshot()
        wall = max(wall1 - wall0, 1e-9)
        main, children = main1 - main0, children1 - children0
        return {"seconds": wall, "main_cores": main / wall, "worker_cores": children / wall,
                "outside_cores": max(0.0, (busy1 - busy0 - main - children) / wall)}




def same_batch(a: dict[str, Any], b: dict[str, Any]) -> bool:
    import numpy as np

    return a.keys() == b.keys() and all(np.array_equal(np.asarray(a[k]), np.asarray(b[k])) for k in a)


# ----------------------------------------------------------------------------- child: one configuration




def setup(task: str, framework: str, paths: list[Path]) -> dict[str, Any]:
    """Training set, batch maker and trainer, as ``models.training.train`` / ``_run`` make them."""
    from slidescope.models.recipes import train_settings
    from slidescope.models.registry import backend_class, trainer_class
    from slidescope.models.sampling import batches_per_epoch
    from slidescope.models.training import TrainConfig, _card, _makers
    from slidescope.models.training_data import build_training_set

    started = time.perf_counter()
    config = TrainConfig(task=task, framework=framework, slides=tuple(os.path.realpath(p) for p in paths),
                         **train_settings(task, framework))
    card = _card(config, None)
    data = build_training_set(card, config.slides, val_slides=config.val_slides, min_tissue=config.min_tissue,
                              seed=config.seed)
    maker, _ = _makers(config, card, data)
    steps = batches_per_epoch(len(maker.tiles), config.batch_size, config.steps_per_epoch)

    backend = backend_class(framework)(card, "cpu", config.seed)
    trainer = trainer_class(framework)(backend, lr=config.lr, weight_decay=config.weight_decay,
                                       total_steps=config.epochs * steps)
    for key in maker.train_keys(0)[:2]:  # warm-up steps, untimed (TF traces its step here)
        trainer.train_step(maker(key))
    return {"config": config, "card": card, "maker": maker, "trainer": trainer, "steps_per_epoch": steps,
            "setup_s": time.perf_counter() - started,
            "train_tiles": len(maker.tiles), "train_slides": int(data.split("train").slide.nunique())}


def one_round(keys: list[tuple[int, int]], skip: int, maker: Any, trainer: Any, loader: Any,
              quiet_wait: float) -> dict[str, Any]:
    """The four cases over one epoch's keys (see the module docstring); figures of the timed part only."""
    timed = len(keys) - skip
    out: dict[str, Any] = {}

    out["make_waited_s"] = wait_for_quiet(quiet_wait)
    meter = Meter()
    batches = []
    for i, key in enumerate(keys):
        if i == skip:
            meter = Meter()
        batches.append(maker(key))
    out["make"] = meter.read()
    tiles = sum(len(b["images"]) for b in batches[skip:])

    out["memory_waited_s"] = wait_for_quiet(quiet_wait)
    meter = Meter()
    for batch in batches[skip:]:
        trainer.train_step(batch)
    out["memory"] = meter.read()

    out["loader_waited_s"] = wait_for_quiet(quiet_wait)
    waited = stepped = 0.0
    drawn = []
    iterator = iter(loader.batches(keys))
    for i in range(len(keys)):
        if i == skip:
            meter, waited, stepped = Meter(), 0.0, 0.0
        before = time.perf_counter()
        drawn.append(next(iterator))
        got = time.perf_counter()
        trainer.train_step(drawn[-1])
        waited += got - before
        stepped += time.perf_counter() - got
    out["loader"] = {**meter.read(), "waiting_s": waited, "stepping_s": stepped}
    out["same_batches"] = len(list(iterator)) == 0 and all(map(same_batch, drawn, batches))
    del drawn

    out["alone_waited_s"] = wait_for_quiet(quiet_wait)
    iterator = iter(loader.batches(keys))
    for i in range(len(keys)):
        if i == skip:
            meter = Meter()
        next(iterator)
    out["loader_alone"] = meter.read()
    assert not list(iterator), "the loader gave more batches than keys"
    out.update(steps=timed, tiles=tiles)
    return out


def child(task: str, framework: str, threads: int, args: argparse.Namespace) -> int:
    """One interpreter: threads pinned first, then one model; JSON on one stdout line."""
    applied = set_threads(framework, threads)
    from slidescope.models.loaders import Loader

    made = setup(task, framework, slides())
    maker, trainer = made["maker"], made["trainer"]
    log(f"  {task} {framework} {threads} thread(s): {made['train_tiles']} training tiles on "
        f"{made['train_slides']} slides, batch {maker.batch_size}, {maker.crop or maker.size} px, "
        f"{made['steps_per_epoch']} steps an epoch (set up in {made['setup_s']:.0f} s)")
    rounds = []
    # the workers persist across rounds, as across epochs in train(); round 1's --skip covers their start-up
    with Loader(maker, framework, WORKERS, prefetch=PREFETCH) as loader:
        for r in range(args.rounds):
            keys = maker.train_keys(r + 1)[: args.skip + args.steps]
            result = one_round(keys, args.skip, maker, trainer, loader, args.quiet_wait)
            rounds.append(result)
            per_s = {case: result["steps"] / result[case]["seconds"] for case in ("memory", "loader")}
            log(f"    round {r + 1}: memory {per_s['memory']:.2f} steps/s, loader {per_s['loader']:.2f} steps/s "
                f"(ratio {per_s['loader'] / per_s['memory']:.2f}); make "
                f"{1000 * result['make']['seconds'] / result['tiles']:.1f} ms/tile; busy "
                f"{max(result[c]['outside_cores'] for c in ('memory', 'loader')):.2f}")
    report = {"task": task, "framework": framework, "threads": applied, "threads_asked": threads,
              "batch_size": maker.batch_size, "tile_px": maker.size, "crop": maker.crop,
              "train_tiles": made["train_tiles"], "train_slides": made["train_slides"],
              "steps_per_epoch": made["steps_per_epoch"], "skip": args.skip, "setup_s": made["setup_s"],
              "rounds": rounds}
    print(RESULT_MARK + json.dumps(report), flush=True)
    return 0


# ----------------------------------------------------------------------------- parent: report


def run_child(task: str, framework: str, threads: int, passthrough: list[str]) -> dict[str, Any]:
    """One configuration in a fresh interpreter; its figures, or ``{"error": ...}`` when it failed."""
    command = [sys.executable, str(Path(__file__).resolve()), "--child", task, framework, str(threads), *passthrough]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
    sys.stderr.write("".join(line + "\n" for line in done.stderr.splitlines() if line.startswith("  ")))
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT_MARK)]
    if done.returncode or not lines:
        tail = (done.stdout + done.stderr)[-3000:]
        log(f"  child {task} {framework} {threads} failed (exit {done.returncode}):\n{tail}")
        return {"task": task, "framework": framework, "threads_asked": threads, "error": tail}
    return json.loads(lines[-1][len(RESULT_MARK):])


def summarise(result: dict[str, Any]) -> dict[str, Any]:
    """One row: best-round figures, the judged ratio and what bounds it."""
    row = {k: result[k] for k in ("task", "framework", "threads_asked")}
    if "error" in result:
        return {**row, "error": result["error"].strip().splitlines()[-1] if result["error"].strip() else "failed"}
    rounds = result["rounds"]
    batch = result["batch_size"]

    def rates(case: str) -> list[float]:
        return [r["steps"] / r[case]["seconds"] for r in rounds]

    memory, loader, alone = rates("memory"), rates("loader"), rates("loader_alone")
    best = {"memory": max(memory), "loader": max(loader), "loader_alone": max(alone)}
    i_mem, i_load = memory.index(best["memory"]), loader.index(best["loader"])
    ratio = best["loader"] / best["memory"]
    make_ms = min(1000 * r["make"]["seconds"] / r["tiles"] for r in rounds)
    make_cpu_ms = min(1000 * r["make"]["seconds"] * r["make"]["main_cores"] / r["tiles"] for r in rounds)
    train_ms = 1000 / (best["memory"] * batch)
    train_cores = rounds[i_mem]["memory"]["main_cores"]
    # 2 cores shared: each tile costs make_cpu (a worker) + train_ms x train_cores (the trainer) CPU ms
    two_core_bound = min(1.0, 2 * train_ms / (make_cpu_ms + train_ms * train_cores))
    chosen = rounds[i_load]["loader"]
    return {**row, "batch_size": batch, "px": result["crop"] or result["tile_px"],
            "train_tiles": result["train_tiles"], "steps_timed": rounds[0]["steps"], "rounds": len(rounds),
            "memory_steps_per_s": best["memory"], "loader_steps_per_s": best["loader"],
            "loader_alone_steps_per_s": best["loader_alone"],
            "memory_tiles_per_s": best["memory"] * batch, "loader_tiles_per_s": best["loader"] * batch,
            "loader_alone_tiles_per_s": best["loader_alone"] * batch,
            "ratio": ratio, "ratio_of_medians": statistics.median(loader) / statistics.median(memory),
            "target": TARGET, "verdict": "PASS" if ratio >= TARGET else "FAIL",
            "make_ms_per_tile": make_ms, "make_cpu_ms_per_tile": make_cpu_ms, "train_ms_per_tile": train_ms,
            "train_cores": train_cores, "two_core_bound": two_core_bound,
            "waiting_share": chosen["waiting_s"] / chosen["seconds"],
            "loader_main_cores": chosen["main_cores"], "loader_worker_cores": chosen["worker_cores"],
            "busy": max(rounds[i_mem]["memory"]["outside_cores"], chosen["outside_cores"]),
            "same_batches": all(r["same_batches"] for r in rounds)}


def print_table(rows: list[dict[str, Any]]) -> None:
    print("\ntrain_step steps/s: real Loader (2 spawned workers, prefetch 2) / the same batches in memory "
          "(best rounds)")
    print(f"  {'model':<7}{'fw':<6}{'thr':>4}{'batch':>6}{'px':>5}{'memory':>8}{'loader':>8}{'ratio':>7}{'target':>8}"
          f"{'verdict':>8}{'median':>7}{'tiles/s':>8}{'make ms/t':>10}{'train ms/t':>11}{'train c':>8}"
          f"{'bound':>6}{'wait':>6}{'alone':>7}{'busy':>6}")
    for r in rows:
        head = f"  {r['task']:<7}{r['framework']:<6}{r['threads_asked']:>4}"
        if "error" in r:
            print(f"{head}  ERROR: {r['error']}")
            continue
        print(f"{head}{r['batch_size']:>6}{r['px']:>5}{r['memory_steps_per_s']:>8.2f}{r['loader_steps_per_s']:>8.2f}"
              f"{r['ratio']:>7.2f}{'>= ' + format(r['target'], 'g'):>8}{r['verdict']:>8}{r['ratio_of_medians']:>7.2f}"
              f"{r['loader_tiles_per_s']:>8.1f}{r['make_ms_per_tile']:>10.1f}{r['train_ms_per_tile']:>11.1f}"
              f"{r['train_cores']:>8.2f}{r['two_core_bound']:>6.2f}{r['waiting_share']:>6.0%}"
              f"{r['loader_alone_steps_per_s']:>7.2f}{r['busy']:>6.2f}"
              + ("" if r["same_batches"] else "  BATCHES DIFFER"))
    print("\n  memory / loader = train_step steps/s over the steady part of an epoch (first batches untimed);"
          "\n  ratio = loader / memory (judged), median = the same of median rounds; tiles/s = the loader run's;"
          "\n  make ms/t = BatchMaker in one process, wall ms per tile; train ms/t = train_step wall ms per tile"
          "\n  (memory); train c = cores the trainer process kept busy then; bound = 2 x train / (make CPU + train x"
          "\n  train c), the best ratio 2 shared cores allow; wait = share of the loader run spent waiting for"
          "\n  batches; alone = the loader's steps/s with no training; busy = cores other programs took.")
    better = []
    for task in TASKS:
        for framework in FRAMEWORKS:
            pair = [r for r in rows if r["task"] == task and r["framework"] == framework and "error" not in r]
            if len(pair) == 2:
                top = max(pair, key=lambda r: r["loader_steps_per_s"])
                other = min(pair, key=lambda r: r["loader_steps_per_s"])
                better.append(f"{task} {framework}: {top['threads_asked']} thread(s), "
                              f"{top['loader_steps_per_s'] / other['loader_steps_per_s']:.2f}x the loader steps/s of "
                              f"{other['threads_asked']}")
    if better:
        print("\n  better training threads (loader run steps/s): " + "; ".join(better))




def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few steps, one round, 2 threads only: a smoke run")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "training.json", help="JSON output")
    parser.add_argument("--rounds", type=int, help="rounds (epochs) per configuration (default 2; quick 1)")
    parser.add_argument("--skip", type=int, default=WORKERS * PREFETCH, help="untimed batches at the start of an "
                        "epoch (default 4 = workers x prefetch)")
    parser.add_argument("--steps", type=int, help="timed steps per round, after --skip (default 24: 28 keys of "
                        "the recipe's 40-step epochs; quick 6)")
    parser.add_argument("--threads", type=int, nargs="+", help="training threads (default 1 2; quick 2)")
    parser.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS), help="models (default both)")
    parser.add_argument("--frameworks", nargs="+", choices=FRAMEWORKS, default=list(FRAMEWORKS),
                        help="frameworks (default both)")
    parser.add_argument("--quiet-wait", type=float, help="before each case, wait up to this many seconds for other "
                        "programs to keep < 0.25 cores busy (default 5; quick 0)")
    parser.add_argument("--child", nargs=3, metavar=("TASK", "FRAMEWORK", "THREADS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.rounds = args.rounds or (1 if args.quick else 2)
    args.steps = args.steps or (6 if args.quick else 24)
    args.threads = args.threads or ([2] if args.quick else list(THREADS))
    args.quiet_wait = args.quiet_wait if args.quiet_wait is not None else (0.0 if args.quick else 5.0)
    if args.child:
        return child(args.child[0], args.child[1], int(args.child[2]), args)

    env = environment(("numpy", "torch", "tensorflow-cpu", "tensorflow", "keras", "opencv-python-headless",
                       "opencv-python"))
    print(f"slidescope training-loader benchmark - {env['date']}, {env['cpus']} CPUs, Python {env['python']}, "
          f"torch {env['torch']}, tensorflow {env['tensorflow-cpu'] or env['tensorflow']}, keras {env['keras']}; "
          f"{WORKERS} workers, prefetch {PREFETCH}, {len(SLIDE_SEEDS)} slides of {SLIDE_SIZE[0]}x{SLIDE_SIZE[1]}"
          + (" (--quick: figures mean little)" if args.quick else ""), flush=True)
    started = time.perf_counter()
    slides()  # generate once here, not in a child
    passthrough = ["--rounds", str(args.rounds), "--skip", str(args.skip), "--steps", str(args.steps),
                   "--quiet-wait", str(args.quiet_wait)]
    results = []
    for task in args.tasks:
        for framework in args.frameworks:
            for threads in args.threads:
                log(f"{task} {framework}, {threads} training thread(s) (own interpreter) ...")
                results.append(run_child(task, framework, threads, passthrough))
    rows = [summarise(r) for r in results]
    print_table(rows)
    seconds = time.perf_counter() - started
    verdicts = [r.get("verdict", "ERROR") for r in rows]
    print(f"\ntarget loader / memory >= {TARGET:g}: {verdicts.count('PASS')} PASS, {verdicts.count('FAIL')} FAIL"
          + (f", {verdicts.count('ERROR')} ERROR" if "ERROR" in verdicts else "") + f" ({seconds:.0f} s)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {"environment": env, "quick": args.quick, "seconds": seconds, "workers": WORKERS, "prefetch": PREFETCH,
              "skip": args.skip, "rounds": args.rounds, "quiet_wait_s": args.quiet_wait, "quiet_cores": QUIET_CORES,
              "slides": [f"{SLIDE_SIZE[0]}x{SLIDE_SIZE[1]} seed {s}" for s in SLIDE_SEEDS],
              "summary": rows, "children": results}
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"figures written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
