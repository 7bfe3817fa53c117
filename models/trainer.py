"""What a framework's trainer implements: one optimisation step, the schedule, and its state on disk.

Everything around it (labels, sampling, augmentation, the loader, epochs, validation metrics,
checkpoints of the model directory, ``metrics.csv``) is framework-free and shared. A trainer is a
private module per framework (``models/_torch/training.py``, ``models/_keras/training.py``) found
through :func:`slidescope.models.registry.trainer_class`.

Batches are dicts of numpy arrays, the same for both frameworks:

- tissue: ``images`` uint8 ``(B, S, S, 3)`` RGB, ``labels`` int64 ``(B,)`` class indices;
- cell: ``images`` uint8 ``(B, S, S, 3)``, ``heatmap`` float32 ``(B, S, S)`` targets in ``[0, 1]``
  (a Gaussian blob at each nucleus centre, exactly 1.0 at the centre pixel), ``types`` int64
  ``(B, S, S)`` the type index of the nearest nucleus within its radius, ``-1`` elsewhere (ignored).

Losses (identical in both frameworks, so their curves compare):

- tissue: mean softmax cross-entropy of the logits;
- cell: the penalty-reduced focal loss of CenterNet on the heatmap logits (``alpha = 2``,
  ``beta = 4``, summed and divided by ``max(1, number of pixels whose target is 1)``) plus the mean
  softmax cross-entropy of the type logits over pixels whose ``types >= 0`` (zero when none).

Optimiser: AdamW (``weight_decay``), learning rate ``lr * 0.5 * (1 + cos(pi * step / total_steps))``
at step ``step`` (0-based, before the update), no warm-up. BatchNorm layers train in training mode.
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar

import numpy as np

from .backend import ModelBackend

__all__ = ["Trainer", "cosine_learning_rate", "STATE_SUFFIX"]

#: File suffix of a trainer's state, by framework.
STATE_SUFFIX = {"torch": ".pt", "tf": ".ckpt"}


def cosine_learning_rate(lr: float, step: int, total_steps: int) -> float:
    """The learning rate at 0-based ``step`` of ``total_steps``: a cosine from ``lr`` down to 0."""
    import math

    return lr * 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / max(1, total_steps)))


class Trainer(abc.ABC):
    """Trains one :class:`~slidescope.models.backend.ModelBackend` in place.

    Parameters
    ----------
    backend : ModelBackend
        The network to train (its framework's adapter); its weights change in place.
    lr : float
        Peak learning rate of the cosine schedule.
    weight_decay : float
        AdamW's decoupled weight decay.
    total_steps : int
        Steps of the whole run (all epochs), for the schedule.
    """

    framework: ClassVar[str]

    def __init__(self, backend: ModelBackend, *, lr: float, weight_decay: float, total_steps: int) -> None:
        self.backend = backend
        self.lr = lr
        self.weight_decay = weight_decay
        self.total_steps = total_steps

    @property
    @abc.abstractmethod
    def step(self) -> int:
        """Optimisation steps taken so far (restored by :meth:`load_state`)."""

    @abc.abstractmethod
    def train_step(self, batch: dict[str, np.ndarray]) -> dict[str, float]:
        """One optimisation step on ``batch`` (see the module docstring); returns the losses as floats
        (``loss`` always; the cell model also ``heatmap_loss`` and ``type_loss``)."""

    @abc.abstractmethod
    def save_state(self, path: str) -> None:
        """Write the model's weights (BatchNorm statistics included), the optimiser's slots and the step,
        so that :meth:`load_state` continues exactly (torch: tensors only, loadable with
        ``torch.load(weights_only=True)``; TF: a ``tf.train.Checkpoint`` of model and optimiser)."""

    @abc.abstractmethod
    def load_state(self, path: str) -> None:
        """Restore what :meth:`save_state` wrote.

        Raises
        ------
        ModelWeightsError
            The file cannot be read or does not fit this model (naming the file).
        """

    def describe(self) -> dict[str, Any]:
        return {"framework": self.framework, "lr": self.lr, "weight_decay": self.weight_decay,
                "total_steps": self.total_steps}
