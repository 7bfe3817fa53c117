"""The merged slide graph in Keras 3 on TensorFlow: ``tissue``, ``cell`` and ``head`` sub-models in one model.

The parts are the models package's own functional networks, built from their cards'
architectures inside the name scopes ``tissue``, ``cell`` and ``head``, so their variables are
``tissue/block1_conv1/kernel``... in the graph, in its TF checkpoint's object graph and in its
``.weights.h5`` (whose groups carry the sub-models' names). The arithmetic is that of
:mod:`slidescope.merge.head`, op for op as the torch graph does it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from slidescope.models.registry import backend_class

from ..head import GATE_FLOOR, HEAD_LAYERS, HeadSpec, _logit, member_scopes

__all__ = ["KerasSlideBackend", "OUTPUTS"]

#: The graph's outputs, in order (as the torch graph's).
OUTPUTS = ("slide_probs", "attention", "tissue_probs", "tissue_logits", "cell_counts", "cell_features")


def _head_model(keras: Any, spec: HeadSpec, seed: int) -> Any:
    """The head's dense layers as a functional model named ``head`` (inputs: tile features, gate)."""
    layers = keras.layers
    features = keras.Input((spec.inputs,), name="tile_features")
    gate = keras.Input((), name="gate")
    init = {name: keras.initializers.GlorotUniform(seed=seed * 1009 + i) for i, name in enumerate(HEAD_LAYERS)}
    dense = {name: layers.Dense(widths(spec)[1], kernel_initializer=init[name], name=name)
             for name, widths in HEAD_LAYERS.items()}
    h = keras.ops.relu(dense["project"](features))
    scores = dense["attention_w"](keras.ops.tanh(dense["attention_v"](h)))[:, 0]
    scores = scores + keras.ops.log(keras.ops.maximum(gate, GATE_FLOOR))
    attention = keras.ops.softmax(scores, axis=0)
    pooled = keras.ops.sum(attention[:, None] * h, axis=0, keepdims=True)
    probs = keras.ops.softmax(dense["classifier"](pooled), axis=1)[0]
    return keras.Model([features, gate], {"slide_probs": probs, "attention": attention}, name="head")


