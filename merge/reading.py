"""``read_checkpoint``: any checkpoint file as a :class:`~slidescope.merge.checkpoint.Checkpoint`.

The format is decided from the file's first bytes, never from its name:

========================  =====================================================================
``torch``                 a zip archive holding ``*/data.pkl`` (``torch.save`` since 1.6)
``torch-legacy``          a pickle whose first object is torch's legacy magic number
``safetensors``           an 8-byte little-endian header length, then a JSON object
``keras-h5``/``keras2-h5``  an HDF5 file (Keras 3 ``.weights.h5``, Keras 2 ``.h5`` weights)
``keras``                 a zip archive holding ``model.weights.h5`` (a ``.keras`` file)
``tf``                    a TensorFlow checkpoint: its prefix, its ``.index`` or a data shard,
                          or a folder with a ``checkpoint`` file naming the latest one
========================  =====================================================================

A model directory (``card.json`` and weights) is read as its weights file. Anything else (text,
an empty or truncated file, another pickle, an image) is one :class:`CheckpointError` naming the
file and what it looks like.
"""

from __future__ import annotations

import os
import re
import zipfile
from pathlib import Path
from typing import Any

from slidescope.wsi.validation import parse_choice

from .checkpoint import Checkpoint
from .errors import CheckpointError, CheckpointNotFoundError

__all__ = ["read_checkpoint", "detect_format", "READ_FORMATS"]

#: What ``format=`` accepts.
READ_FORMATS = ("auto", "torch", "torch-legacy", "safetensors", "tf", "keras-h5", "keras")
#: The SSTable magic number that ends a TensorFlow checkpoint's ``.index`` file.
_TF_INDEX_MAGIC = bytes.fromhex("57fb808b247547db")
#: Pickle protocol 2 + torch's legacy magic number (0x1950a86a20f9469cfc6c, a long).
_TORCH_LEGACY_START = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19."


def _tf_prefix(path: str) -> str | None:
    """The checkpoint prefix ``path`` names (the prefix itself, its index, a data shard, a folder), or None."""
    if os.path.isdir(path):
        state = os.path.join(path, "checkpoint")
        if os.path.isfile(state):
            text = Path(state).read_text(encoding="utf-8", errors="replace")
            found = re.search(r'^model_checkpoint_path:\s*"(.+)"', text, re.M)
            if found:
                prefix = found.group(1)
                return prefix if os.path.isabs(prefix) else os.path.join(path, prefix)
        return None
    match = re.fullmatch(r"(.+)\.(index|data-\d{5}-of-\d{5})", path)
    if match and os.path.isfile(match.group(1) + ".index"):
        return match.group(1)
    if not os.path.exists(path) and os.path.isfile(path + ".index"):
        return path
    return None


def _model_directory_weights(path: str) -> str | None:
    """The weights file of a model directory (``card.json`` + weights), or None."""
    if not os.path.isfile(os.path.join(path, "card.json")):
        return None
    from slidescope.models.card import ModelCard

    card = ModelCard.load(path)
    return os.path.join(path, card.weights.file)


def _looks_like(head: bytes) -> str:
    if not head:
        return "an empty file"
    if head.startswith(b"\x80") and len(head) > 1 and head[1] <= 5:
        return "a Python pickle that is not a torch checkpoint"
    if head[:4] in (b"\x89PNG", b"\xff\xd8\xff\xe0", b"\xff\xd8\xff\xe1", b"II*\x00", b"MM\x00*"):
        return "an image"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return "an unknown binary format"
    if any(ord(c) < 32 and c not in "\t\n\r" for c in text):
        return "an unknown binary format"
    return "a text file" + (" (JSON)" if text.lstrip().startswith(("{", "[")) else "")


def detect_format(path: str) -> tuple[str, str]:
    """``(format, file)`` of the checkpoint at ``path`` (see the module docstring).

    Raises
    ------
    CheckpointNotFoundError
        Nothing at ``path``.
    CheckpointError
        A file that is no checkpoint slidescope reads.
    """
    prefix = _tf_prefix(path)
    if prefix is not None:
        index = prefix + ".index"
        with open(index, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 8))
            if size < 48 or handle.read(8) != _TF_INDEX_MAGIC:
                raise CheckpointError(f"{index}: not a TensorFlow checkpoint index (truncated or damaged?): it does "
                                      f"not end with the table magic number")
        return "tf", prefix
    if os.path.isdir(path):
        weights = _model_directory_weights(path)
        if weights is None:
            raise CheckpointError(f"{path}: a folder that is neither a model directory (card.json) nor a TensorFlow "
                                  f"checkpoint folder (a 'checkpoint' file); expected a checkpoint file")
        return detect_format(weights)
    if not os.path.exists(path):
        raise CheckpointNotFoundError(f"{path}: no such checkpoint (nor a TensorFlow checkpoint {path}.index)")
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: not a regular file")
    try:
        with open(path, "rb") as handle:
            head = handle.read(64)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError) as exc:
            raise CheckpointError(f"{path}: a damaged zip archive (truncated?): {exc}") from None
        if "model.weights.h5" in names:
            return "keras", path
        if any(name.endswith("data.pkl") for name in names):
            return "torch", path
        raise CheckpointError(f"{path}: a zip archive that is neither a torch checkpoint (no data.pkl) nor a .keras "
                              f"file (no model.weights.h5)")
    if head.startswith(_TORCH_LEGACY_START):
        return "torch-legacy", path
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return "keras-h5", path
    if len(head) >= 9 and int.from_bytes(head[:8], "little") >= 2 and head[8:9] == b"{":
        return "safetensors", path
    raise CheckpointError(f"{path}: not a checkpoint slidescope reads: {_looks_like(head)}; expected a torch file, "
                          f"safetensors, a TensorFlow checkpoint or Keras weights")


def read_checkpoint(path: Any, *, format: str = "auto") -> Checkpoint:
    """The checkpoint at ``path``: an ordered mapping ``name -> numpy array`` read on access.

    Parameters
    ----------
    path : str or os.PathLike
        A checkpoint file, a TensorFlow checkpoint prefix (or its index or a shard, or its
        folder), or a model directory.
    format : str
        ``"auto"`` (from the content) or one of :data:`READ_FORMATS` to insist on one; a file of
        another format is then an error.

    Raises
    ------
    CheckpointNotFoundError, CheckpointError
    """
    format = parse_choice(format, "format", READ_FORMATS)
    path = os.fspath(path)
    found, source = detect_format(path)
    if format != "auto" and format != found and not (format == "keras-h5" and found == "keras2-h5"):
        raise CheckpointError(f"{path}: expected a {format} checkpoint, found {found}")
    if found in ("torch", "torch-legacy"):
        from ._readers.torch_files import read_torch

        return read_torch(source, legacy=found == "torch-legacy")
    if found == "safetensors":
        from ._readers.safetensors_files import read_safetensors

        return read_safetensors(source)
    if found == "tf":
        from ._readers.tf_checkpoints import read_tf

        return read_tf(source)
    from ._readers.keras_files import read_keras_archive, read_keras_h5

    return read_keras_archive(source) if found == "keras" else read_keras_h5(source)
