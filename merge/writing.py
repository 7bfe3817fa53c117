"""Writing a checkpoint one tensor at a time: safetensors, torch, TensorFlow (name-based).

:func:`write_checkpoint` takes ``(TensorInfo, load)`` pairs and writes them atomically. safetensors
is written here, streaming: the header is computed from the infos, then each tensor is loaded,
written and dropped, so peak memory is one tensor (the format's own ``save_file`` wants every
tensor in memory at once). A TensorFlow checkpoint is saved in groups of at most
:data:`TF_GROUP_BYTES` and the groups merged (``SaveV2`` then ``MergeV2Checkpoints``). A torch file
holds every tensor at once (``torch.save`` pickles one dict), which is the format's nature.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from slidescope.wsi.atomic import atomic_path, check_parent
from slidescope.wsi.validation import parse_choice

from .checkpoint import TensorInfo
from .errors import CheckpointError

__all__ = ["write_checkpoint", "WRITE_FORMATS", "TF_GROUP_BYTES"]

#: Formats :func:`write_checkpoint` writes.
WRITE_FORMATS = ("safetensors", "torch", "tf")
#: A TensorFlow checkpoint is saved in groups of at most this many bytes, then merged.
TF_GROUP_BYTES = 32 << 20
#: numpy dtype name -> safetensors code.
_SAFETENSORS_CODES = {"float64": "F64", "float32": "F32", "float16": "F16", "int64": "I64", "int32": "I32",
                      "int16": "I16", "int8": "I8", "uint64": "U64", "uint32": "U32", "uint16": "U16", "uint8": "U8",
                      "bool": "BOOL"}

Entry = tuple[TensorInfo, Callable[[], np.ndarray]]


def _checked(info: TensorInfo, load: Callable[[], np.ndarray]) -> np.ndarray:
    array = np.asarray(load())
    if array.shape != info.shape or array.dtype.name != info.dtype:
        raise CheckpointError(f"tensor {info.name!r}: expected {info.dtype} {info.shape}, got {array.dtype.name} "
                              f"{array.shape}")
    return array


def _write_safetensors(path: str, entries: Sequence[Entry], metadata: dict[str, str] | None) -> None:
    header: dict[str, Any] = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    offset = 0
    for info, _ in entries:
        if info.dtype not in _SAFETENSORS_CODES:
            raise CheckpointError(f"tensor {info.name!r}: dtype {info.dtype} has no safetensors code")
        header[info.name] = {"dtype": _SAFETENSORS_CODES[info.dtype], "shape": list(info.shape),
                             "data_offsets": [offset, offset + info.nbytes]}
        offset += info.nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # the data starts 8-byte aligned, as safetensors writes it
    with open(path, "wb") as handle:
        handle.write(struct.pack("<Q", len(raw)))
        handle.write(raw)
        for info, load in entries:
            array = _checked(info, load)
            handle.write(np.ascontiguousarray(array.astype(array.dtype.newbyteorder("<"), copy=False)).tobytes())


def _write_torch(path: str, entries: Sequence[Entry]) -> None:
    import torch

    # No copies: a tensor read from a torch file is a view of its memory-mapped storage, and
    # torch.save writes from it; only transformed tensors (ported layouts) take new memory.
    state = {}
    for info, load in entries:
        array = _checked(info, load)
        state[info.name] = torch.from_numpy(array if array.flags.writeable else array.copy())
    torch.save(state, path)


def _write_tf(prefix: str, entries: Sequence[Entry]) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    groups: list[list[Entry]] = [[]]
    size = 0
    for entry in entries:
        if groups[-1] and size + entry[0].nbytes > TF_GROUP_BYTES:
            groups.append([])
            size = 0
        groups[-1].append(entry)
        size += entry[0].nbytes
    prefixes = []
    for number, group in enumerate(groups):
        part = f"{prefix}_part{number}"
        tensors = [tf.constant(_checked(info, load)) for info, load in group]  # one numpy copy alive at a time
        tf.raw_ops.SaveV2(prefix=part, tensor_names=[info.name for info, _ in group],
                          shape_and_slices=[""] * len(group), tensors=tensors)
        del tensors
        prefixes.append(part)
    tf.raw_ops.MergeV2Checkpoints(checkpoint_prefixes=prefixes, destination_prefix=prefix, delete_old_dirs=True)


def write_checkpoint(path: Any, entries: Sequence[Entry], *, format: str,
                     metadata: dict[str, str] | None = None) -> list[str]:
    """Write ``entries`` (``(TensorInfo, load)`` in order) as a ``format`` checkpoint at ``path``.

    ``path`` is a file for safetensors and torch, a prefix for TensorFlow (``.index`` and
    ``.data-*`` beside it). Everything is staged and renamed into place at the end. Returns the
    files written.

    Raises
    ------
    CheckpointError
        Two entries with one name, or a tensor whose loaded shape or dtype is not its info's.
    OutputError
        The folder cannot be written.
    """
    format = parse_choice(format, "format", WRITE_FORMATS)
    names = [info.name for info, _ in entries]
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise CheckpointError(f"{path}: two tensors would be written under one name: {twice[:5]}")
    target = check_parent(path)
    if format == "safetensors":
        with atomic_path(target) as temporary:
            _write_safetensors(str(temporary), entries, metadata)
        return [str(target)]
    if format == "torch":
        with atomic_path(target) as temporary:
            _write_torch(str(temporary), entries)
        return [str(target)]
    # TensorFlow: written into a temporary folder beside the prefix, then moved out, the data shards
    # first and the index last (a reader finds a checkpoint by its index, so it never sees half of one).
    import shutil
    import tempfile

    staging = tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    try:
        _write_tf(os.path.join(staging, target.name), entries)
        files = sorted(os.listdir(staging), key=lambda name: name.endswith(".index"))
        written = []
        for name in files:
            os.replace(os.path.join(staging, name), target.parent / name)
            written.append(str(target.parent / name))
        return written
    finally:
        shutil.rmtree(staging, ignore_errors=True)