class KerasSlideBackend:
    """The merged graph in Keras (see the module docstring and the torch ``TorchSlideBackend``)."""

    framework = "tf"
    weights_suffix = ".weights.h5"

    def __init__(self, tissue_card: Any, cell_card: Any, head: HeadSpec, seed: int = 0,
                 members: dict[str, int] | None = None) -> None:
        adapter = backend_class("tf")  # the models package's own networks, built from the cards
        import keras  # imported (on the TensorFlow backend) by the adapter above
        import tensorflow as tf

        self._keras, self._tf = keras, tf
        self.cards = {"tissue": tissue_card, "cell": cell_card}
        members = {"tissue": 1, "cell": 1, **(members or {})}
        self.parts = {}
        for role, card in (("tissue", tissue_card), ("cell", cell_card)):
            for scope in member_scopes(role, members[role]):
                with keras.name_scope(scope):  # variable paths tissue/block1_conv1/kernel...
                    self.parts[scope] = adapter(card, "cpu", seed).network
        with keras.name_scope("head"):
            head_net = _head_model(keras, head, seed)
        self.parts["head"] = head_net
        tissue_parts = [self.parts[s] for s in member_scopes("tissue", members["tissue"])]
        cell_parts = [self.parts[s] for s in member_scopes("cell", members["cell"])]
        self._variables = {f"{role}/{layer.name}/{v.name}": v for role, part in self.parts.items()
                           for layer in part.layers for v in layer.weights}
        gate_index = tissue_card.class_names.index(tissue_card.cascade_class)
        radius = max(1, int(round(cell_card.thresholds["min_distance_um"] / cell_card.input.mpp)))
        floor = _logit(float(cell_card.thresholds["nucleus_score"]))
        types = len(cell_card.classes)
        t_mean, t_std = (np.asarray(tissue_card.input.mean, np.float32), np.asarray(tissue_card.input.std, np.float32))
        c_mean, c_std = (np.asarray(cell_card.input.mean, np.float32), np.asarray(cell_card.input.std, np.float32))
        t_size, c_size = tissue_card.input.size, cell_card.input.size
        self.signature = [tf.TensorSpec([None, t_size, t_size, 3], tf.uint8, name="coarse"),
                          tf.TensorSpec([None, c_size, c_size, 3], tf.uint8, name="fine"),
                          tf.TensorSpec([None], tf.int64, name="parents"),
                          tf.TensorSpec([None], tf.float32, name="valid")]

        def tissue_part(coarse: Any) -> tuple[Any, Any, Any]:
            x = (tf.cast(coarse, tf.float32) - t_mean) / t_std
            outs = [part(x, training=False) for part in tissue_parts]
            if len(outs) == 1:
                logits = outs[0]["logits"]
                return logits, tf.nn.softmax(logits, axis=1), tf.reduce_mean(outs[0]["features"], axis=[1, 2])
            # an ensemble, averaged as the torch graph averages it
            logits = tf.reduce_mean(tf.stack([o["logits"] for o in outs]), axis=0)
            probs = tf.reduce_mean(tf.stack([tf.nn.softmax(o["logits"], axis=1) for o in outs]), axis=0)
            embedding = tf.reduce_mean(tf.stack([tf.reduce_mean(o["features"], axis=[1, 2]) for o in outs]), axis=0)
            return logits, probs, embedding

        def cell_logits(fine: Any) -> tuple[Any, Any]:
            y = (tf.cast(fine, tf.float32) - c_mean) / c_std
            outs = [part(y, training=False) for part in cell_parts]
            if len(outs) == 1:
                return outs[0]["heatmap"], outs[0]["types"]
            return (tf.reduce_mean(tf.stack([o["heatmap"] for o in outs]), axis=0),
                    tf.reduce_mean(tf.stack([o["types"] for o in outs]), axis=0))

        def cell_part(fine: Any) -> Any:
            heat, type_logits = cell_logits(fine)
            local = tf.nn.max_pool2d(heat[..., None], 2 * radius + 1, 1, "SAME")[..., 0]
            peaks = tf.cast(tf.logical_and(tf.equal(heat, local), heat >= floor), tf.float32)
            kinds = tf.one_hot(tf.argmax(type_logits, axis=-1), types, dtype=tf.float32)
            return tf.reduce_sum(peaks[..., None] * kinds, axis=[1, 2])

        def forward(coarse: Any, fine: Any, parents: Any, valid: Any) -> dict[str, Any]:
            logits, tissue_probs, embedding = tissue_part(coarse)
            counts = cell_part(fine)
            pooled = tf.math.unsorted_segment_sum(counts * valid[:, None], parents, tf.shape(coarse)[0])
            cells = tf.math.log(pooled + 1.0)  # log1p has no ONNX op (tf2onnx); counts are >= 0, so no precision lost
            out = head_net([tf.concat([embedding, cells], axis=1), tissue_probs[:, gate_index]], training=False)
            return {"slide_probs": out["slide_probs"], "attention": out["attention"], "tissue_probs": tissue_probs,
                    "tissue_logits": logits, "cell_counts": counts, "cell_features": cells}

        self._tissue_part = tf.function(tissue_part, input_signature=self.signature[:1])
        self._cell_part = tf.function(cell_part, input_signature=self.signature[1:2])
        self._cell_logits = tf.function(cell_logits, input_signature=self.signature[1:2])
        self._forward = forward
        self._compiled = tf.function(forward, input_signature=self.signature)

    # -- weights ------------------------------------------------------------------------------------

    def target_infos(self) -> list[Any]:
        from ..checkpoint import TensorInfo, kind_of_name

        return [TensorInfo(name, tuple(int(d) for d in v.shape), np.dtype(v.dtype).name, kind_of_name(name))
                for name, v in self._variables.items()]

    def load_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        """Assign the variables named in ``arrays``; the others keep their values (see the torch backend)."""
        for name, variable in self._variables.items():
            if name in arrays:
                variable.assign(np.asarray(arrays[name], dtype=np.dtype(variable.dtype)))

    def get_arrays(self) -> dict[str, np.ndarray]:
        return {name: np.array(v.numpy()) for name, v in self._variables.items()}

    def save_weights(self, path: str) -> None:
        """The graph's weights as Keras 3 lays out a ``.weights.h5`` (groups by layer class and order,
        each layer's name in its ``vars`` attribute, the parts as nested models named tissue, cell and
        head) and, beside it, a name-based TF checkpoint ``<stem>.ckpt`` whose keys are the scoped
        names (``tissue/block1_conv1/kernel``), readable by ``tf.train.load_checkpoint`` and TF1 savers."""
        import h5py

        with h5py.File(path, "w") as handle:
            handle.create_group("vars").attrs["name"] = "slide_graph"
            layers = handle.create_group("layers")
            for index, (role, part) in enumerate(self.parts.items()):
                group = layers.create_group("functional" if index == 0 else f"functional_{index}")
                group.create_group("vars").attrs["name"] = role
                inner, seen = group.create_group("layers"), {}
                for layer in part.layers:
                    kind = _snake_case(type(layer).__name__)
                    count = seen.get(kind, 0)
                    seen[kind] = count + 1
                    stored = inner.create_group(kind if count == 0 else f"{kind}_{count}").create_group("vars")
                    stored.attrs["name"] = layer.name
                    for number, variable in enumerate(layer.weights):
                        stored.create_dataset(str(number), data=np.asarray(variable.numpy()))
        arrays = self.get_arrays()
        prefix = path.removesuffix(".weights.h5") + ".ckpt"
        self._tf.raw_ops.SaveV2(prefix=prefix, tensor_names=list(arrays), shape_and_slices=[""] * len(arrays),
                                tensors=[self._tf.constant(value) for value in arrays.values()])

    def load_weights(self, path: str) -> None:
        from ..errors import CheckpointError
        from ..reading import read_checkpoint

        with read_checkpoint(path) as checkpoint:
            expected = {info.name: info for info in self.target_infos()}
            missing = [name for name in expected if name not in checkpoint]
            unexpected = [name for name in checkpoint if name not in expected]
            shapes = [name for name in expected if name in checkpoint and checkpoint.info(name).shape != expected[name].shape]
            if missing or unexpected or shapes:
                raise CheckpointError(f"{path}: the merged weights do not fit the graph: missing {missing[:5]}, "
                                      f"unexpected {unexpected[:5]}, wrong shape {shapes[:5]}")
            self.load_arrays({name: checkpoint[name] for name in expected})

    # -- running ------------------------------------------------------------------------------------

    def run(self, coarse: np.ndarray, fine: np.ndarray, parents: np.ndarray, valid: np.ndarray) -> dict[str, np.ndarray]:
        tf = self._tf
        out = self._compiled(tf.constant(coarse), tf.constant(fine), tf.constant(np.asarray(parents, np.int64)),
                             tf.constant(np.asarray(valid, np.float32)))
        return {name: out[name].numpy() for name in OUTPUTS}

    def part_outputs(self, coarse: np.ndarray | None = None, fine: np.ndarray | None = None,
                     chunk: int = 32) -> dict[str, np.ndarray]:
        """The parts alone, in chunks (see the torch backend's ``part_outputs``)."""
        out: dict[str, list[np.ndarray]] = {}
        for start in range(0, 0 if coarse is None else len(coarse), chunk):
            logits, probs, embedding = self._tissue_part(self._tf.constant(coarse[start:start + chunk]))
            for key, value in (("tissue_logits", logits), ("tissue_probs", probs), ("embedding", embedding)):
                out.setdefault(key, []).append(value.numpy())
        for start in range(0, 0 if fine is None else len(fine), chunk):
            out.setdefault("cell_counts", []).append(self._cell_part(self._tf.constant(fine[start:start + chunk])).numpy())
        return {key: np.concatenate(values) for key, values in out.items()}

    def head_outputs(self, embedding: np.ndarray, cells: np.ndarray, gate: np.ndarray) -> dict[str, np.ndarray]:
        """The head alone (see the torch backend's ``head_outputs``)."""
        tf = self._tf
        features = tf.concat([tf.constant(np.asarray(embedding, np.float32)), tf.constant(np.asarray(cells, np.float32))],
                             axis=1)
        out = self.parts["head"]([features, tf.constant(np.asarray(gate, np.float32))], training=False)
        return {"slide_probs": out["slide_probs"].numpy().reshape(-1), "attention": out["attention"].numpy().reshape(-1)}

    def cell_logits(self, fine: np.ndarray) -> dict[str, np.ndarray]:
        """The cell part's ``heatmap`` and ``types`` logits (channels last, as the torch backend's)."""
        heat, types = self._cell_logits(self._tf.constant(fine))
        return {"heatmap": heat.numpy(), "types": types.numpy()}

    def set_head(self, arrays: dict[str, np.ndarray]) -> None:
        """Replace the head's tensors, given in torch names and layouts (``project.weight``...)."""
        converted = {}
        for name, value in arrays.items():
            layer, _, part = name.rpartition(".")
            converted[f"head/{layer}/{'kernel' if part == 'weight' else 'bias'}"] = value.T if part == "weight" else value
        self.load_arrays(converted)

    # -- exports ------------------------------------------------------------------------------------

    def export(self, name: str, path: str, inputs: tuple[np.ndarray, ...]) -> dict[str, np.ndarray]:
        """Write the ``name`` export (``"savedmodel"`` or ``"onnx"``), load it back, return its outputs."""
        tf = self._tf
        module = tf.Module()
        module.parts = list(self.parts.values())
        module.serve = self._compiled
        if name == "savedmodel":
            tf.saved_model.save(module, path, signatures={"serving_default": self._compiled.get_concrete_function()})
            loaded = tf.saved_model.load(path)
            out = loaded.serve(*(tf.constant(x) for x in (inputs[0], inputs[1], np.asarray(inputs[2], np.int64),
                                                          np.asarray(inputs[3], np.float32))))
            return {key: out[key].numpy() for key in OUTPUTS}
        if name == "onnx":
            import tf2onnx

            from ..onnx_files import run_onnx

            model_proto, _ = tf2onnx.convert.from_function(self._compiled, input_signature=self.signature,
                                                           opset=17, output_path=None)
            names = [output.name for output in model_proto.graph.output]
            with open(path, "wb") as handle:
                handle.write(model_proto.SerializeToString())
            got = run_onnx(path, inputs, tuple(names))
            return {key: got[_onnx_name(names, key)] for key in OUTPUTS}
        raise ValueError(f"unknown tf export {name!r}")


def _snake_case(name: str) -> str:
    """Keras' group name for a layer class (``BatchNormalization`` -> ``batch_normalization``,
    ``Conv2D`` -> ``conv2d``): Keras 3's own two substitutions."""
    import re

    name = re.sub("(.)([A-Z][a-z0-9]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _onnx_name(names: list[str], key: str) -> str:
    """The ONNX output that carries the graph's output ``key`` (tf2onnx keeps the dict keys in the names)."""
    for name in names:
        if name == key or name.split(":")[0] == key:
            return name
    raise KeyError(f"ONNX export: no output named {key!r} among {names}")
