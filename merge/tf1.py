"""The legacy path, as TF1-era code merged checkpoints: one graph, one ``variable_scope`` per part,
each part restored by its own ``Saver(var_list={checkpoint name: scoped variable})``.

For labs whose checkpoints come from ``tf.compat.v1.train.Saver`` (name-based: ``conv1/kernel``,
``conv1/kernel/Adam``, ``global_step``). :func:`merge_tf1` builds a ``tf.compat.v1`` graph with a
variable per model variable of each part under the part's scope, restores each part from its own
unscoped checkpoint through a ``Saver`` whose ``var_list`` maps the checkpoint's names onto the
scoped variables, and saves the scoped result as one name-based checkpoint
(``tissue/conv1/kernel``...), which :func:`~slidescope.merge.read_checkpoint` and ``slidescope
merge`` read like any other. Optimiser slots and counters are left behind. TensorFlow is imported
when the function runs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from slidescope.wsi.errors import ParameterError

from .checkpoint import kind_of_name
from .errors import CheckpointError

__all__ = ["merge_tf1"]

_OBJECT_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"


def merge_tf1(parts: Mapping[str, Any], out_prefix: Any) -> dict[str, list[str]]:
    """Restore each ``scope -> checkpoint prefix`` of ``parts`` under its scope; save them together.

    Returns, per scope, the checkpoint names restored (weights and moving statistics).

    Raises
    ------
    CheckpointError
        A checkpoint that cannot be read, or an object-based (TF2) one: its keys are positions, not
        names; merge those with :func:`~slidescope.merge.merging.merge_models`.
    ParameterError
        No parts, or a scope that is not a plain name.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    v1 = tf.compat.v1
    if not parts:
        raise ParameterError("parts: expected at least one scope -> checkpoint, got none")
    graph = tf.Graph()
    restored: dict[str, list[str]] = {}
    savers = []
    with graph.as_default():
        for scope, prefix in parts.items():
            if not isinstance(scope, str) or not scope or "/" in scope:
                raise ParameterError(f"scope: expected a plain name such as 'tissue', got {scope!r}")
            prefix = os.fspath(prefix)
            try:
                reader = tf.train.load_checkpoint(prefix)
            except Exception as exc:  # NotFoundError, DataLossError...: one error naming the checkpoint
                raise CheckpointError(f"{prefix}: not a readable TensorFlow checkpoint: "
                                      f"{str(exc).strip().splitlines()[0] if str(exc).strip() else exc}") from None
            shapes, dtypes = reader.get_variable_to_shape_map(), reader.get_variable_to_dtype_map()
            if _OBJECT_GRAPH_KEY in shapes:
                raise CheckpointError(f"{prefix}: an object-based (TF2) checkpoint; its keys are positions, so the "
                                      f"TF1 Saver path cannot map them by name: use slidescope merge")
            names = sorted(n for n in shapes if kind_of_name(n) in ("weight", "buffer"))
            var_list = {}
            with v1.variable_scope(scope):
                for name in names:
                    var_list[name] = v1.get_variable(name, shape=shapes[name], dtype=dtypes[name],
                                                     initializer=v1.zeros_initializer(),
                                                     trainable=kind_of_name(name) == "weight")
            savers.append((v1.train.Saver(var_list=var_list), prefix))
            restored[scope] = names
        with v1.Session(graph=graph) as session:
            session.run(v1.global_variables_initializer())
            for saver, prefix in savers:
                saver.restore(session, prefix)
            v1.train.Saver().save(session, os.fspath(out_prefix), write_meta_graph=False)
    return restored
