"""The contract every framework adapter keeps (one class, subclassed per framework).

Names and shapes from the one framework-free definition, raw outputs of the documented keys,
shapes and dtypes, weights that survive a save and load exactly, and errors that name what is wrong.
"""

from __future__ import annotations

import numpy as np
import pytest

from slidescope.models import FrameworkError, ModelCard, ModelWeightsError, weight_shapes
from slidescope.models.backend import RAW_OUTPUTS
from slidescope.models.registry import backend_class

#: Small architectures keep the contract fast; parity and end-to-end tests use the defaults.
SMALL = {"tissue": {"widths": [8, 16], "depth": 1}, "cell": {"widths": [8, 16], "depth": 1}}


class BackendContract:
    framework: str

    @pytest.fixture(scope="class")
    @classmethod
    def adapter(cls):
        pytest.importorskip("torch" if cls.framework == "torch" else "keras")
        return backend_class(cls.framework)

    def card(self, task: str, **input_options) -> ModelCard:
        base = ModelCard.new(task, self.framework).to_dict()
        base["architecture"].update(SMALL[task])
        base["input"].update(tile=64, overlap=0 if task == "tissue" else 8, **input_options)
        return ModelCard.from_dict(base)

    @pytest.mark.parametrize("task", ["tissue", "cell"])
    def test_names_and_shapes_come_from_the_definition(self, adapter, task):
        card = self.card(task)
        weights = adapter(card, "cpu", 0).get_weights()
        expected = weight_shapes(card.architecture, len(card.classes), self.framework)
        assert list(weights) == list(expected)
        assert {name: tuple(value.shape) for name, value in weights.items()} == expected

    @pytest.mark.parametrize("task", ["tissue", "cell"])
    def test_raw_outputs(self, adapter, task):
        card = self.card(task)
        backend = adapter(card, "cpu", 0)
        images = np.random.default_rng(0).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
        raw = backend.run(images)
        assert set(raw) == set(RAW_OUTPUTS[task])
        assert all(value.dtype == np.float32 for value in raw.values())
        k, width = len(card.classes), card.architecture.widths[-1]
        if task == "tissue":
            assert raw["features"].shape == (3, 16, 16, width) and raw["logits"].shape == (3, k)
            weights, bias = backend.classifier()
            assert weights.shape == (k, width) and bias.shape == (k,)
        else:
            assert raw["heatmap"].shape == (3, 64, 64) and raw["types"].shape == (3, 64, 64, k)
            assert raw["embedding"].shape == (3, width)

    def test_seeded_weights(self, adapter):
        card = self.card("tissue")
        first, again, other = (adapter(card, "cpu", seed).get_weights() for seed in (1, 1, 2))
        assert all(np.array_equal(first[n], again[n]) for n in first)
        assert any(not np.array_equal(first[n], other[n]) for n in first if first[n].ndim)

    def test_save_and_load_keep_every_tensor(self, adapter, tmp_path):
        card = self.card("cell")
        source, target = adapter(card, "cpu", 1), adapter(card, "cpu", 2)
        weights = source.get_weights()
        changed = {n: (v + 0.5 if v.dtype.kind == "f" else v) for n, v in weights.items()}  # statistics too
        source.set_weights(changed)
        path = str(tmp_path / f"w{adapter.weights_suffix}")
        source.save_weights(path)
        target.load_weights(path)
        loaded = target.get_weights()
        assert all(np.array_equal(loaded[n], changed[n]) for n in changed)
        images = np.full((1, 64, 64, 3), 200, np.uint8)
        assert all(np.array_equal(a, b) for a, b in zip(source.run(images).values(), target.run(images).values()))

    def test_set_weights_names_every_problem(self, adapter):
        backend = adapter(self.card("tissue"), "cpu", 0)
        weights = backend.get_weights()
        first, second = list(weights)[:2]
        weights.pop(first)
        weights[second] = np.zeros((1, 2, 3), np.float32)
        weights["stray/tensor"] = np.zeros(1, np.float32)
        with pytest.raises(ModelWeightsError) as caught:
            backend.set_weights(weights)
        message = str(caught.value)
        assert first in message and second in message and "stray/tensor" in message

    @pytest.mark.parametrize("content", [b"", b"not weights at all", None])
    def test_unreadable_weights_name_the_file(self, adapter, tmp_path, content):
        path = tmp_path / f"w{adapter.weights_suffix}"
        if content is not None:
            path.write_bytes(content)
        with pytest.raises(ModelWeightsError, match=str(path)):
            adapter(self.card("tissue"), "cpu", 0).load_weights(str(path))

    def test_weights_of_another_architecture_are_refused(self, adapter, tmp_path):
        path = str(tmp_path / f"w{adapter.weights_suffix}")
        adapter(self.card("tissue"), "cpu", 0).save_weights(path)
        wider = self.card("tissue").to_dict()
        wider["architecture"]["widths"] = [8, 32]
        with pytest.raises(ModelWeightsError, match="expected .*32"):
            adapter(ModelCard.from_dict(wider), "cpu", 0).load_weights(path)

    def test_devices(self, adapter):
        assert adapter.resolve_device("cpu") == "cpu"
        assert adapter.resolve_device("auto") in ("cpu", "cuda")
        if adapter.resolve_device("auto") == "cpu":
            with pytest.raises(FrameworkError, match="cuda"):
                adapter.resolve_device("cuda")
        with pytest.raises(FrameworkError):
            adapter.resolve_device("tpu")


class TestTorchBackend(BackendContract):
    framework = "torch"


class TestKerasBackend(BackendContract):
    framework = "tf"

    def test_one_compiled_function_for_every_batch(self, adapter):
        backend = adapter(self.card("tissue"), "cpu", 0)
        for count in (2, 2, 3, 1):
            backend.run(np.zeros((count, 64, 64, 3), np.uint8))
        assert backend.traces == 1
