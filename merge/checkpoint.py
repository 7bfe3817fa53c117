"""A checkpoint, framework-free: an ordered mapping ``name -> numpy array`` with what is known about it.

Every reader (torch files, safetensors, TensorFlow checkpoints, Keras ``.weights.h5``) produces a
:class:`Checkpoint`. Tensors are read on access, one at a time, so listing a 200 MB checkpoint
costs nothing and copying it holds one tensor at a time. Each entry has a *kind*:

- ``"weight"``: a trained parameter (conv kernels, dense weights, BatchNorm scale and offset);
- ``"buffer"``: state a layer keeps that is not trained by gradients (BatchNorm running/moving
  mean and variance);
- ``"optimizer"``: an optimiser's slots and hyper-parameters (Adam moments, ``beta1_power``,
  the learning rate);
- ``"counter"``: step counters (``global_step``, ``iterations``, ``num_batches_tracked``);
- ``"other"``: anything else a training file carries (random-generator states).

The readers decide the kind from what the file records (the object graph of a TF2 checkpoint,
the part of a torch file an entry sits in) and fall back on :func:`kind_of_name`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import CheckpointError

__all__ = ["KINDS", "FORMATS", "TensorInfo", "Checkpoint", "kind_of_name", "framework_of_names", "file_sha256"]

#: The kinds of entry (see the module docstring).
KINDS = ("weight", "buffer", "optimizer", "counter", "other")
#: The formats :func:`~slidescope.merge.read_checkpoint` reads ("memory": built in this process).
FORMATS = ("torch", "torch-legacy", "safetensors", "tf", "keras-h5", "keras", "keras2-h5", "memory")

_COUNTER = re.compile(r"(^|[./])(global_step|num_batches_tracked|iterations?|save_counter|step)$")
_BUFFER = re.compile(r"(^|[./_])(running_mean|running_var|moving_mean|moving_variance)$")
_OPTIMIZER = re.compile(
    r"(/(Adam|Adam_1|Momentum|RMSProp|RMSProp_1|Adagrad|Ftrl|Ftrl_1)$)|(^|/)(beta[12]_power)$"
    r"|_(momentum|velocity)$|(^|[./])(exp_avg|exp_avg_sq|momentum_buffer|max_exp_avg_sq)$"
    r"|(^|[./])(optimizer|optimizer_state_dict)[./]|(^|/)learning_rate$")


def kind_of_name(name: str) -> str:
    """The kind of an entry judged by its name alone (the readers' fallback; see the module docstring)."""
    if _OPTIMIZER.search(name):
        return "optimizer"
    if _COUNTER.search(name):
        return "counter"
    if _BUFFER.search(name):
        return "buffer"
    return "weight"


def framework_of_names(names: Sequence[str]) -> str:
    """``"torch"`` when the names look like a torch state dict (``layer.weight``), ``"tf"`` when they
    look like TensorFlow/Keras variables (``layer/kernel``), ``"unknown"`` otherwise."""
    torch_like = sum(1 for n in names if re.search(r"\.(weight|bias|running_mean|running_var)$", n))
    tf_like = sum(1 for n in names if re.search(r"/(kernel|bias|gamma|beta|moving_mean|moving_variance)$", n))
    if torch_like > tf_like:
        return "torch"
    if tf_like > torch_like:
        return "tf"
    return "unknown"


def file_sha256(paths: Sequence[str]) -> str:
    """The sha256 of the files' bytes, in order (a TF checkpoint: its index, then its data shards)."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 22), b""):
                digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class TensorInfo:
    """One entry: its name, shape, numpy dtype name and kind (see :data:`KINDS`)."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    kind: str

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        return self.size * np.dtype(self.dtype).itemsize

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype, "kind": self.kind}


