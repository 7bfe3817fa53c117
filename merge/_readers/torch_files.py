"""torch checkpoints (``torch.save``: the zip format and the legacy pre-1.6 one), never unpickled freely.

``torch.load(weights_only=True)`` only rebuilds tensors, dicts, lists and plain values; a file
that needs any other Python object is refused before anything in it runs. Nested dicts are
flattened with ``.``: ``{"state_dict": {"conv1.weight": t}}`` lists ``state_dict.conv1.weight``,
a saved optimiser ``optimizer.state.0.exp_avg``. Non-tensor leaves (an ``epoch``, the optimiser's
``param_groups``) go to the metadata. Entries under an optimiser key are of kind ``optimizer``.
"""

from __future__ import annotations

import pickle
import zipfile
from typing import Any

import numpy as np

from ..checkpoint import Checkpoint, TensorInfo, framework_of_names, kind_of_name
from ..errors import CheckpointError

__all__ = ["read_torch"]

#: Top-level keys whose tensors are an optimiser's state.
OPTIMIZER_KEYS = ("optimizer", "optimizer_state_dict", "optim", "opt", "optimizer_state")
#: Top-level keys whose tensors are a random generator's state.
RNG_KEYS = ("torch_rng", "rng", "rng_state", "cuda_rng")


def _flatten(value: Any, prefix: str, tensors: dict[str, Any], metadata: dict[str, Any]) -> None:
    import torch

    if isinstance(value, torch.Tensor):
        tensors[prefix] = value
    elif isinstance(value, dict):
        for key, item in value.items():
            name = str(key) if not prefix else f"{prefix}.{key}"
            _flatten(item, name, tensors, metadata)
    elif isinstance(value, (list, tuple)) and any(isinstance(item, (torch.Tensor, dict)) for item in value):
        for index, item in enumerate(value):
            _flatten(item, f"{prefix}.{index}" if prefix else str(index), tensors, metadata)
    else:
        metadata[prefix or "value"] = value if isinstance(value, (int, float, str, bool, type(None))) else repr(value)


def _kind(name: str) -> str:
    top = name.split(".", 1)[0]
    if top in OPTIMIZER_KEYS:
        return "counter" if name.endswith(".step") else "optimizer"
    if top in RNG_KEYS:
        return "other"
    return kind_of_name(name)


def _load(path: str, legacy: bool) -> Any:
    import torch

    try:
        if legacy:  # mmap needs the zip format
            return torch.load(path, map_location="cpu", weights_only=True)
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as exc:
        if "weights_only" in str(exc) or "Weights only load failed" in str(exc):
            first = str(exc).split("\n\n")[-1].strip().splitlines()
            detail = next((line.strip() for line in first if "GLOBAL" in line or "Unsupported" in line), "")
            raise CheckpointError(
                f"{path}: refused: this torch file needs arbitrary Python objects to load ({detail or 'not tensors'}); "
                f"slidescope loads checkpoints with torch.load(weights_only=True), which never runs them. Save "
                f"the state dict alone (torch.save(model.state_dict(), ...)) and merge that") from None
        raise CheckpointError(f"{path}: not a readable torch checkpoint: {exc}") from None
    except (RuntimeError, EOFError, ValueError, OSError, zipfile.BadZipFile, KeyError, UnicodeDecodeError,
            AttributeError, IndexError, TypeError) as exc:  # the ways a damaged file fails inside torch.load
        raise CheckpointError(f"{path}: not a readable torch checkpoint (truncated or damaged?): "
                              f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None


def read_torch(path: str, *, legacy: bool) -> Checkpoint:
    """The tensors of the torch file ``path`` (see the module docstring)."""
    import torch

    loaded = _load(path, legacy)
    tensors: dict[str, Any] = {}
    metadata: dict[str, Any] = {}
    _flatten(loaded, "", tensors, metadata)
    if not tensors:
        raise CheckpointError(f"{path}: a torch file without tensors (it holds {type(loaded).__name__}); expected a "
                              f"state dict")
    infos, upcast = [], []
    for name, tensor in tensors.items():
        if tensor.dtype == torch.bfloat16:  # numpy has no bfloat16; float32 holds every value exactly
            upcast.append(name)
            dtype = "float32"
        else:
            dtype = torch.empty(0, dtype=tensor.dtype).numpy().dtype.name
        infos.append(TensorInfo(name, tuple(int(d) for d in tensor.shape), dtype, _kind(name)))
    if upcast:
        metadata["bfloat16_read_as_float32"] = upcast

    def load(name: str) -> np.ndarray:
        tensor = tensors[name].detach()
        return (tensor.float() if tensor.dtype == torch.bfloat16 else tensor).cpu().numpy()

    names = [info.name for info in infos if info.kind in ("weight", "buffer")]
    framework = framework_of_names(names)
    return Checkpoint(path, "torch-legacy" if legacy else "torch", "torch" if framework == "unknown" else framework,
                      tuple(infos), load, files=(path,), metadata=metadata)
