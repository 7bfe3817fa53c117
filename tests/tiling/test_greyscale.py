"""Greyscale brightfield images: method="auto" finds their tissue by optical density, not saturation."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from slidescope.tiling._tissue_color import is_achromatic
from slidescope.tiling.tissue import tissue_mask, tissue_mask_from_rgb
from slidescope.wsi import from_array


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.count_nonzero(a | b)
    return 1.0 if union == 0 else np.count_nonzero(a & b) / union


def _grey(rgb: np.ndarray) -> np.ndarray:
    """The image as a greyscale scanner or a one-channel TIFF read as RGB gives it: R = G = B."""
    return cv2.cvtColor(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)


def _pink_scene(shape: tuple[int, int] = (480, 640), seed: int = 3) -> np.ndarray:
    """Glass with smooth pink (eosin-like) blobs over 40 % of it and purple specks, a little noise."""
    rng = np.random.default_rng(seed)
    h, w = shape
    field = cv2.GaussianBlur(rng.random((h // 16, w // 16)).astype(np.float32), (0, 0), 2.0)
    blobs = cv2.resize(field, (w, h), interpolation=cv2.INTER_LINEAR) > np.quantile(field, 0.6)
    img = np.full((h, w, 3), (242, 241, 243), np.uint8)
    img[blobs] = (225, 140, 185)
    img[blobs & (rng.random((h, w)) < 0.05)] = (110, 70, 150)
    return np.clip(img + rng.integers(-2, 3, img.shape, dtype=np.int16), 0, 255).astype(np.uint8)


def test_a_grey_scene_gets_the_tissue_of_its_colour_version() -> None:
    colour = _pink_scene()
    grey = _grey(colour)
    found, expected = tissue_mask_from_rgb(grey, 2.0), tissue_mask_from_rgb(colour, 2.0)
    assert expected.mean() > 0.3
    assert abs(found.mean() - expected.mean()) < 0.05 and _iou(found, expected) > 0.9
    assert not tissue_mask_from_rgb(grey, 2.0, method="otsu").any()  # forced saturation: as before


@pytest.mark.parametrize("name, mpp", [
    ("histolab-tiles/tissue-level2-1784-6289-5880-10386.png", 4.0),
    ("colon.png", 4.0),
])
def test_a_grey_real_he_image_gets_the_tissue_of_its_colour_version(name: str, mpp: float, load_rgb) -> None:
    colour = load_rgb(name)
    found, expected = tissue_mask_from_rgb(_grey(colour), mpp), tissue_mask_from_rgb(colour, mpp)
    assert expected.mean() > 0.3
    assert abs(found.mean() - expected.mean()) < 0.05 and _iou(found, expected) > 0.9, (found.mean(), expected.mean())


def test_a_grey_slide_gets_tissue_with_the_default_method() -> None:
    colour = cv2.resize(_pink_scene(), (1280, 960), interpolation=cv2.INTER_NEAREST)
    slide = from_array([_grey(colour)], mpp=1.0, name="grey-slide")
    truth = tissue_mask(from_array([colour], mpp=1.0, name="colour-slide"), mpp=2.0)
    mask = tissue_mask(slide, mpp=2.0)
    assert mask.fraction > 0.3 and _iou(mask.array, truth.array) > 0.9


@pytest.mark.parametrize("name", [
    "histolab-tiles/tissue-level2-1784-6289-5880-10386.png", "TCGA-HE-7130-01Z-00-DX1.png",
    "histolab-tiles/almost-white-2.png", "ihc.png", "tcga-red-pen.png",
])
def test_colour_images_are_unaffected(name: str, load_rgb) -> None:
    colour = load_rgb(name)
    assert not is_achromatic(colour)
    assert np.array_equal(tissue_mask_from_rgb(colour, 4.0), tissue_mask_from_rgb(colour, 4.0, method="otsu"))


def test_achromatic_is_measured_robustly() -> None:
    grey = _grey(_pink_scene())
    noisy = np.clip(grey + np.random.default_rng(0).integers(-3, 4, grey.shape), 0, 255).astype(np.uint8)
    assert is_achromatic(grey) and is_achromatic(noisy)  # chroma noise of a few levels is still grey
    speck = grey.copy()
    speck[:5, :5] = (230, 120, 170)  # 25 coloured pixels of 307,200: below 0.1 %, still grey
    assert is_achromatic(speck)
    piece = grey.copy()
    piece[:40, :40] = (230, 120, 170)  # a small stained piece (0.5 %) makes the image coloured
    assert not is_achromatic(piece) and not is_achromatic(_pink_scene())
