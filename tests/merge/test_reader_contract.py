"""One contract every checkpoint reader passes (torch zip and legacy, safetensors, TF1 and TF2
checkpoints, Keras 3 .weights.h5 and .keras, Keras 2 .h5): each subclass writes a real file with
its framework's own API and says what a reader must find in it."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from slidescope.merge import CheckpointError, read_checkpoint
from slidescope.merge.checkpoint import file_sha256

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

RNG = np.random.default_rng(7)
#: torch-named reference tensors: a conv, a BatchNorm (with its counter), a dense layer.
TORCH_TENSORS = {
    "conv1.weight": RNG.normal(size=(4, 3, 3, 3)).astype(np.float32),
    "bn1.weight": RNG.normal(size=4).astype(np.float32),
    "bn1.bias": RNG.normal(size=4).astype(np.float32),
    "bn1.running_mean": RNG.normal(size=4).astype(np.float32),
    "bn1.running_var": RNG.uniform(0.5, 2, size=4).astype(np.float32),
    "bn1.num_batches_tracked": np.array(12, np.int64),
    "fc.weight": RNG.normal(size=(2, 4)).astype(np.float32),
    "fc.bias": RNG.normal(size=2).astype(np.float32),
}
TORCH_KINDS = {"conv1.weight": "weight", "bn1.weight": "weight", "bn1.bias": "weight", "bn1.running_mean": "buffer",
               "bn1.running_var": "buffer", "bn1.num_batches_tracked": "counter", "fc.weight": "weight",
               "fc.bias": "weight"}


def _keras_model(seed: int = 0):
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, use_bias=False, name="conv1")(inputs)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(2, name="fc")(x)
    return keras.Model(inputs, outputs, name="small")


def _keras_tensors(model) -> dict[str, np.ndarray]:
    return {f"{layer.name}/{w.name}": np.asarray(w) for layer in model.layers for w in layer.weights}


KERAS_KINDS = {"conv1/kernel": "weight", "bn1/gamma": "weight", "bn1/beta": "weight", "bn1/moving_mean": "buffer",
               "bn1/moving_variance": "buffer", "fc/kernel": "weight", "fc/bias": "weight"}


class ReaderContract:
    """Subclasses write ``self.path`` in their format and set the expectations."""

    format: str
    framework: str
    #: Entries that must be read with these kinds (names -> kind); their values are in ``expected``.
    kinds: dict[str, str]
    #: Kinds that must appear in the file besides ``kinds`` (optimiser slots of a training state).
    extra_kinds: tuple[str, ...] = ()

    def write(self, folder) -> tuple[str, dict[str, np.ndarray]]:
        raise NotImplementedError

    @pytest.fixture
    def written(self, tmp_path):
        return self.write(tmp_path)

    def test_format_and_framework_from_content(self, written):
        path, _ = written
        with read_checkpoint(path) as checkpoint:
            assert (checkpoint.format, checkpoint.framework) == (self.format, self.framework)

    def test_names_shapes_dtypes_values_kinds(self, written):
        path, expected = written
        with read_checkpoint(path) as checkpoint:
            for name, kind in self.kinds.items():
                info = checkpoint.info(name)
                assert info.kind == kind, name
                assert info.shape == expected[name].shape and info.dtype == expected[name].dtype.name, name
                np.testing.assert_array_equal(checkpoint[name], expected[name], err_msg=name)
            for kind in self.extra_kinds:
                assert checkpoint.kinds().get(kind, 0) > 0, (kind, checkpoint.kinds())

    def test_hash_is_the_files_hash(self, written):
        path, _ = written
        with read_checkpoint(path) as checkpoint:
            assert checkpoint.files and checkpoint.sha256 == file_sha256(checkpoint.files)

    def test_summary_is_json(self, written):
        path, _ = written
        with read_checkpoint(path) as checkpoint:
            data = json.loads(json.dumps(checkpoint.to_dict()))
        assert {"format", "framework", "tensors"} <= set(data)
        assert {t["name"] for t in data["tensors"]} >= set(self.kinds)
        assert all(set(t) == {"name", "shape", "dtype", "kind"} for t in data["tensors"])

    def test_truncated_file_is_a_checkpoint_error(self, written):
        path, _ = written
        with read_checkpoint(path) as checkpoint:
            victim = max(checkpoint.files, key=os.path.getsize)
        size = os.path.getsize(victim)
        with open(victim, "r+b") as handle:
            handle.truncate(size // 2)
        with pytest.raises(CheckpointError) as raised:
            with read_checkpoint(path) as checkpoint:
                for name in checkpoint:
                    checkpoint[name]
        assert os.path.basename(str(path).split(".")[0]) in str(raised.value)

    def test_another_format_insisted_on_is_refused(self, written):
        path, _ = written
        other = "safetensors" if self.format != "safetensors" else "torch"
        with pytest.raises(CheckpointError, match=f"expected a {other} checkpoint"):
            read_checkpoint(path, format=other)


class TestTorchZip(ReaderContract):
    format, framework, kinds = "torch", "torch", TORCH_KINDS

    def write(self, folder):
        torch = pytest.importorskip("torch")
        path = str(folder / "model.pt")
        torch.save({k: torch.from_numpy(v.copy()) for k, v in TORCH_TENSORS.items()}, path)
        return path, TORCH_TENSORS


class TestTorchLegacy(ReaderContract):
    format, framework, kinds = "torch-legacy", "torch", TORCH_KINDS

    def write(self, folder):
        torch = pytest.importorskip("torch")
        path = str(folder / "model.pth")
        torch.save({k: torch.from_numpy(v.copy()) for k, v in TORCH_TENSORS.items()}, path,
                   _use_new_zipfile_serialization=False)
        return path, TORCH_TENSORS


class TestTorchTrainingState(ReaderContract):
    """A training file: the model under ``model`` with DataParallel's ``module.``, an Adam state, an epoch."""

    format, framework = "torch", "torch"
    kinds = {f"model.module.{k}": v for k, v in TORCH_KINDS.items()}
    extra_kinds = ("optimizer",)

    def write(self, folder):
        torch = pytest.importorskip("torch")
        net = torch.nn.Sequential(torch.nn.Linear(4, 2))
        optimizer = torch.optim.Adam(net.parameters())
        net(torch.ones(1, 4)).sum().backward()
        optimizer.step()
        path = str(folder / "state.pt")
        model = {f"module.{k}": torch.from_numpy(v.copy()) for k, v in TORCH_TENSORS.items()}
        torch.save({"model": model, "optimizer": optimizer.state_dict(), "epoch": 3}, path)
        return path, {f"model.module.{k}": v for k, v in TORCH_TENSORS.items()}

    def test_plain_values_are_metadata(self, written):
        with read_checkpoint(written[0]) as checkpoint:
            assert checkpoint.metadata["epoch"] == 3
            assert checkpoint.info("optimizer.state.0.exp_avg").kind == "optimizer"
            assert checkpoint.info("optimizer.state.0.step").kind == "counter"


