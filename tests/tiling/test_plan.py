"""Tile plans: Hypothesis properties of the geometry, the cascade, Parquet, and the errors."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from slidescope.tiling.plan import TilePlan, TilePlanError, plan_tiles
from slidescope.tiling.scales import Scale, parse_scale
from slidescope.tiling.tissue import TissueMask
from slidescope.wsi import ParameterError, RegionError, ResolutionError, from_array


def make_slide(width: int, height: int, mpp: float):
    level0 = np.full((height, width, 3), 235, np.uint8)
    level1 = cv2.resize(level0, (max(1, width // 4), max(1, height // 4)), interpolation=cv2.INTER_AREA)
    return from_array([level0, level1], mpp=mpp, name=f"slide-{width}x{height}")


@st.composite
def planning_cases(draw):
    mask_w, mask_h = draw(st.integers(4, 24)), draw(st.integers(4, 24))
    cell = draw(st.sampled_from([8, 16, 32]))
    mask = draw(st.lists(st.booleans(), min_size=mask_w * mask_h, max_size=mask_w * mask_h))
    mask = np.array(mask, dtype=bool).reshape(mask_h, mask_w)
    mpp0 = draw(st.sampled_from([0.25, 0.5]))
    coarse_mpp = draw(st.sampled_from([1.0, 2.0, 4.0]))
    coarse_tile = draw(st.integers(8, 96))
    fine_mpp = draw(st.sampled_from([m for m in (0.25, 0.5, 1.0, 2.0) if mpp0 <= m <= coarse_mpp]))
    max_fine_tile = int(coarse_tile * coarse_mpp / fine_mpp)
    fine_tile = draw(st.integers(4, max(4, min(max_fine_tile, 128))))
    fine_overlap = draw(st.integers(0, fine_tile - 1))
    min_tissue = draw(st.sampled_from([0.0, 0.1, 0.25, 0.5, 1.0]))
    return mask, cell, mpp0, Scale(coarse_mpp, coarse_tile), Scale(fine_mpp, fine_tile, fine_overlap), min_tissue


def build(case):
    mask_array, cell, mpp0, coarse, fine, min_tissue = case
    width, height = mask_array.shape[1] * cell, mask_array.shape[0] * cell
    slide = make_slide(width, height, mpp0)
    mask = TissueMask.from_array(mask_array, mpp0 * cell, (width, height))
    if fine.extent_um() > coarse.extent_um():
        fine = Scale(fine.mpp, max(1, int(coarse.extent_um() / fine.mpp)), 0)
    return slide, mask, coarse, fine, min_tissue


def tissue_centres(mask: TissueMask) -> np.ndarray:
    rows, cols = np.nonzero(mask.array)
    sx, sy = mask.downsample_xy
    return np.stack([(cols + 0.5) * sx, (rows + 0.5) * sy], axis=1)


def covered(points: np.ndarray, tiles) -> np.ndarray:
    x, y = points[:, :1], points[:, 1:]
    return ((x >= tiles.l0_x.to_numpy()) & (x < (tiles.l0_x + tiles.l0_width).to_numpy())
            & (y >= tiles.l0_y.to_numpy()) & (y < (tiles.l0_y + tiles.l0_height).to_numpy())).any(axis=1)


SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(planning_cases())
def test_geometry_properties(case):
    slide, mask, coarse, fine, min_tissue = build(case)
    plan = plan_tiles(slide, mask, [fine, coarse], min_tissue=min_tissue)
    width, height = slide.dimensions
    assert plan.scales[0].extent_um() >= plan.scales[1].extent_um()  # ordered coarse to fine
    assert plan.table.tile_id.is_unique
    for index in range(2):
        tiles = plan.tiles(index)
        # no duplicate tiles
        assert not tiles.duplicated(["l0_x", "l0_y"]).any()
        # boxes start inside the slide; only the coarse edge tiles may hang over (padded white)
        assert (tiles.l0_x >= 0).all() and (tiles.l0_y >= 0).all()
        assert (tiles.l0_x < width).all() and (tiles.l0_y < height).all()
        # counts match min_tissue
        assert (tiles.tissue_fraction >= min_tissue - 1e-6).all() and (tiles.tissue_fraction > 0).all()
    coarse_tiles, fine_tiles = plan.tiles(0), plan.tiles(1)
    # every fine tile inside its parent
    parents = coarse_tiles.set_index("tile_id").loc[fine_tiles.parent_id]
    assert (fine_tiles.l0_x.to_numpy() >= parents.l0_x.to_numpy()).all()
    assert (fine_tiles.l0_y.to_numpy() >= parents.l0_y.to_numpy()).all()
    assert ((fine_tiles.l0_x + fine_tiles.l0_width).to_numpy() <= (parents.l0_x + parents.l0_width).to_numpy()).all()
    assert ((fine_tiles.l0_y + fine_tiles.l0_height).to_numpy() <= (parents.l0_y + parents.l0_height).to_numpy()).all()
    assert (coarse_tiles.parent_id == -1).all()


@SETTINGS
@given(planning_cases())
def test_every_tissue_pixel_lies_in_a_tile_at_every_scale(case):
    slide, mask, coarse, fine, _ = build(case)
    plan = plan_tiles(slide, mask, [coarse, fine], min_tissue=0.0)
    centres = tissue_centres(mask)
    if len(centres) == 0:
        assert len(plan) == 0
        return
    assert covered(centres, plan.tiles(0)).all()
    assert covered(centres, plan.tiles(1)).all()


@SETTINGS
@given(planning_cases())
def test_kept_coarse_tiles_are_exactly_those_over_the_threshold(case):
    slide, mask, coarse, _, min_tissue = build(case)
    everything = plan_tiles(slide, None, coarse)
    fractions = mask.fractions_in(everything.table[["l0_x", "l0_y", "l0_width", "l0_height"]].to_numpy())
    expected = int(((fractions >= min_tissue) & (fractions > 0)).sum())
    assert len(plan_tiles(slide, mask, coarse, min_tissue=min_tissue)) == expected


def test_tiles_align_with_the_read_level_grid():
    slide = make_slide(4096, 2048, 0.25)
    plan = plan_tiles(slide, None, [Scale(1.0, 128), Scale(0.5, 100, overlap=10)])
    coarse = plan.tiles(0)
    assert (coarse.read_level == 1).all() and (coarse.l0_x % 4 == 0).all() and (coarse.l0_y % 4 == 0).all()
    assert (coarse.l0_width == 512).all()
    fine = plan.tiles(1)
    assert (fine.read_level == 0).all() and (fine.l0_width == 200).all()


def test_children_gives_the_cascade():
    slide = make_slide(2048, 2048, 0.5)
    plan = plan_tiles(slide, None, [Scale(2.0, 128), Scale(0.5, 128)])
    first = plan.tiles(0).tile_id.iloc[:2].tolist()
    children = plan.children(first)
    assert len(children) == 2 * 16  # a 256 µm parent holds 4 x 4 children of 64 µm
    assert set(children.parent_id) == set(first)
    assert len(plan.children([])) == 0


def test_mask_none_keeps_every_tile_and_edges_hang_over():
    slide = make_slide(1000, 700, 0.5)
    plan = plan_tiles(slide, None, Scale(1.0, 256))  # 512 level-0 px tiles: 2 x 2 grid
    tiles = plan.tiles(0)
    assert len(tiles) == 4 and tiles.tissue_fraction.isna().all()
    assert (tiles.l0_x + tiles.l0_width).max() == 1024


def test_empty_mask_is_a_valid_answer():
    slide = make_slide(512, 512, 0.5)
    mask = TissueMask.from_array(np.zeros((16, 16), bool), 16.0, (512, 512))
    plan = plan_tiles(slide, mask, [Scale(2.0, 64), Scale(0.5, 64)])
    assert len(plan) == 0 and len(plan.tiles(1)) == 0


def test_parquet_round_trip(tmp_path):
    slide = make_slide(2048, 1024, 0.5)
    mask = TissueMask.from_array(np.eye(8, 16, dtype=bool), 64.0, (2048, 1024), slide_path=slide.path)
    plan = plan_tiles(slide, mask, [Scale(2.0, 64, name="tissue"), Scale(0.5, 64, overlap=8, name="cell")],
                      min_tissue=0.0)
    path = plan.save(tmp_path / "plans" / "plan.parquet")
    loaded = TilePlan.load(path)
    assert loaded.scales == plan.scales and loaded.slide == plan.slide
    assert loaded.table.equals(plan.table)
    assert loaded.tiles("cell").equals(plan.tiles(1))
    assert not list((tmp_path / "plans").glob(".*partial"))


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(TilePlanError, match="missing.parquet: no such plan file"):
        TilePlan.load(tmp_path / "missing.parquet")
    bogus = tmp_path / "bogus.parquet"
    bogus.write_text("hello")
    with pytest.raises(TilePlanError, match="bogus.parquet: not a Parquet tile plan"):
        TilePlan.load(bogus)


def test_scale_finer_than_level0_is_an_error():
    slide = make_slide(512, 512, 0.5)
    with pytest.raises(ResolutionError, match="finer than level 0"):
        plan_tiles(slide, None, Scale(0.25, 64))


@pytest.mark.parametrize("kwargs, match", [
    ({"mpp": 0.5, "tile": 0}, "tile"), ({"mpp": 0.5, "tile": 64, "overlap": 64}, "overlap"),
    ({"mpp": 0, "tile": 64}, "mpp"), ({"mpp": 0.5, "tile": 64, "context": -1}, "context"),
    ({"mpp": 0.5, "tile": 64, "min_tissue": 2.0}, "min_tissue"),
    ({"mpp": True, "tile": 64}, "mpp"), ({"mpp": "0.5", "tile": 64}, "mpp"), ({"mpp": float("nan"), "tile": 64}, "mpp"),
    ({"mpp": 0.5, "tile": 64.5}, "tile"), ({"mpp": 0.5, "tile": True}, "tile"), ({"mpp": 0.5, "tile": 10**9}, "tile"),
])
def test_bad_scales(kwargs, match):
    with pytest.raises(ParameterError, match=match) as caught:
        Scale(**kwargs)
    assert not isinstance(caught.value, RegionError)  # a parameter, not a region request


def test_scale_takes_numpy_numbers_as_plain_ones():
    scale = Scale(np.float32(0.5), np.int64(256), np.int64(32), min_tissue=np.float64(0.5))
    assert scale == Scale(0.5, 256, 32, min_tissue=0.5)
    assert type(scale.mpp) is float and type(scale.tile) is int and type(scale.overlap) is int


def test_mask_of_another_slide_is_an_error():
    slide = make_slide(512, 512, 0.5)
    other = TissueMask.from_array(np.ones((8, 8), bool), 32.0, (1024, 512), slide_path="other.svs")
    with pytest.raises(TilePlanError, match="another slide.*other.svs"):
        plan_tiles(slide, other, Scale(1.0, 64))


def test_scales_nest_coarse_to_fine_by_mpp_whatever_the_order_passed():
    slide = make_slide(2048, 2048, 0.25)
    tissue, cell = Scale(2.0, 64, name="tissue"), Scale(0.5, 128, name="cell")  # 128 µm and 64 µm
    for given in ([tissue, cell], [cell, tissue]):
        plan = plan_tiles(slide, None, given)
        assert plan.scales == (tissue, cell)  # the coarse mpp is the parent, in either order
        assert (plan.tiles("cell").parent_id.isin(plan.tiles("tissue").tile_id)).all()
        assert (plan.tiles(cell).mpp == 0.5).all() and (plan.tiles(tissue).mpp == 2.0).all()
        for index, scale in enumerate(plan.scales):  # scale column, mpp column and scales agree
            assert (plan.table[plan.table.scale == index].mpp == scale.mpp).all()


def test_a_coarse_mpp_with_smaller_tiles_than_the_finer_scale_is_refused():
    # Before, scales were ordered by tile extent: the 2 µm/px scale (64 µm tiles) became the child of the
    # 0.5 µm/px one (128 µm tiles), silently inverting the cascade. Now the order is stated and refused.
    slide = make_slide(2048, 2048, 0.25)
    with pytest.raises(TilePlanError, match=r"coarse to fine.*'cell': 256 px at 0.5 µm/px \(128 µm\) under "
                                            r"'tissue': 32 px at 2 µm/px \(64 µm\)"):
        plan_tiles(slide, None, [Scale(0.5, 256, name="cell"), Scale(2.0, 32, name="tissue")])
    with pytest.raises(TilePlanError, match="coarse to fine"):
        plan_tiles(slide, None, [Scale(1.0, 64), Scale(0.5, 64), Scale(0.25, 1000)])


def test_at_equal_mpp_the_larger_tiles_are_the_parents():
    slide = make_slide(2048, 2048, 0.25)
    plan = plan_tiles(slide, None, [Scale(0.5, 64), Scale(0.5, 256)])
    assert [s.tile for s in plan.scales] == [256, 64]


def test_plan_parameters_are_parsed():
    slide = make_slide(512, 512, 0.5)
    for bad in (True, "0.25", float("nan"), 1.5):
        with pytest.raises(ParameterError, match="min_tissue"):
            plan_tiles(slide, None, Scale(1.0, 64), min_tissue=bad)
    with pytest.raises(ParameterError, match=r"scales\[0\]: expected a Scale"):
        plan_tiles(slide, None, [(1.0, 64)])
    with pytest.raises(TilePlanError, match="distinct names"):
        plan_tiles(slide, None, [Scale(1.0, 64, name="a"), Scale(0.5, 64, name="a")])


def test_parse_scale():
    assert parse_scale("0.5:256:32") == Scale(0.5, 256, 32)
    assert parse_scale("2:224") == Scale(2.0, 224)
    with pytest.raises(ParameterError, match="MPP:TILE"):
        parse_scale("0.5")
