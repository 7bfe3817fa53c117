"""The legacy TF1 path: variable scopes and one Saver per part, as TF1-era code merged checkpoints."""

from __future__ import annotations

import os

import numpy as np
import pytest

from slidescope.merge import CheckpointError, read_checkpoint
from slidescope.merge.tf1 import merge_tf1

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
tf = pytest.importorskip("tensorflow")


def tf1_checkpoint(prefix, values):
    """A name-based checkpoint written by tf.compat.v1.train.Saver after one Adam step (slots, step)."""
    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        variables = [v1.get_variable(name, initializer=value) for name, value in values.items()]
        step = v1.train.get_or_create_global_step()
        loss = tf.add_n([tf.reduce_sum(v) * 0.0 for v in variables])
        train = v1.train.AdamOptimizer(1e-3).minimize(loss, global_step=step)
        with v1.Session(graph=graph) as session:
            session.run(v1.global_variables_initializer())
            session.run(train)
            return v1.train.Saver().save(session, str(prefix))


def test_each_part_restored_under_its_scope(tmp_path):
    rng = np.random.default_rng(0)
    tissue = {"conv1/kernel": rng.normal(size=(3, 3, 3, 4)).astype(np.float32),
              "bn1/moving_mean": rng.normal(size=4).astype(np.float32)}
    cell = {"conv1/kernel": rng.normal(size=(3, 3, 3, 2)).astype(np.float32),  # the same name as tissue's
            "Variable": rng.normal(size=5).astype(np.float32)}
    parts = {"tissue": tf1_checkpoint(tmp_path / "tissue.ckpt", tissue),
             "cell": tf1_checkpoint(tmp_path / "cell.ckpt", cell)}
    restored = merge_tf1(parts, tmp_path / "merged.ckpt")
    assert restored == {"tissue": ["bn1/moving_mean", "conv1/kernel"], "cell": ["Variable", "conv1/kernel"]}
    with read_checkpoint(tmp_path / "merged.ckpt") as merged:
        assert set(merged) == {"tissue/conv1/kernel", "tissue/bn1/moving_mean", "cell/conv1/kernel", "cell/Variable"}
        for scope, values in (("tissue", tissue), ("cell", cell)):
            for name, value in values.items():
                np.testing.assert_array_equal(merged[f"{scope}/{name}"], value)
        assert merged.info("tissue/bn1/moving_mean").kind == "buffer"


def test_object_based_checkpoints_are_refused(tmp_path):
    prefix = tf.train.Checkpoint(v=tf.Variable(1.0)).write(str(tmp_path / "tf2"))
    with pytest.raises(CheckpointError, match="object-based"):
        merge_tf1({"tissue": prefix}, tmp_path / "out")
    with pytest.raises(CheckpointError, match="not a readable TensorFlow checkpoint"):
        merge_tf1({"tissue": tmp_path / "absent"}, tmp_path / "out")
