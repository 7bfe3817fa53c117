"""Dark-field (fluorescence) slides: recognised, refused by the brightfield default, found by
``method="fluorescence"`` (issue 6, item 13).

Before, ``tissue_mask`` reported 0 % tissue on a DAPI slide (100 % on some others) without a word,
and ``tile`` then wrote an empty plan.
"""

from __future__ import annotations

import pickle

import cv2
import numpy as np
import pytest

from slidescope.tiling import DarkFieldError, Scale, TissueMaskError, plan_tiles, tissue_mask, tissue_mask_from_rgb
from slidescope.wsi import from_array, open_slide

DAPI = "test3-DAPI-2-(387).ndpi"


def glowing_scene(shape: tuple[int, int] = (300, 400), seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Black glass with two smooth blobs of dim blue signal and bright nuclei in them; and the blobs' truth."""
    rng = np.random.default_rng(seed)
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w]
    truth = ((yy - h * 0.4) ** 2 / (h * 0.25) ** 2 + (xx - w * 0.3) ** 2 / (w * 0.18) ** 2 < 1) | \
            ((yy - h * 0.6) ** 2 / (h * 0.2) ** 2 + (xx - w * 0.72) ** 2 / (w * 0.15) ** 2 < 1)
    img = np.zeros((h, w, 3), np.float32)
    img[..., 2] = 4 + truth * 30  # background 4, tissue autofluorescence 34 (DAPI is blue)
    nuclei = truth & (rng.random((h, w)) < 0.03)
    img[cv2.dilate(nuclei.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0, 2] = 160
    img += rng.normal(0, 2, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8), truth


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return np.count_nonzero(a & b) / max(1, np.count_nonzero(a | b))


def test_dark_image_is_refused_by_default_with_a_hint() -> None:
    rgb, _ = glowing_scene()
    with pytest.raises(DarkFieldError, match=r"dark-field.*background brightness \d+ of 255.*method='fluorescence'"):
        tissue_mask_from_rgb(rgb, 4.0)
    assert issubclass(DarkFieldError, TissueMaskError)


def test_fluorescence_method_finds_the_glowing_tissue() -> None:
    rgb, truth = glowing_scene()
    mask = tissue_mask_from_rgb(rgb, 4.0, method="fluorescence")
    assert iou(mask, truth) >= 0.9
    assert not tissue_mask_from_rgb(np.full_like(rgb, 4), 4.0, method="fluorescence").any()  # no signal: empty


def test_a_forced_brightfield_method_still_runs() -> None:
    rgb, _ = glowing_scene()
    for method in ("otsu", "ihc"):
        assert tissue_mask_from_rgb(rgb, 4.0, method=method).shape == rgb.shape[:2]


def test_slide_error_names_the_slide_and_survives_pickling() -> None:
    rgb, truth = glowing_scene((600, 800))
    slide = from_array(rgb, mpp=2.0, name="dapi-like.tif")
    with pytest.raises(DarkFieldError) as caught:
        tissue_mask(slide, mpp=4.0)
    error = caught.value
    assert str(error).startswith("dapi-like.tif: ") and error.path == "dapi-like.tif" and error.background < 10
    again = pickle.loads(pickle.dumps(error))  # crosses Dask process boundaries intact
    assert type(again) is DarkFieldError and str(again) == str(error) and again.path == error.path
    mask = tissue_mask(slide, mpp=4.0, method="fluorescence")
    small = cv2.resize(truth.astype(np.uint8), mask.array.shape[::-1], interpolation=cv2.INTER_NEAREST) > 0
    assert iou(mask.array, small) >= 0.85
    plan = plan_tiles(slide, mask, Scale(4.0, 32))
    assert len(plan) > 0  # before: an empty plan


# ------------------------------------------------------------------------------------ real files


def test_dapi_ndpi(data_file) -> None:
    with open_slide(data_file(DAPI)) as slide:
        with pytest.raises(DarkFieldError, match=r"test3-DAPI-2-\(387\)\.ndpi: the image looks dark-field"):
            tissue_mask(slide)
        mask = tissue_mask(slide, method="fluorescence")
        forced = tissue_mask(slide, method="otsu")
    assert 0.7 <= mask.fraction <= 0.95  # the section covers most of the slide; black glass below it
    rows = mask.array.shape[0]
    assert mask.array[int(rows * 0.3):int(rows * 0.8)].mean() > 0.95  # the middle is tissue
    assert mask.array[-3:].mean() < 0.2  # the bottom edge is glass
    assert forced.fraction < 0.05  # what the brightfield method saw before; still available when forced


def test_vectra_qptiff_thumbnail(data_file) -> None:
    tifffile = pytest.importorskip("tifffile")
    with tifffile.TiffFile(data_file("small_vectra.qptiff")) as tif:
        rgb = tif.pages[3].asarray()  # the RGB overview of the multiplex channels: a TMA core on black
    with pytest.raises(DarkFieldError):
        tissue_mask_from_rgb(rgb, 4.0)
    mask = tissue_mask_from_rgb(rgb, 4.0, method="fluorescence")
    h, w = mask.shape
    assert 0.4 <= mask.mean() <= 0.6
    assert mask[h // 2 - 20:h // 2 + 20, w // 3 - 20:w // 3 + 20].all()  # the core's centre
    assert not mask[:, int(w * 0.75):].any()  # black glass right of the core


def test_sixteen_bit_fluorescence_field(data_file) -> None:
    tifffile = pytest.importorskip("tifffile")
    with tifffile.TiffFile(data_file("smalltif.tif")) as tif:
        grey = tif.pages[0].asarray()
    grey = cv2.normalize(grey, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    with pytest.raises(DarkFieldError):
        tissue_mask_from_rgb(np.dstack([grey] * 3), 0.5)


@pytest.mark.parametrize("name", [  # the darkest brightfield images of the shared data (median brightness 130-150)
    "test_tile.png", "hovernet_input_image.png", "histolab-tiles/high-nuclei-score-level0.png",
    "histoqc/templates/template3.png", "histolab-tiles/kidney-ihc-level0-350-530-360-540.png",
    "histolab-tiles/medium-nuclei-score-green-pen-level1.png", "histoqc/pen/pen_black.png",
])
def test_dark_brightfield_images_are_not_taken_for_dark_field(name, load_rgb) -> None:
    rgb = load_rgb(name)
    assert tissue_mask_from_rgb(rgb, 2.0).shape == rgb.shape[:2]  # method "auto": no DarkFieldError
