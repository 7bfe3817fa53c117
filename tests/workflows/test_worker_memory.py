"""The workers' malloc settings: set where a cluster starts, seen by its workers, and what they do."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import textwrap

import pytest

from slidescope.workflows.worker_memory import (HELD_BYTES, RESIDENT_LIMIT, WORKER_MALLOC, release_freed_memory,
                                                resident_bytes, worker_malloc)


def test_worker_malloc_sets_the_variables_then_restores_this_process_environment(monkeypatch):
    import dask
    import distributed  # noqa: F401 - its configuration defaults (the nanny's own variables)

    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "65536")  # what an earlier Dask cluster leaves behind
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    with worker_malloc():
        assert {key: os.environ.get(key) for key in WORKER_MALLOC} == dict(WORKER_MALLOC)
        spawn = dask.config.get("distributed.nanny.pre-spawn-environ")
        assert {key: spawn[key] for key in WORKER_MALLOC} == dict(WORKER_MALLOC)
        assert str(spawn["OMP_NUM_THREADS"]) == "1"  # Dask's own variables are kept
    assert os.environ["MALLOC_TRIM_THRESHOLD_"] == "65536" and "MALLOC_ARENA_MAX" not in os.environ
    assert dask.config.get("distributed.nanny.pre-spawn-environ")["MALLOC_TRIM_THRESHOLD_"] == 65536

    with pytest.raises(RuntimeError), worker_malloc():
        raise RuntimeError("a cluster that failed to start")
    assert os.environ["MALLOC_TRIM_THRESHOLD_"] == "65536" and "MALLOC_ARENA_MAX" not in os.environ


def test_the_workers_of_run_batchs_cluster_start_with_the_settings(batch_client):
    # the session's cluster may still be restarting a worker that an earlier test killed
    batch_client.wait_for_workers(2, timeout=120)
    for key, value in WORKER_MALLOC.items():
        seen = batch_client.run(os.getenv, key)
        assert len(seen) == 2 and set(seen.values()) == {value}, (key, seen)


_FAULTS = textwrap.dedent("""
    import ctypes, resource, threading

    libc = ctypes.CDLL(None)
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    faults = []

    def work():  # in a thread, as a Dask task runs: 64 MiB blocks allocated, written and freed, as torch does
        for _ in range(6):
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            block = libc.malloc(64 << 20)
            ctypes.memset(block, 1, 64 << 20)
            libc.free(block)
            faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    print(max(faults[1:]))
""")


def _child(script: str, environ: dict[str, str]) -> str:
    """What ``script`` prints, run in a fresh interpreter whose malloc variables are ``environ`` alone."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    done = subprocess.run([sys.executable, "-c", script], env={**env, **environ}, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _page_faults(environ: dict[str, str]) -> int:
    return int(_child(_FAULTS, environ))


GLIBC = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                           reason="the settings are glibc malloc's")


@GLIBC
def test_a_worker_with_the_settings_reuses_freed_blocks_instead_of_faulting_them_in_again():
    pages = (64 << 20) // os.sysconf("SC_PAGE_SIZE")
    assert 64 << 20 <= HELD_BYTES
    dask_alone = _page_faults({"MALLOC_TRIM_THRESHOLD_": "65536"})  # what Dask's nanny sets
    settled = _page_faults(dict(WORKER_MALLOC))
    assert dask_alone >= 0.9 * pages, dask_alone  # every block comes fresh from the kernel
    assert settled <= 0.05 * pages, settled  # the freed block is reused


_KEPT = textwrap.dedent("""
    import ctypes, sys
    from slidescope.workflows.worker_memory import release_freed_memory, resident_bytes

    libc = ctypes.CDLL(None)
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    start = resident_bytes()
    blocks = [libc.malloc(32 << 20) for _ in range(8)]  # 256 MiB written, then freed
    for block in blocks:
        ctypes.memset(block, 1, 32 << 20)
    for block in blocks:
        libc.free(block)
    held = resident_bytes()
    below = release_freed_memory(limit=held + (64 << 20))
    after_below = resident_bytes()
    above = release_freed_memory(limit=start + (64 << 20))
    print(start, held, below, after_below, above, resident_bytes())
""")


@GLIBC
def test_a_worker_above_the_limit_gives_its_freed_memory_back_and_one_below_keeps_it():
    start, held, below, after_below, above, after = _child(_KEPT, dict(WORKER_MALLOC)).split()
    start, held, after_below, after = int(start), int(held), int(after_below), int(after)
    assert held - start >= 200 << 20  # the heap kept the freed 256 MiB
    assert below == "False" and after_below >= held - (16 << 20)  # under the limit: kept for the next batch
    assert above == "True" and after - start <= 64 << 20  # over it: handed back


def test_release_freed_memory_does_nothing_below_the_limit():
    assert RESIDENT_LIMIT >= HELD_BYTES
    assert release_freed_memory(limit=resident_bytes() + (1 << 30)) is False
