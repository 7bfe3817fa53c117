"""Fixtures of the command-line tests: a small generated slide, and a private copy of it for the
tests that try to make a command write over its input."""

from __future__ import annotations

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
