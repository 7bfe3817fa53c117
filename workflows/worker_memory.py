"""How the worker processes of a batch run allocate memory: glibc's malloc settings given at their start.

A model's activations are large blocks (the cell model's first layer holds 32 tiles x 8 channels x
256 x 256 float32 = 64 MiB). glibc serves a block above its mmap threshold with fresh pages from the
kernel and unmaps it on free, so every batch faults its whole working set in again. Dask makes this
the rule: its nanny sets ``MALLOC_TRIM_THRESHOLD_``, and setting any threshold freezes glibc's
otherwise adaptive mmap threshold at 128 KiB. And Dask runs tasks in threads, whose malloc arenas are
built of 64 MiB heaps, so a block above that is mapped afresh whatever the threshold.

Measured here (2 cores, torch 2.13 CPU, one thread, the shipped cell model, a batch of 32 tiles of
256 px, in a worker-like thread): 2.31 s a batch with Dask's environment, 0.95 s of it in the kernel
and 485,000 page faults; 1.41 s, 0.01 s in the kernel and 5,700 faults with :data:`WORKER_MALLOC`.
The price: a worker keeps freed memory for its next batch instead of handing it back, and its heap
fragments as slides of different sizes come and go: one thread running the pipeline over four
40,000 x 30,000 slides grew to 1.7 GB, then 2.4 GB (447 MB settled, 820 MB peak with Dask's
environment). So after each task a worker holding more than :data:`RESIDENT_LIMIT` gives its free
memory back (:func:`release_freed_memory`): over the same slides it peaked at 2.1 GB and trimmed 4
times in 60 batches. Trimming after every task instead costs 30 % of the time.

These are environment variables because glibc reads them once, at process start; ``run_batch``'s local
cluster passes them to its workers (:func:`worker_malloc`). Workers of
an existing cluster (``--scheduler``) get them where they are started (the README shows how).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import platform
from collections.abc import Iterator, Mapping

#: The most freed memory a worker's heap keeps for reuse, and the largest block it serves from the heap.
HELD_BYTES = 1 << 30

#: Resident bytes above which a worker hands its freed memory back after a task.
RESIDENT_LIMIT = 2 << 30

#: glibc malloc environment of a worker that runs the models.
WORKER_MALLOC: Mapping[str, str] = {
    # one arena: every thread allocates from the main heap, which grows past 64 MiB (threads' arenas do not)
    "MALLOC_ARENA_MAX": "1",
    # blocks up to HELD_BYTES come from the heap, not from fresh mappings ...
    "MALLOC_MMAP_THRESHOLD_": str(HELD_BYTES),
    # ... and up to HELD_BYTES of free memory at the heap's top stays there for the next batch
    "MALLOC_TRIM_THRESHOLD_": str(HELD_BYTES),
}


@contextlib.contextmanager
def worker_malloc(settings: Mapping[str, str] = WORKER_MALLOC) -> Iterator[None]:
    """Worker processes started inside this block (e.g. a ``LocalCluster``'s) start with ``settings``.

    Dask's nanny sets ``distributed.nanny.pre-spawn-environ`` in this process's environment before it
    spawns a worker, a value already in that environment winning over its configuration (and it leaves
    them there: a cluster started earlier leaves ``MALLOC_TRIM_THRESHOLD_=65536`` behind). So ``settings``
    go both into that configuration and into ``os.environ``, and ``os.environ`` is restored on leaving:
    nannies keep the variables they read at their start, for the workers they restart too.

    Parameters
    ----------
    settings : mapping
        The variables (default :data:`WORKER_MALLOC`).
    """
    import dask

    saved = {key: os.environ.get(key) for key in settings}
    environ = {**dask.config.get("distributed.nanny.pre-spawn-environ", {}), **settings}
    try:
        os.environ.update(settings)
        with dask.config.set({"distributed.nanny.pre-spawn-environ": environ}):
            yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@functools.lru_cache(maxsize=1)
def _glibc() -> ctypes.CDLL | None:
    """This process's C library when it is glibc (whose ``malloc_trim`` this module calls), else ``None``."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def resident_bytes() -> int:
    """This process's resident memory, bytes."""
    import psutil

    return int(psutil.Process().memory_info().rss)


def release_freed_memory(limit: int = RESIDENT_LIMIT) -> bool:
    """Hand glibc's free memory back to the system when this process holds more than ``limit`` bytes.

    Called after each task on a worker (:data:`WORKER_MALLOC` makes the heap keep what a batch frees; this
    bounds what it keeps). A no-op off glibc.

    Parameters
    ----------
    limit : int
        Resident bytes above which to trim (default :data:`RESIDENT_LIMIT`).

    Returns
    -------
    bool
        Whether it trimmed.
    """
    libc = _glibc()
    if libc is None or resident_bytes() <= limit:
        return False
    libc.malloc_trim(0)
    return True
