"""Tests for slidescope.tiling.stain: Macenko/Reinhard normalisation, RGB<->HED, HED augmentation.

Real H&E images come from the shared third-party data folder (see its PROVENANCE.md), found through
SLIDESCOPE_TEST_DATA (default <repo>/../shared/data); tests needing them skip when it is absent.
"""

from __future__ import annotations

import json
import pickle

import cv2
import numpy as np
import pytest
import skimage.color

from slidescope.tiling.stain import (
    HedAugmenter,
    MacenkoNormalizer,
    ReinhardNormalizer,
    StainError,
    StainNotFittedError,
    augment_hed,
    hed_to_rgb,
    normalizer_from_dict,
    perturb_hed,
    rgb_to_hed,
)
from slidescope.wsi.errors import ParameterError, SlideError

NORMALIZERS = [MacenkoNormalizer, ReinhardNormalizer]


@pytest.fixture(scope="module")
def source(load_rgb) -> np.ndarray:
    return load_rgb("source.png")  # torchstain's pale, pink source (584x438)


@pytest.fixture(scope="module")
def target(load_rgb) -> np.ndarray:
    return load_rgb("target.png")  # torchstain's target (587x441)


@pytest.fixture(scope="module")
def lung(load_rgb) -> np.ndarray:
    return load_rgb("tcga-lung-rgb.png")  # 512x512 H&E with ~8% glass background


@pytest.fixture(scope="module")
def tile_batch(load_rgb) -> np.ndarray:
    """Five 256x256 real tiles of different stainings, one of them blank glass."""
    tiles = [
        load_rgb("source_image.png"),
        load_rgb("target_image.png")[:256, :256],
        load_rgb("source.png")[100:356, 200:456],
        load_rgb("tcga-lung-rgb.png")[256:, 256:],
        load_rgb("histolab-tiles/almost-white-1.png")[:256, :256],
    ]
    return np.stack(tiles)


@pytest.fixture(scope="module")
def macenko(target: np.ndarray) -> MacenkoNormalizer:
    return MacenkoNormalizer().fit(target)


@pytest.fixture(scope="module")
def reinhard(target: np.ndarray) -> ReinhardNormalizer:
    return ReinhardNormalizer().fit(target)


