"""Pixel and metadata parity with OpenSlide: every backend reads every file it claims as OpenSlide does.

Each case is (file, backend). Same dimensions, levels, vendor, mpp and associated images as
OpenSlide reports; same pixels as ``openslide.read_region`` within JPEG decoder tolerance, at
every level whose downsample is whole (OpenSlide interpolates the others, see
``test_fractional_levels.py``); and reads twice coarser than level 0, from JPEG tiles decoded
at half size or in full (``exact_resample``), as OpenSlide's level-0 pixels area-averaged. What
every backend must do whatever OpenSlide does is ``test_backend_contract.py``.
"""

from __future__ import annotations

import cv2
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


def openslide_rgb(reference: openslide.OpenSlide, location, level: int, size) -> np.ndarray:
    """OpenSlide's pixels composited on white, as slidescope promises for outside parts."""
    rgba = np.asarray(reference.read_region(location, level, size)).astype(np.float32)
    alpha = rgba[..., 3:4] / 255.0
    return np.round(rgba[..., :3] * alpha + 255.0 * (1.0 - alpha)).astype(np.uint8)


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.astype(np.int16) - b.astype(np.int16)).reshape(-1, 3).mean(axis=0)


class TestOpenSlideParity:
    """One (file, backend) case per parameter; the reference is OpenSlide on the same file."""

    @pytest.fixture(params=REAL_CASES + SYNTHETIC_CASES, ids=lambda case: f"{case[0]}-{case[1]}")
    def case(self, request, data_file):
        name, backend = request.param
        path = request.getfixturevalue(name) if name.startswith("synthetic") else data_file(name)
        with open_slide(path, backend=backend) as slide, openslide.OpenSlide(str(path)) as reference:
            yield slide, reference

    def test_metadata_matches_openslide(self, case):
        slide, reference = case
        assert slide.dimensions == reference.dimensions
        assert [lvl.dimensions for lvl in slide.levels] == list(reference.level_dimensions)
        assert [lvl.downsample for lvl in slide.levels] == pytest.approx(list(reference.level_downsamples), rel=1e-6)
        assert slide.vendor == reference.properties["openslide.vendor"]
        assert slide.mpp == pytest.approx(
            (float(reference.properties["openslide.mpp-x"]), float(reference.properties["openslide.mpp-y"])))
        assert sorted(slide.associated_images) == sorted(reference.associated_images)

    def test_pixels_match_openslide(self, case, sample_regions):
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

    def test_edge_region_matches_openslide(self, case):
        slide, reference = case
        width, height = slide.dimensions
        location, size = (width - 10, height - 12), (40, 30)
        ours = slide.read_region(location, size)
        theirs = openslide_rgb(reference, location, 0, size)
        assert (mean_abs_diff(ours[:12, :10], theirs[:12, :10]) < JPEG_TOLERANCE).all()
        assert (theirs[12:, :] == 255).all() and (ours[12:, :] == 255).all()


@pytest.mark.parametrize("exact_resample", [False, True], ids=["reduced", "exact"])
@pytest.mark.parametrize("name", ["CMU-1-Small-Region.svs", "synthetic_svs"])
def test_2x_reads_match_openslide(name, exact_resample, request, data_file):
    """``mpp=2 * slide.mpp``: level 0 shrunk by 2, against OpenSlide's level-0 box + ``cv2.INTER_AREA``."""
    path = request.getfixturevalue(name) if name.startswith("synthetic") else data_file(name)
    rng = np.random.default_rng(4)
    size = (128, 96)
    with open_slide(path, backend="tiff", exact_resample=exact_resample) as slide, \
            openslide.OpenSlide(str(path)) as reference:
        assert slide.best_level_for_mpp(2 * slide.mpp[0]).index == 0
        width, height = slide.dimensions
        xs = rng.integers(0, width - 2 * size[0], 6)
        ys = rng.integers(0, height - 2 * size[1], 6)
        xs[:3] -= xs[:3] % 8  # on the reduced grid: decoded at half size unless exact
        ys[:3] -= ys[:3] % 8
        for location in zip(xs.tolist(), ys.tolist()):
            ours = slide.read_region(location, size, mpp=2 * slide.mpp[0])
            full = openslide_rgb(reference, location, 0, (2 * size[0], 2 * size[1]))
            theirs = cv2.resize(full, size, interpolation=cv2.INTER_AREA)
            assert ours.shape == theirs.shape
            assert (mean_abs_diff(ours, theirs) < JPEG_TOLERANCE).all(), location


def test_associated_images_match_openslide(data_file):
    path = data_file("CMU-1-Small-Region.svs")
    with open_slide(path, backend="tiff") as slide, openslide.OpenSlide(str(path)) as reference:
        for name, image in slide.associated_images.items():
            theirs = np.asarray(reference.associated_images[name].convert("RGB"))
            assert image.shape == theirs.shape
            assert (mean_abs_diff(image, theirs) < JPEG_TOLERANCE).all(), name
