"""Tile plans are bounded: a scale with more candidate tiles than MAX_TILES_PER_SCALE is refused early."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from slidescope.tiling import plan as plan_module
from slidescope.tiling.plan import MAX_TILES_PER_SCALE, TilePlanError, plan_tiles
from slidescope.tiling.scales import Scale
from slidescope.tiling.tissue import TissueMask
from slidescope.wsi import from_array


def _slide(width: int, height: int, mpp: float = 0.25):
    return from_array([np.zeros((height, width, 3), np.uint8)], mpp=mpp, name=f"slide-{width}x{height}")


def _full_mask(width: int, height: int, mpp0: float = 0.25, cell: int = 8) -> TissueMask:
    return TissueMask.from_array(np.ones((height // cell, width // cell), bool), mpp0 * cell, (width, height))


def test_the_default_limit_refuses_one_pixel_tiles_without_allocating() -> None:
    slide = _slide(6000, 4000)  # np.zeros: pages untouched until read
    mask = _full_mask(6000, 4000, cell=16)
    tracemalloc.start()
    try:
        with pytest.raises(TilePlanError) as caught:
            plan_tiles(slide, mask, [Scale(0.25, 1)])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    message = str(caught.value)
    assert "slide-6000x4000" in message and "1 px at 0.25 µm/px" in message
    assert "24,000,000" in message and f"{MAX_TILES_PER_SCALE:,}" in message
    assert "larger tiles or a coarser mpp" in message
    assert peak < 5_000_000, f"refusing the plan allocated {peak} bytes"


def test_the_limit_counts_the_coarse_grid(monkeypatch: pytest.MonkeyPatch) -> None:
    slide = _slide(400, 320)
    monkeypatch.setattr(plan_module, "MAX_TILES_PER_SCALE", 42)
    assert len(plan_tiles(slide, None, Scale(0.25, 60))) == 42  # 7 x 6 tiles: at the limit, planned
    with pytest.raises(TilePlanError, match=r"'x': 50 px at 0.25 µm/px .* 56 candidate tiles over the 400x320 px "
                                            r"slide \(8x7\); expected at most 42"):
        plan_tiles(slide, None, Scale(0.25, 50, name="x"))  # no mask: every candidate would be kept


def test_finer_scales_count_tiles_per_parent_times_kept_parents(monkeypatch: pytest.MonkeyPatch) -> None:
    slide = _slide(480, 320)
    scales = [Scale(1.0, 40), Scale(0.25, 40)]  # 3 x 2 parents of 160 px, 4 x 4 children each
    monkeypatch.setattr(plan_module, "MAX_TILES_PER_SCALE", 95)
    with pytest.raises(TilePlanError, match=r"96 candidate tiles \(16 per parent x 6 kept parents\)"):
        plan_tiles(slide, _full_mask(480, 320), scales)
    left = np.zeros((40, 60), bool)
    left[:, :20] = True  # tissue under the first column of parents only: 2 kept parents, 32 children
    plan = plan_tiles(slide, TissueMask.from_array(left, 2.0, (480, 320)), scales)
    assert len(plan.tiles(0)) == 2 and len(plan.tiles(1)) == 32
    monkeypatch.setattr(plan_module, "MAX_TILES_PER_SCALE", 96)
    assert len(plan_tiles(slide, _full_mask(480, 320), scales).tiles(1)) == 96


def test_real_plans_are_far_below_the_limit() -> None:
    # a 100,000 px slide at 0.25 µm/px in 224 px tiles at 0.5 µm/px: about 50,000 candidates
    cols = -(-100_000 // (224 * 2))
    assert cols * cols * 10 < MAX_TILES_PER_SCALE
