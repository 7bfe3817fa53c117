"""Keras weight files: Keras 3 ``.weights.h5`` and ``.keras`` archives, and Keras 2 ``.h5`` weights.

Keras 3 names its HDF5 groups by layer class and order (``layers/conv2d_1/vars/0``) and keeps the
layer's own name only in the ``name`` attribute of ``vars``; Keras loads such a file by structure,
so two files whose layers come in another order load silently into the wrong layers. This reader
recovers the real names: the ``name`` attributes along the path (nested models included) and, for
the layer classes below, the variables' names in the order Keras stores them (``kernel``, ``bias``;
``gamma``, ``beta``, ``moving_mean``, ``moving_variance``...). A layer of another class, or with
another variable count (a BatchNorm without ``scale``), keeps the index (``bn/vars/0``) and the
metadata says so. Optimiser variables (``optimizer/vars/N``) are listed with kind ``optimizer``.

Keras 2 files record ``layer_names`` and each layer's ``weight_names`` (``conv1/kernel:0``).
"""

from __future__ import annotations

import io
import re
import zipfile
from typing import Any

import numpy as np

from ..checkpoint import Checkpoint, TensorInfo, kind_of_name
from ..errors import CheckpointError

__all__ = ["read_keras_h5", "read_keras_archive", "VARIABLE_NAMES"]

#: Keras 3 layer class (the group name without its ``_N``) -> its variables in stored order.
VARIABLE_NAMES: dict[str, tuple[str, ...]] = {
    **{cls: ("kernel", "bias") for cls in ("conv1d", "conv2d", "conv3d", "conv1d_transpose", "conv2d_transpose",
                                           "conv3d_transpose", "dense", "einsum_dense", "depthwise_conv2d",
                                           "depthwise_conv1d")},
    "separable_conv2d": ("depthwise_kernel", "pointwise_kernel", "bias"),
    "separable_conv1d": ("depthwise_kernel", "pointwise_kernel", "bias"),
    "batch_normalization": ("gamma", "beta", "moving_mean", "moving_variance"),
    "layer_normalization": ("gamma", "beta"),
    "group_normalization": ("gamma", "beta"),
    "embedding": ("embeddings",),
    "prelu": ("alpha",),
}
#: Classes whose variable count says nothing about which are missing (a BatchNorm with three
#: variables lacks either ``gamma`` or ``beta``): only their full count is named.
_FIXED_COUNT = {"batch_normalization", "layer_normalization", "group_normalization"}
#: The HDF5 signature (at offset 0, or after a user block of 512 * 2**k bytes).
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _class_of(group_name: str) -> str:
    return re.sub(r"_\d+$", "", group_name)


def _open_h5(source: Any, path: str) -> Any:
    import h5py

    try:
        return h5py.File(source, "r")
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable HDF5 file (truncated or damaged?): {exc}") from None


def _keras3_entries(handle: Any, path: str) -> tuple[list[tuple[str, Any, str]], list[str]]:
    """``(name, dataset, kind)`` of every variable, and the layers whose names stayed indices."""
    entries: list[tuple[str, Any, str]] = []
    unnamed: list[str] = []

    def layer(group: Any, scope: str) -> None:
        for key in group.get("layers", {}):
            child = group["layers"][key]
            name = child["vars"].attrs.get("name", key) if "vars" in child else key
            name = name.decode() if isinstance(name, bytes) else str(name)
            inner = f"{scope}{name}"
            if "layers" in child:  # a nested model: its layers under its name
                layer(child, inner + "/")
            variables(child, inner, _class_of(key))

    def variables(group: Any, scope: str, cls: str) -> None:
        stored = group.get("vars")
        if stored is None or not len(stored):
            return
        indices = sorted(stored, key=int)
        known = VARIABLE_NAMES.get(cls)
        if known is not None and cls not in _FIXED_COUNT and len(indices) < len(known):
            known = known[:len(indices)]  # a layer without its bias (use_bias=False) stores the kernel only
        if known is None or len(known) != len(indices):
            unnamed.append(f"{scope} ({cls}, {len(indices)} variables)")
            names = [f"vars/{i}" for i in indices]
        else:
            names = list(known)
        for index, short in zip(indices, names):
            name = f"{scope}/{short}"
            entries.append((name, stored[index], kind_of_name(name)))

    layer(handle, "")
    variables(handle, handle["vars"].attrs.get("name", "model") if "vars" in handle else "model", "model")
    if "optimizer" in handle and "vars" in handle["optimizer"]:
        stored = handle["optimizer"]["vars"]
        label = stored.attrs.get("name", "optimizer")
        label = label.decode() if isinstance(label, bytes) else str(label)
        for index in sorted(stored, key=int):
            entries.append((f"optimizer/{label}/vars/{index}", stored[index], "optimizer"))
    return entries, unnamed


