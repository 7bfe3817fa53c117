"""Checkpoint merge benchmark: two ResNet-50-sized checkpoints into one, per format (bench/merge.py).

The two checkpoints are the weights of ``keras.applications.ResNet50(weights=None)`` (25.6 M values,
seeded, built here: nothing is downloaded), the second one perturbed, written once per format in
``bench/.data/merge/``: torch (``torch.save`` of torch names and layouts), safetensors (the same),
a name-based TensorFlow checkpoint and a Keras ``.weights.h5`` (TF names and layouts).

For each format, a child process (so its peak memory is its own) imports everything, notes its
resident memory, then runs one of:

- **slidescope**: ``combine_checkpoints({"tissue": a, "cell": b}, out)`` (read, remap under the
  scopes, check every entry, write one checkpoint: torch -> torch, safetensors -> safetensors,
  TF -> TF, Keras -> safetensors);
- **baseline**: what one writes by hand with the format's own library in the same child: load both
  checkpoints whole, prefix the names, save them together (``torch.load``/``torch.save``,
  ``safetensors.numpy.load_file``/``save_file``, ``tf.train.load_checkpoint`` + ``SaveV2``,
  ``h5py`` reads + ``save_file``).

It reports seconds and the peak resident memory above the child's start, as a multiple of the two
checkpoints' size. Targets (issue "merge/"): under 5 s, peak at most 1.5x the checkpoints' size.

Usage: ``python bench/merge.py [--rounds N]``; results in bench/results/merge.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE / ".data" / "merge"
FORMATS = ("torch", "safetensors", "tf", "keras-h5")
OUTPUT = {"torch": "torch", "safetensors": "safetensors", "tf": "tf", "keras-h5": "safetensors"}


def _rss_mb() -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _peak_mb() -> float:
    """The peak resident memory since the last :func:`_reset_peak` (Linux ``VmHWM``)."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _reset_peak() -> None:
    """Reset ``VmHWM`` to the current resident size (``clear_refs`` 5), so the imports' peak is not counted."""
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")


