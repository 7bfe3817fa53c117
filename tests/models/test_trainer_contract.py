"""The contract every framework trainer keeps (one class, subclassed per framework).

Small networks learn trivially separable synthetic tasks, a saved state continues training exactly,
the state holds the optimiser's slots and the BatchNorm statistics, unreadable states are refused
naming the file, and the torch and Keras trainers take the same steps from the same weights.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator

import numpy as np
import pytest

from slidescope.models import ModelCard, ModelWeightsError
from slidescope.models.registry import backend_class, trainer_class
from slidescope.models.trainer import STATE_SUFFIX, cosine_learning_rate

#: Small architectures and 32 px tiles keep every test to a second or two.
SMALL = {"widths": [8, 16], "depth": 1}
SIZE = 32
WEIGHT_DECAY = 1e-4


def make_card(task: str, framework: str, convention: str | None = None) -> ModelCard:
    """A small card of ``task`` in ``framework``, with the padding/epsilon convention of ``convention``."""
    base = ModelCard.new(task, framework).to_dict()
    if convention is not None:
        base["architecture"] = ModelCard.new(task, convention).to_dict()["architecture"]
    base["architecture"].update(SMALL)
    base["input"].update(tile=SIZE, overlap=0)
    return ModelCard.from_dict(base)


# -- synthetic data ------------------------------------------------------------------------------

def tissue_batch(rng: np.random.Generator, per_class: int = 4) -> dict[str, np.ndarray]:
    """Class 0 bright grey, 1 dark grey, 2 red tiles, with pixel noise."""
    labels = np.repeat(np.arange(3), per_class)
    colours = np.array([[225, 225, 225], [45, 45, 45], [200, 35, 40]], np.float64)
    noise = rng.normal(0, 12, (len(labels), SIZE, SIZE, 3))
    images = np.clip(colours[labels][:, None, None, :] + noise, 0, 255).astype(np.uint8)
    order = rng.permutation(len(labels))
    return {"images": images[order], "labels": labels[order].astype(np.int64)}


def cell_batch(rng: np.random.Generator, count: int = 4, blobs: int = 3) -> dict[str, np.ndarray]:
    """Light tiles with dark round blobs (type 0 blue-ish, type 1 red-ish) and their targets.

    ``heatmap``: a Gaussian of sigma 2 px around each centre (the maximum over blobs, exactly 1.0 at
    the centre pixel); ``types``: the blob's type within 3 px of its centre, -1 elsewhere.
    """
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    images = np.empty((count, SIZE, SIZE, 3), np.float64)
    heatmap = np.zeros((count, SIZE, SIZE), np.float32)
    types = np.full((count, SIZE, SIZE), -1, np.int64)
    colours = np.array([[60, 40, 150], [150, 30, 50]], np.float64)
    for i in range(count):
        images[i] = 225 + rng.normal(0, 8, (SIZE, SIZE, 3))
        centres: list[tuple[int, int]] = []
        while len(centres) < blobs:
            cy, cx = (int(v) for v in rng.integers(4, SIZE - 4, 2))
            if all((cy - y) ** 2 + (cx - x) ** 2 >= 10 ** 2 for y, x in centres):
                centres.append((cy, cx))
        for cy, cx in centres:
            kind = int(rng.integers(0, 2))
            distance2 = (yy - cy) ** 2 + (xx - cx) ** 2
            images[i][distance2 <= 9] = colours[kind]
            heatmap[i] = np.maximum(heatmap[i], np.exp(-distance2 / (2 * 2.0 ** 2)).astype(np.float32))
            types[i][distance2 <= 9] = kind
    assert (heatmap == 1.0).sum() == count * blobs
    return {"images": np.clip(images, 0, 255).astype(np.uint8), "heatmap": heatmap, "types": types}


def make_batch(task: str, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return tissue_batch(rng) if task == "tissue" else cell_batch(rng)


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """torch on one intra-op thread for the duration: these tiny networks train ~5x faster (and ~50x on a
    busy machine, where the threads of a parallel region wait on each other), with the same results."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


# -- the contract --------------------------------------------------------------------------------