class TestSafetensors(ReaderContract):
    format, framework, kinds = "safetensors", "torch", TORCH_KINDS

    def write(self, folder):
        from safetensors.numpy import save_file

        path = str(folder / "model.safetensors")
        save_file(TORCH_TENSORS, path, metadata={"format": "pt"})
        return path, TORCH_TENSORS


class TestTF1NameBased(ReaderContract):
    """``tf.compat.v1.train.Saver`` after one Adam step: slots, ``beta1_power``, ``global_step``."""

    format, framework = "tf", "tf"
    kinds = {"conv1/kernel": "weight", "fc/bias": "weight", "global_step": "counter"}
    extra_kinds = ("optimizer",)

    def write(self, folder):
        tf = pytest.importorskip("tensorflow")
        v1 = tf.compat.v1
        values = {"conv1/kernel": RNG.normal(size=(3, 3, 3, 4)).astype(np.float32),
                  "fc/bias": RNG.normal(size=2).astype(np.float32)}
        graph = tf.Graph()
        with graph.as_default():
            kernel = v1.get_variable("conv1/kernel", initializer=values["conv1/kernel"])
            bias = v1.get_variable("fc/bias", initializer=values["fc/bias"])
            step = v1.train.get_or_create_global_step()
            loss = tf.reduce_sum(kernel) * 0.0 + tf.reduce_sum(bias) * 0.0
            train = v1.train.AdamOptimizer(1e-3).minimize(loss, global_step=step)
            with v1.Session(graph=graph) as session:
                session.run(v1.global_variables_initializer())
                session.run(train)  # zero gradients: the values stay, the slots and step exist
                prefix = v1.train.Saver().save(session, str(folder / "model.ckpt"))
        return prefix, {**values, "global_step": np.array(1, np.int64)}

    def test_adam_slots_are_optimizer_state(self, written):
        with read_checkpoint(written[0]) as checkpoint:
            for name in ("conv1/kernel/Adam", "conv1/kernel/Adam_1", "beta1_power", "beta2_power"):
                assert checkpoint.info(name).kind == "optimizer", name


