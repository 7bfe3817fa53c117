"""Stitching per-tile values: placement, averaging, maps, context crop, zarr streaming, memory, errors."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import zarr

from slidescope.tiling import stitching as stitch_module
from slidescope.tiling.plan import TilePlanError, plan_tiles
from slidescope.tiling.scales import Scale
from slidescope.tiling.stitching import StitchError, canvas_size, stitch
from slidescope.tiling.tissue import TissueMask
from slidescope.wsi import ParameterError, ResolutionError, SlideError, from_array


def make_slide(width: int, height: int, mpp: float = 0.5):
    """A plain in-memory slide; broadcast (no memory) so that huge ones cost nothing."""
    return from_array(np.broadcast_to(np.uint8(235), (height, width, 3)), mpp=mpp, name=f"slide-{width}x{height}")


def leftovers(folder) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.startswith(".")]


# ----------------------------------------------------------------------------- placement


def test_constant_tiles_cover_the_slide_without_a_mask():
    slide = make_slide(1000, 600)
    plan = plan_tiles(slide, None, Scale(2.0, 64))  # 256 level-0 px tiles
    result = stitch(plan, 0, np.full(len(plan), 3.0), out_mpp=4.0)
    assert isinstance(result, np.ndarray) and result.dtype == np.float32
    assert result.shape == (75, 125) and canvas_size(plan, 4.0) == (125, 75)
    assert (result == 3.0).all()


def test_constant_tiles_where_covered_and_nan_elsewhere():
    slide = make_slide(1024, 768)
    mask = np.zeros((6, 8), bool)  # 128 level-0 px per mask cell
    mask[0:2, 0:2] = True  # one 256 px tile at (0, 0)
    mask[4:6, 4:8] = True  # two tiles at (512, 512) and (768, 512)
    plan = plan_tiles(slide, TissueMask.from_array(mask, 64.0, (1024, 768)), Scale(2.0, 64), min_tissue=0.5)
    assert sorted(zip(plan.table.l0_x, plan.table.l0_y)) == [(0, 0), (512, 512), (768, 512)]
    result = stitch(plan, 0, np.full(len(plan), 7.0), out_mpp=4.0, chunk=10)  # 1/8 of level 0
    expected = np.full((96, 128), np.nan, np.float32)
    expected[0:32, 0:32] = 7.0
    expected[64:96, 64:128] = 7.0
    np.testing.assert_array_equal(result, expected)


def test_overlapping_tiles_average():
    slide = make_slide(384, 256)
    plan = plan_tiles(slide, None, Scale(2.0, 64, overlap=32))  # tiles at x = 0 and 128, 256 wide
    assert list(plan.table.l0_x) == [0, 128]
    result = stitch(plan, 0, np.array([0.0, 1.0]), out_mpp=1.0)  # 1/2 of level 0
    assert result.shape == (128, 192)
    assert (result[:, :64] == 0.0).all()
    assert (result[:, 64:128] == 0.5).all()
    assert (result[:, 128:] == 1.0).all()


def test_nan_values_count_as_no_value():
    slide = make_slide(384, 256)
    plan = plan_tiles(slide, None, Scale(2.0, 64, overlap=32))
    result = stitch(plan, 0, np.array([np.nan, 1.0]), out_mpp=1.0)
    assert np.isnan(result[:, :64]).all()
    assert (result[:, 64:] == 1.0).all()


def test_vectors_per_tile_give_channels():
    slide = make_slide(512, 256)
    plan = plan_tiles(slide, None, Scale(2.0, 64))
    values = np.array([[1.0, 10.0, 100.0], [2.0, 20.0, 200.0]])
    result = stitch(plan, 0, values, out_mpp=2.0)
    assert result.shape == (64, 128, 3) and result.dtype == np.float32
    np.testing.assert_array_equal(result[10, 10], [1, 10, 100])
    np.testing.assert_array_equal(result[10, 100], [2, 20, 200])


def test_tile_ids_select_and_order_rows():
    slide = make_slide(512, 512)
    plan = plan_tiles(slide, None, Scale(2.0, 64))  # 4 tiles: ids 0..3 row by row
    result = stitch(plan, 0, np.array([5.0, 9.0]), tile_ids=np.array([3, 0]), out_mpp=4.0)
    assert (result[:32, :32] == 9.0).all() and (result[32:, 32:] == 5.0).all()
    assert np.isnan(result[:32, 32:]).all() and np.isnan(result[32:, :32]).all()


def test_tiles_on_the_edge_are_clipped():
    slide = make_slide(300, 200)
    plan = plan_tiles(slide, None, Scale(2.0, 64))  # tiles of 256 px hang past the slide
    result = stitch(plan, 0, np.arange(len(plan), dtype=float), out_mpp=2.0)
    assert result.shape == (50, 75)
    assert (result[:, :64] == 0.0).all() and (result[:, 64:] == 1.0).all()


# ----------------------------------------------------------------------------- maps


def quadrant_plan():
    slide = make_slide(512, 512)
    return plan_tiles(slide, None, Scale(2.0, 64))  # 2 x 2 tiles, 128 output px each at out_mpp 1.0


def test_map_quadrant_lands_in_the_tile_quadrant_exactly():
    plan = quadrant_plan()
    maps = np.zeros((4, 128, 128), np.float32)
    maps[:, :64, 64:] = np.arange(1, 5)[:, None, None]  # top-right quadrant of tile k holds k + 1
    result = stitch(plan, 0, maps, out_mpp=1.0)
    assert result.shape == (256, 256)
    for k, (x, y) in enumerate(zip(plan.table.l0_x // 2, plan.table.l0_y // 2)):
        box = result[y:y + 128, x:x + 128]
        assert (box[:64, 64:] == k + 1).all()
        assert (box[64:, :] == 0).all() and (box[:, :64] == 0).all()


def test_small_maps_are_enlarged_into_place():
    plan = quadrant_plan()
    maps = np.zeros((4, 8, 8), np.float32)
    maps[:, :4, 4:] = 1.0
    result = stitch(plan, 0, maps, out_mpp=1.0)
    for x, y in zip(plan.table.l0_x // 2, plan.table.l0_y // 2):
        box = result[y:y + 128, x:x + 128]
        assert box[:56, 72:].min() > 0.99  # the quadrant, away from the linear seam
        assert box[72:, :].max() < 0.01 and box[:, :56].max() < 0.01


def test_large_maps_are_shrunk_with_area_averaging():
    plan = quadrant_plan()
    maps = np.zeros((4, 256, 256), np.float32)
    maps[:, ::2, :] = 2.0  # alternate rows: the box average is 1
    result = stitch(plan, 0, maps, out_mpp=4.0)
    assert result.shape == (64, 64)
    np.testing.assert_allclose(result, 1.0, atol=1e-6)


def test_maps_with_many_channels():
    plan = quadrant_plan()
    maps = np.broadcast_to(np.arange(6, dtype=np.float32), (4, 8, 8, 6))
    result = stitch(plan, 0, maps, out_mpp=2.0)
    assert result.shape == (128, 128, 6)
    np.testing.assert_allclose(result, np.broadcast_to(np.arange(6), (128, 128, 6)), atol=1e-6)


@pytest.mark.parametrize("map_size, tolerance", [(96, 1e-4), (192, 1e-4), (40, 1e-3), (290, 0.25)])
def test_context_margin_is_cropped(map_size, tolerance):
    # One tile, 64 px at 2 µm/px plus 16 px of context: the map covers 96 px of which the middle
    # 64 are the tile. Each map is a ramp u (read-box pixels), so after cropping output column c
    # (out_mpp = the scale's mpp) must hold u = 16 + c + 0.5. 96 and 192 crop whole map pixels;
    # 40 (a margin of 6.67 px) crops after resizing; 290 (48.3 px) rounds the crop to map pixels.
    slide = make_slide(256, 256)
    plan = plan_tiles(slide, None, Scale(2.0, 64, context=16))
    assert len(plan) == 1
    ramp = (np.arange(map_size, dtype=np.float32) + 0.5) * 96 / map_size
    maps = np.broadcast_to(ramp, (1, map_size, map_size))
    result = stitch(plan, 0, maps, out_mpp=2.0)
    assert result.shape == (64, 64)
    np.testing.assert_allclose(result[32], 16.5 + np.arange(64), atol=tolerance)


def test_context_margin_values_never_reach_the_canvas():
    slide = make_slide(512, 512)
    plan = plan_tiles(slide, None, Scale(2.0, 64, context=8))
    maps = np.full((4, 80, 80), 100.0, np.float32)
    maps[:, 8:72, 8:72] = 1.0
    result = stitch(plan, 0, maps, out_mpp=2.0)
    assert (result == 1.0).all()


def test_nan_in_maps_is_no_value():
    plan = quadrant_plan()
    maps = np.ones((4, 16, 16), np.float32)
    maps[:, :, :8] = np.nan
    result = stitch(plan, 0, maps, out_mpp=2.0)  # 16 px maps enlarged to 64 px boxes
    for x, y in zip(plan.table.l0_x // 4, plan.table.l0_y // 4):
        box = result[y:y + 64, x:x + 64]
        assert np.isnan(box[:, :30]).all() and (box[:, 34:] == 1.0).all()


# ----------------------------------------------------------------------------- zarr streaming


def overlapping_maps_case():
    slide = make_slide(700, 500)
    plan = plan_tiles(slide, None, Scale(2.0, 32, overlap=12, context=4))
    rng = np.random.default_rng(0)
    maps = rng.random((len(plan), 10, 10, 2)).astype(np.float32)
    maps[::5] = np.nan
    return plan, maps


def test_zarr_streaming_equals_in_memory_and_is_atomic(tmp_path):
    plan, maps = overlapping_maps_case()
    in_memory = stitch(plan, 0, maps, out_mpp=1.0)
    assert np.isfinite(in_memory).mean() > 0.5 and np.isnan(in_memory).any()
    target = tmp_path / "heat.zarr"
    streamed = stitch(plan, 0, maps, out_mpp=1.0, out=target, chunk=64)
    assert isinstance(streamed, zarr.Array) and streamed.dtype == np.float32
    assert streamed.shape == in_memory.shape and streamed.chunks == (64, 64, 2)
    np.testing.assert_array_equal(streamed[:], in_memory)
    np.testing.assert_array_equal(stitch(plan, 0, maps, out_mpp=1.0, chunk=7), in_memory)
    with pytest.raises(Exception):
        streamed[0:1] = 0.0  # opened read-only
    assert leftovers(tmp_path) == []
    # Writing again replaces the store, still leaving nothing behind.
    again = stitch(plan, 0, np.zeros(len(plan)), out_mpp=1.0, out=str(target))
    assert again.shape == in_memory.shape[:2] and (again[:] == 0).all()
    assert leftovers(tmp_path) == [] and zarr.open_array(str(target), mode="r").shape == in_memory.shape[:2]


def test_failed_stream_leaves_no_folder(tmp_path, monkeypatch):
    plan, maps = overlapping_maps_case()

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(stitch_module, "_fill", broken)
    with pytest.raises(RuntimeError):
        stitch(plan, 0, maps, out_mpp=1.0, out=tmp_path / "heat.zarr")
    assert list(tmp_path.iterdir()) == []


def test_big_canvas_streams_to_a_temporary_zarr(monkeypatch):
    plan, maps = overlapping_maps_case()
    expected = stitch(plan, 0, maps, out_mpp=1.0)
    monkeypatch.setattr(stitch_module, "MAX_IN_MEMORY_BYTES", 1000)
    with pytest.warns(UserWarning, match="streaming it to"):
        result = stitch(plan, 0, maps, out_mpp=1.0)
    try:
        assert isinstance(result, zarr.Array)
        np.testing.assert_array_equal(result[:], expected)
    finally:
        import shutil
        from pathlib import Path

        shutil.rmtree(Path(result.store.root).parent)


def test_streaming_a_huge_slide_never_allocates_level_0(tmp_path):
    # 40,000 x 40,000 level-0 px (4.8 GB as RGB, 6.4 GB as float32) at 8 x mpp0: a 5,000 x 5,000
    # canvas (95 MiB) streamed in bands of 256 rows must peak far below even the canvas.
    slide = make_slide(40_000, 40_000, mpp=0.25)
    plan = plan_tiles(slide, None, Scale(2.0, 256))
    values = np.linspace(0.0, 1.0, len(plan))
    tracemalloc.start()
    try:
        result = stitch(plan, 0, values, out_mpp=2.0, out=tmp_path / "huge.zarr", chunk=256)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.shape == (5000, 5000)
    assert peak < 48 * 2**20, f"peak {peak / 2**20:.0f} MiB"
    assert result[4999, 4999] == np.float32(values[-1]) and result[0, 0] == 0.0
    assert leftovers(tmp_path) == []


# ----------------------------------------------------------------------------- errors


@pytest.fixture
def small_plan():
    return plan_tiles(make_slide(512, 512), None, Scale(2.0, 64))


@pytest.mark.parametrize("values, match", [
    (np.zeros(3), r"values: expected one row per tile of scale 0 .*\(4 rows\), got 3 rows"),
    (np.zeros((4, 2, 2, 2, 2)), r"values: expected .* got shape \(4, 2, 2, 2, 2\)"),
    (np.zeros(()), r"got shape \(\)"),
    (np.array(["a"] * 4), r"values: expected a numeric array, got dtype <U1"),
    (np.zeros((4, 0, 3)), r"expected non-empty maps"),
])
def test_bad_values(small_plan, values, match):
    with pytest.raises(StitchError, match=match):
        stitch(small_plan, 0, values, out_mpp=1.0)


def test_dataframe_values_are_refused(small_plan):
    import pandas as pd

    with pytest.raises(StitchError, match="got a DataFrame"):
        stitch(small_plan, 0, pd.DataFrame({"tile_id": [0, 1, 2, 3], "value": [1.0] * 4}), out_mpp=1.0)


@pytest.mark.parametrize("out_mpp", [0, -1.0, float("nan"), float("inf"), "2", True, None])
def test_bad_out_mpp(small_plan, out_mpp):
    with pytest.raises(ResolutionError, match=r"out_mpp \(µm per pixel\): expected a .*number.* got"):
        stitch(small_plan, 0, np.zeros(4), out_mpp=out_mpp)


def test_unknown_tile_ids(small_plan):
    with pytest.raises(StitchError, match=r"tile_ids: .* 2 unknown id\(s\): 7, -1"):
        stitch(small_plan, 0, np.zeros(3), tile_ids=[0, 7, -1], out_mpp=1.0)


def test_tile_ids_of_another_scale():
    plan = plan_tiles(make_slide(512, 512), None, [Scale(2.0, 64, name="tissue"), Scale(1.0, 64, name="cell")])
    coarse_ids = plan.tiles("tissue").tile_id.to_numpy()
    with pytest.raises(StitchError, match=r"scale cell.*belong to another scale"):
        stitch(plan, "cell", np.zeros(len(coarse_ids)), tile_ids=coarse_ids, out_mpp=1.0)


@pytest.mark.parametrize("tile_ids, match", [
    ([0, 1], r"values: expected one row per tile id \(2 rows\), got 4 rows"),
    ([[0, 1, 2, 3]], r"tile_ids: expected a 1-D array"),
    ([0.0, 1.0, 2.0, 3.0], r"tile_ids: expected .* integer tile ids, got float64"),
])
def test_bad_tile_ids(small_plan, tile_ids, match):
    with pytest.raises(StitchError, match=match):
        stitch(small_plan, 0, np.zeros(4), tile_ids=tile_ids, out_mpp=1.0)


@pytest.mark.parametrize("chunk", [0, -5, 2.5, True])
def test_bad_chunk(small_plan, chunk):
    with pytest.raises(ParameterError, match=r"chunk \(rows per band\): expected an? (integer|number)"):
        stitch(small_plan, 0, np.zeros(4), out_mpp=1.0, chunk=chunk)


def test_bad_plan_scale_and_out(small_plan, tmp_path):
    with pytest.raises(StitchError, match="plan: expected a TilePlan, got DataFrame"):
        stitch(small_plan.table, 0, np.zeros(4), out_mpp=1.0)
    with pytest.raises(TilePlanError, match="scale: expected one of"):
        stitch(small_plan, 3, np.zeros(4), out_mpp=1.0)
    with pytest.raises(ParameterError, match="out: expected a str or pathlib.Path"):
        stitch(small_plan, 0, np.zeros(4), out_mpp=1.0, out=np.zeros((4, 4)))
    occupied = tmp_path / "notes"
    occupied.mkdir()
    (occupied / "keep.txt").write_text("mine")
    with pytest.raises(StitchError, match="exists and is not a zarr array"):
        stitch(small_plan, 0, np.zeros(4), out_mpp=1.0, out=occupied)
    assert (occupied / "keep.txt").read_text() == "mine" and leftovers(tmp_path) == []


def test_errors_are_slide_errors_and_value_errors():
    assert issubclass(StitchError, SlideError) and issubclass(StitchError, ValueError)
