"""safetensors files, read lazily: the header lists every tensor; each is read when asked for.

The header is parsed here (8-byte little-endian length, then JSON) to list names, shapes and dtypes
and to check that every tensor lies inside the file, so a truncated file is caught when it is
opened rather than half-way through a merge; tensors themselves are read through ``safetensors``.
"""

from __future__ import annotations

import json
import os
import struct
from typing import Any

import numpy as np

from ..checkpoint import Checkpoint, TensorInfo, framework_of_names, kind_of_name
from ..errors import CheckpointError

__all__ = ["read_safetensors", "SAFETENSORS_DTYPES", "read_header"]

#: safetensors dtype codes -> numpy dtype names (BF16 is read as float32: numpy has no bfloat16).
SAFETENSORS_DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "float32", "I64": "int64",
                      "I32": "int32", "I16": "int16", "I8": "int8", "U64": "uint64", "U32": "uint32", "U16": "uint16",
                      "U8": "uint8", "BOOL": "bool"}
#: Headers larger than this are refused (the format's own limit is 100 MB).
MAX_HEADER = 100_000_000


def read_header(path: str) -> tuple[dict[str, Any], int]:
    """The JSON header of ``path`` and the offset where the tensor data starts; a
    :class:`CheckpointError` for a file that is not safetensors or is cut short."""
    size = os.path.getsize(path)
    with open(path, "rb") as handle:
        head = handle.read(8)
        if len(head) < 8:
            raise CheckpointError(f"{path}: not a safetensors file: {size} bytes, shorter than its header length")
        (length,) = struct.unpack("<Q", head)
        if not 2 <= length <= min(MAX_HEADER, size - 8):
            raise CheckpointError(f"{path}: not a safetensors file (or truncated): header length {length} for a "
                                  f"{size}-byte file")
        raw = handle.read(length)
    try:
        header = json.loads(raw)
    except ValueError as exc:
        raise CheckpointError(f"{path}: a damaged safetensors header: {exc}") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: a damaged safetensors header: expected a JSON object")
    data_start = 8 + length
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            begin, end = entry["data_offsets"]
            dtype = entry["dtype"]
            [int(d) for d in entry["shape"]]  # every dimension an integer
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(f"{path}: a damaged safetensors header: entry {name!r} lacks dtype, shape or "
                                  f"data_offsets") from None
        if dtype not in SAFETENSORS_DTYPES:
            raise CheckpointError(f"{path}: tensor {name!r}: dtype {dtype!r} is not supported; expected one of "
                                  f"{sorted(SAFETENSORS_DTYPES)}")
        if data_start + end > size:
            raise CheckpointError(f"{path}: truncated: tensor {name!r} ends at byte {data_start + end} of a "
                                  f"{size}-byte file")
    return header, data_start


def read_safetensors(path: str) -> Checkpoint:
    """The tensors of the safetensors file ``path``, listed now and read on access."""
    from safetensors import safe_open

    header, data_start = read_header(path)
    metadata = dict(header.get("__metadata__") or {})
    names = [name for name in header if name != "__metadata__"]
    names.sort(key=lambda n: header[n]["data_offsets"][0])  # the file's order
    infos = tuple(TensorInfo(name, tuple(int(d) for d in header[name]["shape"]), SAFETENSORS_DTYPES[header[name]["dtype"]],
                             kind_of_name(name)) for name in names)
    bf16 = {name for name in names if header[name]["dtype"] == "BF16"}
    if bf16:
        metadata["bfloat16_read_as_float32"] = sorted(bf16)
    state: dict[str, Any] = {}

    def load(name: str) -> np.ndarray:
        if name in bf16:  # numpy cannot hold bfloat16: widen the raw 16 bits to float32 (exact)
            begin, end = header[name]["data_offsets"]
            with open(path, "rb") as handle:
                handle.seek(data_start + begin)
                raw = np.frombuffer(handle.read(end - begin), "<u2").astype(np.uint32) << 16
            return raw.view(np.float32).reshape(header[name]["shape"])
        if "file" not in state:
            state["file"] = safe_open(path, framework="numpy")
        return state["file"].get_tensor(name)

    def close() -> None:
        state.pop("file", None)

    framework = framework_of_names([i.name for i in infos])
    if framework == "unknown" and metadata.get("format") in ("pt", "torch"):
        framework = "torch"
    return Checkpoint(path, "safetensors", framework, infos, load, files=(path,), metadata=metadata, closer=close)