def make_data() -> dict[str, list[str]]:
    """The two checkpoints in every format (made once)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    DATA.mkdir(parents=True, exist_ok=True)
    paths = {"torch": [str(DATA / f"{n}.pt") for n in "ab"], "safetensors": [str(DATA / f"{n}.safetensors") for n in "ab"],
             "tf": [str(DATA / f"{n}.ckpt") for n in "ab"], "keras-h5": [str(DATA / f"{n}.weights.h5") for n in "ab"]}
    if all(os.path.exists(p if not p.endswith(".ckpt") else p + ".index") for ps in paths.values() for p in ps):
        return paths
    import keras
    import numpy as np
    import torch
    from safetensors.numpy import save_file

    from slidescope.merge import Checkpoint
    from slidescope.merge.remap import port
    from slidescope.merge.report import apply_plan, plan
    from slidescope.merge.writing import write_checkpoint

    keras.utils.set_random_seed(0)
    model = keras.applications.ResNet50(weights=None)
    for index, name in enumerate("ab"):
        if index:
            for variable in model.weights:
                variable.assign(variable.numpy() * 1.01)
        model.save_weights(paths["keras-h5"][index])
        arrays = {f"{layer.name}/{w.name}": np.asarray(w.numpy()) for layer in model.layers for w in layer.weights}
        tf_checkpoint = Checkpoint.from_arrays(arrays, framework="tf")
        write_checkpoint(paths["tf"][index], [(i, (lambda n=i.name: arrays[n])) for i in tf_checkpoint.infos], format="tf")
        remap = port("tf", "torch")
        targets = []
        for mapped, info in zip(remap.map(tf_checkpoint.infos), tf_checkpoint.infos):
            shape = info.shape
            for transform in mapped.transforms:
                shape = transform.shape(shape)
            targets.append(type(info)(mapped.target, shape, info.dtype, info.kind))
        mapping, _ = plan(tf_checkpoint, remap, targets)
        torch_arrays = dict(apply_plan(tf_checkpoint, mapping, targets))
        save_file(torch_arrays, paths["safetensors"][index])
        torch.save({k: torch.from_numpy(v) for k, v in torch_arrays.items()}, paths["torch"][index])
    return paths


def size_mb(paths: list[str]) -> float:
    total = 0
    for path in paths:
        files = [path] if os.path.exists(path) else [str(p) for p in Path(path).parent.glob(Path(path).name + ".*")]
        total += sum(os.path.getsize(f) for f in files)
    return total / 2**20


def child(fmt: str, method: str, paths: list[str], out: str) -> dict[str, float]:
    """One merge in this (child) process: seconds and peak resident MB above the start."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np  # noqa: F401 - imported before the baseline memory is taken
    import safetensors.numpy  # noqa: F401
    import tensorflow as tf
    import torch

    from slidescope.merge.combining import combine_checkpoints

    _reset_peak()
    start_rss = _rss_mb()
    started = time.perf_counter()
    if method == "slidescope":
        combine_checkpoints({"tissue": paths[0], "cell": paths[1]}, out, format=OUTPUT[fmt])
    elif fmt == "torch":
        merged = {}
        for scope, path in zip(("tissue", "cell"), paths):
            merged.update({f"{scope}.{k}": v for k, v in torch.load(path, weights_only=True).items()})
        torch.save(merged, out)
    elif fmt == "safetensors":
        from safetensors.numpy import load_file, save_file

        merged = {}
        for scope, path in zip(("tissue", "cell"), paths):
            merged.update({f"{scope}.{k}": v for k, v in load_file(path).items()})
        save_file(merged, out)
    elif fmt == "tf":
        names, tensors = [], []
        for scope, path in zip(("tissue", "cell"), paths):
            reader = tf.train.load_checkpoint(path)
            for key in reader.get_variable_to_shape_map():
                names.append(f"{scope}/{key}")
                tensors.append(tf.constant(reader.get_tensor(key)))
        tf.raw_ops.SaveV2(prefix=out, tensor_names=names, shape_and_slices=[""] * len(names), tensors=tensors)
    else:
        import h5py
        from safetensors.numpy import save_file

        merged = {}
        for scope, path in zip(("tissue", "cell"), paths):
            with h5py.File(path) as handle:
                handle.visititems(lambda name, obj, s=scope: merged.__setitem__(f"{s}/{name}", obj[()])
                                  if hasattr(obj, "shape") else None)
        save_file(merged, out)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "peak_mb": max(0.0, _peak_mb() - start_rss), "start_rss_mb": start_rss}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=2, help="runs per format and method (the best is kept)")
    parser.add_argument("--child", nargs=4, metavar=("FORMAT", "METHOD", "OUT", "PATHS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        fmt, method, out, paths = args.child
        print(json.dumps(child(fmt, method, paths.split(","), out)))
        return 0
    paths = make_data()
    results = []
    for fmt in FORMATS:
        size = size_mb(paths[fmt])
        row = {"format": fmt, "checkpoints_mb": round(size, 1)}
        for method in ("slidescope", "baseline"):
            best = None
            for round_ in range(args.rounds):
                out = str(DATA / f"out-{fmt}-{method}-{round_}" ) + (".ckpt" if OUTPUT[fmt] == "tf" else ".bin")
                done = subprocess.run([sys.executable, __file__, "--child", fmt, method, out, ",".join(paths[fmt])],
                                      capture_output=True, text=True, check=True)
                measured = json.loads(done.stdout.strip().splitlines()[-1])
                for leftover in DATA.glob(f"out-{fmt}-{method}-{round_}*"):
                    leftover.unlink()
                if best is None or measured["seconds"] < best["seconds"]:
                    best = measured
            row[f"{method}_s"] = round(best["seconds"], 2)
            row[f"{method}_peak_mb"] = round(best["peak_mb"], 1)
            row[f"{method}_peak_ratio"] = round(best["peak_mb"] / size, 2)
        row["time_ratio"] = round(row["slidescope_s"] / row["baseline_s"], 2)
        row["meets"] = row["slidescope_s"] < 5.0 and row["slidescope_peak_ratio"] <= 1.5
        results.append(row)
        print(json.dumps(row), flush=True)
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "merge.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
