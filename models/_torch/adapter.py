"""The PyTorch :class:`~slidescope.models.backend.ModelBackend`: weights in safetensors, inference on CPU or CUDA."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..backend import ModelBackend
from ..errors import FrameworkError, ModelWeightsError
from .networks import CellNet, TissueNet

if TYPE_CHECKING:
    from ..card import ModelCard

__all__ = ["TorchBackend"]

_AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}


class TorchBackend(ModelBackend):
    """A :class:`TissueNet` or :class:`CellNet` on one torch device, in eval mode.

    Parameters
    ----------
    card : ModelCard
        Task, architecture, classes (the output count) and input normalisation.
    device : str
        ``"cpu"`` or ``"cuda"`` (see :meth:`resolve_device`).
    seed : int
        Seed of the initial weights (a local generator: torch's global one is untouched).
    """

    framework = "torch"
    weights_suffix = ".safetensors"

    def __init__(self, card: "ModelCard", device: str, seed: int = 0) -> None:
        super().__init__(card, device, seed)
        self._device = torch.device(device)
        network = TissueNet if card.task == "tissue" else CellNet
        self.net = network(card.architecture, len(card.classes), seed=seed).to(self._device).eval()
        self._mean = torch.tensor(card.input.mean, dtype=torch.float32, device=self._device).view(1, 3, 1, 1)
        self._std = torch.tensor(card.input.std, dtype=torch.float32, device=self._device).view(1, 3, 1, 1)
        use_autocast = self._device.type == "cuda" and card.autocast in _AUTOCAST
        self._autocast_dtype = _AUTOCAST[card.autocast] if use_autocast else None

    @property
    def network(self) -> torch.nn.Module:
        """The ``TissueNet``/``CellNet`` itself (normalised float input), for code that composes models."""
        return self.net

    @classmethod
    def resolve_device(cls, device: str) -> str:
        """``"auto"`` becomes ``"cuda"`` where torch sees a GPU, else ``"cpu"``.

        Raises
        ------
        FrameworkError
            ``"cuda"`` without a GPU visible to torch, or a device other than auto/cpu/cuda.
        """
        if device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        if device == "cpu":
            return "cpu"
        if device == "cuda":
            if not torch.cuda.is_available():
                raise FrameworkError(
                    f"device 'cuda': torch {torch.__version__} sees no CUDA GPU (CPU-only build, no driver, "
                    f"or CUDA_VISIBLE_DEVICES hides it); use device 'cpu' or 'auto'")
            return "cuda"
        raise FrameworkError(f"device: expected 'auto', 'cpu' or 'cuda', got {device!r}")

    # -- weights ----------------------------------------------------------------------------

    def save_weights(self, path: str) -> None:
        """Write the full ``state_dict`` (BatchNorm statistics included) as safetensors."""
        tensors = {name: value.detach().to("cpu").contiguous() for name, value in self.net.state_dict().items()}
        metadata = {"framework": self.framework, "task": self.card.task,
                    "architecture": json.dumps(self.card.architecture.to_dict(), sort_keys=True)}
        save_file(tensors, path, metadata=metadata)

    def load_weights(self, path: str) -> None:
        """Load a safetensors file written by :meth:`save_weights`.

        Raises
        ------
        ModelWeightsError
            The file cannot be read, or its tensors are missing, unexpected or mis-shaped.
        """
        try:
            tensors = load_file(path, device="cpu")
        except (OSError, SafetensorError, ValueError, RuntimeError) as exc:
            raise ModelWeightsError(f"{path}: cannot read safetensors weights: {exc}") from exc
        self._assign(tensors, path)

    def get_weights(self) -> dict[str, np.ndarray]:
        """Every ``state_dict`` tensor as a numpy copy on the CPU, in ``state_dict`` order."""
        return {name: value.detach().to("cpu", copy=True).numpy() for name, value in self.net.state_dict().items()}

    def classifier(self) -> tuple[np.ndarray, np.ndarray]:
        """The classifier's ``(K, C)`` weights and ``(K,)`` bias, as numpy on the CPU."""
        layer = self.net.classifier
        return _numpy(layer.weight.detach()), _numpy(layer.bias.detach())

    def set_weights(self, weights: Mapping[str, np.ndarray]) -> None:
        """Replace every tensor; names and shapes must be exactly :meth:`get_weights`'s.

        Raises
        ------
        ModelWeightsError
            Missing, unexpected or mis-shaped tensors (all named at once).
        """
        self._assign({name: torch.as_tensor(np.array(value)) for name, value in weights.items()}, "weights")

    def _assign(self, tensors: dict[str, torch.Tensor], source: str) -> None:
        """Check ``tensors`` against the network (every problem at once), then load them strictly."""
        expected = self.net.state_dict()
        for name, value in expected.items():  # files written without BatchNorm batch counts
            if name.endswith(".num_batches_tracked") and name not in tensors:
                tensors[name] = torch.zeros_like(value, device="cpu")
        problems = []
        missing = [name for name in expected if name not in tensors]
        unexpected = [name for name in tensors if name not in expected]
        shapes = [f"{name} (expected {tuple(value.shape)}, got {tuple(tensors[name].shape)})"
                  for name, value in expected.items() if name in tensors and tensors[name].shape != value.shape]
        for label, names in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes)):
            if names:
                problems.append(f"{label} {len(names)}: {', '.join(names)}")
        if problems:
            raise ModelWeightsError(f"{source}: the tensors do not fit the {self.card.architecture.name} "
                                    f"architecture of this card; " + "; ".join(problems))
        self.net.load_state_dict(tensors, strict=True)

    # -- inference --------------------------------------------------------------------------

    def run(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """The raw outputs (float32, channels last) of a uint8 ``(N, H, W, 3)`` RGB batch.

        The batch travels to the device as uint8 (pinned on CUDA) and is normalised there; the
        network runs under ``torch.inference_mode`` and, on CUDA, the card's autocast dtype.
        """
        if not images.flags.writeable:  # torch.from_numpy warns on read-only arrays
            images = images.copy()
        with torch.inference_mode():
            x = torch.from_numpy(images)
            if self._device.type == "cuda":
                x = x.pin_memory().to(self._device, non_blocking=True)
            x = (x.permute(0, 3, 1, 2).float() - self._mean) / self._std
            autocast = (torch.autocast("cuda", dtype=self._autocast_dtype) if self._autocast_dtype is not None
                        else contextlib.nullcontext())
            with autocast:
                outputs = self.net(x)
            if self.card.task == "tissue":
                features, logits = outputs
                return {"features": _numpy(features.permute(0, 2, 3, 1)), "logits": _numpy(logits)}
            heatmap, types, embedding = outputs
            return {"heatmap": _numpy(heatmap), "types": _numpy(types.permute(0, 2, 3, 1)),
                    "embedding": _numpy(embedding)}


def _numpy(tensor: torch.Tensor) -> np.ndarray:
    """A C-contiguous float32 numpy array on the CPU."""
    return tensor.to("cpu", torch.float32).contiguous().numpy()