def _keras2_entries(handle: Any) -> list[tuple[str, Any, str]]:
    root = handle["model_weights"] if "model_weights" in handle else handle
    entries = []
    for layer_name in root.attrs.get("layer_names", []):
        layer_name = layer_name.decode() if isinstance(layer_name, bytes) else str(layer_name)
        group = root[layer_name]
        for weight in group.attrs.get("weight_names", []):
            weight = weight.decode() if isinstance(weight, bytes) else str(weight)
            name = weight.removesuffix(":0")
            entries.append((name, group[weight], kind_of_name(name)))
    return entries


def _checkpoint(path: str, fmt: str, handle: Any, files: tuple[str, ...], extra_close: Any = None) -> Checkpoint:
    if "layer_names" in handle.attrs or ("model_weights" in handle and "layer_names" in handle["model_weights"].attrs):
        fmt, entries, unnamed = "keras2-h5", _keras2_entries(handle), []
    elif "layers" in handle or "vars" in handle:
        entries, unnamed = _keras3_entries(handle, path)
    else:
        handle.close()
        raise CheckpointError(f"{path}: an HDF5 file that is not Keras weights (no 'layers' group, no "
                              f"'layer_names'); expected a Keras .weights.h5 file")
    datasets: dict[str, Any] = {}
    infos = []
    for name, dataset, kind in entries:
        if name in datasets:
            handle.close()
            raise CheckpointError(f"{path}: two variables are named {name!r} (two layers share a name)")
        datasets[name] = dataset
        infos.append(TensorInfo(name, tuple(int(d) for d in dataset.shape), np.dtype(dataset.dtype).name, kind))

    def load(name: str) -> np.ndarray:
        return np.asarray(datasets[name][()])

    def close() -> None:
        handle.close()
        if extra_close is not None:
            extra_close()

    metadata: dict[str, Any] = {"unnamed_layers": unnamed} if unnamed else {}
    return Checkpoint(path, fmt, "tf", tuple(infos), load, files=files, metadata=metadata, closer=close)


def read_keras_h5(path: str) -> Checkpoint:
    """The variables of a Keras ``.weights.h5`` (Keras 3) or ``.h5`` (Keras 2) file, named by layer."""
    return _checkpoint(path, "keras-h5", _open_h5(path, path), (path,))


def read_keras_archive(path: str) -> Checkpoint:
    """The variables of a ``.keras`` archive (its ``model.weights.h5``, read from the zip in memory)."""
    try:
        with zipfile.ZipFile(path) as archive:
            data = archive.read("model.weights.h5")
    except KeyError:
        raise CheckpointError(f"{path}: a zip file without model.weights.h5; expected a .keras archive") from None
    except (zipfile.BadZipFile, OSError) as exc:
        raise CheckpointError(f"{path}: not a readable .keras archive (truncated or damaged?): {exc}") from None
    return _checkpoint(path, "keras", _open_h5(io.BytesIO(data), path), (path,))
