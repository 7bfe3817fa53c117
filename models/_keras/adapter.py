"""``KerasBackend``: the tissue and cell networks in Keras 3 on TensorFlow, one compiled predict function.

Keras and TensorFlow are imported by :func:`import_keras` when a backend is first resolved or built,
never when this module is imported.
"""

from __future__ import annotations

import os
import re
import sys
from typing import Any

import numpy as np

from ..backend import RAW_OUTPUTS, ModelBackend
from ..card import ModelCard
from ..errors import FrameworkError, ModelInputError, ModelWeightsError
from .networks import cell_model, tissue_model

__all__ = ["KerasBackend", "import_keras"]


def import_keras() -> tuple[Any, Any]:
    """``(keras, tensorflow)``, with Keras checked to run on the TensorFlow backend.

    Raises
    ------
    FrameworkError
        Keras or TensorFlow is not installed, or Keras was already imported with another backend.
    """
    if "keras" not in sys.modules:
        # Keras reads KERAS_BACKEND once, at its first import; setting it here (and only here, just
        # before that import) picks TensorFlow without touching a process that chose otherwise.
        os.environ["KERAS_BACKEND"] = "tensorflow"
    # TensorFlow's C++ start-up lines (CPU instruction notes, oneDNN) would land on the stderr of every
    # command that loads a Keras model; keep them off unless the user chose a log level.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import keras
        import tensorflow as tf
    except ImportError as exc:
        raise FrameworkError(f"framework 'tf': cannot import {exc.name or exc}; "
                             f"install tensorflow-cpu and keras>=3 (make install)") from exc
    backend = keras.backend.backend()
    if backend != "tensorflow":
        raise FrameworkError(f"keras was already imported with backend {backend!r}; slidescope's 'tf' models "
                             f"need the TensorFlow backend (set KERAS_BACKEND=tensorflow)")
    return keras, tf


