"""Read semantics of the shared path, on in-memory slides whose pixels are known exactly."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from slidescope.wsi import (
    ClosedSlideError,
    OutOfBoundsError,
    RegionError,
    ResolutionError,
    from_array,
)


@pytest.fixture
def pyramid():
    rng = np.random.default_rng(0)
    level0 = rng.integers(0, 255, (400, 600, 3), dtype=np.uint8)
    level1 = cv2.resize(level0, (300, 200), interpolation=cv2.INTER_AREA)
    level2 = cv2.resize(level0, (150, 100), interpolation=cv2.INTER_AREA)
    return level0, level1, level2


@pytest.fixture
def slide(pyramid):
    return from_array(list(pyramid), mpp=0.25, name="pyramid")


def test_level0_is_the_default(slide, pyramid):
    np.testing.assert_array_equal(slide.read_region((10, 20), (30, 40)), pyramid[0][20:60, 10:40])


def test_level_read_maps_level0_location(slide, pyramid):
    out = slide.read_region((100, 60), (50, 20), level=1)
    np.testing.assert_array_equal(out, pyramid[1][30:50, 50:100])


def test_mpp_of_a_stored_level_reads_it_without_resampling(slide, pyramid):
    np.testing.assert_array_equal(slide.read_region((100, 60), (50, 20), mpp=0.5), pyramid[1][30:50, 50:100])


def test_mpp_between_levels_reads_finer_level_and_shrinks_with_inter_area(slide, pyramid):
    out = slide.read_region((40, 80), (60, 30), mpp=0.375)  # level 0 (0.25) shrunk by 1.5
    expected = cv2.resize(pyramid[0][80:125, 40:130], (60, 30), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(out, expected)
    out = slide.read_region((40, 80), (60, 30), mpp=0.75)  # level 1 (0.5) shrunk by 1.5
    expected = cv2.resize(pyramid[1][40:85, 20:110], (60, 30), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(out, expected)
    out = slide.read_region((40, 80), (30, 20), mpp=3.0)  # level 2 (1.0) shrunk by 3
    expected = cv2.resize(pyramid[2][20:80, 10:100], (30, 20), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(out, expected)


def test_coarser_than_every_level_uses_the_coarsest(slide):
    assert slide.best_level_for_mpp(100.0).index == 2
    assert slide.best_level_for_mpp(0.985).index == 1  # level 2 (1.0) is more than 1 % coarser
    assert slide.best_level_for_mpp(0.995).index == 2


def test_partly_outside_is_white(slide, pyramid):
    out = slide.read_region((-5, 390), (20, 20))
    assert (out[:, :5] == 255).all() and (out[10:] == 255).all()
    np.testing.assert_array_equal(out[:10, 5:], pyramid[0][390:400, 0:15])


@pytest.mark.parametrize("location", [(600, 0), (0, 400), (-20, -20), (10_000, 10_000)])
def test_wholly_outside_is_an_error(slide, location):
    with pytest.raises(OutOfBoundsError, match="pyramid.*wholly outside"):
        slide.read_region(location, (20, 20))


@pytest.mark.parametrize("size", [(0, 10), (10, -1), (-3, -3), (2.5, 4), ("a", 3), (5,)])
def test_bad_sizes(slide, size):
    with pytest.raises(RegionError, match="size"):
        slide.read_region((0, 0), size)


def test_finer_than_level0_is_an_error(slide):
    with pytest.raises(ResolutionError, match="finer than level 0"):
        slide.read_region((0, 0), (10, 10), mpp=0.1)


@pytest.mark.parametrize("mpp", [0, -1, float("nan"), "x"])
def test_bad_mpp(slide, mpp):
    with pytest.raises(ResolutionError, match="mpp"):
        slide.read_region((0, 0), (10, 10), mpp=mpp)


@pytest.mark.parametrize("level", [-1, 3, 1.5, True])
def test_bad_level(slide, level):
    with pytest.raises(RegionError, match="level"):
        slide.read_region((0, 0), (10, 10), level=level)


def test_level_and_mpp_together_is_an_error(slide):
    with pytest.raises(RegionError, match="either level= or mpp="):
        slide.read_region((0, 0), (10, 10), level=1, mpp=0.5)


def test_fractional_location_is_an_error(slide):
    with pytest.raises(RegionError, match="integer"):
        slide.read_tiles([(0.5, 1)], (10, 10))


def test_read_tiles_batches(slide, pyramid):
    batch = slide.read_tiles(np.array([[0, 0], [580, 390], [100, 100]]), (32, 16))
    assert batch.shape == (3, 16, 32, 3)
    np.testing.assert_array_equal(batch[2], pyramid[0][100:116, 100:132])
    assert (batch[1][10:] == 255).all()


def test_closed_slide_refuses_use(slide):
    with slide:
        slide.read_region((0, 0), (4, 4))
    assert slide.closed
    for use in (lambda: slide.read_region((0, 0), (4, 4)), lambda: slide.levels, lambda: slide.to_dask(0),
                lambda: slide.thumbnail(64), lambda: slide.vendor):
        with pytest.raises(ClosedSlideError, match="pyramid.*closed"):
            use()


def test_thumbnail_keeps_aspect(slide, pyramid):
    thumb = slide.thumbnail(150)
    assert thumb.shape == (100, 150, 3)
    np.testing.assert_array_equal(thumb, pyramid[2])
    assert slide.thumbnail((60, 60)).shape == (40, 60, 3)
    assert slide.thumbnail(10_000).shape == pyramid[0].shape


def test_to_dask_map_overlap_matches_whole_level_filter(slide, pyramid):
    """The array-code route researchers use: a halo filter over a level equals the filter on the whole."""
    import dask.array as da

    level = slide.to_dask(0, chunk_target=128)
    assert level.numblocks[0] > 1 and level.numblocks[1] > 1
    grey = level.mean(axis=2, dtype=np.float32)
    blurred = da.map_overlap(lambda block: cv2.blur(block, (5, 5), borderType=cv2.BORDER_REFLECT_101),
                             grey, depth=2, boundary="reflect")
    expected = cv2.blur(pyramid[0].mean(axis=2, dtype=np.float32), (5, 5), borderType=cv2.BORDER_REFLECT_101)
    np.testing.assert_allclose(blurred.compute(scheduler="threads")[2:-2, 2:-2], expected[2:-2, 2:-2], atol=1e-3)


def test_array_slide_rejects_non_rgb():
    with pytest.raises(Exception, match="uint8"):
        from_array(np.zeros((10, 10), np.uint8), mpp=1.0)
    with pytest.raises(Exception, match="level 1"):
        from_array([np.zeros((10, 10, 3), np.uint8), np.zeros((20, 20, 3), np.uint8)], mpp=1.0)


def test_level_locations_round_trip_on_fractional_downsamples():
    from slidescope.wsi.slide import level_origin

    rng = np.random.default_rng(3)
    level0 = rng.integers(0, 255, (3012, 4016, 3), dtype=np.uint8)
    level1 = rng.integers(0, 255, (750, 1000, 3), dtype=np.uint8)  # downsample 4.016 across, 4.016 down
    slide = from_array([level0, level1], mpp=0.25, name="fractional")
    downsample = slide.levels[1].downsample
    assert downsample == pytest.approx(4.016)
    for k in (0, 1, 5, 123, 747):  # a level pixel's level-0 position, rounded as a caller would
        l0 = round(k * downsample)
        np.testing.assert_array_equal(slide.read_region((l0, l0), (2, 2), level=1), level1[k : k + 2, k : k + 2])
    # Whole-number downsamples keep plain integer division, for every offset.
    l0 = np.arange(-9, 40)
    np.testing.assert_array_equal(level_origin(l0, 4.0), l0 // 4)