class TestTF2ObjectBased(ReaderContract):
    """``tf.train.Checkpoint(model=..., optimizer=...)`` of a Keras 3 model after one step: names from
    the object graph, weights saved under ``optimizer/_trainable_variables`` still weights."""

    format, framework, kinds = "tf", "tf", KERAS_KINDS
    extra_kinds = ("optimizer", "counter")

    def write(self, folder):
        tf = pytest.importorskip("tensorflow")
        keras = pytest.importorskip("keras")
        model = _keras_model()
        optimizer = keras.optimizers.Adam(1e-3)
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(model(np.ones((2, 8, 8, 3), np.float32), training=True))
        optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
        prefix = tf.train.Checkpoint(model=model, optimizer=optimizer).write(str(folder / "model"))
        return prefix, _keras_tensors(model)

    def test_keys_are_positions_names_are_readable(self, written):
        with read_checkpoint(written[0]) as checkpoint:
            assert checkpoint.metadata["object_based"]
            assert "_ATTRIBUTES" not in " ".join(checkpoint) and "VARIABLE_VALUE" not in " ".join(checkpoint)
            assert any(name.endswith("kernel_momentum") for name in checkpoint)


class TestKerasWeightsH5(ReaderContract):
    format, framework, kinds = "keras-h5", "tf", KERAS_KINDS

    def write(self, folder):
        pytest.importorskip("keras")
        model = _keras_model()
        path = str(folder / "model.weights.h5")
        model.save_weights(path)
        return path, _keras_tensors(model)


class TestKerasArchive(ReaderContract):
    format, framework, kinds = "keras", "tf", KERAS_KINDS
    extra_kinds = ("optimizer",)

    def write(self, folder):
        pytest.importorskip("keras")
        model = _keras_model()
        model.compile(optimizer="adam", loss="mse")
        model.fit(np.ones((2, 8, 8, 3), np.float32), np.zeros((2, 2), np.float32), verbose=0)
        path = str(folder / "model.keras")
        model.save(path)
        return path, _keras_tensors(model)


class TestKeras2H5(ReaderContract):
    """Keras 2's layout (``layer_names``, ``weight_names``), written with h5py as Keras 2 wrote it."""

    format, framework = "keras2-h5", "tf"
    kinds = {"conv1/kernel": "weight", "bn1/moving_mean": "buffer"}

    def write(self, folder):
        import h5py

        values = {"conv1/kernel": RNG.normal(size=(3, 3, 3, 4)).astype(np.float32),
                  "bn1/moving_mean": RNG.normal(size=4).astype(np.float32)}
        path = str(folder / "model.h5")
        with h5py.File(path, "w") as handle:
            handle.attrs["layer_names"] = [b"conv1", b"bn1"]
            for layer in ("conv1", "bn1"):
                group = handle.create_group(layer)
                names = [n for n in values if n.startswith(layer + "/")]
                group.attrs["weight_names"] = [f"{n}:0".encode() for n in names]
                for name in names:
                    group.create_dataset(f"{name}:0", data=values[name])
        return path, values
