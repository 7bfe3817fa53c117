"""Backend conformance: every backend reads every file it claims as OpenSlide does.

Each case is (file, backend). Same dimensions, levels and mpp as OpenSlide reports; same pixels
as ``openslide.read_region`` within JPEG decoder tolerance; ``to_dask`` equals ``read_region``;
``read_tiles`` equals a loop of ``read_region``; a slide survives a trip into a Dask worker.
"""

from __future__ import annotations

import pickle

import numpy as np
import openslide
import pytest

from slidescope.wsi import open_slide

#: Mean absolute difference per channel allowed between two JPEG decoders.
JPEG_TOLERANCE = 1.5

REAL_CASES = [
    ("CMU-1-Small-Region.svs", "tiff"),
    ("CMU-1-Small-Region.svs", "openslide"),
    ("small.svs", "tiff"),
    ("small.svs", "openslide"),
    ("boxes.tiff", "tiff"),
    ("boxes.tiff", "openslide"),
    ("small_HE_levels.tiff", "tiff"),
    ("test3-DAPI-2-(387).ndpi", "openslide"),
    ("sm_image.dcm", "openslide"),
    ("boxes_0.dcm", "openslide"),
    ("boxes_1.dcm", "openslide"),
]
SYNTHETIC_CASES = [("synthetic_svs", "tiff"), ("synthetic_svs", "openslide"),
                   ("synthetic_generic_tiff", "tiff"), ("synthetic_generic_tiff", "openslide")]


@pytest.fixture(params=REAL_CASES + SYNTHETIC_CASES, ids=lambda case: f"{case[0]}-{case[1]}")
def case(request, data_file):
    name, backend = request.param
    path = request.getfixturevalue(name) if name.startswith("synthetic") else data_file(name)
    with open_slide(path, backend=backend) as slide, openslide.OpenSlide(str(path)) as reference:
        yield slide, reference


def openslide_rgb(reference: openslide.OpenSlide, location, level: int, size) -> np.ndarray:
    """OpenSlide's pixels composited on white, as slidescope promises for outside parts."""
    rgba = np.asarray(reference.read_region(location, level, size)).astype(np.float32)
    alpha = rgba[..., 3:4] / 255.0
    return np.round(rgba[..., :3] * alpha + 255.0 * (1.0 - alpha)).astype(np.uint8)


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.astype(np.int16) - b.astype(np.int16)).reshape(-1, 3).mean(axis=0)


def sample_regions(slide, level: int, count: int, rng: np.random.Generator):
    """Random level-0 locations and level-sized boxes, some crossing tile borders and slide edges."""
    lvl = slide.levels[level]
    size = (min(lvl.width, 300), min(lvl.height, 200))
    ds = lvl.downsample
    xs = rng.integers(0, max(1, lvl.width - size[0] + 1), count)
    ys = rng.integers(0, max(1, lvl.height - size[1] + 1), count)
    return [(int(round(x * ds)), int(round(y * ds))) for x, y in zip(xs, ys)], size


def test_metadata_matches_openslide(case):
    slide, reference = case
    assert slide.dimensions == reference.dimensions
    assert [lvl.dimensions for lvl in slide.levels] == list(reference.level_dimensions)
    assert [lvl.downsample for lvl in slide.levels] == pytest.approx(list(reference.level_downsamples), rel=1e-6)
    assert slide.vendor == reference.properties["openslide.vendor"]
    assert slide.mpp == pytest.approx(
        (float(reference.properties["openslide.mpp-x"]), float(reference.properties["openslide.mpp-y"])))
    assert sorted(slide.associated_images) == sorted(reference.associated_images)


def test_pixels_match_openslide(case):
    slide, reference = case
    rng = np.random.default_rng(1)
    for level in range(len(slide.levels)):
        if level and slide.levels[level].downsample != round(slide.levels[level].downsample):
            continue  # OpenSlide resamples fractional-downsample levels with subpixel offsets
        locations, size = sample_regions(slide, level, 4, rng)
        for location in locations:
            ours = slide.read_region(location, size, level=level)
            theirs = openslide_rgb(reference, location, level, size)
            assert ours.shape == theirs.shape and ours.dtype == np.uint8
            assert (mean_abs_diff(ours, theirs) < JPEG_TOLERANCE).all(), (location, level)