class TrainerContract:
    framework: str

    @pytest.fixture(scope="class", autouse=True)
    @classmethod
    def _framework(cls):
        pytest.importorskip("torch" if cls.framework == "torch" else "keras")
        if cls.framework != "torch":
            yield
            return
        with one_torch_thread():
            yield

    def build(self, task: str, *, seed: int = 0, lr: float = 1e-2, total_steps: int = 30, card=None):
        card = card or make_card(task, self.framework)
        backend = backend_class(self.framework)(card, "cpu", seed)
        trainer = trainer_class(self.framework)(backend, lr=lr, weight_decay=WEIGHT_DECAY, total_steps=total_steps)
        assert trainer.framework == self.framework and trainer.step == 0
        return backend, trainer

    def state_path(self, tmp_path) -> str:
        return str(tmp_path / f"trainer{STATE_SUFFIX[self.framework]}")

    def test_tissue_model_learns_a_separable_task(self):
        backend, trainer = self.build("tissue", lr=1e-2, total_steps=30)
        losses = []
        for step in range(30):  # on the cosine schedule, the rate of step k set before its update
            assert trainer.step == step
            assert trainer.current_learning_rate() == cosine_learning_rate(1e-2, step, 30)
            losses.append(trainer.train_step(make_batch("tissue", step))["loss"])
            assert self.optimizer_learning_rate(trainer) == pytest.approx(cosine_learning_rate(1e-2, step, 30),
                                                                          rel=1e-6)
        assert trainer.step == 30 and trainer.current_learning_rate() == 0.0
        assert all(math.isfinite(loss) for loss in losses)
        assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5]), losses
        held_out = make_batch("tissue", 1000)
        predicted = backend.run(held_out["images"])["logits"].argmax(axis=1)
        accuracy = float((predicted == held_out["labels"]).mean())
        assert accuracy >= 0.9, accuracy  # chance is 1/3

    def test_cell_model_loss_falls(self):
        backend, trainer = self.build("cell", lr=1e-2, total_steps=30)
        history = [trainer.train_step(make_batch("cell", step)) for step in range(30)]
        assert set(history[0]) == {"loss", "heatmap_loss", "type_loss"}
        assert all(math.isclose(h["loss"], h["heatmap_loss"] + h["type_loss"], rel_tol=1e-5) for h in history)
        losses = [h["loss"] for h in history]
        assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5]), losses
        types = [h["type_loss"] for h in history]
        assert np.mean(types[-5:]) < np.mean(types[:5]), types
        raw = backend.run(make_batch("cell", 0)["images"])  # the backend still runs (eval mode) afterwards
        assert raw["heatmap"].shape == (4, SIZE, SIZE)

        batch = make_batch("cell", 0)  # no typed pixel: the type loss is 0, not NaN
        batch["types"][:] = -1
        losses = trainer.train_step(batch)
        assert losses["type_loss"] == 0.0 and math.isfinite(losses["loss"])
        batch["heatmap"][:] = 0.0  # no positives either: divided by 1, still finite
        assert math.isfinite(trainer.train_step(batch)["loss"])
        assert all(np.isfinite(value).all() for value in backend.get_weights().values())

    @pytest.mark.parametrize("task", ["tissue", "cell"])
    def test_resume_is_exact(self, task, tmp_path):
        first, before, after, total = 3, 3, 3, 10
        batches = [make_batch(task, 100 + i) for i in range(first + before)]
        backend, trainer = self.build(task, seed=1, total_steps=total)
        for batch in batches[:first]:
            trainer.train_step(batch)
        path = self.state_path(tmp_path)
        trainer.save_state(path)
        for batch in batches[first:]:
            trainer.train_step(batch)
        expected = backend.get_weights()

        other, resumed = self.build(task, seed=2, total_steps=total)
        assert any(not np.array_equal(other.get_weights()[n], expected[n]) for n in expected)
        resumed.load_state(path)
        assert resumed.step == first
        assert resumed.current_learning_rate() == cosine_learning_rate(resumed.lr, first, total)
        for batch in batches[first:]:
            resumed.train_step(batch)
        assert resumed.step == trainer.step == first + after
        assert resumed.current_learning_rate() == trainer.current_learning_rate()
        got = other.get_weights()
        assert list(got) == list(expected)
        different = {n: float(np.abs(got[n].astype(np.float64) - expected[n]).max())
                     for n in expected if not np.array_equal(got[n], expected[n])}
        assert not different, f"resumed weights differ (max abs difference per tensor): {different}"
        images = batches[0]["images"]
        for key, value in backend.run(images).items():
            assert np.array_equal(value, other.run(images)[key]), key

    @pytest.mark.parametrize("content", [b"", b"not a trainer state", None])
    def test_unreadable_state_names_the_file(self, tmp_path, content):
        path = self.state_path(tmp_path)
        self.write_unreadable(path, content)
        _, trainer = self.build("tissue")
        with pytest.raises(ModelWeightsError, match=path.replace(".", r"\.")):
            trainer.load_state(path)

    def test_state_of_another_architecture_is_refused(self, tmp_path):
        _, trainer = self.build("tissue")
        path = self.state_path(tmp_path)
        trainer.save_state(path)
        wider = make_card("tissue", self.framework).to_dict()
        wider["architecture"]["widths"] = [8, 32]
        _, other = self.build("tissue", card=ModelCard.from_dict(wider))
        with pytest.raises(ModelWeightsError, match=path.replace(".", r"\.")):
            other.load_state(path)

    # framework hooks
    def optimizer_learning_rate(self, trainer) -> float:
        raise NotImplementedError

    def write_unreadable(self, path: str, content: bytes | None) -> None:
        raise NotImplementedError