def _snake_case(name: str) -> str:
    """Keras' group name for a layer class in a ``.weights.h5`` file (``BatchNormalization`` -> ``batch_normalization``)."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


class KerasBackend(ModelBackend):
    """A card's network as a Keras functional model on ``device`` (see :class:`ModelBackend`).

    Attributes
    ----------
    model : keras.Model
        The functional network (layer names from :func:`~slidescope.models.architectures.layer_specs`).
    traces : int
        How many times the predict function was traced (1 once it has run: batches never retrace).
    """

    framework = "tf"
    weights_suffix = ".weights.h5"

    def __init__(self, card: ModelCard, device: str, seed: int = 0) -> None:
        super().__init__(card, device, seed)
        keras, tf = import_keras()
        self._tf = tf
        self._device_name = "/GPU:0" if device == "cuda" else "/CPU:0"
        size = card.input.size
        build = tissue_model if card.task == "tissue" else cell_model
        with tf.device(self._device_name):
            self.model = build(keras, card.architecture, len(card.classes), size, seed)
        self._variables = {f"{layer.name}/{v.name}": v for layer in self.model.layers for v in layer.weights}
        self.traces = 0
        mean = np.asarray(card.input.mean, np.float32)
        std = np.asarray(card.input.std, np.float32)

        @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.uint8)])
        def predict(images: Any) -> dict[str, Any]:
            self.traces += 1  # Python side effect: runs only while tracing
            with tf.device(self._device_name):
                x = (tf.cast(images, tf.float32) - tf.constant(mean)) / tf.constant(std)
                return self.model(x, training=False)

        self._predict = predict

    @property
    def network(self) -> Any:
        """The functional ``keras.Model`` itself (normalised float input), for code that composes models."""
        return self.model

    @classmethod
    def resolve_device(cls, device: str) -> str:
        """See :meth:`ModelBackend.resolve_device`."""
        if device not in ("auto", "cpu", "cuda"):
            raise FrameworkError(f"device: expected 'auto', 'cpu' or 'cuda', got {device!r}")
        if device == "cpu":
            return "cpu"
        _, tf = import_keras()
        gpu = bool(tf.config.list_physical_devices("GPU"))
        if device == "cuda" and not gpu:
            raise FrameworkError("device 'cuda': TensorFlow sees no GPU (tensorflow-cpu, no driver, or CUDA_VISIBLE_DEVICES "
                                 "hides it); use device 'cpu' or 'auto'")
        return "cuda" if gpu else "cpu"

    # -- weights ---------------------------------------------------------------------------

    def save_weights(self, path: str) -> None:
        """See :meth:`ModelBackend.save_weights` (``path`` must end with ``.weights.h5``)."""
        self.model.save_weights(path)

    def _file_layout(self, path: str) -> dict[str, tuple[str, list[tuple[int, ...]]]]:
        """``{group: (layer name, variable shapes)}`` of the ``layers/<group>/vars`` entries of a weights file.

        Keras 3 stores each layer under ``layers/<snake_case class name>[_<k>]/vars`` (the k-th
        layer of that class in ``model.layers`` order), its own name in the ``name`` attribute of
        ``vars``, and its variables as datasets ``vars/0``, ``vars/1``... in ``layer.weights`` order.
        """
        import h5py

        if not os.path.isfile(path):
            raise ModelWeightsError(f"{path}: no such weights file")
        layout = {}
        try:
            with h5py.File(path, "r") as h5:
                for group, entry in h5.get("layers", {}).items():
                    stored = entry.get("vars") if isinstance(entry, h5py.Group) else None
                    if stored is None:
                        continue
                    name = stored.attrs.get("name", group)
                    name = name.decode() if isinstance(name, bytes) else str(name)
                    keys = sorted(stored.keys(), key=lambda key: int(key) if key.isdigit() else -1)
                    layout[group] = (name, [tuple(stored[key].shape) for key in keys])
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ModelWeightsError(f"{path}: cannot read the weights file (not a Keras .weights.h5?): {exc}") from None
        return layout

    def _check_file(self, path: str) -> None:
        """Compare the file's layout with the model's; every mismatch in one :class:`ModelWeightsError`."""
        expected, counts = {}, {}
        for layer in self.model.layers:
            kind = _snake_case(type(layer).__name__)
            group = kind if kind not in counts else f"{kind}_{counts[kind] + 1}"
            counts[kind] = counts.get(kind, -1) + 1
            expected[group] = layer
        layers = {layer.name: layer for layer in self.model.layers}
        problems, found = [], set()
        for group, (name, shapes) in self._file_layout(path).items():
            own = [v.name for v in layers[name].weights] if name in layers else []
            if own and shapes:
                found.add(name)
                if expected.get(group) is not layers[name]:
                    problems.append(f"{name}: stored as layers/{group}, where the model has another layer")
            for i, shape in enumerate(shapes):
                full = f"{name}/{own[i] if i < len(own) else i}"
                if full not in self._variables:
                    problems.append(f"{full}: unexpected (shape {shape})")
                elif tuple(self._variables[full].shape) != shape:
                    problems.append(f"{full}: expected shape {tuple(self._variables[full].shape)}, got {shape}")
            problems += [f"{name}/{v}: missing" for v in own[len(shapes):]] if shapes else []
        for layer in self.model.layers:
            if layer.weights and layer.name not in found:
                problems += [f"{layer.name}/{v.name}: missing" for v in layer.weights]
        if problems:
            raise ModelWeightsError(f"{path}: the weights do not fit the {self.card.architecture.name} "
                                    f"architecture: " + "; ".join(problems))

    def load_weights(self, path: str) -> None:
        """See :meth:`ModelBackend.load_weights`."""
        path = os.fspath(path)
        self._check_file(path)
        try:
            self.model.load_weights(path)
        except Exception as exc:  # noqa: BLE001 - Keras raises ValueError, OSError, KeyError...
            raise ModelWeightsError(f"{path}: cannot load the weights: {exc}") from None

    def classifier(self) -> tuple[np.ndarray, np.ndarray]:
        """The classifier's ``(K, C)`` weights (Keras stores ``(C, K)``) and ``(K,)`` bias."""
        return (np.asarray(self._variables["classifier/kernel"].numpy()).T,
                np.asarray(self._variables["classifier/bias"].numpy()))

    def get_weights(self) -> dict[str, np.ndarray]:
        """See :meth:`ModelBackend.get_weights` (``layer/variable`` names, in ``model.weights`` order)."""
        return {name: np.array(v.numpy()) for name, v in self._variables.items()}

    def set_weights(self, weights: dict[str, np.ndarray]) -> None:
        """See :meth:`ModelBackend.set_weights`."""
        problems = [f"{name}: missing" for name in self._variables if name not in weights]
        problems += [f"{name}: unexpected" for name in weights if name not in self._variables]
        problems += [f"{name}: expected shape {tuple(v.shape)}, got {np.shape(weights[name])}"
                     for name, v in self._variables.items()
                     if name in weights and np.shape(weights[name]) != tuple(v.shape)]
        if problems:
            raise ModelWeightsError(f"weights for {self.card.architecture.name}: " + "; ".join(problems))
        for name, v in self._variables.items():
            v.assign(np.asarray(weights[name], dtype=np.float32))

    # -- inference -------------------------------------------------------------------------

    def run(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """See :meth:`ModelBackend.run`."""
        images = np.asarray(images)
        size = self.card.input.size
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (size, size, 3):
            raise ModelInputError(f"images: expected uint8 (N, {size}, {size}, 3), "
                                  f"got {images.dtype} {images.shape}")
        with self._tf.device(self._device_name):
            outputs = self._predict(self._tf.constant(images))
        return {key: outputs[key].numpy().astype(np.float32, copy=False) for key in RAW_OUTPUTS[self.card.task]}
