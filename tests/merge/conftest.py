"""Parts to merge: small tissue and cell models really trained (AdamW, BatchNorm) in torch and in Keras.

Each part is a model directory (card + weights) and the training state its trainer wrote (torch:
``model`` + ``optimizer``; TF: a ``tf.train.Checkpoint`` of model and optimiser), so merges meet
real optimiser slots and moving statistics. Small architectures keep the session fixture to
seconds; 64 px tiles leave the cell model room for nuclei.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SMALL = {"tissue": {"widths": [8, 16], "depth": 1}, "cell": {"widths": [4, 8], "depth": 1}}
SIZE = 64


def small_card(task: str, framework: str):
    from slidescope.models import ModelCard

    data = ModelCard.new(task, framework).to_dict()
    data["architecture"].update(SMALL[task])
    data["input"].update(tile=SIZE, overlap=0)
    if task == "cell":  # a barely trained heatmap stays low: a low score still finds peaks to compare
        data["thresholds"]["nucleus_score"] = 0.05
    return ModelCard.from_dict(data)


def _batch(task: str, rng: np.random.Generator) -> dict[str, np.ndarray]:
    images = rng.integers(0, 256, (4, SIZE, SIZE, 3), dtype=np.uint8)
    if task == "tissue":
        return {"images": images, "labels": rng.integers(0, 3, 4).astype(np.int64)}
    heatmap = np.zeros((4, SIZE, SIZE), np.float32)
    types = np.full((4, SIZE, SIZE), -1, np.int64)
    for i in range(4):
        for y, x in rng.integers(4, SIZE - 4, (5, 2)):
            heatmap[i, y, x] = 1.0
            types[i, y - 2:y + 3, x - 2:x + 3] = int(rng.integers(0, 2))
    return {"images": images, "heatmap": heatmap, "types": types}


def train_part(folder, task: str, framework: str, seed: int = 0) -> dict[str, str]:
    """A few AdamW steps of a small ``task`` model; its model directory and training state."""
    from slidescope.models import Model, save_model
    from slidescope.models.registry import backend_class, trainer_class
    from slidescope.models.trainer import STATE_SUFFIX

    card = small_card(task, framework)
    backend = backend_class(framework)(card, "cpu", seed)
    trainer = trainer_class(framework)(backend, lr=1e-2, weight_decay=1e-4, total_steps=4)
    rng = np.random.default_rng(seed)
    for _ in range(3):
        trainer.train_step(_batch(task, rng))
    state = str(folder / f"{task}-{framework}-state{STATE_SUFFIX[framework]}")
    trainer.save_state(state)
    directory = save_model(Model(card, backend), folder / f"{task}-{framework}")
    return {"dir": directory, "state": state}


class Parts(dict):
    """``(task, framework) -> {"dir", "state"}``; :meth:`need` skips when a framework is missing."""

    def need(self, *keys):
        for key in keys:
            if key not in self:
                pytest.skip(f"{key[1]} is not installed")
        return [self[key] for key in keys]


@pytest.fixture(scope="session")
def parts(tmp_path_factory):
    """``parts[(task, framework)]`` -> ``{"dir", "state"}`` for tissue/cell in torch/tf (where installed)."""
    folder = tmp_path_factory.mktemp("parts")
    made = Parts()
    for framework, module in (("torch", "torch"), ("tf", "keras")):
        try:
            __import__(module)
        except ImportError:
            continue
        for task in ("tissue", "cell"):
            made[(task, framework)] = train_part(folder, task, framework, seed=1 if task == "cell" else 0)
    return made


# Helpers reach the tests as fixtures: ``from conftest import ...`` would find whichever conftest
# module of the suite Python imported first.
@pytest.fixture(name="small_card")
def small_card_fixture():
    return small_card


@pytest.fixture(name="train_part")
def train_part_fixture():
    return train_part
