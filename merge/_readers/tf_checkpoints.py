"""TensorFlow checkpoints: TF1 name-based (``tf.compat.v1.train.Saver``) and TF2 object-based
(``tf.train.Checkpoint``), read with ``tf.train.load_checkpoint`` (TensorFlow is imported here only).

Name-based keys are the variables' names (``conv1/kernel``, ``conv1/kernel/Adam``, ``global_step``).
Object-based keys are positions (``model/_operations/3/_kernel/.ATTRIBUTES/VARIABLE_VALUE``); the
readable name of each variable is the ``full_name`` the checkpoint's object graph records
(``conv1/kernel``, ``adam/conv1_kernel_momentum``), and that is the name listed here. Whether an
object-based entry is optimiser state is read from the graph too: a variable reachable only through
the optimiser (its slots, its iteration count) is; the model's weights are, even when Keras saved
them under ``optimizer/_trainable_variables/N``. Partitioned TF1 variables are joined by the reader.
"""

from __future__ import annotations

import os
import re
from typing import Any

import numpy as np

from ..checkpoint import Checkpoint, TensorInfo, kind_of_name
from ..errors import CheckpointError

__all__ = ["read_tf", "tf_checkpoint_files", "OBJECT_GRAPH_KEY"]

OBJECT_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"
#: Children of the root (or any node) that hold an optimiser.
_OPTIMIZER_CHILD = re.compile(r"^(optimizer|opt|optim|_optimizer)$")
_ITERATION_CHILDREN = {"_iterations", "iterations", "iter"}


def tf_checkpoint_files(prefix: str) -> list[str]:
    """The index and data shards of the checkpoint ``prefix`` (those that exist), index first."""
    folder, base = os.path.split(prefix)
    folder = folder or "."
    shards = sorted(name for name in os.listdir(folder) if re.fullmatch(re.escape(base) + r"\.data-\d{5}-of-\d{5}", name))
    return [prefix + ".index"] + [os.path.join(folder, name) for name in shards]


def _object_graph_names(reader: Any, path: str) -> tuple[dict[str, str], set[str]]:
    """``checkpoint key -> full_name`` and the keys reachable only through an optimiser."""
    from tensorflow.core.protobuf import trackable_object_graph_pb2

    graph = trackable_object_graph_pb2.TrackableObjectGraph()
    try:
        graph.ParseFromString(reader.get_tensor(OBJECT_GRAPH_KEY))
    except Exception as exc:  # a damaged proto: name the file
        raise CheckpointError(f"{path}: the checkpoint's object graph cannot be parsed: {exc}") from None
    nodes = graph.nodes
    optimizer_ids: set[int] = set()
    for index, node in enumerate(nodes):  # a Keras 3 or TF2 optimiser: an iteration count and slots
        children = {child.local_name for child in node.children}
        if children & _ITERATION_CHILDREN and ("_variables" in children or "_momentums" in children
                                               or any(name.endswith("_slots") for name in children)):
            optimizer_ids.add(index)
    for child in nodes[0].children if nodes else ():
        if _OPTIMIZER_CHILD.match(child.local_name):
            optimizer_ids.add(child.node_id)
    slot_ids = {slot.slot_variable_node_id for node in nodes for slot in node.slot_variables}

    def reach(skip_optimizers: bool) -> set[int]:
        seen, stack = {0}, [0]
        while stack:
            for child in nodes[stack.pop()].children:
                if child.node_id in seen or (skip_optimizers and child.node_id in optimizer_ids):
                    continue
                seen.add(child.node_id)
                stack.append(child.node_id)
        return seen

    model_side = reach(skip_optimizers=True) - slot_ids
    names: dict[str, str] = {}
    optimizer_keys: set[str] = set()
    for index, node in enumerate(nodes):
        for attribute in node.attributes:
            if attribute.name != "VARIABLE_VALUE":
                continue
            names[attribute.checkpoint_key] = attribute.full_name or attribute.checkpoint_key
            if index not in model_side:
                optimizer_keys.add(attribute.checkpoint_key)
    return names, optimizer_keys


def read_tf(prefix: str) -> Checkpoint:
    """The variables of the TensorFlow checkpoint ``prefix`` (see the module docstring)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # no C++ start-up lines on the user's stderr
    try:
        import tensorflow as tf
    except ImportError:
        raise CheckpointError(f"{prefix}: a TensorFlow checkpoint; reading it needs TensorFlow "
                              f"(pip install tensorflow-cpu)") from None
    try:
        reader = tf.train.load_checkpoint(prefix)
        shapes = reader.get_variable_to_shape_map()
        dtypes = reader.get_variable_to_dtype_map()
    except Exception as exc:  # DataLossError, NotFoundError, OpError...: one error naming the file
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{prefix}: not a readable TensorFlow checkpoint (truncated or damaged?): {message}") from None
    object_based = OBJECT_GRAPH_KEY in shapes
    names, optimizer_keys = _object_graph_names(reader, prefix) if object_based else ({}, set())
    infos, keys = [], {}
    for key in sorted(shapes):
        if key == OBJECT_GRAPH_KEY:
            continue
        name = names.get(key, key)
        if name in keys:  # two keys, one full_name (two optimisers): keep both, the second by its key
            name = key
        dtype = dtypes[key]
        if dtype == tf.string:
            kind = "other"
            numpy_dtype = "object"
        else:
            numpy_dtype = np.dtype(dtype.as_numpy_dtype).name
            if key in optimizer_keys:
                kind = "counter" if re.search(r"(^|/)(iterations?|global_step)$", name) else "optimizer"
            else:
                kind = kind_of_name(name)
        keys[name] = key
        infos.append(TensorInfo(name, tuple(int(d) for d in shapes[key]), numpy_dtype, kind))

    infos.sort(key=lambda info: info.name)  # readable names in order (keys are positions)

    def load(name: str) -> np.ndarray:
        return np.asarray(reader.get_tensor(keys[name]))

    files = tf_checkpoint_files(prefix)
    return Checkpoint(prefix, "tf", "tf", tuple(infos), load, files=tuple(f for f in files if os.path.exists(f)),
                      metadata={"object_based": object_based,
                                "keys": {name: key for name, key in keys.items() if name != key}})