def test_edge_region_is_white_outside(case):
    slide, reference = case
    width, height = slide.dimensions
    location, size = (width - 10, height - 12), (40, 30)
    ours = slide.read_region(location, size)
    assert (ours[12:, :] == 255).all() and (ours[:, 10:] == 255).all()
    theirs = openslide_rgb(reference, location, 0, size)
    assert (mean_abs_diff(ours[:12, :10], theirs[:12, :10]) < JPEG_TOLERANCE).all()


def test_read_tiles_equals_read_region_loop(case):
    slide, _ = case
    rng = np.random.default_rng(2)
    for level in range(len(slide.levels)):
        locations, size = sample_regions(slide, level, 5, rng)
        batch = slide.read_tiles(locations, size, level=level)
        looped = np.stack([slide.read_region(loc, size, level=level) for loc in locations])
        np.testing.assert_array_equal(batch, looped)


def test_to_dask_equals_read_region(case):
    slide, _ = case
    level = len(slide.levels) - 1
    lvl = slide.levels[level]
    array = slide.to_dask(level)
    assert array.shape == (lvl.height, lvl.width, 3) and array.dtype == np.uint8
    if lvl.tile_size:
        assert all(c % lvl.tile_size[0] == 0 for c in array.chunks[1][:-1])
    np.testing.assert_array_equal(array.compute(scheduler="threads"),
                                  slide.read_region((0, 0), lvl.dimensions, level=level))


def test_pickle_round_trip_reopens_lazily(case):
    slide, _ = case
    clone = pickle.loads(pickle.dumps(slide))
    assert len(pickle.dumps(slide)) < 2000  # path and options, never pixels or handles
    assert clone.path == slide.path and clone.backend_name == slide.backend_name
    size = (min(64, slide.dimensions[0]), min(64, slide.dimensions[1]))
    np.testing.assert_array_equal(clone.read_region((0, 0), size), slide.read_region((0, 0), size))


@pytest.mark.parametrize("backend", ["tiff", "openslide"])
def test_read_inside_dask_worker_process(backend, synthetic_svs, dask_client):
    with open_slide(synthetic_svs, backend=backend) as slide:
        expected = slide.read_tiles([(0, 0), (1000, 700)], (128, 96), mpp=0.5)
        future = dask_client.submit(lambda s: s.read_tiles([(0, 0), (1000, 700)], (128, 96), mpp=0.5), slide)
        np.testing.assert_array_equal(future.result(timeout=60), expected)
        level = slide.levels[-1]
        remote = slide.to_dask(len(slide.levels) - 1).compute(scheduler=dask_client)
        np.testing.assert_array_equal(remote, slide.read_region((0, 0), level.dimensions, level=level.index))


def test_auto_prefers_the_tiff_backend_for_aperio(synthetic_svs, data_file):
    with open_slide(synthetic_svs) as slide:
        assert slide.backend_name == "tiff"
    with open_slide(data_file("test3-DAPI-2-(387).ndpi")) as slide:
        assert slide.backend_name == "openslide"


def test_associated_images_match_openslide(data_file):
    path = data_file("CMU-1-Small-Region.svs")
    with open_slide(path, backend="tiff") as slide, openslide.OpenSlide(str(path)) as reference:
        for name, image in slide.associated_images.items():
            theirs = np.asarray(reference.associated_images[name].convert("RGB"))
            assert image.shape == theirs.shape
            assert (mean_abs_diff(image, theirs) < JPEG_TOLERANCE).all(), name


def test_unpickled_slide_sees_a_rewritten_file(tmp_path):
    """A worker's cached handle must not outlive the file it was opened on."""
    from slidescope.wsi.synthetic import make_slide

    path = tmp_path / "rewritten.svs"
    make_slide(path, 512, 512, seed=1)
    with open_slide(path) as slide:
        first = pickle.loads(pickle.dumps(slide)).read_region((0, 0), (512, 512))
    make_slide(path, 512, 512, seed=2)
    with open_slide(path) as slide:
        second = pickle.loads(pickle.dumps(slide)).read_region((0, 0), (512, 512))
        np.testing.assert_array_equal(second, slide.read_region((0, 0), (512, 512)))
    assert not np.array_equal(first, second)
