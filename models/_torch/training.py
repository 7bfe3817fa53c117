"""``TorchTrainer``: one AdamW step of a :class:`~slidescope.models._torch.adapter.TorchBackend`'s network.

The batch format, the losses, the optimiser and the schedule are those of :mod:`slidescope.models.trainer`
(and the same as :class:`~slidescope.models._keras.training.KerasTrainer`'s, so curves compare). The
trainer's state is one ``torch.save`` file of tensors and plain containers only, so that it loads with
``torch.load(weights_only=True)``: ``{"model": state_dict, "optimizer": optimizer.state_dict(),
"step": int, "torch_rng": ByteTensor}`` (plus ``"cuda_rng"`` when the network is on CUDA).

Training runs in float32 (the card's ``autocast`` is for inference only).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..architectures import size_multiple
from ..errors import ModelInputError, ModelWeightsError
from ..trainer import Trainer, cosine_learning_rate
from .adapter import TorchBackend

__all__ = ["TorchTrainer", "focal_loss", "type_loss"]

#: The keys of a state file (``cuda_rng`` is optional).
_STATE_KEYS = ("model", "optimizer", "step", "torch_rng")


def focal_loss(logits: torch.Tensor, target: torch.Tensor, alpha: float = 2.0, beta: float = 4.0) -> torch.Tensor:
    """CenterNet's penalty-reduced focal loss of heatmap ``logits`` against ``target`` in ``[0, 1]``.

    ``-(sum over positives (1 - p)^alpha log p + sum over the rest (1 - y)^beta p^alpha log(1 - p))
    / max(1, positives)`` with ``p = sigmoid(logits)`` and positives the pixels whose target is
    exactly 1; ``log p`` and ``log(1 - p)`` come from ``logsigmoid`` so large logits stay finite.

    Parameters
    ----------
    logits : torch.Tensor
        Heatmap logits, any shape.
    target : torch.Tensor
        Targets of the same shape.
    alpha, beta : float
        Focusing and negative-penalty exponents.

    Returns
    -------
    torch.Tensor
        A scalar.
    """
    positive = target == 1.0
    probability = torch.sigmoid(logits)
    log_p = F.logsigmoid(logits)
    log_not_p = F.logsigmoid(-logits)
    positive_term = (1.0 - probability) ** alpha * log_p
    negative_term = (1.0 - target) ** beta * probability ** alpha * log_not_p
    total = torch.where(positive, positive_term, negative_term).sum()
    count = positive.sum().clamp(min=1).to(logits.dtype)
    return -total / count


def type_loss(logits: torch.Tensor, types: torch.Tensor) -> torch.Tensor:
    """Mean softmax cross-entropy of ``(N, T, H, W)`` type logits over the pixels whose ``types >= 0``.

    Zero (not NaN) when no pixel has a type: the sum over the valid pixels divided by ``max(1, count)``.
    """
    valid = types >= 0
    losses = F.cross_entropy(logits, types.clamp(min=0), reduction="none")
    count = valid.sum().clamp(min=1).to(logits.dtype)
    return torch.where(valid, losses, torch.zeros_like(losses)).sum() / count


class TorchTrainer(Trainer):
    """AdamW with a cosine learning rate on a :class:`TorchBackend` (see :class:`~slidescope.models.trainer.Trainer`).

    Parameters
    ----------
    backend : TorchBackend
        The network to train in place; it is left in eval mode between steps.
    lr : float
        Peak learning rate.
    weight_decay : float
        AdamW's decoupled weight decay (``p -= lr * weight_decay * p`` before the Adam update).
    total_steps : int
        Steps of the whole run, for the schedule.

    Attributes
    ----------
    optimizer : torch.optim.AdamW
        Over ``backend.net.parameters()`` (betas 0.9/0.999, eps 1e-8).
    """

    framework = "torch"

    def __init__(self, backend: TorchBackend, *, lr: float, weight_decay: float, total_steps: int) -> None:
        super().__init__(backend, lr=lr, weight_decay=weight_decay, total_steps=total_steps)
        if not isinstance(backend, TorchBackend):
            raise TypeError(f"TorchTrainer needs a TorchBackend, got {type(backend).__name__}")
        self.net = backend.net
        self._device: torch.device = backend._device
        self.optimizer = torch.optim.AdamW(self.net.parameters(), lr=lr, weight_decay=weight_decay)
        self._step = 0

    @property
    def step(self) -> int:
        """Optimisation steps taken so far."""
        return self._step

    def current_learning_rate(self) -> float:
        """The learning rate of the next step."""
        return cosine_learning_rate(self.lr, self._step, self.total_steps)

    # -- one step ---------------------------------------------------------------------------

    def _tensor(self, array: np.ndarray, dtype: torch.dtype | None = None) -> torch.Tensor:
        """``array`` on the device (pinned and non-blocking on CUDA), as ``dtype`` when given."""
        array = np.ascontiguousarray(array)
        if not array.flags.writeable:  # torch.from_numpy warns on read-only arrays
            array = array.copy()
        tensor = torch.from_numpy(array)
        if self._device.type == "cuda":
            tensor = tensor.pin_memory().to(self._device, non_blocking=True)
        return tensor if dtype is None else tensor.to(dtype)

    def _images(self, images: np.ndarray) -> torch.Tensor:
        """uint8 ``(B, S, S, 3)`` -> normalised float32 NCHW on the device, exactly as :meth:`TorchBackend.run`."""
        # Any square size the network takes (training may use crops of the card's tiles: the models
        # are fully convolutional); the U-Net needs a multiple of its pooling factor.
        multiple = size_multiple(self.backend.card.architecture)
        if (images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] != 3 or images.shape[1] != images.shape[2]
                or images.shape[1] % multiple):
            raise ModelInputError(f"images: expected uint8 (B, S, S, 3) with S a multiple of {multiple}, got "
                                  f"{images.dtype} {images.shape}")
        x = self._tensor(images)
        return (x.permute(0, 3, 1, 2).float() - self.backend._mean) / self.backend._std

    def train_step(self, batch: dict[str, np.ndarray]) -> dict[str, float]:
        """One AdamW step on ``batch`` (see :mod:`slidescope.models.trainer`); the losses as floats."""
        x = self._images(batch["images"])
        learning_rate = self.current_learning_rate()
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate
        self.net.train()
        try:
            self.optimizer.zero_grad(set_to_none=True)
            outputs = self.net(x)
            if self.backend.card.task == "tissue":
                _, logits = outputs
                labels = self._tensor(np.asarray(batch["labels"]), torch.int64)
                loss = F.cross_entropy(logits, labels)
                losses = {"loss": loss}
            else:
                heatmap_logits, type_logits, _ = outputs
                heatmap = self._tensor(np.asarray(batch["heatmap"], np.float32))
                types = self._tensor(np.asarray(batch["types"]), torch.int64)
                heatmap_loss = focal_loss(heatmap_logits, heatmap)
                types_loss = type_loss(type_logits, types)
                loss = heatmap_loss + types_loss
                losses = {"loss": loss, "heatmap_loss": heatmap_loss, "type_loss": types_loss}
            loss.backward()
            self.optimizer.step()
            self._step += 1
        finally:
            self.net.eval()  # the backend's run() expects eval mode
        return {key: float(value.detach()) for key, value in losses.items()}

    # -- state ------------------------------------------------------------------------------

    def save_state(self, path: str) -> None:
        """``torch.save`` the weights, the optimiser (its ``exp_avg``/``exp_avg_sq`` slots and steps),
        the step and torch's RNG state to ``path`` (not atomically: the caller stages it)."""
        state: dict[str, Any] = {
            "model": {name: value.detach().to("cpu") for name, value in self.net.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "step": int(self._step),
            "torch_rng": torch.get_rng_state(),
        }
        if self._device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(self._device)
        torch.save(state, path)

    def load_state(self, path: str) -> None:
        """Restore what :meth:`save_state` wrote.

        Raises
        ------
        ModelWeightsError
            The file cannot be read (absent, truncated, not a torch file, or holding more than
            tensors), lacks a key, or does not fit this network or optimiser (naming the file).
        """
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - OSError, EOFError, UnpicklingError, RuntimeError...
            raise ModelWeightsError(f"{path}: cannot read the trainer state: {exc}") from None
        if not isinstance(state, dict) or any(key not in state for key in _STATE_KEYS):
            found = sorted(state) if isinstance(state, dict) else type(state).__name__
            raise ModelWeightsError(f"{path}: not a torch trainer state (expected keys {', '.join(_STATE_KEYS)}, "
                                    f"found {found})")
        try:
            self.backend._assign(dict(state["model"]), path)
            self.optimizer.load_state_dict(state["optimizer"])
            torch.set_rng_state(state["torch_rng"])
            if "cuda_rng" in state and self._device.type == "cuda":
                torch.cuda.set_rng_state(state["cuda_rng"], self._device)
        except ModelWeightsError:
            raise
        except (ValueError, KeyError, RuntimeError, TypeError) as exc:
            raise ModelWeightsError(f"{path}: the trainer state does not fit this model or optimiser: {exc}") from None
        self._step = int(state["step"])
        self.net.eval()
