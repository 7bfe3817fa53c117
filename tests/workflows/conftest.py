"""Fixtures of the command-line tests: a small generated slide, and a private copy of it for the
tests that try to make a command write over its input; and those of the batch tests: generated slides, a
Dask cluster and one batch run, each made once per session (shared by the pytest-xdist workers through a
file lock where they are files)."""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import os
import shutil
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def small_slide(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1024 x 768 generated Aperio SVS at 0.25 µm/px (seeded; never written to by a test)."""
    from slidescope.wsi.synthetic import make_slide

    return make_slide(tmp_path_factory.mktemp("cli-slide") / "small.svs", 1024, 768, seed=1).path


@pytest.fixture
def slide_copy(small_slide: Path, tmp_path: Path) -> Path:
    """A copy of :func:`small_slide` in this test's own folder, free to be damaged."""
    copy = tmp_path / "S.svs"
    shutil.copyfile(small_slide, copy)
    return copy


# -- the batch tests (test_batch, test_pipeline, test_run_cli): generated slides, a Dask cluster, one batch --

#: name -> (seed, tumour) of the batch tests' slides: 3072 x 2304 px at 0.5 µm/px (the physical size of a
#: 6144 x 4608 slide at 0.25), chosen so that each tumour slide has a flagged coarse tile and a few
#: hundred nuclei (seed 21: 4 coarse tiles, 1 flagged, 14 fine tiles, p ~ 0.97; seed 31: 3, 1, 18,
#: p ~ 1.0) and each normal slide none (p < 0.01). At 0.25 µm/px slides this small hold 2 or 3
#: coarse tiles and the tissue model flags none.
BATCH_SLIDES = {"tumour-a": (21, True), "normal-a": (12, False), "tumour-b": (31, True), "normal-b": (14, False)}
BATCH_SLIDE_SIZE = (3072, 2304)
BATCH_SLIDE_MPP = 0.5


def _lock(path: Path):
    """An open file holding an exclusive lock (``fcntl.flock``) on ``path``, until it is closed."""
    handle = open(path, "a+")
    fcntl.flock(handle, fcntl.LOCK_EX)
    return handle


@contextlib.contextmanager
def _locked(path: Path):
    with _lock(path):
        yield


def _made_once(root: Path, name: str, make) -> Path:
    """``root/name``, made by ``make(folder)`` by the first pytest-xdist worker that asks, reused by the others."""
    folder = root / name
    with _locked(root / f"{name}.lock"):
        if not (root / f"{name}.done").exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            make(folder)
            (root / f"{name}.done").touch()
    return folder


def _require_torch() -> None:
    """Skip unless torch is installed (the shipped merged model is a torch one); found without importing it."""
    if importlib.util.find_spec("torch") is None:
        pytest.skip("torch is not installed: the shipped merged slide model needs it")


@pytest.fixture(scope="session")
def require_torch() -> None:
    _require_torch()


@pytest.fixture(scope="session")
def shared_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder this test session's pytest-xdist workers share (the session's own folder without xdist)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="session")
def batch_slides(shared_tmp: Path) -> dict[str, Path]:
    """The generated slides of :data:`BATCH_SLIDES` (never written to by a test), ``corrupt`` (the first
    third of ``tumour-a``), ``no-mpp`` (a small normal slide whose metadata has no mpp: 0.5 µm/px),
    ``blank`` (a small slide with almost no tissue) and ``missing`` (a path where no file is)."""
    from slidescope.wsi.synthetic import make_slide

    def make(folder: Path) -> None:
        for name, (seed, tumour) in BATCH_SLIDES.items():
            make_slide(folder / f"{name}.svs", *BATCH_SLIDE_SIZE, seed=seed, tumour=tumour, mpp=BATCH_SLIDE_MPP)
        data = (folder / "tumour-a.svs").read_bytes()
        (folder / "corrupt.svs").write_bytes(data[: len(data) // 3])
        make_slide(folder / "no-mpp.svs", 2048, 1536, seed=14, tumour=False, mpp=None)
        make_slide(folder / "blank.svs", 2048, 1536, seed=5, tumour=False, tissue_fraction=0.002, mpp=BATCH_SLIDE_MPP)

    folder = _made_once(shared_tmp, "batch-slides", make)
    return {**{name: folder / f"{name}.svs" for name in [*BATCH_SLIDES, "corrupt", "no-mpp", "blank"]},
            "missing": folder / "missing.svs"}


@pytest.fixture(scope="session")
def batch_client():
    """The local Dask cluster ``run_batch`` starts (its own ``_engine``: spawned processes, the workers'
    malloc settings, a task that kills its worker 3 times given up), 2 workers x 1 thread, for the batch
    runs where a cluster of their own is not the point (:func:`batch_run` and :func:`batch_reruns`)."""
    from slidescope.workflows.batch import BatchEvents, BatchOptions, _engine

    with _engine(None, BatchOptions(workers=2, threads_per_worker=1), BatchEvents()) as (client, _):
        yield client


#: The inputs of the shared batch run, in order.
BATCH_INPUTS = ("tumour-a", "normal-a", "tumour-b", "corrupt", "missing", "no-mpp", "blank")


@pytest.fixture(scope="session")
def batch_inputs() -> tuple[str, ...]:
    """The slide names (:func:`batch_slides` keys, and slide ids) of :func:`batch_run`'s inputs, in order."""
    return BATCH_INPUTS


@pytest.fixture(scope="session")
def batch_run(shared_tmp: Path, batch_slides: dict[str, Path], request: pytest.FixtureRequest) -> Path:
    """The output folder of one ``run_batch`` over :data:`BATCH_INPUTS` (two tumour slides, a normal one, and
    four that fail: corrupt, missing, without mpp, without tissue), shared by the tests and the xdist
    workers: never written to by a test (copy it with :func:`copy_run` first).

    The process that makes it goes on at once with :func:`batch_reruns`, on the same cluster (taking
    their lock before it lets the others see the run), so that one cluster loads the model for all.
    """
    _require_torch()
    folder = shared_tmp / "batch-run"
    reruns = None
    with _locked(shared_tmp / "batch-run.lock"):
        if not (shared_tmp / "batch-run.done").exists():
            from slidescope.workflows import run_batch

            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            run_batch([str(batch_slides[name]) for name in BATCH_INPUTS], folder / "out",
                      client=request.getfixturevalue("batch_client"))
            reruns = _lock(shared_tmp / "batch-reruns.lock")
            (shared_tmp / "batch-run.done").touch()
    if reruns is not None:
        with reruns:
            _make_reruns(shared_tmp, folder / "out", batch_slides, request.getfixturevalue("batch_client"))
    return folder / "out"


def _make_reruns(shared_tmp: Path, run_out: Path, batch_slides: dict[str, Path], client) -> None:
    import batch_reruns

    folder = shared_tmp / "batch-reruns"
    if (shared_tmp / "batch-reruns.done").exists():
        return
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    batch_reruns.run_all(client, batch_slides, BATCH_INPUTS, run_out, folder)
    (shared_tmp / "batch-reruns.done").touch()


@pytest.fixture(scope="session")
def batch_reruns(shared_tmp: Path, batch_run: Path, batch_slides: dict[str, Path],
                 request: pytest.FixtureRequest) -> Path:
    """The folder of the runs that test_batch.py checks after :func:`batch_run` (``batch_reruns.py``):
    resume, no resume, another configuration, staging folders left by a killed run, a manifest with the
    cascade off, killed workers."""
    with _locked(shared_tmp / "batch-reruns.lock"):  # made by batch_run's maker, unless it failed to
        if not (shared_tmp / "batch-reruns.done").exists():
            _make_reruns(shared_tmp, batch_run, batch_slides, request.getfixturevalue("batch_client"))
    return shared_tmp / "batch-reruns"


@pytest.fixture
def copy_run(batch_run: Path, tmp_path: Path):
    """``copy_run()``: a private copy of :func:`batch_run`'s folder (file times kept), free to be changed."""

    def copy() -> Path:
        target = tmp_path / "out"
        shutil.copytree(batch_run, target, symlinks=True)
        return target

    return copy
