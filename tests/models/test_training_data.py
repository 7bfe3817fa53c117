"""Training data: labels from generated ground truth, the split by slide, batches and their targets."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from slidescope.models import ModelCard
from slidescope.models.augment import NO_AUGMENTATION, Augmentation
from slidescope.models.batches import VALIDATION, BatchMaker, render_targets
from slidescope.models.sampling import class_weights, epoch_batches
from slidescope.models.training_data import TrainingDataError, build_training_set, split_slides


@pytest.fixture(scope="module")
def slides(tmp_path_factory):
    from slidescope.wsi.synthetic import make_slide

    folder = tmp_path_factory.mktemp("training-slides")
    return [str(make_slide(folder / f"s{seed}.svs", 3072, 2048, seed=seed).path) for seed in range(3)]


def small(task: str) -> ModelCard:
    return ModelCard.new(task, tile=64, overlap=0 if task == "tissue" else 8)


def test_no_slide_is_in_both_splits(slides):
    for seed in range(5):
        train, val = split_slides(slides, None, seed)
        assert not set(train) & set(val) and len(val) == 1 and len(train) == 2
    training = build_training_set(small("tissue"), slides, seed=1)
    per_slide = training.tiles.groupby("slide").split.nunique()
    assert (per_slide == 1).all() and set(training.tiles.split) == {"train", "val"}
    with pytest.raises(TrainingDataError, match="both as a training and as a validation slide"):
        split_slides(slides, slides[:1], 0)


def test_tissue_labels_follow_the_ground_truth(slides):
    from slidescope.wsi.synthetic import load_truth

    training = build_training_set(small("tissue"), slides[:1], seed=0)
    truth = load_truth(slides[0])
    tiles = training.tiles
    d = truth.mask_downsample
    centre_row = ((tiles.l0_y + tiles.l0_height // 2) // d).clip(0, truth.tumour_mask.shape[0] - 1)
    centre_col = ((tiles.l0_x + tiles.l0_width // 2) // d).clip(0, truth.tumour_mask.shape[1] - 1)
    tumour = truth.tumour_mask[centre_row, centre_col]
    tissue = truth.tissue_mask[centre_row, centre_col]
    assert set(tiles.label) == {0, 1, 2}
    assert (tiles.label[tumour] == 2).mean() > 0.8
    assert (tiles.label[~tissue] == 0).mean() > 0.8


def test_cell_nuclei_map_to_the_model_types(slides):
    training = build_training_set(small("cell"), slides[:2], seed=0)
    xy, kinds = training.nuclei[training.tiles.slide.iloc[0]]
    assert len(xy) == len(kinds) > 100 and set(np.unique(kinds)) <= {0, 1}
    with pytest.raises(TrainingDataError, match="generated nucleus type .normal. is not a type of the model"):
        build_training_set(ModelCard.new("cell", tile=64, overlap=8, classes=[("tumour", "#ff0000"), ("other", "#0000ff")]),
                           slides[:1])


def test_render_targets_are_exact_at_the_centres():
    heatmap, types = render_targets(np.array([[10.2, 20.4], [40.0, 40.0]]), np.array([1, 0]), 64, 2.0, 4.0)
    assert heatmap[20, 10] == 1.0 and heatmap[40, 40] == 1.0 and (heatmap <= 1.0).all()
    assert types[20, 10] == 1 and types[40, 40] == 0 and types[0, 0] == -1
    assert (types >= 0).sum() == 2 * len(np.argwhere(np.hypot(*np.mgrid[-4:5, -4:5]) <= 4))


def test_sampling_is_balanced_and_seeded():
    labels = np.array([0] * 90 + [1] * 10)
    weights = class_weights(labels)
    assert np.isclose(weights[labels == 1].sum(), 0.5)
    first = epoch_batches(labels, 10, epoch=0, seed=3)
    assert np.array_equal(first, epoch_batches(labels, 10, epoch=0, seed=3))
    assert not np.array_equal(first, epoch_batches(labels, 10, epoch=1, seed=3))
    assert 0.3 < (labels[first] == 1).mean() < 0.7


@pytest.mark.parametrize("task", ["tissue", "cell"])
def test_batches_are_a_function_of_their_key(slides, task):
    card = small(task)
    training = build_training_set(card, slides, seed=0)
    maker = BatchMaker(task, training.split("train"), card.input.mpp, card.input.size, 4, seed=7,
                       augmentation=Augmentation(), nuclei=training.nuclei)
    key = maker.train_keys(0)[0]
    batch = maker(key)
    again = pickle.loads(pickle.dumps(maker))(key)  # in another process, the same bytes
    assert all(np.array_equal(batch[k], again[k]) for k in batch)
    assert batch["images"].shape == (4, 64, 64, 3) and batch["images"].dtype == np.uint8
    if task == "cell":
        assert batch["heatmap"].shape == (4, 64, 64) and batch["types"].dtype == np.int64
    validation = BatchMaker(task, training.split("val"), card.input.mpp, card.input.size, 4, seed=7,
                            nuclei=training.nuclei)
    keys = validation.validation_keys()
    assert keys[0][0] == VALIDATION
    assert sum(len(validation(k)["images"]) for k in keys) == len(training.split("val"))


def test_augmented_points_follow_the_pixels():
    image = np.zeros((32, 32, 3), np.uint8)
    image[5, 9] = 255
    plain = Augmentation(scale=0.0, hed_sigma=0.0, hed_bias=0.0, blur=0.0)
    for seed in range(8):
        out, points = plain.apply(image, np.random.default_rng(seed), np.array([[9.0, 5.0]]))
        row, col = np.argwhere(out[..., 0] == 255)[0]
        assert (round(points[0, 0]), round(points[0, 1])) == (col, row)
    assert NO_AUGMENTATION.apply(image, np.random.default_rng(0))[0] is not None


@pytest.mark.parametrize("framework", ["torch", "tf"])
def test_the_loader_workers_make_the_same_batches(slides, framework):
    """Spawned workers (persistent across epochs) hand over exactly the batches made in this process."""
    pytest.importorskip("torch" if framework == "torch" else "tensorflow")
    from slidescope.models.loaders import Loader

    card = small("cell")
    training = build_training_set(card, slides, seed=0)
    maker = BatchMaker("cell", training.split("train"), card.input.mpp, card.input.size, 4, seed=2,
                       augmentation=Augmentation(), nuclei=training.nuclei, steps=3)
    with Loader(maker, framework, workers=1) as loader:
        for epoch in (0, 1):
            keys = maker.train_keys(epoch)
            got = list(loader.batches(keys))
            assert len(got) == len(keys) == 3
            for key, batch in zip(keys, got):
                expected = maker(key)
                assert all(np.array_equal(np.asarray(batch[k]), expected[k]) for k in expected)
