"""Pieces the model benchmarks share (bench/models.py, bench/training.py): thread pinning per
framework, waiting for a quiet machine, and the environment a result records."""

from __future__ import annotations

import os
import platform
import time
from datetime import datetime, timezone
from typing import Any

from _tiling_work import CpuWatch

__all__ = ["QUIET_CORES", "set_threads", "wait_for_quiet", "environment"]

QUIET_CORES = 0.25  # "quiet": other programs keep fewer cores than this busy


def set_threads(framework: str, threads: int) -> dict[str, int]:
    """Pin the framework's intra-op threads; TensorFlow only accepts this before it starts."""
    if framework == "torch":
        import torch

        torch.set_num_threads(threads)
        return {"intra_op": torch.get_num_threads(), "inter_op": torch.get_num_interop_threads()}
    from slidescope.models._keras.adapter import import_keras

    _, tf = import_keras()  # sets KERAS_BACKEND before Keras' first import
    tf.config.threading.set_intra_op_parallelism_threads(threads)  # RuntimeError once TF has started
    return {"intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
            "inter_op": tf.config.threading.get_inter_op_parallelism_threads()}


def wait_for_quiet(limit: float, window: float = 0.5) -> float:
    """Wait (at most ``limit`` s) until other programs keep under :data:`QUIET_CORES` cores busy for ``window`` s.

    The machine may be shared (test suites of other work come and go): a case that starts in a
    quiet moment is more likely to be timed on the cores it asked for. Returns the seconds waited.
    """
    start = time.perf_counter()
    while time.perf_counter() - start < limit:
        watch = CpuWatch()
        time.sleep(window)
        if watch.outside_cores() < QUIET_CORES:
            break
    return time.perf_counter() - start


def environment(packages: tuple[str, ...]) -> dict[str, Any]:
    """Date, machine, CPU count, load and the versions of ``packages`` (None when not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    def installed(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    return {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": platform.platform(),
            "cpus": os.cpu_count(), "load_avg_at_start": os.getloadavg(), "python": platform.python_version(),
            **{name: installed(name) for name in packages}}