class TestTorchTrainer(TrainerContract):
    framework = "torch"

    def optimizer_learning_rate(self, trainer) -> float:
        rates = {group["lr"] for group in trainer.optimizer.param_groups}
        assert len(rates) == 1
        return rates.pop()

    def write_unreadable(self, path: str, content: bytes | None) -> None:
        if content is not None:
            with open(path, "wb") as stream:
                stream.write(content)

    def test_state_loads_with_weights_only_and_holds_slots_and_statistics(self, tmp_path):
        import torch

        backend, trainer = self.build("cell")
        for step in range(2):
            trainer.train_step(make_batch("cell", step))
        path = self.state_path(tmp_path)
        trainer.save_state(path)
        state = torch.load(path, weights_only=True)
        assert set(state) >= {"model", "optimizer", "step", "torch_rng"} and state["step"] == 2
        parameters = list(backend.net.parameters())
        slots = state["optimizer"]["state"]
        assert len(slots) == len(parameters)
        for index, parameter in enumerate(parameters):
            assert slots[index]["exp_avg"].shape == parameter.shape
            assert slots[index]["exp_avg_sq"].shape == parameter.shape
            assert float(slots[index]["step"]) == 2.0
        variances = [name for name in state["model"] if name.endswith("running_var")]
        assert variances and all(not torch.equal(state["model"][name], torch.ones_like(state["model"][name]))
                                 for name in variances)
        assert all(torch.equal(state["model"][name], value) for name, value in backend.net.state_dict().items())

    def test_a_file_of_other_objects_is_refused(self, tmp_path):
        import torch

        path = self.state_path(tmp_path)
        torch.save({"model": {}, "note": "no optimiser"}, path)
        _, trainer = self.build("tissue")
        with pytest.raises(ModelWeightsError, match="expected keys"):
            trainer.load_state(path)


class TestKerasTrainer(TrainerContract):
    framework = "tf"

    def optimizer_learning_rate(self, trainer) -> float:
        return float(np.float32(trainer.optimizer.learning_rate.numpy()))

    def write_unreadable(self, path: str, content: bytes | None) -> None:
        if content is not None:  # a prefix whose index and data files are garbage
            for name in (f"{path}.index", f"{path}.data-00000-of-00001"):
                with open(name, "wb") as stream:
                    stream.write(content)

    def test_checkpoint_holds_slots_and_statistics(self, tmp_path):
        import tensorflow as tf

        from slidescope.models._keras.training import checkpoint_files

        backend, trainer = self.build("tissue")
        trainer.train_step(make_batch("tissue", 0))
        path = self.state_path(tmp_path)
        trainer.save_state(path)
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(os.path.basename(n) for n in checkpoint_files(path))
        stored = dict(tf.train.list_variables(path))  # object-graph paths -> shapes
        reader = tf.train.load_checkpoint(path)
        # The optimiser's slots (a momentum and a velocity per trainable variable) are its _variables
        # beyond iterations and learning rate, which the checkpoint keeps under their own names.
        slot_names = [name for name in stored if name.startswith("optimizer/_variables/")]
        trainable = sorted(tuple(v.shape) for v in backend.model.trainable_variables)
        assert sorted(tuple(stored[name]) for name in slot_names) == sorted(trainable + trainable)
        assert all(np.abs(reader.get_tensor(name)).max() > 0 for name in slot_names)  # written after a step
        variances = [name for name in stored if "moving_variance" in name]
        assert variances and all(not np.array_equal(reader.get_tensor(name), np.ones(stored[name], np.float32))
                                 for name in variances)
        assert any("moving_mean" in name for name in stored)
        assert reader.get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE") == 1
        assert reader.get_tensor("optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE") == 1

    def test_a_state_restored_before_any_step_matches(self, tmp_path):
        _, trainer = self.build("tissue")
        path = self.state_path(tmp_path)
        trainer.save_state(path)  # slots exist before the first step
        _, other = self.build("tissue", seed=3)
        other.load_state(path)
        assert other.step == 0

    def test_train_step_traces_once(self):
        _, trainer = self.build("tissue")
        for count in (2, 2, 3, 1):
            batch = make_batch("tissue", count)
            trainer.train_step({key: value[:count] for key, value in batch.items()})
        assert trainer.traces == 1


