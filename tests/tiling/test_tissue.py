"""Tests of slidescope.tiling.tissue: tissue detection on real images and generated slides,
pen and coverslip rejection, µm-sized morphology, the TissueMask geometry (box fractions,
polygons, PNG) and input errors.

Real images come from the shared data folder (SLIDESCOPE_TEST_DATA, default
<repo>/../shared/data) and are used in place; tests needing them skip when it is absent.
The resolution given for each image is an estimate from its content (a thumbnail is coarse,
~4-30 µm/px; a tile is 0.5-4 µm/px): the detector only needs the right order of magnitude.
"""

from __future__ import annotations

import json
import os
import pickle
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from slidescope.wsi import reading
from slidescope.tiling.tissue import (
    ImageTypeError,
    TissueMask,
    TissueMaskError,
    tissue_mask,
    tissue_mask_from_rgb,
)
from slidescope.wsi import ParameterError, ResolutionError, SlideError, from_array



def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.count_nonzero(a | b)
    return 1.0 if union == 0 else np.count_nonzero(a & b) / union


def pink_scene(shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    """Glass with smooth pink blobs (eosin-like) and purple specks (nuclei-like)."""
    rng = np.random.default_rng(seed)
    h, w = shape
    small = (max(8, w // 16), max(8, h // 16))  # smooth field drawn coarse, then enlarged
    field = cv2.GaussianBlur(rng.random(small[::-1]).astype(np.float32), (0, 0), max(small) / 25)
    field = cv2.resize(field, (w, h), interpolation=cv2.INTER_LINEAR)
    blobs = field > np.quantile(field, 0.6)
    img = np.full((h, w, 3), (242, 241, 243), np.uint8)
    img[blobs] = (225, 140, 185)
    specks = blobs & (rng.random((h, w)) < 0.05)
    img[specks] = (110, 70, 150)
    noise = rng.integers(-2, 3, img.shape, dtype=np.int16)
    return np.clip(img + noise, 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- real images


NO_TISSUE = [  # (file, mpp, method)
    ("histolab-tiles/no-tissue.png", 2.0, "otsu"),
    ("histolab-tiles/no-tissue2.png", 2.0, "otsu"),
    ("histolab-tiles/no-tissue-line.png", 2.0, "otsu"),
    ("histolab-tiles/almost-white-1.png", 2.0, "otsu"),
    ("histolab-tiles/almost-white-2.png", 2.0, "otsu"),  # a sliver of tissue in a corner
    ("histolab-tiles/almost-white-ihc.png", 8.0, "ihc"),
    ("histolab-tiles/liver-level2-38626-13514-39426-14315.png", 8.0, "otsu"),
    ("histolab-tiles/no-tissue-green-pen.png", 2.0, "otsu"),
    ("histolab-tiles/no-tissue-red-pen.png", 2.0, "otsu"),
]


@pytest.mark.parametrize("name, mpp, method", NO_TISSUE)
def test_no_tissue_images_give_almost_no_tissue(name: str, mpp: float, method: str, load_rgb) -> None:
    rgb = load_rgb(name)
    mask = tissue_mask_from_rgb(rgb, mpp, method=method)
    assert mask.dtype == np.bool_ and mask.shape == rgb.shape[:2]
    assert mask.mean() <= 0.05, f"{name}: tissue fraction {mask.mean():.3f}"


TISSUE = [  # (file, mpp, method, lowest expected tissue fraction)
    ("histolab-tiles/tissue-level0-4302-10273-4814-10785.png", 0.5, "otsu", 0.95),
    ("histolab-tiles/tissue-level0-7352-11762-7864-12274.png", 0.5, "otsu", 0.8),
    ("histolab-tiles/tissue-level2-1784-6289-5880-10386.png", 4.0, "otsu", 0.65),  # edge of the section
    ("histolab-tiles/tissue-level2-3000-7666-7096-11763.png", 4.0, "otsu", 0.65),
    ("histolab-tiles/tissue-level2-4640-4649-8736-8746.png", 4.0, "otsu", 0.65),
    ("histolab-tiles/tissue-level2-4760-5241-8856-9338.png", 4.0, "otsu", 0.65),
    ("histolab-tiles/high-nuclei-score-level0.png", 0.5, "otsu", 0.95),
    ("histolab-tiles/medium-nuclei-score-level0.png", 0.5, "otsu", 0.95),
    ("histolab-tiles/very-low-nuclei-score-level0.png", 0.5, "otsu", 0.95),
    ("histolab-tiles/liver-level2-10907-7808-11707-8608.png", 8.0, "otsu", 0.95),
    ("TCGA-HE-7130-01Z-00-DX1.png", 0.5, "otsu", 0.95),
    ("hovernet_input_image.png", 0.25, "otsu", 0.95),  # smaller than min_object_um2
    ("ihc.png", 0.5, "ihc", 0.9),
    ("histolab-tiles/kidney-ihc-level0-310-500-360-530.png", 8.0, "ihc", 0.7),
    ("histolab-tiles/kidney-ihc-level0-340-520-390-550.png", 8.0, "ihc", 0.7),
]


@pytest.mark.parametrize("name, mpp, method, lowest", TISSUE)
def test_tissue_images_give_high_tissue_fraction(name: str, mpp: float, method: str, lowest: float, load_rgb) -> None:
    rgb = load_rgb(name)
    mask = tissue_mask_from_rgb(rgb, mpp, method=method)
    assert mask.dtype == np.bool_ and mask.shape == rgb.shape[:2]
    assert mask.mean() >= lowest, f"{name}: tissue fraction {mask.mean():.3f}"


def _independent_pen_pixels(rgb: np.ndarray, colour: str) -> np.ndarray:
    """Strongly coloured ink by plain RGB rules (deliberately not the detector's HSV rules)."""
    r, g, b = (rgb[..., i].astype(int) for i in range(3))
    return {
        "green": (g > r + 40) & (g > 90),
        "blue": (b > r + 70) & (b > g + 40),
        "red": (r > 150) & (g < 80) & (b < 110),
        "black": np.maximum(np.maximum(r, g), b) < 50,
    }[colour]


def _independent_he_pixels(rgb: np.ndarray, pen: np.ndarray) -> np.ndarray:
    """Clearly pink-to-purple (H&E-stained) pixels that are not pen."""
    r, g, b = (rgb[..., i].astype(int) for i in range(3))
    return (r > g + 25) & (b > g + 10) & (g > 60) & ~pen


PEN = [  # (file, mpp, ink colour, lowest fraction of the H&E pixels kept)
    ("tcga-green-pen.png", 4.0, "green", 0.9),
    ("tcga-red-pen.png", 3.0, "red", 0.85),
    ("wsi-blue-pen.png", 32.0, "blue", 0.85),
    ("histoqc/pen/pen_black.png", 10.0, "black", None),  # no tissue in the image
    ("histoqc/pen/pen_green.png", 10.0, "green", 0.85),
    ("histoqc/pen/pen_red.png", 10.0, "red", 0.9),
    ("diagnostic-slide-thumb-rgb.png", 30.0, "green", 0.8),
    ("histolab-tiles/medium-nuclei-score-green-pen-level1.png", 2.0, "green", 0.9),
    ("histolab-tiles/no-tissue-green-pen.png", 2.0, "green", None),
]


@pytest.mark.parametrize("name, mpp, colour, kept", PEN)
def test_pen_pixels_are_rejected_and_tissue_kept(name: str, mpp: float, colour: str, kept: float | None, load_rgb) -> None:
    rgb = load_rgb(name)
    pen = _independent_pen_pixels(rgb, colour)
    assert pen.mean() > 0.01, "the independent rule should find the ink"
    mask = tissue_mask_from_rgb(rgb, mpp)
    assert mask[pen].mean() <= 0.05, f"{name}: {mask[pen].mean():.1%} of the {colour} ink kept as tissue"
    without = tissue_mask_from_rgb(rgb, mpp, reject_pen=False)
    assert without[pen].mean() >= 0.9, "without reject_pen the ink passes as tissue (the rule matters)"
    if kept is not None:
        he = _independent_he_pixels(rgb, pen)
        assert mask[he].mean() >= kept, f"{name}: only {mask[he].mean():.1%} of the H&E pixels kept"


def test_coverslip_edge_line_is_rejected_he(load_rgb) -> None:
    rgb = load_rgb("histoqc/coverslip_edge_he/coverslip_edge.png")
    mask = tissue_mask_from_rgb(rgb, 10.0)
    r, g, b = (rgb[..., i].astype(int) for i in range(3))
    hi, lo = np.maximum(np.maximum(r, g), b), np.minimum(np.minimum(r, g), b)
    dark_grey = (hi < 110) & (hi - lo < 25)  # the black edge line of the coverslip
    assert dark_grey.sum() > 500
    assert mask[dark_grey].mean() <= 0.1
    assert mask.mean() >= 0.35  # the section itself (about half the picture)


def test_coverslip_edge_band_is_rejected_ihc(load_rgb) -> None:
    rgb = load_rgb("histoqc/coverslip_edge_ihc/coverslip_edge.png")
    mask = tissue_mask_from_rgb(rgb, 10.0, method="ihc")
    assert mask[:60].mean() <= 0.01  # dirty band and edge line along the top
    assert mask[240:, 580:890].mean() >= 0.3  # the larger piece (DAB and pale haematoxylin)


def test_ihc_thumbnail_finds_the_small_piece(load_rgb) -> None:
    rgb = load_rgb("kidney-48-5.tif")
    mask = tissue_mask_from_rgb(rgb, 8.0, method="ihc")
    assert 0.001 <= mask.mean() <= 0.02
    rows, cols = np.nonzero(mask)
    assert 450 <= rows.mean() <= 580 and 280 <= cols.mean() <= 420  # where the kidney tiles were cut


# --------------------------------------------------------------------------- µm scaling


def test_min_object_scales_with_mpp() -> None:
    rgb = np.full((200, 200, 3), 242, np.uint8)
    rgb[95:105, 95:105] = (220, 120, 170)  # 100 px of pink
    assert tissue_mask_from_rgb(rgb, 16.0).sum() > 50  # 25,600 µm2: kept
    assert tissue_mask_from_rgb(rgb, 2.0).sum() == 0  # 400 µm2: dropped


def test_closing_scales_with_mpp() -> None:
    rgb = np.full((300, 300, 3), 242, np.uint8)
    rgb[100:200, 60:146] = (220, 120, 170)
    rgb[100:200, 150:240] = (220, 120, 170)  # a 4-pixel gap
    n_fine, _ = cv2.connectedComponents(tissue_mask_from_rgb(rgb, 2.0).astype(np.uint8))
    n_coarse, _ = cv2.connectedComponents(tissue_mask_from_rgb(rgb, 16.0).astype(np.uint8))
    assert n_fine - 1 == 1  # 8 µm gap < 2 x 20 µm closing: bridged
    assert n_coarse - 1 == 2  # 64 µm gap: kept apart


def test_same_scene_at_two_resolutions_gives_the_same_mask() -> None:
    fine = pink_scene((1024, 1024), seed=3)
    coarse = cv2.resize(fine, (256, 256), interpolation=cv2.INTER_AREA)
    m_fine = tissue_mask_from_rgb(fine, 2.0)
    m_coarse = tissue_mask_from_rgb(coarse, 8.0)
    up = cv2.resize(m_coarse.astype(np.uint8), (1024, 1024), interpolation=cv2.INTER_NEAREST).astype(bool)
    assert iou(m_fine, up) >= 0.95


def test_blank_and_uniform_images_are_empty_not_errors() -> None:
    for value, methods in ((255, ("auto", "otsu", "ihc")), (242, ("auto", "otsu", "ihc")),
                           (0, ("otsu", "ihc", "fluorescence"))):  # black is dark-field for "auto"
        rgb = np.full((64, 80, 3), value, np.uint8)
        for method in methods:
            mask = tissue_mask_from_rgb(rgb, 8.0, method=method)
            assert mask.shape == (64, 80) and not mask.any()


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "rgb, exc, words",
    [
        (np.zeros((8, 8, 3), np.float64), ImageTypeError, ["uint8", "float64"]),
        (np.zeros((8, 8, 3), np.uint16), ImageTypeError, ["uint16"]),
        ([[[0, 0, 0]]], ImageTypeError, ["ndarray", "list"]),
        (np.zeros((8, 8), np.uint8), TissueMaskError, ["(H, W, 3)", "(8, 8)"]),
        (np.zeros((8, 8, 4), np.uint8), TissueMaskError, ["(8, 8, 4)", "alpha"]),
        (np.zeros((0, 8, 3), np.uint8), TissueMaskError, ["non-empty", "(0, 8, 3)"]),
    ],
)
def test_bad_images_raise_naming_the_value(rgb, exc, words) -> None:
    with pytest.raises(exc) as info:
        tissue_mask_from_rgb(rgb, 8.0)
    assert isinstance(info.value, ValueError) and isinstance(info.value, SlideError)
    for word in words:
        assert word in str(info.value)
    if exc is ImageTypeError:
        assert isinstance(info.value, TypeError)


@pytest.mark.parametrize("mpp", [0, -1.0, float("nan"), float("inf"), "eight", None])
def test_bad_mpp_raises_naming_the_value(mpp) -> None:
    with pytest.raises(ResolutionError, match="mpp") as info:
        tissue_mask_from_rgb(np.zeros((8, 8, 3), np.uint8), mpp)
    assert repr(mpp) in str(info.value)


def test_bad_method_and_sizes_raise() -> None:
    rgb = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(ParameterError, match="'hed'"):
        tissue_mask_from_rgb(rgb, 8.0, method="hed")
    with pytest.raises(ParameterError, match="close_um.*-5"):
        tissue_mask_from_rgb(rgb, 8.0, close_um=-5)


# --------------------------------------------------------------------------- TissueMask


@pytest.fixture
def blob_mask() -> TissueMask:
    """A mask with islands, holes and an island inside a hole, at a non-integer downsample."""
    m = np.zeros((97, 131), bool)
    cv2.circle(m.view(np.uint8), (40, 45), 30, 1, -1)
    cv2.circle(m.view(np.uint8), (40, 45), 15, 0, -1)  # a hole
    cv2.circle(m.view(np.uint8), (40, 45), 5, 1, -1)  # an island inside it
    cv2.rectangle(m.view(np.uint8), (90, 10), (125, 80), 1, -1)
    cv2.rectangle(m.view(np.uint8), (100, 30), (110, 40), 0, -1)
    m[90:95, 5:8] = True  # a speck
    return TissueMask.from_array(m, 8.0, (4200, 3100), "slide.svs")


def _brute_fraction(tm: TissueMask, box: np.ndarray) -> float:
    """Tissue over every mask pixel whose level-0 footprint the box overlaps (outside = glass)."""
    sx, sy = tm.downsample_xy
    x, y, w, h = box
    cols = np.arange(int(np.floor(x / sx)) - 2, int(np.ceil((x + w) / sx)) + 2)
    rows = np.arange(int(np.floor(y / sy)) - 2, int(np.ceil((y + h) / sy)) + 2)
    cols = cols[(cols * sx < x + w) & ((cols + 1) * sx > x)]
    rows = rows[(rows * sy < y + h) & ((rows + 1) * sy > y)]
    H, W = tm.array.shape
    tissue = 0
    for r in rows:
        for c in cols:
            if 0 <= r < H and 0 <= c < W and tm.array[r, c]:
                tissue += 1
    return tissue / (len(rows) * len(cols))


def test_fractions_in_agree_with_brute_force(blob_mask: TissueMask) -> None:
    rng = np.random.default_rng(1)
    n = 300
    boxes = np.column_stack([
        rng.uniform(-500, 4400, n),
        rng.uniform(-500, 3300, n),
        rng.uniform(1, 900, n),
        rng.uniform(1, 900, n),
    ])
    boxes[:50, :2] = np.round(boxes[:50, :2])
    boxes[:50, 2:] = 256  # integer tiles
    got = blob_mask.fractions_in(boxes)
    expected = np.array([_brute_fraction(blob_mask, b) for b in boxes])
    np.testing.assert_allclose(got, expected, atol=1e-12)
    assert blob_mask.fraction_in(*boxes[7]) == pytest.approx(expected[7])
    assert blob_mask.fractions_in(np.array([[-5000, -5000, 100, 100]]))[0] == 0.0  # wholly outside


def test_fractions_in_is_fast_for_a_big_plan(blob_mask: TissueMask) -> None:
    rng = np.random.default_rng(2)
    boxes = np.column_stack([rng.uniform(0, 4000, 100_000), rng.uniform(0, 3000, 100_000),
                             np.full(100_000, 256.0), np.full(100_000, 256.0)])
    start = time.perf_counter()
    out = blob_mask.fractions_in(boxes)
    assert time.perf_counter() - start < 1.0
    assert out.shape == (100_000,) and (out >= 0).all() and (out <= 1).all()


def test_fractions_in_rejects_bad_boxes(blob_mask: TissueMask) -> None:
    with pytest.raises(TissueMaskError, match=r"\(N, 4\)"):
        blob_mask.fractions_in(np.zeros((3, 3)))
    with pytest.raises(TissueMaskError, match=r"boxes\[1\]"):
        blob_mask.fractions_in(np.array([[0, 0, 10, 10], [0, 0, 0, 10]]))


def test_contains_matches_the_array(blob_mask: TissueMask) -> None:
    rng = np.random.default_rng(3)
    sx, sy = blob_mask.downsample_xy
    for x, y in rng.uniform(0, [4200, 3100], (500, 2)):
        assert blob_mask.contains(x, y) == blob_mask.array[int(y // sy), int(x // sx)]
    assert not blob_mask.contains(-1, 10) and not blob_mask.contains(10, 3100)


def _rasterise(tm: TissueMask, polygons) -> np.ndarray:
    sx, sy = tm.downsample_xy
    out = np.zeros(tm.array.shape, np.uint8)
    for poly in polygons:
        canvas = np.zeros_like(out)
        rings = [np.round(ring / [sx, sy] - 0.5).astype(np.int32) for ring in poly]
        cv2.fillPoly(canvas, [rings[0]], 1)
        for hole in rings[1:]:
            cv2.fillPoly(canvas, [hole], 0)
        out |= canvas
    return out.astype(bool)


def _signed_area(ring: np.ndarray) -> float:
    x, y = ring[:, 0], ring[:, 1]
    return 0.5 * float(np.sum(x[:-1] * y[1:] - x[1:] * y[:-1]))


def test_polygons_rasterise_back_to_the_mask(blob_mask: TissueMask) -> None:
    polygons = blob_mask.polygons()
    assert len(polygons) == 4  # ring, island in its hole, rectangle, speck
    assert sum(len(p) - 1 for p in polygons) == 2  # two holes
    for poly in polygons:
        for k, ring in enumerate(poly):
            assert ring.dtype == np.float64 and ring.shape[1] == 2
            np.testing.assert_array_equal(ring[0], ring[-1])  # closed
            assert (_signed_area(ring) > 0) == (k == 0)  # outer CCW by RFC 7946's formula, holes CW
            assert (ring[:, 0] >= 0).all() and (ring[:, 0] <= 4200).all()
    assert iou(_rasterise(blob_mask, polygons), blob_mask.array) > 0.95
    big = blob_mask.polygons(min_area_um2=1000.0)  # the speck (5 x 3 px, 512 um2 inside its outline) goes
    assert len(big) == 3


def test_polygons_of_a_real_mask_rasterise_back(load_rgb) -> None:
    rgb = load_rgb("histoqc/pen/pen_green.png")
    mask = tissue_mask_from_rgb(rgb, 10.0)
    tm = TissueMask.from_array(mask, 10.0, (rgb.shape[1] * 40, rgb.shape[0] * 40))
    assert iou(_rasterise(tm, tm.polygons()), mask) > 0.95
    feature = json.loads(json.dumps(tm.to_geojson()))
    assert feature["geometry"]["type"] == "MultiPolygon"
    assert len(feature["geometry"]["coordinates"]) == len(tm.polygons())


def test_empty_mask_is_a_valid_answer(tmp_path: Path) -> None:
    mask = tissue_mask_from_rgb(np.full((50, 70, 3), 245, np.uint8), 8.0)
    tm = TissueMask.from_array(mask, 8.0, (2240, 1600))
    assert tm.fraction == 0.0 and tm.is_empty
    assert tm.polygons() == []
    assert tm.to_geojson()["geometry"]["coordinates"] == []
    np.testing.assert_array_equal(tm.fractions_in(np.array([[0, 0, 256, 256], [100, 100, 10, 10]])), [0, 0])
    assert not tm.contains(10, 10)
    back = TissueMask.from_png(tm.to_png(tmp_path / "empty.png"), 8.0, (2240, 1600))
    assert back.is_empty


def test_to_png_round_trip_is_atomic(blob_mask: TissueMask, tmp_path: Path) -> None:
    path = tmp_path / "mask.png"
    path.write_bytes(b"old contents")
    assert blob_mask.to_png(path) == str(path)
    stored = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert stored.dtype == np.uint8 and set(np.unique(stored)) == {0, 255}
    np.testing.assert_array_equal(stored > 0, blob_mask.array)
    back = TissueMask.from_png(path, blob_mask.mpp, blob_mask.slide_dimensions, blob_mask.slide_path)
    np.testing.assert_array_equal(back.array, blob_mask.array)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mask.png"]  # no temporary file left


def test_tissue_mask_value_checks_and_immutability(blob_mask: TissueMask) -> None:
    assert blob_mask.array.dtype == np.bool_
    with pytest.raises(ValueError):
        blob_mask.array[0, 0] = True  # read-only
    sx, sy = blob_mask.downsample_xy
    assert sx == pytest.approx(4200 / 131) and sy == pytest.approx(3100 / 97)
    assert blob_mask.downsample == pytest.approx((sx + sy) / 2)
    assert 0 < blob_mask.fraction < 1
    again = pickle.loads(pickle.dumps(blob_mask))
    np.testing.assert_array_equal(again.array, blob_mask.array)
    assert not again.array.flags.writeable and again.slide_path == "slide.svs"
    with pytest.raises(TissueMaskError, match="2-D"):
        TissueMask.from_array(np.zeros((4, 4, 3), bool), 8.0, (10, 10))
    with pytest.raises(ParameterError, match="slide_dimensions"):
        TissueMask.from_array(np.zeros((4, 4), bool), 8.0, (0, 10))
    with pytest.raises(ResolutionError, match="-8"):
        TissueMask.from_array(np.zeros((4, 4), bool), -8.0, (10, 10))
    with pytest.raises(ImageTypeError):
        TissueMask.from_array("mask", 8.0, (10, 10))


# --------------------------------------------------------------------------- whole slides


class RecordingSlide:
    """An array slide whose backend records every box it is asked for (level and size)."""

    def __new__(cls, slide):
        reads: list[tuple[int, tuple[int, int]]] = []
        backend = slide._backend()
        original = backend.read_boxes

        def read_boxes(level, boxes, outs):
            reads.extend((level, (w, h)) for _, _, w, h in boxes)
            return original(level, boxes, outs)

        backend.read_boxes = read_boxes
        slide.reads = reads
        return slide


def _pyramid(level0: np.ndarray, n: int = 3, factor: int = 4) -> list[np.ndarray]:
    levels = [level0]
    for _ in range(n - 1):
        h, w = levels[-1].shape[:2]
        levels.append(cv2.resize(levels[-1], (w // factor, h // factor), interpolation=cv2.INTER_AREA))
    return levels


def test_slide_mask_reads_the_coarse_level_only() -> None:
    levels = _pyramid(pink_scene((2048, 3072), seed=5))
    slide = RecordingSlide(from_array(levels, mpp=0.5, name="scene.tif"))
    tm = tissue_mask(slide, mpp=8.0)
    assert slide.reads and all(level == 2 for level, _ in slide.reads), slide.reads  # level 2 is 8 µm/px
    assert tm.array.shape == (128, 192) and tm.mpp == 8.0
    assert tm.slide_dimensions == (3072, 2048) and tm.slide_path == "scene.tif"
    assert tm.downsample == pytest.approx(16.0)
    direct = tissue_mask_from_rgb(levels[2], 8.0)
    np.testing.assert_array_equal(tm.array, direct)


def test_single_level_slide_is_read_in_bands(monkeypatch: pytest.MonkeyPatch) -> None:
    level0 = pink_scene((3000, 2400), seed=6)
    monkeypatch.setattr(reading, "READ_BUDGET_PIXELS", 400_000)  # about 160 rows of 2400 px
    slide = RecordingSlide(from_array(level0, mpp=0.5, name="flat.tif"))
    tm = tissue_mask(slide, mpp=8.0)
    assert len(slide.reads) > 5 and all(w * h <= 400_000 for _, (w, h) in slide.reads)
    assert tm.array.shape == (188, 150)
    whole = tissue_mask_from_rgb(cv2.resize(level0, (150, 188), interpolation=cv2.INTER_AREA), 8.0)
    assert iou(tm.array, whole) > 0.97  # band seams shift sub-pixel at most


def test_slide_coarser_than_target_uses_its_own_resolution() -> None:
    level0 = pink_scene((300, 400), seed=7)
    tm = tissue_mask(from_array(level0, mpp=16.0), mpp=8.0)
    assert tm.mpp == 16.0 and tm.array.shape == (300, 400)


def test_slide_mask_guards_against_huge_masks() -> None:
    slide = from_array(np.full((512, 512, 3), 240, np.uint8), mpp=0.25)
    with pytest.raises(ResolutionError, match="max_mask_pixels"):
        tissue_mask(slide, mpp=0.5, max_mask_pixels=10_000)


@pytest.mark.parametrize("mpp", [100_000.0, 1_000.0, 130.0])
def test_a_mask_too_coarse_to_show_the_slide_is_refused(mpp) -> None:
    # 800 x 600 px at 0.5 µm/px is 400 x 300 µm: at 100,000 µm/px the mask was 1 x 1 "100 % tissue".
    slide = from_array(pink_scene((600, 800)), mpp=0.5, name="small.svs")
    with pytest.raises(ResolutionError, match=rf"small.svs: mpp: a tissue mask at {mpp:g} µm/px would be \d+ x \d+ px"
                                              r".*at least 8 px along the short side, i.e. mpp <= 37.5"):
        tissue_mask(slide, mpp=mpp)


def test_the_coarsest_mask_allowed_has_eight_pixels_on_the_short_side() -> None:
    slide = from_array(pink_scene((600, 800)), mpp=0.5, name="small.svs")
    assert tissue_mask(slide, mpp=37.5).shape == (8, 11)
    tiny = from_array(pink_scene((6, 16)), mpp=0.5, name="tiny.svs")
    with pytest.raises(ResolutionError, match=r"tiny.svs: the slide is 16 x 6 px; expected at least 8 px"):
        tissue_mask(tiny, mpp=0.5)


@pytest.mark.parametrize("kwargs", [{"mpp": True}, {"mpp": "8"}, {"mpp": np.float32(-8)}, {"max_mask_pixels": 1.5},
                                    {"method": "OTSU"}, {"method": None}])
def test_slide_mask_parameters_are_parsed(kwargs) -> None:
    slide = from_array(pink_scene((600, 800)), mpp=0.5)
    with pytest.raises(ParameterError, match=next(iter(kwargs))):
        tissue_mask(slide, **kwargs)


def test_png_output_refuses_other_suffixes_and_missing_folders(blob_mask: TissueMask, tmp_path: Path) -> None:
    from slidescope.wsi import OutputError

    with pytest.raises(ParameterError, match=r"expected a \.png path.*mask.jpg"):
        blob_mask.to_png(tmp_path / "mask.jpg")  # before: PNG bytes under a .jpg name
    with pytest.raises(OutputError, match="does not exist"):
        blob_mask.to_png(tmp_path / "no" / "such" / "mask.png")
    assert blob_mask.to_png(tmp_path / "masks" / "mask.PNG").endswith("mask.PNG")  # the last level is made
    assert sorted(p.name for p in tmp_path.iterdir()) == ["masks"]


def test_slide_mask_of_blank_slide_is_empty() -> None:
    tm = tissue_mask(from_array(np.full((800, 600, 3), 243, np.uint8), mpp=0.5), mpp=8.0)
    assert tm.fraction == 0.0 and tm.polygons() == []


# --------------------------------------------------------------------------- generated slides


def _synthetic():
    return pytest.importorskip("slidescope.wsi.synthetic", reason="slidescope.wsi.synthetic not available")


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory):
    synthetic = _synthetic()
    folder = tmp_path_factory.mktemp("tissue-synthetic")
    plain = synthetic.make_slide(folder / "plain.svs", 8192, 6144, seed=1)
    pen = synthetic.make_slide(folder / "pen.svs", 8192, 6144, seed=3, pen_marks=True)
    return synthetic, plain, pen


def _open(path):
    from slidescope.wsi import open_slide

    return open_slide(path)


def test_generated_slide_iou_with_truth(generated) -> None:
    synthetic, plain, _ = generated
    truth = synthetic.load_truth(plain.path)
    with _open(plain.path) as slide:
        tm = tissue_mask(slide, mpp=truth.mask_mpp)
    assert tm.array.shape == truth.tissue_mask.shape
    assert iou(tm.array, truth.tissue_mask) >= 0.95


def test_generated_slide_with_pen_iou_with_truth(generated) -> None:
    synthetic, _, pen = generated
    truth = synthetic.load_truth(pen.path)
    assert truth.pen_mask.any()
    with _open(pen.path) as slide:
        tm = tissue_mask(slide, mpp=truth.mask_mpp)
    expected = truth.tissue_mask & ~truth.pen_mask  # tissue under ink is rejected with the ink
    assert iou(tm.array, expected) >= 0.95
    assert tm.array[truth.pen_mask].mean() <= 0.5


# --------------------------------------------------------------------------- speed (opt-in)


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("SLIDESCOPE_SLOW") != "1", reason="timing run; set SLIDESCOPE_SLOW=1")
def test_mask_of_a_100k_pixel_slide_takes_under_a_second(load_rgb) -> None:
    rgb = cv2.resize(load_rgb("histoqc/pen/pen_red.png"), (3125, 3125), interpolation=cv2.INTER_CUBIC)
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        tissue_mask_from_rgb(rgb, 8.0)
        best = min(_timed(lambda: tissue_mask_from_rgb(rgb, 8.0)) for _ in range(3))
    finally:
        cv2.setNumThreads(threads)
    assert best < 1.0, f"{best:.2f} s for a 3125 x 3125 mask"


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start