@dataclass(eq=False)
class Checkpoint(Mapping[str, np.ndarray]):
    """An ordered mapping ``name -> numpy array`` read on access, and what is known about the source.

    Attributes
    ----------
    path : str
        The file (or TF checkpoint prefix) it was read from; ``"<memory>"`` for one built here.
    format : str
        One of :data:`FORMATS`.
    framework : str
        ``"torch"``, ``"tf"`` or ``"unknown"``: whose names and tensor layouts these are.
    infos : tuple of TensorInfo
        Every entry in the file's order.
    metadata : dict
        What else the file records (a safetensors header's metadata, a torch file's non-tensor
        values such as ``epoch``, a Keras file's layer classes).
    """

    path: str
    format: str
    framework: str
    infos: tuple[TensorInfo, ...]
    loader: Callable[[str], np.ndarray] = field(repr=False)
    files: tuple[str, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)
    closer: Callable[[], None] | None = field(default=None, repr=False)
    _by_name: dict[str, TensorInfo] = field(init=False, repr=False)
    _sha256: str | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self._by_name = {}
        for info in self.infos:
            if info.name in self._by_name:
                raise CheckpointError(f"{self.path}: the entry {info.name!r} appears twice")
            if info.kind not in KINDS:
                raise CheckpointError(f"{self.path}: entry {info.name!r}: unknown kind {info.kind!r}")
            self._by_name[info.name] = info

    def __repr__(self) -> str:
        return (f"<Checkpoint {self.path!r} ({self.format}, {self.framework}, {len(self)} tensors, "
                f"{self.nbytes / 2**20:.1f} MiB)>")

    # -- construction ------------------------------------------------------------------------

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, Any], *, framework: str = "unknown", path: str = "<memory>",
                    kinds: Mapping[str, str] | None = None, format: str = "memory",
                    metadata: dict[str, Any] | None = None) -> "Checkpoint":
        """A checkpoint of arrays in memory (kinds from ``kinds``, else judged by name)."""
        stored = {name: np.asarray(value) for name, value in arrays.items()}
        kinds = kinds or {}
        infos = tuple(TensorInfo(name, tuple(int(d) for d in a.shape), a.dtype.name, kinds.get(name, kind_of_name(name)))
                      for name, a in stored.items())
        return cls(path, format, framework, infos, stored.__getitem__, metadata=dict(metadata or {}))

    # -- the mapping ---------------------------------------------------------------------------

    def __getitem__(self, name: str) -> np.ndarray:
        info = self.info(name)
        try:
            array = np.asarray(self.loader(name))
        except CheckpointError:
            raise
        except Exception as exc:  # a reader's own failure on one tensor: name the file and the tensor
            raise CheckpointError(f"{self.path}: cannot read the tensor {name!r}: {exc}") from exc
        if tuple(array.shape) != info.shape:
            raise CheckpointError(f"{self.path}: tensor {name!r}: expected shape {info.shape}, read {array.shape}")
        return array

    def __iter__(self) -> Iterator[str]:
        return (info.name for info in self.infos)

    def __len__(self) -> int:
        return len(self.infos)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def info(self, name: str) -> TensorInfo:
        """The entry ``name``; a :class:`KeyError` naming the file when there is none."""
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"{self.path}: no entry {name!r} (it holds {len(self)} entries)") from None

    # -- what it holds -------------------------------------------------------------------------

    @property
    def nbytes(self) -> int:
        """Bytes of every tensor together."""
        return sum(info.nbytes for info in self.infos)

    @property
    def sha256(self) -> str:
        """The sha256 of the source files (computed once, on first use); of the tensors for one in memory."""
        if self._sha256 is None:
            if self.files:
                self._sha256 = file_sha256(self.files)
            else:
                digest = hashlib.sha256()
                for info in self.infos:
                    digest.update(f"{info.name}|{info.dtype}|{info.shape}".encode())
                    digest.update(np.ascontiguousarray(self[info.name]).tobytes())
                self._sha256 = digest.hexdigest()
        return self._sha256

    def kinds(self) -> dict[str, int]:
        """How many entries of each kind."""
        counts = {kind: 0 for kind in KINDS}
        for info in self.infos:
            counts[info.kind] += 1
        return {kind: n for kind, n in counts.items() if n}

    def to_dict(self, *, with_hash: bool = True) -> dict[str, Any]:
        """``{"format", "framework", "path", "sha256", "tensors": [{"name", "shape", "dtype", "kind"}], ...}``."""
        data: dict[str, Any] = {"format": self.format, "framework": self.framework, "path": self.path}
        if with_hash:
            data["sha256"] = self.sha256
        data["tensors"] = [info.to_dict() for info in self.infos]
        data["totals"] = {"tensors": len(self), "parameters": sum(info.size for info in self.infos),
                          "bytes": self.nbytes, "kinds": self.kinds()}
        return data

    # -- life cycle ----------------------------------------------------------------------------

    def close(self) -> None:
        """Release the file handles a lazy reader keeps (safetensors, HDF5); the entries stay listed."""
        if self.closer is not None:
            closer, self.closer = self.closer, None
            closer()

    def __enter__(self) -> "Checkpoint":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