def stain_angles_deg(stains: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Angle in degrees between matching rows (H, E) of two stain matrices."""
    cosine = np.sum(stains * reference, axis=1) / (
        np.linalg.norm(stains, axis=1) * np.linalg.norm(reference, axis=1)
    )
    return np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0)))


def tissue_lab_stats(image: np.ndarray) -> np.ndarray:
    """Means and stds of skimage L*a*b* over pixels with L* < 90, as one (6,) vector."""
    lab = skimage.color.rgb2lab(image).reshape(-1, 3)
    tissue = lab[lab[:, 0] < 90]
    return np.concatenate([tissue.mean(axis=0), tissue.std(axis=0)])


# -- RGB <-> HED ---------------------------------------------------------------------------------


def test_rgb_to_hed_matches_skimage(lung: np.ndarray) -> None:
    every_level = np.repeat(np.arange(256, dtype=np.uint8), 3).reshape(16, 16, 3)
    for image in (lung, every_level, np.zeros((2, 2, 3), np.uint8)):
        np.testing.assert_allclose(rgb_to_hed(image), skimage.color.rgb2hed(image), rtol=0, atol=1e-12)


def test_hed_to_rgb_matches_skimage(lung: np.ndarray) -> None:
    rng = np.random.default_rng(0)
    for hed in (skimage.color.rgb2hed(lung), rng.uniform(-0.05, 0.3, size=(64, 64, 3))):
        expected = skimage.color.hed2rgb(hed)
        np.testing.assert_allclose(hed_to_rgb(hed, as_float=True), expected, rtol=0, atol=1e-12)
        as_uint8 = hed_to_rgb(hed)
        assert as_uint8.dtype == np.uint8
        assert np.abs(as_uint8.astype(int) - np.round(expected * 255)).max() <= 1


def test_rgb_to_hed_batch_equals_per_image(tile_batch: np.ndarray) -> None:
    batch_hed = rgb_to_hed(tile_batch)
    assert batch_hed.shape == tile_batch.shape
    for index, tile in enumerate(tile_batch):
        np.testing.assert_allclose(batch_hed[index], rgb_to_hed(tile), rtol=0, atol=1e-15)


def test_hed_conversions_reject_bad_input() -> None:
    with pytest.raises(StainError, match="uint8"):
        rgb_to_hed(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(StainError, match=r"\(\.\.\., 3\)"):
        hed_to_rgb(np.zeros((4, 4, 2)))


# -- Macenko -------------------------------------------------------------------------------------


def test_macenko_fitted_parameters(lung: np.ndarray) -> None:
    fitted = MacenkoNormalizer().fit(lung)
    stains, max_conc = fitted.stain_matrix, fitted.max_concentrations
    assert stains.shape == (2, 3) and max_conc.shape == (2,)
    np.testing.assert_allclose(np.linalg.norm(stains, axis=1), 1.0, atol=1e-12)
    assert np.all(max_conc > 0)
    assert stains[0, 0] > stains[1, 0]  # row 0 haematoxylin: it absorbs red more than eosin does
    # Reference H and E vectors distributed with Macenko's method (normalizeStaining.m, "HERef"):
    # a typical TCGA H&E slide lands within a few degrees of them.
    macenko_reference = np.array([[0.5626, 0.7201, 0.4062], [0.2159, 0.8012, 0.5581]])
    assert np.all(stain_angles_deg(stains, macenko_reference) < 8)


@pytest.mark.parametrize(
    ("source_name", "target_name"),
    [("source.png", "target.png"), ("source_image.png", "target_image.png")],
)
def test_macenko_moves_stains_and_concentrations_to_target(source_name: str, target_name: str, load_rgb) -> None:
    source_image, target_image = load_rgb(source_name), load_rgb(target_name)
    target_fit = MacenkoNormalizer().fit(target_image)
    before = MacenkoNormalizer().fit(source_image)
    normalised = target_fit.transform(source_image)
    after = MacenkoNormalizer().fit(normalised)

    angles_before = stain_angles_deg(before.stain_matrix, target_fit.stain_matrix)
    angles_after = stain_angles_deg(after.stain_matrix, target_fit.stain_matrix)
    assert np.all(angles_after < 1.5), angles_after
    assert angles_after.max() < angles_before.max() / 4, (angles_before, angles_after)

    gap_before = np.abs(before.max_concentrations - target_fit.max_concentrations).sum()
    gap_after = np.abs(after.max_concentrations - target_fit.max_concentrations).sum()
    assert gap_after < gap_before / 4, (gap_before, gap_after)


def test_macenko_target_to_itself_is_near_identity(macenko: MacenkoNormalizer, target: np.ndarray) -> None:
    # Not exact: Macenko rebuilds every pixel from two stains, dropping the OD residual off the
    # H&E plane (a few levels on average on this image).
    diff = np.abs(macenko.transform(target).astype(int) - target)
    assert diff.mean() < 3.5
    assert np.percentile(diff, 99) <= 16


def test_macenko_keeps_background_white(macenko: MacenkoNormalizer, lung: np.ndarray) -> None:
    image = lung.copy()
    image[:16, :16] = 255  # pure glass
    out = macenko.transform(image)
    assert np.all(out[:16, :16] == 255)
    glass = lung.min(axis=-1) >= 230
    assert glass.mean() > 0.02
    assert np.median(out[glass]) >= 230
    assert out[glass].min() >= 200


def test_macenko_single_colour_cannot_be_unmixed(macenko: MacenkoNormalizer) -> None:
    one_colour = np.full((64, 64, 3), (150, 100, 200), np.uint8)
    with pytest.raises(StainError, match=r"expected two separable stains .*got 0.00 degrees"):
        MacenkoNormalizer().fit(one_colour)
    for tile in (one_colour, np.zeros((64, 64, 3), np.uint8)):
        np.testing.assert_array_equal(macenko.transform(tile), tile)


def test_macenko_fit_on_several_tiles(target: np.ndarray) -> None:
    tiles = [target[:200, :300], target[200:, 300:], target[:150, 300:]]
    from_list = MacenkoNormalizer().fit(tiles)
    from_one = MacenkoNormalizer().fit(target)
    assert stain_angles_deg(from_list.stain_matrix, from_one.stain_matrix).max() < 3
    same_size = np.stack([target[:200, :200], target[200:400, 200:400]])
    np.testing.assert_array_equal(
        MacenkoNormalizer().fit(same_size).stain_matrix,
        MacenkoNormalizer().fit(list(same_size)).stain_matrix,
    )


# -- Reinhard ------------------------------------------------------------------------------------


def test_reinhard_parameters_are_tissue_lab_stats(reinhard: ReinhardNormalizer, target: np.ndarray) -> None:
    expected = tissue_lab_stats(target)  # skimage's L*a*b*; OpenCV's differs by < 0.3
    np.testing.assert_allclose(reinhard.lab_means, expected[:3], atol=0.3)
    np.testing.assert_allclose(reinhard.lab_stds, expected[3:], atol=0.3)
    every_pixel = ReinhardNormalizer(mask_background=False).fit(target)
    lab = skimage.color.rgb2lab(target).reshape(-1, 3)
    np.testing.assert_allclose(every_pixel.lab_means, lab.mean(axis=0), atol=0.3)


def test_reinhard_moves_lab_stats_to_target(
    reinhard: ReinhardNormalizer, source: np.ndarray, target: np.ndarray
) -> None:
    target_stats = tissue_lab_stats(target)
    gap_before = np.linalg.norm(tissue_lab_stats(source) - target_stats)
    gap_after = np.linalg.norm(tissue_lab_stats(reinhard.transform(source)) - target_stats)
    assert gap_after < gap_before / 5, (gap_before, gap_after)


def test_reinhard_target_to_itself_is_near_identity(
    reinhard: ReinhardNormalizer, target: np.ndarray
) -> None:
    diff = np.abs(reinhard.transform(target).astype(int) - target)
    assert diff.max() <= 2 and diff.mean() < 0.05


def test_reinhard_leaves_background_untouched(reinhard: ReinhardNormalizer, lung: np.ndarray) -> None:
    lab = cv2.cvtColor(lung.astype(np.float32) / 255, cv2.COLOR_RGB2LAB)
    glass = lab[..., 0] >= reinhard.background_l
    assert glass.mean() > 0.02
    out = reinhard.transform(lung)
    np.testing.assert_array_equal(out[glass], lung[glass])
    assert np.abs(out[~glass].astype(int) - lung[~glass]).mean() > 2  # tissue did change


# -- both normalisers ----------------------------------------------------------------------------


@pytest.mark.parametrize("cls", NORMALIZERS)
def test_use_before_fit_raises(cls: type, tile_batch: np.ndarray) -> None:
    normalizer = cls()
    assert not normalizer.is_fitted
    with pytest.raises(StainNotFittedError, match=r"not fitted; call fit\(") as caught:
        normalizer.transform(tile_batch[0])
    assert isinstance(caught.value, StainError) and isinstance(caught.value, SlideError)
    assert isinstance(caught.value, ValueError)
    attribute = "stain_matrix" if cls is MacenkoNormalizer else "lab_means"
    with pytest.raises(StainNotFittedError):
        getattr(normalizer, attribute)


@pytest.mark.parametrize("cls", NORMALIZERS)
def test_fit_on_blank_reference_raises(cls: type, load_rgb) -> None:
    blank = load_rgb("histolab-tiles/almost-white-1.png")
    with pytest.raises(StainError, match=r"expected at least \d+ tissue pixels.*got 0 of"):
        cls().fit(blank)


@pytest.mark.parametrize("cls", NORMALIZERS)
@pytest.mark.parametrize(
    ("bad", "pattern"),
    [
        (np.zeros((8, 8, 3), np.float64), r"expected uint8 .*got dtype float64"),
        (np.zeros((8, 8, 4), np.uint8), r"got shape \(8, 8, 4\).*alpha"),
        (np.zeros((8, 8), np.uint8), r"expected RGB pixels of shape \(H, W, 3\).*got shape \(8, 8\)"),
        (np.zeros((0, 8, 3), np.uint8), r"non-empty"),
        ([[1, 2, 3]], r"expected a numpy uint8 array"),
    ],
)
def test_bad_input_is_named(
    cls: type, bad: object, pattern: str, macenko: MacenkoNormalizer, reinhard: ReinhardNormalizer
) -> None:
    fitted = macenko if cls is MacenkoNormalizer else reinhard
    with pytest.raises(StainError, match=pattern):
        fitted.transform(bad)
    if isinstance(bad, np.ndarray):
        with pytest.raises(StainError, match=pattern):
            cls().fit(bad)


@pytest.mark.parametrize("cls", NORMALIZERS)
def test_batch_transform_equals_per_image(cls: type, target: np.ndarray, tile_batch: np.ndarray) -> None:
    normalizer = cls().fit(target)
    batch_out = normalizer.transform(tile_batch)
    assert batch_out.dtype == np.uint8 and batch_out.shape == tile_batch.shape
    for index, tile in enumerate(tile_batch):
        single = normalizer.transform(tile)
        assert single.dtype == np.uint8 and single.shape == tile.shape
        np.testing.assert_array_equal(batch_out[index], single)
    np.testing.assert_array_equal(batch_out[-1], tile_batch[-1])  # blank glass tile: unchanged


@pytest.mark.parametrize("cls", NORMALIZERS)
def test_serialisation_round_trip(cls: type, target: np.ndarray, tile_batch: np.ndarray) -> None:
    normalizer = cls().fit(target)
    data = json.loads(json.dumps(normalizer.to_dict()))  # plain types only
    assert data["method"] == cls.method
    for rebuilt in (cls.from_dict(data), normalizer_from_dict(data), pickle.loads(pickle.dumps(normalizer))):
        assert type(rebuilt) is cls and rebuilt.is_fitted
        assert rebuilt.to_dict() == normalizer.to_dict()
        np.testing.assert_array_equal(rebuilt.transform(tile_batch), normalizer.transform(tile_batch))

    unfitted = cls.from_dict(cls().to_dict())
    assert not unfitted.is_fitted


@pytest.mark.parametrize("cls", NORMALIZERS)
def test_bad_dicts_are_refused(cls: type, target: np.ndarray) -> None:
    good = cls().fit(target).to_dict()
    other = "reinhard" if cls is MacenkoNormalizer else "macenko"
    key = "stain_matrix" if cls is MacenkoNormalizer else "lab_means"
    cases = [
        ({**good, "method": other}, rf"expected method '{cls.method}', got '{other}'"),
        ({**good, "format_version": 99}, r"expected format_version 1, got 99"),
        ({k: v for k, v in good.items() if k != "params"}, r"missing keys \['params'\]"),
        ({**good, "params": {**good["params"], key: [1.0, 2.0]}}, rf"key '{key}' expected shape"),
        ({**good, "config": {**good["config"], "colour": 1}}, r"bad 'config'"),
    ]
    for data, pattern in cases:
        with pytest.raises(StainError, match=pattern):
            cls.from_dict(data)
    with pytest.raises(StainError, match="'method' one of"):
        normalizer_from_dict({"method": "vahadane"})


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ParameterError, match=r"MacenkoNormalizer: od_threshold: expected a number >= 0 and <= 5, got -1"):
        MacenkoNormalizer(od_threshold=-1)
    for bad in (True, "0.15", float("nan")):  # float() took these before
        with pytest.raises(ParameterError, match="od_threshold"):
            MacenkoNormalizer(od_threshold=bad)
    with pytest.raises(ParameterError, match="min_tissue_pixels: expected an integer"):
        ReinhardNormalizer(min_tissue_pixels=3.7)  # int() truncated it before
    assert MacenkoNormalizer(od_threshold=np.float32(0.25)).od_threshold == 0.25
    with pytest.raises(ParameterError, match="mask_background: expected True or False"):
        ReinhardNormalizer(mask_background="yes")


# -- HED augmentation ----------------------------------------------------------------------------


def test_zero_perturbation_is_identity(tile_batch: np.ndarray) -> None:
    out = augment_hed(tile_batch, rng=0, alpha_range=(1.0, 1.0), beta_range=(0.0, 0.0))
    assert out.dtype == np.uint8 and out.shape == tile_batch.shape
    assert np.abs(out.astype(int) - tile_batch).max() <= 1
    same = HedAugmenter(sigma=0.0, bias=0.0, seed=1)(tile_batch[0])
    assert np.abs(same.astype(int) - tile_batch[0]).max() <= 1


def test_seeded_augmentation_is_deterministic(tile_batch: np.ndarray) -> None:
    first, second = HedAugmenter(seed=7), HedAugmenter(seed=7)
    np.testing.assert_array_equal(first(tile_batch), second(tile_batch))
    np.testing.assert_array_equal(first(tile_batch[0]), second(tile_batch[0]))
    assert not np.array_equal(HedAugmenter(seed=8)(tile_batch), HedAugmenter(seed=7)(tile_batch))
    np.testing.assert_array_equal(augment_hed(tile_batch, rng=3), augment_hed(tile_batch, rng=3))


def test_each_image_of_a_batch_gets_its_own_draw(lung: np.ndarray) -> None:
    out = HedAugmenter(sigma=0.2, bias=0.1, seed=0)(np.stack([lung, lung]))
    assert not np.array_equal(out[0], out[1])


def test_perturbation_acts_on_hed_concentrations(lung: np.ndarray) -> None:
    more_haematoxylin = perturb_hed(lung, alpha=[1.3, 1.0, 1.0], beta=[0.0, 0.0, 0.0])
    tissue = lung.min(axis=-1) < 200
    before, after = rgb_to_hed(lung)[tissue], rgb_to_hed(more_haematoxylin)[tissue]
    ratio = after.mean(axis=0) / before.mean(axis=0)
    assert ratio[0] == pytest.approx(1.3, abs=0.02)
    assert ratio[1] == pytest.approx(1.0, abs=0.02)


def test_augmentation_changes_stain_but_keeps_glass_white(lung: np.ndarray) -> None:
    image = lung.copy()
    image[:16, :16] = 255
    out = HedAugmenter(sigma=0.2, bias=0.2, seed=0)(image)
    diff = np.abs(out.astype(int) - image)
    assert np.all(out[:16, :16] == 255)
    glass = image.min(axis=-1) >= 230
    tissue = image.min(axis=-1) < 200
    assert diff[glass].max() <= 8
    assert diff[tissue].mean() > 4


def test_augmentation_rejects_bad_parameters(lung: np.ndarray) -> None:
    with pytest.raises(ParameterError, match=r"HedAugmenter: sigma: expected a number >= 0 and <= 1, got -0.1"):
        HedAugmenter(sigma=-0.1)
    with pytest.raises(ParameterError, match="expected low <= high"):
        augment_hed(lung, alpha_range=(1.1, 0.9))
    with pytest.raises(ParameterError, match=r"alpha_range\[0\]: expected a number"):
        augment_hed(lung, alpha_range=("0.9", 1.1))
    with pytest.raises(StainError, match="alpha expected numbers"):
        perturb_hed(lung, alpha=[True, True, True], beta=[0.0, 0.0, 0.0])
    with pytest.raises(StainError, match=r"alpha expected finite values of shape \(3,\)"):
        perturb_hed(lung, alpha=[1.0, 1.0], beta=[0.0, 0.0, 0.0])
    with pytest.raises(StainError, match="uint8"):
        augment_hed(lung.astype(np.float32))
