"""combine_checkpoints and the streaming writers: any checkpoints into one, each under its scope."""

from __future__ import annotations

import numpy as np
import pytest

from slidescope.merge import Checkpoint, CheckpointError, RemapError, read_checkpoint
from slidescope.merge.combining import combine_checkpoints
from slidescope.merge.remap import add_scope
from slidescope.merge.writing import write_checkpoint

RNG = np.random.default_rng(11)
TORCH = {"conv1.weight": RNG.normal(size=(4, 3, 3, 3)).astype(np.float32),
         "bn1.weight": RNG.normal(size=4).astype(np.float32), "bn1.bias": RNG.normal(size=4).astype(np.float32),
         "bn1.running_mean": RNG.normal(size=4).astype(np.float32),
         "bn1.running_var": RNG.uniform(1, 2, size=4).astype(np.float32),
         "bn1.num_batches_tracked": np.array(3, np.int64), "fc.weight": RNG.normal(size=(2, 4)).astype(np.float32)}
TF = {"conv1/kernel": RNG.normal(size=(3, 3, 3, 8)).astype(np.float32),
      "dense/kernel": RNG.normal(size=(8, 5)).astype(np.float32), "dense/bias": RNG.normal(size=5).astype(np.float32),
      "adam/dense_kernel_momentum": np.zeros((8, 5), np.float32)}


def sources():
    return {"tissue": Checkpoint.from_arrays(TORCH, framework="torch"),
            "cell": Checkpoint.from_arrays(TF, framework="tf")}


@pytest.mark.parametrize("format", ["safetensors", "torch", "tf"])
def test_combined_checkpoint_reads_back_scoped(tmp_path, format):
    if format == "torch":
        pytest.importorskip("torch")
    if format == "tf":
        pytest.importorskip("tensorflow")
    out = tmp_path / ("merged.ckpt" if format == "tf" else f"merged.{format}")
    reports = combine_checkpoints(sources(), out, format=format)
    assert {r.ok for r in reports.values()} == {True}
    assert [i["source"] for i in reports["tissue"].ignored] == ["bn1.num_batches_tracked"]
    assert [i["source"] for i in reports["cell"].ignored] == ["adam/dense_kernel_momentum"]
    with read_checkpoint(out) as merged:
        if format == "tf":
            np.testing.assert_array_equal(merged["tissue/conv1/kernel"], TORCH["conv1.weight"].transpose(2, 3, 1, 0))
            np.testing.assert_array_equal(merged["tissue/bn1/beta"], TORCH["bn1.bias"])
            np.testing.assert_array_equal(merged["cell/dense/kernel"], TF["dense/kernel"])
            assert len(merged) == 9
        else:
            np.testing.assert_array_equal(merged["tissue.conv1.weight"], TORCH["conv1.weight"])
            np.testing.assert_array_equal(merged["cell.conv1.weight"], TF["conv1/kernel"].transpose(3, 2, 0, 1))
            np.testing.assert_array_equal(merged["cell.dense.weight"], TF["dense/kernel"].T)
            assert len(merged) == 9 and merged.framework == "torch"


def test_streamed_safetensors_is_what_the_library_reads(tmp_path):
    from safetensors.numpy import load_file

    arrays = {"a.weight": RNG.normal(size=(3, 5)).astype(np.float32), "b": np.arange(7, dtype=np.int16),
              "c.flag": np.array([True, False]), "d.half": RNG.normal(size=3).astype(np.float16)}
    entries = [(info, (lambda name=info.name: arrays[name])) for info in Checkpoint.from_arrays(arrays).infos]
    write_checkpoint(tmp_path / "x.safetensors", entries, format="safetensors", metadata={"k": "v"})
    loaded = load_file(str(tmp_path / "x.safetensors"))
    assert list(loaded) == list(arrays) or set(loaded) == set(arrays)
    for name, value in arrays.items():
        np.testing.assert_array_equal(loaded[name], value)


def test_collisions_across_sources_and_bad_entries(tmp_path):
    remaps = {"tissue": add_scope("x", "torch"), "cell": add_scope("x", "torch")}
    same = {"tissue": Checkpoint.from_arrays({"w": np.zeros(2, np.float32)}),
            "cell": Checkpoint.from_arrays({"w": np.ones(2, np.float32)})}
    with pytest.raises(RemapError, match="x.w: written by the sources 'tissue' and 'cell'"):
        combine_checkpoints(same, tmp_path / "m.safetensors", format="safetensors", remaps=remaps)
    assert not (tmp_path / "m.safetensors").exists()
    info = Checkpoint.from_arrays({"w": np.zeros(2, np.float32)}).infos[0]
    with pytest.raises(CheckpointError, match="expected float32"):
        write_checkpoint(tmp_path / "bad.safetensors", [(info, lambda: np.zeros(3, np.float32))], format="safetensors")
    assert not list(tmp_path.glob("*bad*"))
