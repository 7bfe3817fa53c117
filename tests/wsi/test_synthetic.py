"""Tests of slidescope.wsi.synthetic: format conformance (OpenSlide, tifffile), determinism,
ground truth against pixels, options, errors. Small slides only; the large timing run is opt-in
(``SLIDESCOPE_SLOW=1``)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile

from slidescope.wsi.errors import CorruptSlideError, SlideError, SlideNotFoundError
from slidescope.wsi.synthetic import (
    GroundTruth,
    SyntheticSlide,
    SyntheticSlideError,
    load_truth,
    make_slide,
    truth_path_for,
)

openslide = pytest.importorskip("openslide")

W, H = 2048, 1536


def _level(slide: "openslide.OpenSlide", level: int = 0) -> np.ndarray:
    w, h = slide.level_dimensions[level]
    return np.asarray(slide.read_region((0, 0), level, (w, h)))[..., :3]


def _cell_pixels(image: np.ndarray, truth: GroundTruth) -> np.ndarray:
    """The level-0 pixel each mask cell stands for (see the synthetic module notes)."""
    d = truth.mask_downsample
    h, w = image.shape[:2]
    ys = np.minimum(np.arange(truth.tissue_mask.shape[0]) * d + d // 2, h - 1)
    xs = np.minimum(np.arange(truth.tissue_mask.shape[1]) * d + d // 2, w - 1)
    return image[ys[:, None], xs[None, :]]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("synthetic")


@pytest.fixture(scope="module")
def pen_slide(folder: Path) -> SyntheticSlide:
    return make_slide(folder / "pen.svs", W, H, seed=1, pen_marks=True)


@pytest.fixture(scope="module")
def plain_slide(folder: Path) -> SyntheticSlide:
    return make_slide(folder / "plain.svs", W, H, seed=1, tumour=False)


@pytest.fixture(scope="module")
def pen_pixels(pen_slide: SyntheticSlide) -> np.ndarray:
    with openslide.OpenSlide(str(pen_slide.path)) as s:
        return _level(s)


# ----------------------------------------------------------------------------- format


def test_openslide_reads_aperio_metadata_and_levels(pen_slide: SyntheticSlide) -> None:
    assert pen_slide.path.suffix == ".svs" and pen_slide.truth_path == pen_slide.path.with_name("pen.truth.npz")
    assert (pen_slide.width, pen_slide.height, pen_slide.mpp, pen_slide.seed) == (W, H, 0.25, 1)
    assert openslide.OpenSlide.detect_format(str(pen_slide.path)) == "aperio"
    with openslide.OpenSlide(str(pen_slide.path)) as s:
        props = s.properties
        assert props["openslide.vendor"] == "aperio"
        assert float(props["openslide.mpp-x"]) == 0.25 and float(props["openslide.mpp-y"]) == 0.25
        assert float(props["openslide.objective-power"]) == 40
        assert s.level_dimensions == ((W, H), (W // 4, H // 4))
        assert s.level_downsamples == pytest.approx((1.0, 4.0))
        assert set(s.associated_images) == {"thumbnail", "label", "macro"}
        assert props["tiff.ImageDescription"].startswith("Aperio Image Library")
        assert "|AppMag = 40|" in props["tiff.ImageDescription"]


def test_layout_mirrors_aperio(pen_slide: SyntheticSlide) -> None:
    with tifffile.TiffFile(pen_slide.path) as tf:
        assert tf.is_svs
        pages = list(tf.pages)
        assert [p.is_tiled for p in pages] == [True, False, True, False, False]
        assert pages[0].tile == (256, 256) and pages[2].tile == (256, 256)
        for p in (pages[0], pages[1], pages[2], pages[4]):  # JPEG like Aperio's: RGB + 2x2 sampling + tables
            assert p.compression == tifffile.COMPRESSION.JPEG
            assert p.photometric == tifffile.PHOTOMETRIC.RGB
            assert p.tags["YCbCrSubSampling"].value == (2, 2)
            assert "JPEGTables" in p.tags
        assert " -> 512x384 - |" in pages[1].description  # thumbnail
        assert "(256x256) -> 512x384 JPEG/RGB Q=85|" in pages[2].description
        assert pages[3].description.endswith("label 400x420")
        assert pages[4].description.endswith("macro 1280x432")
        assert tf.series[0].levels[1].shape == (H // 4, W // 4, 3)


def test_associated_images_decode_alike(pen_slide: SyntheticSlide, pen_pixels: np.ndarray) -> None:
    with openslide.OpenSlide(str(pen_slide.path)) as s, tifffile.TiffFile(pen_slide.path) as tf:
        series = {sr.name.lower(): sr for sr in tf.series}
        for name in ("thumbnail", "label", "macro"):
            image = np.asarray(s.associated_images[name])[..., :3]
            np.testing.assert_array_equal(series[name].asarray(), image)
        thumb = np.asarray(s.associated_images["thumbnail"])[..., :3].astype(np.int16)
    assert thumb.shape == (384, 512, 3)
    shrunk = cv2.resize(pen_pixels, (512, 384), interpolation=cv2.INTER_AREA)
    assert np.abs(thumb - shrunk).mean() < 6


def test_tifffile_and_openslide_decode_the_same_pixels(pen_slide: SyntheticSlide, pen_pixels: np.ndarray) -> None:
    with tifffile.TiffFile(pen_slide.path) as tf:
        np.testing.assert_array_equal(tf.series[0].levels[0].asarray(), pen_pixels)


def test_reduced_level_matches_downsampled_level0(pen_slide: SyntheticSlide, pen_pixels: np.ndarray) -> None:
    with openslide.OpenSlide(str(pen_slide.path)) as s:
        level1 = _level(s, 1).astype(np.int16)
    shrunk = cv2.resize(pen_pixels, (W // 4, H // 4), interpolation=cv2.INTER_AREA)
    assert np.abs(level1 - shrunk).mean(axis=(0, 1)).max() < 6  # JPEG noise only; reader tests allow 12


def test_generic_tiff_opens_as_generic_tiff_with_mpp(folder: Path) -> None:
    slide = make_slide(folder / "generic.tiff", 1500, 1100, seed=2, mpp=0.5, format="generic-tiff", tile_size=128)
    assert openslide.OpenSlide.detect_format(str(slide.path)) == "generic-tiff"
    with openslide.OpenSlide(str(slide.path)) as s:
        assert s.properties["openslide.vendor"] == "generic-tiff"
        assert float(s.properties["openslide.mpp-x"]) == pytest.approx(0.5, rel=1e-6)
        assert float(s.properties["openslide.mpp-y"]) == pytest.approx(0.5, rel=1e-6)
        assert s.properties["tiff.ResolutionUnit"] == "centimeter"
        assert s.level_dimensions == ((1500, 1100), (375, 275))
        l0, l1 = _level(s), _level(s, 1).astype(np.int16)
    with tifffile.TiffFile(slide.path) as tf:
        assert not tf.is_svs and [lv.shape for lv in tf.series[0].levels] == [(1100, 1500, 3), (275, 375, 3)]
        np.testing.assert_array_equal(tf.series[0].levels[0].asarray(), l0)
    shrunk = cv2.resize(l0, (375, 275), interpolation=cv2.INTER_AREA)
    assert np.abs(l1 - shrunk).mean(axis=(0, 1)).max() < 6


@pytest.mark.parametrize("fmt", ["aperio", "generic-tiff"])
def test_mpp_none_writes_no_mpp(folder: Path, fmt: str) -> None:
    slide = make_slide(folder / f"nompp-{fmt}.tif", 512, 384, seed=4, mpp=None, format=fmt)
    assert slide.mpp is None
    with openslide.OpenSlide(str(slide.path)) as s:
        assert s.properties["openslide.vendor"] == fmt
        assert "openslide.mpp-x" not in s.properties and "aperio.MPP" not in s.properties
    assert load_truth(slide.path).mask_mpp == pytest.approx(8.0)  # nominal 0.25 um/px


def test_more_levels_and_odd_sizes(folder: Path) -> None:
    slide = make_slide(folder / "odd.svs", 4500, 1000, seed=5, tile_size=240, objective_power=20, mpp=0.5)
    with openslide.OpenSlide(str(slide.path)) as s:
        assert s.level_dimensions == ((4500, 1000), (1125, 250), (281, 62))
        assert float(s.properties["openslide.objective-power"]) == 20
        assert s.level_dimensions[0] == (4500, 1000)
        l1 = _level(s, 1).astype(np.int16)
        l2 = _level(s, 2).astype(np.int16)
        # level 2 is the area average of level 1 (and so of level 0)
        shrunk = cv2.resize(l1[: 62 * 4, : 281 * 4].astype(np.uint8), (281, 62), interpolation=cv2.INTER_AREA)
        assert np.abs(l2 - shrunk).mean() < 6
    truth = load_truth(slide.path)
    assert truth.mask_downsample == 16 and truth.tissue_mask.shape == (63, 282)


def test_pixels_do_not_depend_on_tile_size(folder: Path, pen_pixels: np.ndarray) -> None:
    slide = make_slide(folder / "tiles128.svs", W, H, seed=1, pen_marks=True, tile_size=128)
    with openslide.OpenSlide(str(slide.path)) as s:
        other = _level(s).astype(np.int16)
    assert np.abs(other - pen_pixels).mean() < 2.5  # same image, JPEG blocks placed differently


# ----------------------------------------------------------------------------- determinism


def test_same_seed_same_bytes(tmp_path: Path, pen_slide: SyntheticSlide) -> None:
    again = make_slide(tmp_path / "pen.svs", W, H, seed=1, pen_marks=True)
    assert again.truth_path.read_bytes() == pen_slide.truth_path.read_bytes()
    assert again.path.read_bytes() == pen_slide.path.read_bytes()


def test_different_seeds_differ(tmp_path: Path, pen_slide: SyntheticSlide, pen_pixels: np.ndarray) -> None:
    other = make_slide(tmp_path / "other.svs", W, H, seed=2, pen_marks=True)
    a, b = load_truth(pen_slide.path), load_truth(other.path)
    assert (a.tissue_mask != b.tissue_mask).mean() > 0.05
    with openslide.OpenSlide(str(other.path)) as s:
        assert np.abs(_level(s).astype(np.int16) - pen_pixels).mean() > 10


# ----------------------------------------------------------------------------- ground truth


def test_truth_layout(pen_slide: SyntheticSlide) -> None:
    truth = load_truth(pen_slide.path)
    np.testing.assert_array_equal(load_truth(pen_slide.truth_path).nuclei_xy, truth.nuclei_xy)  # either path
    assert truth.type_names == ("normal", "tumour", "lymphocyte")
    assert truth.mask_mpp == 8.0 and truth.mask_downsample == 32 and truth.dimensions == (W, H)
    for mask in (truth.tissue_mask, truth.tumour_mask, truth.pen_mask):
        assert mask.dtype == bool and mask.shape == (H // 32, W // 32)
    assert truth.nuclei_xy.dtype == np.float64 and truth.nuclei_xy.shape == (truth.nuclei_type.size, 2)
    assert set(np.unique(truth.nuclei_type)) <= {0, 1, 2}
    assert not (truth.tumour_mask & ~truth.tissue_mask).any()
    with np.load(pen_slide.truth_path, allow_pickle=False) as npz:
        assert {"tissue_mask", "tumour_mask", "pen_mask", "mask_mpp", "nuclei_xy", "nuclei_type",
                "type_names", "mask_downsample", "dimensions", "seed", "slide_mpp"} <= set(npz.files)


@pytest.mark.parametrize("seed", [0, 11, 12, 13])
def test_tissue_fraction_in_range(tmp_path: Path, seed: int) -> None:
    slide = make_slide(tmp_path / "f.svs", 1024, 768, seed=seed)
    fraction = load_truth(slide.path).tissue_mask.mean()
    assert 0.30 <= fraction <= 0.60
    with openslide.OpenSlide(str(slide.path)) as s:
        pixels = _level(s)
    assert abs((pixels[..., 1] < 215).mean() - fraction) < 0.05  # non-white pixels ~ tissue


def test_tissue_mask_agrees_with_pixels(pen_slide: SyntheticSlide, pen_pixels: np.ndarray) -> None:
    truth = load_truth(pen_slide.path)
    green = _cell_pixels(pen_pixels, truth)[..., 1].astype(int)
    ink = truth.pen_mask
    tissue, background = truth.tissue_mask & ~ink, ~truth.tissue_mask & ~ink
    assert tissue.sum() > 100 and background.sum() > 100
    assert (green[tissue] < 215).mean() > 0.99  # pink / purple
    assert (green[background] > 225).mean() > 0.99  # white-ish
    assert (pen_pixels.min(axis=-1)[:: 8, :: 8] > 200).mean() > 0.3  # plenty of bright background


def test_truth_is_exact_against_the_renderer(pen_slide: SyntheticSlide) -> None:
    """Without JPEG in between, every mask cell agrees with its pixel."""
    from slidescope.wsi._synthetic_model import build_model
    from slidescope.wsi._synthetic_render import TileRenderer

    image = TileRenderer(build_model(W, H, 1, tumour=True, pen_marks=True, mpp=0.25)).render(0, 0, W, H)
    truth = load_truth(pen_slide.path)
    green = _cell_pixels(image, truth)[..., 1]
    ink = truth.pen_mask
    assert (green[truth.tissue_mask & ~ink] <= 210).all()
    assert (green[~truth.tissue_mask & ~ink] >= 225).all()
    assert (green[ink] <= 210).all()  # every ink colour darkens green


def test_nuclei_lie_in_tissue_and_look_dark(pen_slide: SyntheticSlide, pen_pixels: np.ndarray) -> None:
    truth = load_truth(pen_slide.path)
    assert truth.nuclei_xy.shape[0] > 50
    x = np.round(truth.nuclei_xy[:, 0]).astype(int)
    y = np.round(truth.nuclei_xy[:, 1]).astype(int)
    d = truth.mask_downsample
    near_tissue = cv2.dilate(truth.tissue_mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    assert near_tissue[y // d, x // d].all()
    assert (pen_pixels[y, x, 1] < 150).mean() > 0.95  # haematoxylin-dark centres


def test_tumour_nuclei_are_denser(pen_slide: SyntheticSlide) -> None:
    truth = load_truth(pen_slide.path)
    assert truth.tumour_mask.any()
    d = truth.mask_downsample
    cells = (truth.nuclei_xy // d).astype(int)
    in_tumour = truth.tumour_mask[cells[:, 1], cells[:, 0]]
    kinds = truth.nuclei_type
    assert (kinds[in_tumour] != 0).all() and (kinds[~in_tumour] != 1).mean() > 0.97
    density_tumour = in_tumour.sum() / truth.tumour_mask.sum()
    density_stroma = (~in_tumour).sum() / (truth.tissue_mask & ~truth.tumour_mask).sum()
    assert density_tumour > 2.5 * density_stroma


def test_no_tumour_when_not_asked(plain_slide: SyntheticSlide, pen_slide: SyntheticSlide) -> None:
    truth = load_truth(plain_slide.path)
    assert not truth.tumour_mask.any()
    assert 1 not in truth.nuclei_type
    # the same seed keeps the same tissue whether or not tumour and pen are painted
    np.testing.assert_array_equal(truth.tissue_mask, load_truth(pen_slide.path).tissue_mask)


def test_pen_marks_only_when_asked(plain_slide: SyntheticSlide, pen_slide: SyntheticSlide, pen_pixels) -> None:
    plain = load_truth(plain_slide.path)
    assert not plain.pen_mask.any()
    with openslide.OpenSlide(str(plain_slide.path)) as s:
        plain_green = _cell_pixels(_level(s), plain)[..., 1]
    assert (plain_green[~plain.tissue_mask] > 225).mean() > 0.99  # no ink on the background

    inked = load_truth(pen_slide.path)
    assert (inked.pen_mask & inked.tissue_mask).any() and (inked.pen_mask & ~inked.tissue_mask).any()
    green = _cell_pixels(pen_pixels, inked)[..., 1]
    assert (green[inked.pen_mask & ~inked.tissue_mask] < 200).mean() > 0.95  # ink on glass


# ----------------------------------------------------------------------------- errors and files


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"width": 0}, "width"),
        ({"width": -5}, "width"),
        ({"height": 10}, "height"),
        ({"width": 100.5}, "width"),
        ({"width": True}, "width"),
        ({"tile_size": 100}, "tile_size"),
        ({"tile_size": 0}, "tile_size"),
        ({"mpp": 0.0}, "mpp"),
        ({"mpp": -0.25}, "mpp"),
        ({"mpp": float("nan")}, "mpp"),
        ({"mpp": "0.25"}, "mpp"),
        ({"quality": 101}, "quality"),
        ({"seed": -1}, "seed"),
        ({"format": "ndpi"}, "format"),
        ({"objective_power": 0}, "objective_power"),
        ({"tumour": "yes"}, "tumour"),
    ],
)
def test_bad_arguments_raise(tmp_path: Path, kwargs: dict, needle: str) -> None:
    args = {"width": 256, "height": 256, **kwargs}
    width, height = args.pop("width"), args.pop("height")
    with pytest.raises(SyntheticSlideError, match=needle) as info:
        make_slide(tmp_path / "bad.svs", width, height, **args)
    assert isinstance(info.value, SlideError) and isinstance(info.value, ValueError)
    bad = {**kwargs}.popitem()[1]
    assert repr(bad) in str(info.value) or str(bad) in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(SlideNotFoundError, match="does not exist"):
        make_slide(tmp_path / "nope" / "s.svs", 256, 256)


def test_failed_write_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import slidescope.wsi.synthetic as synthetic

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    target = tmp_path / "s.svs"
    target.write_bytes(b"old")
    monkeypatch.setattr(synthetic, "write_pyramid", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        make_slide(target, 256, 256)
    assert target.read_bytes() == b"old"  # the old file is untouched, no truth was written
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.svs"]


def test_no_temporary_files_and_usual_permissions(pen_slide: SyntheticSlide) -> None:
    names = [p.name for p in pen_slide.path.parent.iterdir()]
    assert not [n for n in names if n.startswith(".")]
    umask = os.umask(0)
    os.umask(umask)
    assert pen_slide.path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_load_truth_errors(tmp_path: Path) -> None:
    with pytest.raises(SlideNotFoundError, match="no ground truth"):
        load_truth(tmp_path / "absent.svs")
    truth_path_for(tmp_path / "junk.svs").write_bytes(b"not a zip")
    with pytest.raises(CorruptSlideError, match="junk.truth.npz"):
        load_truth(tmp_path / "junk.svs")


# ----------------------------------------------------------------------------- timing (opt-in)


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("SLIDESCOPE_SLOW") != "1", reason="timing run; set SLIDESCOPE_SLOW=1")
def test_time_large_slide(tmp_path: Path) -> None:
    start = time.perf_counter()
    make_slide(tmp_path / "large.svs", 20_000, 15_000, seed=0, pen_marks=True)
    print(f"\nmake_slide 20000 x 15000: {time.perf_counter() - start:.1f} s")


# ----------------------------------------------------------------------------- tissue_fraction


@pytest.mark.parametrize("fraction", [0.25, 0.7])
def test_tissue_fraction_sets_the_coverage(tmp_path: Path, fraction: float) -> None:
    slide = make_slide(tmp_path / "f.svs", 1024, 768, seed=3, tissue_fraction=fraction)
    truth = load_truth(slide.path)
    assert abs(truth.tissue_mask.mean() - fraction) < 0.02
    with openslide.OpenSlide(str(slide.path)) as s:
        pixels = _level(s)
    assert abs((pixels[..., 1] < 215).mean() - fraction) < 0.05  # non-white pixels ~ tissue


def test_tissue_fraction_one_is_all_tissue(tmp_path: Path) -> None:
    slide = make_slide(tmp_path / "full.svs", 1024, 768, seed=3, tissue_fraction=1.0)
    assert load_truth(slide.path).tissue_mask.all()
    with openslide.OpenSlide(str(slide.path)) as s:
        assert (_level(s)[..., 1] < 215).mean() > 0.99  # no glass anywhere


def test_tissue_fraction_none_is_the_default(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()  # same file name in both: the name is written into the label image
    default = make_slide(tmp_path / "a" / "s.svs", 512, 384, seed=4)
    explicit = make_slide(tmp_path / "b" / "s.svs", 512, 384, seed=4, tissue_fraction=None)
    assert default.path.read_bytes() == explicit.path.read_bytes()
    assert default.truth_path.read_bytes() == explicit.truth_path.read_bytes()


@pytest.mark.parametrize("bad", [0, 0.0, -0.1, 1.5, float("nan"), "0.5", True])
def test_tissue_fraction_out_of_range_raises(tmp_path: Path, bad: object) -> None:
    with pytest.raises(SyntheticSlideError, match="tissue_fraction") as info:
        make_slide(tmp_path / "bad.svs", 256, 256, tissue_fraction=bad)
    assert repr(bad) in str(info.value)
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- domain shift


def _shifted(folder: Path, name: str, **kwargs) -> tuple[GroundTruth, np.ndarray]:
    """A 512 x 512 slide (seed 4 unless given) in its own sub-folder: its truth and level-0 pixels."""
    (folder / name).mkdir()
    args = {"seed": 4, **kwargs}
    slide = make_slide(folder / name / "s.svs", 512, 512, **args)
    with openslide.OpenSlide(str(slide.path)) as s:
        return load_truth(slide.path), _level(s).astype(np.float64)


def _assert_same_truth(a: GroundTruth, b: GroundTruth, nuclei: bool = True) -> None:
    for name in ("tissue_mask", "tumour_mask", "pen_mask"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert (a.mask_downsample, a.mask_mpp, a.dimensions) == (b.mask_downsample, b.mask_mpp, b.dimensions)
    if nuclei:
        np.testing.assert_array_equal(a.nuclei_xy, b.nuclei_xy)
        np.testing.assert_array_equal(a.nuclei_type, b.nuclei_type)


def test_domain_shift_defaults_are_the_old_bytes(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "c").mkdir()
    default = make_slide(tmp_path / "a" / "s.svs", 512, 384, seed=4, pen_marks=True)
    explicit = make_slide(tmp_path / "b" / "s.svs", 512, 384, seed=4, pen_marks=True,
                          stain_shift=None, nucleus_scale=1.0, nucleus_density=1.0)
    zero = make_slide(tmp_path / "c" / "s.svs", 512, 384, seed=4, pen_marks=True,
                      stain_shift=0, nucleus_scale=1, nucleus_density=1)
    for other in (explicit, zero):
        assert default.path.read_bytes() == other.path.read_bytes()
        assert default.truth_path.read_bytes() == other.truth_path.read_bytes()
    with np.load(default.truth_path, allow_pickle=False) as npz:
        assert not {"stain_shift", "nucleus_scale", "nucleus_density"} & set(npz.files)  # old layout
    truth = load_truth(default.path)
    assert (truth.stain_shift, truth.nucleus_scale, truth.nucleus_density) == (0.0, 1.0, 1.0)


def test_domain_shift_is_recorded_in_the_truth(tmp_path: Path) -> None:
    slide = make_slide(tmp_path / "s.svs", 256, 256, seed=2, stain_shift=0.25, nucleus_scale=1.25)
    truth = load_truth(slide.path)
    assert (truth.stain_shift, truth.nucleus_scale, truth.nucleus_density) == (0.25, 1.25, 1.0)


def test_shift_stains_keeps_white_and_is_identity_at_zero() -> None:
    from slidescope.wsi._synthetic_render import shift_stains

    colours = np.array([[255.0, 255.0, 255.0], [212.0, 112.0, 168.0], [46.0, 26.0, 96.0]])
    np.testing.assert_array_equal(shift_stains(colours, 0.0), colours)
    shifted = shift_stains(colours, 1.0)
    np.testing.assert_allclose(shifted[0], 255.0)  # no stain, no optical density
    assert shifted[1, 2] < colours[1, 2] - 20  # eosin absorbs blue: orange
    assert shifted[2, 0] < colours[2, 0] - 10  # haematoxylin absorbs red: bluer


def test_stain_shift_recolours_tissue_not_glass_nor_truth(tmp_path: Path) -> None:
    base_truth, base = _shifted(tmp_path, "base")
    half_truth, half = _shifted(tmp_path, "half", stain_shift=0.5)
    full_truth, full = _shifted(tmp_path, "full", stain_shift=1.0)
    _assert_same_truth(base_truth, half_truth)
    _assert_same_truth(base_truth, full_truth)
    assert full_truth.stain_shift == 1.0

    stroma = base_truth.tissue_mask & ~base_truth.tumour_mask
    glass = ~base_truth.tissue_mask
    assert stroma.sum() > 20 and glass.sum() > 20
    b, h, f = (_cell_pixels(img, base_truth) for img in (base, half, full))
    assert np.abs(f[glass] - b[glass]).mean(axis=0).max() < 1.5  # glass stays near white
    # eosin more orange: less blue in the stroma, the more so the stronger the shift
    blue = [img[stroma][:, 2].mean() for img in (b, h, f)]
    assert blue[0] - blue[1] > 7 and blue[1] - blue[2] > 5
    # haematoxylin bluer: nucleus centres lose red, gain blue relative to red
    xy = np.floor(base_truth.nuclei_xy + 0.5).astype(int)
    nb, nf = base[xy[:, 1], xy[:, 0]], full[xy[:, 1], xy[:, 0]]
    assert nb[:, 0].mean() - nf[:, 0].mean() > 15
    assert (nf[:, 2] / nf[:, 0]).mean() > (nb[:, 2] / nb[:, 0]).mean() + 0.3
    assert (nf[:, 1] < 150).mean() > 0.95  # still haematoxylin-dark


def _dark_pixels(pixels: np.ndarray) -> int:
    return int((pixels[..., 1] < 95).sum())  # nuclei: stroma and epithelium are never this dark in green


def test_nucleus_scale_grows_nuclei_in_place(tmp_path: Path) -> None:
    kwargs = {"tissue_fraction": 1.0, "mpp": 0.5}
    base_truth, base = _shifted(tmp_path, "base", **kwargs)
    big_truth, big = _shifted(tmp_path, "big", nucleus_scale=1.5, **kwargs)
    small_truth, small = _shifted(tmp_path, "small", nucleus_scale=0.5, **kwargs)
    _assert_same_truth(base_truth, big_truth)  # same centres and types: only the sizes change
    _assert_same_truth(base_truth, small_truth)
    assert base_truth.nuclei_xy.shape[0] > 50
    per_nucleus = [_dark_pixels(img) / base_truth.nuclei_xy.shape[0] for img in (small, base, big)]
    assert per_nucleus[2] > 1.6 * per_nucleus[1]  # area ~ scale**2 = 2.25, less overlap and edges
    assert per_nucleus[0] < 0.4 * per_nucleus[1]  # ~ 0.25
    xy = np.floor(small_truth.nuclei_xy + 0.5).astype(int)
    assert (small[xy[:, 1], xy[:, 0], 1] < 150).mean() > 0.9  # even small nuclei are painted at their centres


def test_nucleus_density_multiplies_the_count(tmp_path: Path) -> None:
    kwargs = {"tissue_fraction": 1.0, "mpp": 1.0}  # 0.26 mm^2 of tissue: ~600 nuclei
    base_truth, _ = _shifted(tmp_path, "base", **kwargs)
    dense_truth, dense = _shifted(tmp_path, "dense", nucleus_density=1.5, **kwargs)
    sparse_truth, _ = _shifted(tmp_path, "sparse", nucleus_density=0.5, **kwargs)
    _assert_same_truth(base_truth, dense_truth, nuclei=False)  # the layout is kept
    n = base_truth.nuclei_xy.shape[0]
    assert n > 300
    assert abs(dense_truth.nuclei_xy.shape[0] / n - 1.5) < 0.2 * 1.5
    assert abs(sparse_truth.nuclei_xy.shape[0] / n - 0.5) < 0.2 * 0.5
    assert set(np.unique(dense_truth.nuclei_type)) == set(np.unique(base_truth.nuclei_type)) == {0, 1, 2}
    # still exact: each type is that of the region the renderer paints at its centre, painted dark
    from slidescope.wsi._synthetic_model import CH_TISSUE, CH_TUMOUR, build_model, sample_points

    model = build_model(512, 512, 4, tumour=True, pen_marks=False, mpp=1.0, tissue_fraction=1.0, nucleus_density=1.5)
    np.testing.assert_array_equal(model.nuclei.xy, dense_truth.nuclei_xy)
    xy = np.floor(dense_truth.nuclei_xy + 0.5).astype(int)
    fields = sample_points(model, xy[:, 0], xy[:, 1], slice(CH_TISSUE, CH_TUMOUR + 1))
    assert (fields[:, 0] > 0.5).all()
    in_tumour = fields[:, 1] > 0.5
    assert (dense_truth.nuclei_type[in_tumour] != 0).all() and (dense_truth.nuclei_type[~in_tumour] != 1).all()
    assert (dense[xy[:, 1], xy[:, 0], 1] < 150).mean() > 0.9


@pytest.mark.parametrize("name", ["stain_shift", "nucleus_scale", "nucleus_density"])
@pytest.mark.parametrize("bad", [-1, float("nan"), float("inf"), True, "1", 9.0])
def test_domain_shift_bad_values_raise(tmp_path: Path, name: str, bad: object) -> None:
    with pytest.raises(SyntheticSlideError, match=name) as info:
        make_slide(tmp_path / "bad.svs", 256, 256, **{name: bad})
    assert repr(bad) in str(info.value) and isinstance(info.value, ValueError)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["nucleus_scale", "nucleus_density"])
@pytest.mark.parametrize("bad", [0, 0.0, None])
def test_nucleus_options_must_be_positive(tmp_path: Path, name: str, bad: object) -> None:
    with pytest.raises(SyntheticSlideError, match=name):
        make_slide(tmp_path / "bad.svs", 256, 256, **{name: bad})
    assert list(tmp_path.iterdir()) == []