# -- both frameworks -----------------------------------------------------------------------------

@pytest.mark.parametrize("task", ["tissue", "cell"])
def test_torch_and_keras_take_the_same_steps(task, to_keras):
    """Same initial weights, same batches, three steps each: the models stay together.

    The trainable weights agree to float rounding (Keras' optimiser takes torch's AdamW step). The
    inference outputs differ a little more, by design of the layers: torch's BatchNorm moves its
    running variance with the unbiased batch variance, Keras' with the biased one (``n / (n - 1)``).
    """
    pytest.importorskip("torch")
    pytest.importorskip("keras")
    with one_torch_thread():
        _same_steps(task, to_keras)


def _same_steps(task: str, to_keras) -> None:
    torch_backend = backend_class("torch")(make_card(task, "torch", "torch"), "cpu", 3)
    keras_backend = backend_class("tf")(make_card(task, "tf", "torch"), "cpu", 4)
    keras_backend.set_weights(to_keras(torch_backend.get_weights()))
    options = {"lr": 1e-2, "weight_decay": 0.05, "total_steps": 5}
    torch_trainer = trainer_class("torch")(torch_backend, **options)
    keras_trainer = trainer_class("tf")(keras_backend, **options)
    for step in range(3):
        batch = make_batch(task, 200 + step)
        expected, got = torch_trainer.train_step(batch), keras_trainer.train_step(batch)
        assert expected.keys() == got.keys()
        for key in expected:
            assert got[key] == pytest.approx(expected[key], rel=1e-4, abs=1e-5), (step, key)

    converted = to_keras(torch_backend.get_weights())
    weights = keras_backend.get_weights()
    trainable = {f"{layer.name}/{v.name}" for layer in keras_backend.model.layers for v in layer.trainable_weights}
    weight_difference = max(float(np.abs(converted[n] - weights[n]).max()) for n in trainable)
    assert weight_difference <= 1e-5, f"trainable weights differ by {weight_difference:.2e}"  # seen: 2e-6
    for name in set(weights) - trainable:  # BatchNorm moving statistics
        if name.endswith("moving_mean"):
            assert np.abs(converted[name] - weights[name]).max() <= 1e-5, name
        else:  # unbiased (torch) vs biased (Keras) batch variances: a relative 1/(n-1), n >= 4 * 16 * 16
            np.testing.assert_allclose(weights[name], converted[name], rtol=1e-2, err_msg=name)

    images = make_batch(task, 999)["images"]
    expected, got = torch_backend.run(images), keras_backend.run(images)
    key = "logits" if task == "tissue" else "heatmap"
    scale = max(1.0, float(np.abs(expected[key]).max()))
    output_difference = float(np.abs(expected[key] - got[key]).max())
    assert output_difference <= 1e-3 * scale, f"{key} differ by {output_difference:.2e}"  # seen: 1.3e-4 * scale
    # With torch's moving variances, the outputs agree as closely as inference does (test_parity.py).
    keras_backend.set_weights(converted)
    same_statistics = float(np.abs(expected[key] - keras_backend.run(images)[key]).max())
    assert same_statistics <= 1e-4 * scale, f"{key} differ by {same_statistics:.2e} with the same statistics"


def test_cosine_learning_rate():
    assert cosine_learning_rate(0.1, 0, 10) == 0.1
    assert cosine_learning_rate(0.1, 5, 10) == pytest.approx(0.05)
    assert cosine_learning_rate(0.1, 10, 10) == pytest.approx(0.0, abs=1e-18)
    assert cosine_learning_rate(0.1, 25, 10) == cosine_learning_rate(0.1, 10, 10)  # held at 0 past the end
    values = [cosine_learning_rate(1.0, step, 20) for step in range(21)]
    assert all(a > b for a, b in zip(values, values[1:]))
    assert cosine_learning_rate(1.0, 0, 0) == 1.0  # no steps: no division by zero
    assert cosine_learning_rate(1.0, 3, 8) == pytest.approx(0.5 * (1 + math.cos(math.pi * 3 / 8)))
