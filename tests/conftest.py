"""Fixtures shared by the whole suite: the third-party data folder and generated slides."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """The folder of third-party test files: $SLIDESCOPE_TEST_DATA, else ../shared/data."""
    return Path(os.environ.get("SLIDESCOPE_TEST_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    folder = shared_data_dir()
    if not folder.is_dir():
        pytest.skip(f"third-party test data not found at {folder} (set SLIDESCOPE_TEST_DATA)")
    return folder


def _data_file(name: str) -> Path:
    path = shared_data_dir() / name
    if not path.exists():
        pytest.skip(f"test data file {path} not found (set SLIDESCOPE_TEST_DATA)")
    return path


def _load_rgb(name: str):
    import cv2
    import numpy as np

    path = _data_file(name)
    pixels = cv2.imread(str(path), cv2.IMREAD_COLOR)  # BGR, alpha dropped
    if pixels is None:
        pytest.skip(f"{path} is not a colour image OpenCV can read")
    return np.ascontiguousarray(cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB))


@pytest.fixture(scope="session")
def data_file():
    """``data_file(name)``: a file of the shared data folder, skipping the test when it is absent.

    A fixture rather than an importable helper, so that plain ``pytest`` from the repository
    root works (nothing imports ``tests.conftest``).
    """
    return _data_file


@pytest.fixture(scope="session")
def load_rgb():
    """``load_rgb(name)``: a shared-data image as ``(H, W, 3)`` uint8 RGB (alpha dropped), skipping when absent."""
    return _load_rgb


@pytest.fixture(scope="session")
def synthetic_svs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small generated Aperio SVS with two levels (seeded, so identical every run)."""
    from slidescope.wsi.synthetic import make_slide

    path = tmp_path_factory.mktemp("synthetic") / "slide.svs"
    make_slide(path, 4096, 3072, seed=7, mpp=0.25)
    return path


@pytest.fixture(scope="session")
def synthetic_generic_tiff(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small generated generic tiled pyramidal TIFF with resolution tags."""
    from slidescope.wsi.synthetic import make_slide

    path = tmp_path_factory.mktemp("synthetic-generic") / "slide.tiff"
    make_slide(path, 3000, 2000, seed=3, mpp=0.5, format="generic-tiff")
    return path


@pytest.fixture(scope="session")
def dask_client():
    """One small process-based Dask cluster for the tests that need real pickling."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as cluster, distributed.Client(cluster) as client:
        yield client
