"""What a framework adapter implements: build the network, load and save its weights, run a batch.

Everything else (input checks against the card, stain normalisation, chunking, softmax, CAMs,
peak finding, pickling, the per-process cache) is framework-free and shared
(:mod:`slidescope.models.model`). An adapter is a private module (``models/_torch``,
``models/_keras``) found through :mod:`slidescope.models.registry` when first used, so importing
:mod:`slidescope.models` loads no framework.

Raw outputs of :meth:`ModelBackend.run`, float32 numpy arrays, channels last:

- tissue: ``features`` ``(N, h, w, C)`` (the last block after its ReLU: what the CAM weighs) and
  ``logits`` ``(N, K)`` (the classifier applied to the pooled features);
- cell: ``heatmap`` ``(N, H, W)`` nucleus-centre logits, ``types`` ``(N, H, W, T)`` type logits and
  ``embedding`` ``(N, C)`` (the bottleneck, average-pooled).
"""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

if TYPE_CHECKING:
    from .card import ModelCard

__all__ = ["ModelBackend", "RAW_OUTPUTS"]

#: The raw outputs :meth:`ModelBackend.run` returns, by task.
RAW_OUTPUTS = {"tissue": ("features", "logits"), "cell": ("heatmap", "types", "embedding")}


class ModelBackend(abc.ABC):
    """A network of one framework, built from a card's architecture, on one device.

    Parameters
    ----------
    card : ModelCard
        Architecture, classes and input normalisation.
    device : str
        ``"cpu"`` or ``"cuda"`` (already resolved from ``"auto"`` by :meth:`resolve_device`).
    seed : int
        Seed of the random initial weights (used when no weights are loaded afterwards).
    """

    #: ``"torch"`` or ``"tf"``.
    framework: ClassVar[str]
    #: Suffix of the weights file this framework writes (``.safetensors``, ``.weights.h5``).
    weights_suffix: ClassVar[str]

    def __init__(self, card: "ModelCard", device: str, seed: int = 0) -> None:
        self.card = card
        self.device = device

    @property
    @abc.abstractmethod
    def network(self) -> Any:
        """The framework's own network (a torch ``nn.Module``, a ``keras.Model``) taking normalised
        float input: what code that composes models (the merged graph of :mod:`slidescope.merge`) builds on."""

    @classmethod
    @abc.abstractmethod
    def resolve_device(cls, device: str) -> str:
        """``"auto"`` becomes ``"cuda"`` where this framework sees a GPU, else ``"cpu"``.

        Raises
        ------
        FrameworkError
            ``"cuda"`` asked for where the framework sees no GPU.
        """

    @abc.abstractmethod
    def load_weights(self, path: str) -> None:
        """Load a weights file written by :meth:`save_weights`.

        Raises
        ------
        ModelWeightsError
            The file cannot be read, or a tensor is missing, unexpected or of another shape
            (the message names the file and every such tensor).
        """

    @abc.abstractmethod
    def save_weights(self, path: str) -> None:
        """Write the weights (BatchNorm statistics included) to ``path`` (not atomically: the caller stages it)."""

    @abc.abstractmethod
    def get_weights(self) -> dict[str, np.ndarray]:
        """Every stored tensor as numpy, in this framework's names and layouts (see
        :func:`slidescope.models.architectures.weight_shapes`)."""

    @abc.abstractmethod
    def set_weights(self, weights: dict[str, np.ndarray]) -> None:
        """Replace every stored tensor; the names and shapes must be exactly :meth:`get_weights`'s.

        Raises
        ------
        ModelWeightsError
            Missing, unexpected or mis-shaped tensors (all named at once).
        """

    @abc.abstractmethod
    def run(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """The raw outputs (see the module docstring) of a uint8 ``(N, H, W, 3)`` RGB batch.

        The batch is moved to the device as uint8 and normalised there with the card's
        ``input.mean`` and ``input.std`` (on the 0-255 scale): ``(x - mean) / std``. The network
        runs in inference mode (BatchNorm uses its running statistics, no gradients).
        """

    @abc.abstractmethod
    def classifier(self) -> tuple[np.ndarray, np.ndarray]:
        """The tissue classifier's ``(K, C)`` weights and ``(K,)`` bias, for class activation maps
        (read on every ``predict``: only those two tensors, never a copy of every weight)."""

    def describe(self) -> dict[str, Any]:
        """Framework and device, for logs and reports."""
        return {"framework": self.framework, "device": self.device}
