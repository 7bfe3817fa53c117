"""Fixtures of the wsi tests: helpers shared by the backend contract and the OpenSlide parity tests."""

from __future__ import annotations

import numpy as np
import pytest


def _sample_regions(slide, level: int, count: int, rng: np.random.Generator):
    """Random level-0 locations and level-sized boxes, some crossing tile borders and slide edges."""
    lvl = slide.levels[level]
    size = (min(lvl.width, 300), min(lvl.height, 200))
    ds = lvl.downsample
    xs = rng.integers(0, max(1, lvl.width - size[0] + 1), count)
    ys = rng.integers(0, max(1, lvl.height - size[1] + 1), count)
    return [(int(round(x * ds)), int(round(y * ds))) for x, y in zip(xs, ys)], size


@pytest.fixture(scope="session")
def sample_regions():
    """``sample_regions(slide, level, count, rng)``: ``count`` random level-0 locations of one
    ``(width, height)`` size (at most 300 x 200 level pixels) inside level ``level``."""
    return _sample_regions
