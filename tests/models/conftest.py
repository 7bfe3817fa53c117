"""Fixtures of the model tests: real H&E tiles, and a torch -> Keras weight converter.

The converter is a small test helper (merge/ owns real checkpoint conversion): it renames and
transposes the tensors that :func:`slidescope.models.weight_shapes` lists for each framework.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter, not a setting of ours

#: Real H&E images of the shared data folder (PROVENANCE.md) that tests cut tiles from.
HE_IMAGES = ("hovernet_input_image.png", "colon.png", "glands.png", "nuclei.png", "histo.jpg")

from slidescope.models.architectures import BATCHNORM_NAMES  # noqa: E402

_BATCHNORM = dict(zip(BATCHNORM_NAMES["torch"], BATCHNORM_NAMES["tf"]))


def torch_to_keras(weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """torch names and layouts -> Keras ones: OIHW -> HWIO, dense (K, C) -> (C, K), BatchNorm names."""
    converted = {}
    for name, value in weights.items():
        layer, _, suffix = name.rpartition(".")
        if suffix == "num_batches_tracked":
            continue
        if "_bn" in layer:
            converted[f"{layer}/{_BATCHNORM[suffix]}"] = value
        elif suffix == "weight":
            converted[f"{layer}/kernel"] = value.transpose(2, 3, 1, 0) if value.ndim == 4 else value.T
        else:
            converted[f"{layer}/{suffix}"] = value
    return converted


@pytest.fixture(scope="session")
def to_keras():
    return torch_to_keras


@pytest.fixture(scope="session")
def he_tiles(load_rgb):
    """``he_tiles(size, count)``: uint8 RGB tiles cut from the real H&E images (resized when smaller)."""
    import cv2

    def cut(size: int, count: int = 4) -> np.ndarray:
        tiles = []
        for name in HE_IMAGES:
            image = load_rgb(name)
            if min(image.shape[:2]) < size:
                scale = size / min(image.shape[:2])
                image = cv2.resize(image, (max(size, round(image.shape[1] * scale)),
                                           max(size, round(image.shape[0] * scale))), interpolation=cv2.INTER_LINEAR)
            tiles.append(image[:size, :size])
            if len(tiles) == count:
                break
        return np.ascontiguousarray(np.stack(tiles))

    return cut


def randomise_batchnorm(backend, seed: int = 0) -> None:
    """Give a torch backend's BatchNorm layers non-trivial statistics and affine terms."""
    rng = np.random.default_rng(seed)
    weights = backend.get_weights()
    for name, value in weights.items():
        if name.endswith(("running_mean", "bias")) and value.ndim == 1:
            weights[name] = rng.normal(0, 0.1, value.shape).astype(value.dtype)
        elif name.endswith(("running_var",)) or (name.endswith("weight") and value.ndim == 1):
            weights[name] = rng.uniform(0.5, 1.5, value.shape).astype(value.dtype)
    backend.set_weights(weights)


@pytest.fixture(scope="session")
def randomise():
    return randomise_batchnorm
