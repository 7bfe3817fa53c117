"""read_checkpoint on what is not a good checkpoint, and the details each format has."""

from __future__ import annotations

import os
import pickle
import struct
import zipfile

import numpy as np
import pytest

from slidescope.merge import CheckpointError, CheckpointNotFoundError, detect_format, read_checkpoint

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.mark.parametrize(("content", "looks"), [
    (b"", "an empty file"),
    (b"conv1.weight 0.1 0.2\n", "a text file"),
    (b'{"conv1.weight": [1, 2]}', "a text file (JSON)"),
    (b"\x89PNG\r\n\x1a\n" + bytes(64), "an image"),
    (pickle.dumps({"a": 1}, protocol=4), "a Python pickle that is not a torch checkpoint"),
    (bytes(range(256)), "an unknown binary format"),
])
def test_foreign_files_are_one_error_naming_the_file(tmp_path, content, looks):
    path = tmp_path / "weights.bin"
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as raised:
        read_checkpoint(path)
    assert str(path) in str(raised.value) and looks in str(raised.value)


def test_missing_path_and_folders(tmp_path):
    with pytest.raises(CheckpointNotFoundError, match="no such checkpoint"):
        read_checkpoint(tmp_path / "absent.pt")
    with pytest.raises(CheckpointError, match="neither a model directory"):
        read_checkpoint(tmp_path)


def test_a_zip_that_is_no_checkpoint(tmp_path):
    path = tmp_path / "archive.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "hello")
    with pytest.raises(CheckpointError, match="neither a torch checkpoint"):
        read_checkpoint(path)


def test_malicious_pickle_is_refused_and_never_runs(tmp_path):
    torch = pytest.importorskip("torch")
    marker = tmp_path / "payload-ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "evil.pt"
    torch.save({"conv1.weight": torch.zeros(2), "trap": Payload()}, path)
    with pytest.raises(CheckpointError) as raised:
        read_checkpoint(path)
    message = str(raised.value)
    assert str(path) in message and "refused" in message and "weights_only=True" in message
    assert not marker.exists()


def test_torch_file_without_tensors(tmp_path):
    torch = pytest.importorskip("torch")
    path = tmp_path / "empty.pt"
    torch.save({"epoch": 3}, path)
    with pytest.raises(CheckpointError, match="without tensors"):
        read_checkpoint(path)


def test_bfloat16_is_read_exactly_as_float32(tmp_path):
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file

    values = torch.tensor([1.5, -2.25, 3.0e-3], dtype=torch.bfloat16)
    for path in (tmp_path / "a.pt", tmp_path / "a.safetensors"):
        if path.suffix == ".pt":
            torch.save({"w.weight": values}, path)
        else:
            save_file({"w.weight": values}, str(path))
        with read_checkpoint(path) as checkpoint:
            assert checkpoint.info("w.weight").dtype == "float32"
            np.testing.assert_array_equal(checkpoint["w.weight"], values.float().numpy())
            assert checkpoint.metadata["bfloat16_read_as_float32"] == ["w.weight"]


def test_safetensors_header_damage(tmp_path):
    from safetensors.numpy import save_file

    path = tmp_path / "m.safetensors"
    save_file({"a.weight": np.ones((4, 4), np.float32)}, str(path))
    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    path.write_bytes(raw[:8] + b"{" + b"x" * (length - 1) + raw[8 + length:])
    with pytest.raises(CheckpointError, match="damaged safetensors header"):
        read_checkpoint(path)


def test_tf_checkpoint_by_index_shard_and_folder(tmp_path):
    tf = pytest.importorskip("tensorflow")
    variable = tf.Variable(np.arange(6, dtype=np.float32).reshape(2, 3), name="dense/kernel")
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(v=variable), str(tmp_path), max_to_keep=1)
    prefix = manager.save()
    shard = next(p for p in os.listdir(tmp_path) if ".data-" in p)
    for path in (prefix, prefix + ".index", str(tmp_path / shard), str(tmp_path)):
        assert detect_format(path) == ("tf", prefix)
    with read_checkpoint(tmp_path) as checkpoint:
        name = next(iter(checkpoint))
        np.testing.assert_array_equal(checkpoint[name], np.arange(6).reshape(2, 3))


def test_tf1_partitioned_variable_is_joined(tmp_path):
    tf = pytest.importorskip("tensorflow")
    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        variable = v1.get_variable("embedding", shape=(10, 4), initializer=v1.random_normal_initializer(seed=1),
                                   partitioner=v1.fixed_size_partitioner(3))
        assert len(list(variable)) == 3
        with v1.Session(graph=graph) as session:
            session.run(v1.global_variables_initializer())
            value = session.run(variable.as_tensor())
            prefix = v1.train.Saver().save(session, str(tmp_path / "part.ckpt"))
    with read_checkpoint(prefix) as checkpoint:
        assert list(checkpoint) == ["embedding"]
        np.testing.assert_array_equal(checkpoint["embedding"], value)


def test_tf_index_without_magic_is_damaged(tmp_path):
    prefix = tmp_path / "model.ckpt"
    (tmp_path / "model.ckpt.index").write_bytes(b"not an sstable" * 10)
    with pytest.raises(CheckpointError, match="not a TensorFlow checkpoint index"):
        read_checkpoint(prefix)


def test_keras_layers_in_another_order_are_read_by_name(tmp_path):
    """Two files of one model whose layers were created in another order: Keras would load one into
    the other by position (a silent mix-up); the reader names every tensor by its layer."""
    keras = pytest.importorskip("keras")

    def build(order):
        keras.utils.set_random_seed(1)
        layers = {name: keras.layers.Dense(3, name=name) for name in order}  # created (numbered) in this order
        inputs = keras.Input((3,))
        return keras.Model(inputs, layers["second"](layers["first"](inputs)))

    written = {}
    for label, order in (("a", ("first", "second")), ("b", ("second", "first"))):
        model = build(order)
        model.save_weights(tmp_path / f"{label}.weights.h5")
        written[label] = {f"{layer.name}/{w.name}": np.asarray(w) for layer in model.layers for w in layer.weights}
    with read_checkpoint(tmp_path / "a.weights.h5") as a, read_checkpoint(tmp_path / "b.weights.h5") as b:
        assert set(a) == set(b) == {"first/kernel", "first/bias", "second/kernel", "second/bias"}
        for label, checkpoint in (("a", a), ("b", b)):
            for name in checkpoint:
                np.testing.assert_array_equal(checkpoint[name], written[label][name], err_msg=(label, name))


def test_keras_batchnorm_without_scale_keeps_indices(tmp_path):
    keras = pytest.importorskip("keras")
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.BatchNormalization(scale=False, name="bn")(inputs))
    model.save_weights(tmp_path / "m.weights.h5")
    with read_checkpoint(tmp_path / "m.weights.h5") as checkpoint:
        assert list(checkpoint) == ["bn/vars/0", "bn/vars/1", "bn/vars/2"]
        assert "bn (batch_normalization, 3 variables)" in checkpoint.metadata["unnamed_layers"]


def test_model_directory_reads_its_weights():
    from slidescope.models.loading import SHIPPED_DIR

    folder = SHIPPED_DIR / "tissue-torch"
    with read_checkpoint(folder) as checkpoint:
        assert checkpoint.format == "safetensors" and checkpoint.path == str(folder / "weights.safetensors")
