"""One definition, two frameworks: the same weights give the same outputs in torch and in Keras.

For both models, both padding conventions (torch-style symmetric with BatchNorm epsilon 1e-5,
TensorFlow "same" with 1e-3), on random input and on real H&E tiles: every output within 1e-4.
"""

from __future__ import annotations

import numpy as np
import pytest

from slidescope.models import ModelCard, create_model, default_architecture

pytest.importorskip("torch")
pytest.importorskip("keras")

TOLERANCE = 1e-4


def _pair(task: str, convention: str, randomise, to_keras):
    architecture = default_architecture(task, convention)
    torch_card = ModelCard.new(task, "torch", architecture=architecture)
    tf_card = ModelCard.new(task, "tf", architecture=architecture)
    torch_model = create_model(task, "torch", card=torch_card, seed=3, device="cpu")
    randomise(torch_model.backend, seed=4)
    keras_model = create_model(task, "tf", card=tf_card, seed=5, device="cpu")
    keras_model.backend.set_weights(to_keras(torch_model.backend.get_weights()))
    return torch_model, keras_model


@pytest.mark.parametrize("task", ["tissue", "cell"])
@pytest.mark.parametrize("convention", ["torch", "tf"])  # symmetric + eps 1e-5, or tf_same + eps 1e-3
def test_same_weights_same_outputs(task, convention, randomise, to_keras, he_tiles):
    torch_model, keras_model = _pair(task, convention, randomise, to_keras)
    size = torch_model.card.input.size
    random = np.random.default_rng(7).integers(0, 256, (2, size, size, 3), dtype=np.uint8)
    for images in (random, he_tiles(size, 3)):
        expected, got = torch_model.predict(images), keras_model.predict(images)
        assert expected.keys() == got.keys()
        for key in expected:
            assert expected[key].shape == got[key].shape, key
            difference = np.abs(expected[key].astype(np.float64) - got[key].astype(np.float64)).max()
            assert difference <= TOLERANCE, f"{task} {key}: max difference {difference:.2e}"


def test_raw_outputs_agree_before_post_processing(randomise, to_keras, he_tiles):
    torch_model, keras_model = _pair("tissue", "tf", randomise, to_keras)
    images = he_tiles(256, 2)
    expected, got = torch_model.backend.run(images), keras_model.backend.run(images)
    for key in ("features", "logits"):
        assert np.abs(expected[key] - got[key]).max() <= TOLERANCE
