"""``KerasTrainer``: one AdamW step of a :class:`~slidescope.models._keras.adapter.KerasBackend`'s model.

The batch format, the losses, the optimiser and the schedule are those of :mod:`slidescope.models.trainer`,
computed as :class:`~slidescope.models._torch.training.TorchTrainer` computes them, in one compiled
``tf.function`` whose input signature keeps every batch size on the same trace.

AdamW as torch computes it
--------------------------
Keras' ``AdamW`` decays the weights as torch's does (decoupled, ``w -= lr * weight_decay * w`` on every
trainable variable, before the Adam update, with the learning rate of that step), but its Adam update
puts epsilon elsewhere: Keras divides by ``sqrt(v) + eps`` and folds ``sqrt(1 - beta2^t)`` into the
step size (the paper's "epsilon hat"), torch divides by ``sqrt(v) / sqrt(1 - beta2^t) + eps``. The two
differ once ``sqrt(v)`` is near ``eps`` (at step 1, torch's epsilon is effectively 30 times smaller).
The trainer's optimiser (:func:`torch_adamw`) is Keras' ``AdamW`` with torch's update (and torch's
defaults: eps 1e-8 instead of Keras' 1e-7, betas 0.9 and 0.999), so both frameworks take the same
steps up to float rounding.

A difference that remains (it is in the layers, not the trainer): in training mode torch updates a
BatchNorm's running variance with the unbiased batch variance (``n / (n - 1)`` times the biased one),
Keras with the biased one; both normalise the batch itself with the biased variance, so the trained
weights agree and only the moving variances (inference outputs) drift apart, by about ``1 / n``.

State on disk
-------------
:meth:`KerasTrainer.save_state` writes a ``tf.train.Checkpoint(model=..., optimizer=..., step=...)``
with ``Checkpoint.write(prefix)``, which creates two files: ``<prefix>.index`` and
``<prefix>.data-00000-of-00001`` (``<prefix>`` itself is not a file).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..errors import ModelInputError, ModelWeightsError
from ..trainer import Trainer, cosine_learning_rate
from .adapter import KerasBackend, import_keras

__all__ = ["KerasTrainer", "torch_adamw", "checkpoint_files"]


def checkpoint_files(prefix: str) -> tuple[str, str]:
    """The two files ``tf.train.Checkpoint.write(prefix)`` creates: ``prefix.index`` and its one data shard."""
    return f"{prefix}.index", f"{prefix}.data-00000-of-00001"


def _torch_adamw_class(keras: Any, tf: Any) -> type:
    """Keras' ``AdamW`` with torch's Adam update (see the module docstring), made once Keras is imported."""

    class TorchAdamW(keras.optimizers.AdamW):
        """``keras.optimizers.AdamW`` whose update is torch's ``AdamW`` step (weight decay unchanged).

        ``m = b1 m + (1 - b1) g``, ``v = b2 v + (1 - b2) g^2``, then
        ``w -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)``, the bias corrections in
        float64 as torch computes them in Python.
        """

        def __init__(self, learning_rate: float = 1e-3, weight_decay: float = 1e-2, beta_1: float = 0.9,
                     beta_2: float = 0.999, epsilon: float = 1e-8, **kwargs: Any) -> None:
            super().__init__(learning_rate=learning_rate, weight_decay=weight_decay, beta_1=beta_1,
                             beta_2=beta_2, epsilon=epsilon, **kwargs)

        def update_step(self, gradient: Any, variable: Any, learning_rate: Any) -> None:
            dtype = variable.dtype
            lr = tf.cast(learning_rate, tf.float64)
            gradient = tf.cast(gradient, dtype)
            step = tf.cast(self.iterations + 1, tf.float64)
            correction1 = 1.0 - tf.pow(tf.constant(float(self.beta_1), tf.float64), step)
            correction2 = 1.0 - tf.pow(tf.constant(float(self.beta_2), tf.float64), step)
            step_size = tf.cast(lr / correction1, dtype)
            correction2_sqrt = tf.cast(tf.sqrt(correction2), dtype)
            index = self._get_variable_index(variable)
            m, v = self._momentums[index], self._velocities[index]
            self.assign_add(m, (gradient - m) * (1.0 - self.beta_1))
            self.assign_add(v, (tf.square(gradient) - v) * (1.0 - self.beta_2))
            denominator = tf.sqrt(v) / correction2_sqrt + self.epsilon
            self.assign_sub(variable, step_size * m / denominator)

    return TorchAdamW


_ADAMW: dict[str, type] = {}


def torch_adamw(**kwargs: Any) -> Any:
    """A Keras ``AdamW`` that updates as torch's ``AdamW`` (see :func:`_torch_adamw_class`), importing Keras now.

    Parameters
    ----------
    **kwargs
        ``keras.optimizers.AdamW``'s arguments (``epsilon`` defaults to torch's 1e-8).
    """
    if "class" not in _ADAMW:
        _ADAMW["class"] = _torch_adamw_class(*import_keras())
    return _ADAMW["class"](**kwargs)


def _focal_loss(tf: Any, logits: Any, target: Any, alpha: float = 2.0, beta: float = 4.0) -> Any:
    """CenterNet's penalty-reduced focal loss from logits (as torch's ``focal_loss``): a scalar."""
    positive = tf.equal(target, 1.0)
    probability = tf.sigmoid(logits)
    log_p = tf.math.log_sigmoid(logits)
    log_not_p = tf.math.log_sigmoid(-logits)
    positive_term = tf.pow(1.0 - probability, alpha) * log_p
    negative_term = tf.pow(1.0 - target, beta) * tf.pow(probability, alpha) * log_not_p
    total = tf.reduce_sum(tf.where(positive, positive_term, negative_term))
    count = tf.maximum(tf.reduce_sum(tf.cast(positive, tf.float32)), 1.0)
    return -total / count


def _type_loss(tf: Any, logits: Any, types: Any) -> Any:
    """Mean softmax cross-entropy of ``(N, H, W, T)`` logits over pixels with ``types >= 0``; 0 when none."""
    valid = types >= 0
    losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.maximum(types, 0), logits=logits)
    count = tf.maximum(tf.reduce_sum(tf.cast(valid, tf.float32)), 1.0)
    return tf.reduce_sum(tf.where(valid, losses, tf.zeros_like(losses))) / count


class KerasTrainer(Trainer):
    """AdamW with a cosine learning rate on a :class:`KerasBackend` (see :class:`~slidescope.models.trainer.Trainer`).

    Parameters
    ----------
    backend : KerasBackend
        The model to train in place.
    lr : float
        Peak learning rate.
    weight_decay : float
        AdamW's decoupled weight decay.
    total_steps : int
        Steps of the whole run, for the schedule.

    Attributes
    ----------
    optimizer : keras.optimizers.AdamW
        Keras' ``AdamW`` with torch's update (:func:`torch_adamw`), built over
        ``model.trainable_variables`` at once, so that its slots exist (and a checkpoint restores
        into them) before the first step.
    traces : int
        How many times the train step was traced (1 after any number of batches of one image size).
    """

    framework = "tf"

    def __init__(self, backend: KerasBackend, *, lr: float, weight_decay: float, total_steps: int) -> None:
        super().__init__(backend, lr=lr, weight_decay=weight_decay, total_steps=total_steps)
        if not isinstance(backend, KerasBackend):
            raise TypeError(f"KerasTrainer needs a KerasBackend, got {type(backend).__name__}")
        _, tf = import_keras()
        self._tf = tf
        self.model = backend.model
        self._device_name = backend._device_name
        self.traces = 0
        with tf.device(self._device_name):
            self.optimizer = torch_adamw(learning_rate=cosine_learning_rate(lr, 0, total_steps),
                                        weight_decay=weight_decay, beta_1=0.9, beta_2=0.999, epsilon=1e-8)
            self.optimizer.build(self.model.trainable_variables)
            self._step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self._checkpoint = tf.train.Checkpoint(model=self.model, optimizer=self.optimizer, step=self._step)

        card = backend.card
        size = card.input.size
        mean = np.asarray(card.input.mean, np.float32)
        std = np.asarray(card.input.std, np.float32)
        task = card.task
        variables = self.model.trainable_variables
        if task == "tissue":
            targets = [tf.TensorSpec([None], tf.int64, name="labels")]
        else:
            targets = [tf.TensorSpec([None, size, size], tf.float32, name="heatmap"),
                       tf.TensorSpec([None, size, size], tf.int64, name="types")]
        signature = [tf.TensorSpec([None, size, size, 3], tf.uint8, name="images"),
                     tf.TensorSpec([], tf.float32, name="learning_rate"), *targets]

        @tf.function(input_signature=signature)
        def train_step(images: Any, learning_rate: Any, *target: Any) -> dict[str, Any]:
            self.traces += 1  # Python side effect: runs only while tracing
            with tf.device(self._device_name):
                x = (tf.cast(images, tf.float32) - tf.constant(mean)) / tf.constant(std)
                with tf.GradientTape() as tape:
                    outputs = self.model(x, training=True)
                    if task == "tissue":
                        (labels,) = target
                        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
                            labels=labels, logits=outputs["logits"]))
                        losses = {"loss": loss}
                    else:
                        heatmap, types = target
                        heatmap_loss = _focal_loss(tf, outputs["heatmap"], heatmap)
                        type_loss = _type_loss(tf, outputs["types"], types)
                        loss = heatmap_loss + type_loss
                        losses = {"loss": loss, "heatmap_loss": heatmap_loss, "type_loss": type_loss}
                gradients = tape.gradient(loss, variables)
                self.optimizer.learning_rate.assign(learning_rate)
                self.optimizer.apply(gradients, variables)
                self._step.assign_add(1)
                return losses

        self._train_step = train_step

    @property
    def step(self) -> int:
        """Optimisation steps taken so far (a checkpointed ``tf.Variable``)."""
        return int(self._step.numpy())

    def current_learning_rate(self) -> float:
        """The learning rate of the next step."""
        return cosine_learning_rate(self.lr, self.step, self.total_steps)

    def train_step(self, batch: dict[str, np.ndarray]) -> dict[str, float]:
        """One AdamW step on ``batch`` (see :mod:`slidescope.models.trainer`); the losses as floats."""
        tf = self._tf
        size = self.backend.card.input.size
        images = np.asarray(batch["images"])
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (size, size, 3):
            raise ModelInputError(f"images: expected uint8 (B, {size}, {size}, 3) (the card's input size: Keras models "
                                  f"are built for it, so --crop is for torch models), got {images.dtype} {images.shape}")
        if self.backend.card.task == "tissue":
            targets = [tf.constant(np.asarray(batch["labels"], np.int64))]
        else:
            targets = [tf.constant(np.asarray(batch["heatmap"], np.float32)),
                       tf.constant(np.asarray(batch["types"], np.int64))]
        learning_rate = tf.constant(self.current_learning_rate(), tf.float32)
        with tf.device(self._device_name):
            losses = self._train_step(tf.constant(images), learning_rate, *targets)
        return {key: float(value.numpy()) for key, value in losses.items()}

    # -- state ------------------------------------------------------------------------------

    def save_state(self, path: str) -> None:
        """Write a ``tf.train.Checkpoint`` of model (BatchNorm moving statistics included), optimiser
        (iterations, learning rate, ``momentum``/``velocity`` slots) and step under the prefix ``path``:
        the files ``path.index`` and ``path.data-00000-of-00001`` (not atomically: the caller stages them)."""
        self._checkpoint.write(os.fspath(path))

    def load_state(self, path: str) -> None:
        """Restore what :meth:`save_state` wrote under the prefix ``path``.

        Raises
        ------
        ModelWeightsError
            No checkpoint under that prefix, an unreadable one, or one that does not fit this model
            or optimiser (naming the file).
        """
        path = os.fspath(path)
        index = checkpoint_files(path)[0]
        if not os.path.isfile(index):
            raise ModelWeightsError(f"{path}: no trainer checkpoint ({index} not found)")
        try:
            self._checkpoint.read(path).assert_existing_objects_matched()
        except Exception as exc:  # noqa: BLE001 - NotFoundError, DataLossError, ValueError, AssertionError...
            message = " ".join(str(exc).split())[:500]
            raise ModelWeightsError(f"{path}: cannot restore the trainer checkpoint: {message}") from None
