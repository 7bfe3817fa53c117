"""A merged model directory: one card, one weights file, the exported artifacts; and the model that runs it.

``card.json`` of a merged directory (``"kind": "slidescope-merged-model"``) holds:

- ``framework`` of the merged graph and its ``weights`` (file and sha256);
- ``parts``: the tissue and cell cards as the graph uses them (architecture, classes, input
  contract, thresholds), ``members`` (how many models each part averages: an ensemble's members
  sit under ``tissue_0``, ``tissue_1``...), and ``head`` (:class:`~slidescope.merge.head.HeadSpec`) with
  ``head_trained`` (False until ``slidescope train head`` has trained it);
- ``sources``: per role, the source's path, format, framework, sha256 and card; ``remap``: per role,
  the rules applied and the whole report;
- ``exports``: each exported artifact's file and sha256, and what checked it;
- ``created``, ``slidescope_version``.

:class:`SlideModel` runs the graph on one slide's tiles (:meth:`SlideModel.predict`).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from slidescope.wsi.atomic import atomic_path
from slidescope.wsi.errors import ParameterError
from slidescope.wsi.version import slidescope_version

from .checkpoint import file_sha256
from .errors import CheckpointError
from .head import HeadSpec

__all__ = ["MERGED_KIND", "MergedCard", "SlideModel", "is_merged_directory", "load_merged"]

MERGED_KIND = "slidescope-merged-model"
CARD_FILE = "card.json"
_FORMAT_VERSION = 1


def is_merged_directory(path: Any) -> bool:
    """Whether ``path`` is a folder whose ``card.json`` is a merged model's."""
    card = Path(os.fspath(path)) / CARD_FILE
    try:
        return card.is_file() and json.loads(card.read_text(encoding="utf-8")).get("kind") == MERGED_KIND
    except (OSError, ValueError, AttributeError):
        return False


@dataclass(frozen=True)
class MergedCard:
    """The card of a merged model (see the module docstring)."""

    name: str
    framework: str
    tissue: Any
    cell: Any
    head: HeadSpec
    head_trained: bool = False
    members: dict[str, int] = field(default_factory=lambda: {"tissue": 1, "cell": 1})
    sources: dict[str, Any] = field(default_factory=dict)
    remap: dict[str, Any] = field(default_factory=dict)
    weights: dict[str, str] | None = None
    exports: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    created: str = ""
    slidescope_version: str = ""

    def replace(self, **changes: Any) -> "MergedCard":
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": MERGED_KIND, "format_version": _FORMAT_VERSION, "name": self.name,
                "framework": self.framework, "parts": {"tissue": self.tissue.to_dict(), "cell": self.cell.to_dict()},
                "head": self.head.to_dict(), "head_trained": self.head_trained, "members": dict(self.members),
                "sources": self.sources,
                "remap": self.remap, "weights": self.weights, "exports": self.exports, "training": self.training,
                "created": self.created or _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "slidescope_version": self.slidescope_version or slidescope_version()}

    def digest(self) -> str:
        """The sha256 of the card's JSON (the merged model's identity in outputs and caches)."""
        import hashlib

        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()

    @classmethod
    def from_dict(cls, data: Any, where: str = "card") -> "MergedCard":
        from slidescope.models.card import ModelCard

        if not isinstance(data, dict) or data.get("kind") != MERGED_KIND:
            raise CheckpointError(f"{where}: expected a merged model card (\"kind\": \"{MERGED_KIND}\")")
        try:
            parts = data["parts"]
            framework = data["framework"]
            if framework not in ("torch", "tf"):
                raise ValueError(f"framework: expected torch or tf, got {framework!r}")
            return cls(name=str(data["name"]), framework=framework,
                       tissue=ModelCard.from_dict(parts["tissue"], f"{where}: parts.tissue"),
                       cell=ModelCard.from_dict(parts["cell"], f"{where}: parts.cell"),
                       head=HeadSpec.from_dict(data["head"]), head_trained=bool(data.get("head_trained", False)),
                       members=_members(data.get("members", {"tissue": 1, "cell": 1})),
                       sources=dict(data.get("sources") or {}), remap=dict(data.get("remap") or {}),
                       weights=data.get("weights"), exports=dict(data.get("exports") or {}),
                       training=dict(data.get("training") or {}), created=str(data.get("created", "")),
                       slidescope_version=str(data.get("slidescope_version", "")))
        except KeyError as exc:
            raise CheckpointError(f"{where}: the merged card lacks the key {exc.args[0]!r}") from None
        except (TypeError, ValueError, ParameterError) as exc:
            raise CheckpointError(f"{where}: {exc}") from None

    def save(self, path: Any) -> None:
        with atomic_path(path) as temporary:
            temporary.write_text(json.dumps(self.to_dict(), indent=2), encoding="utf-8")

    @classmethod
    def load(cls, directory: Any) -> "MergedCard":
        path = Path(os.fspath(directory)) / CARD_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise CheckpointError(f"{directory}: no {CARD_FILE}; expected a merged model directory") from None
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"{path}: cannot read the merged card: {exc}") from None
        return cls.from_dict(data, str(path))


def _members(data: Any) -> dict[str, int]:
    if not isinstance(data, dict) or set(data) != {"tissue", "cell"} or not all(
            isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 64 for v in data.values()):
        raise ValueError(f"members: expected {{'tissue': n, 'cell': m}} with 1..64 models each, got {data!r}")
    return dict(data)


def graph_class(framework: str) -> Any:
    """The merged graph's backend class of ``framework`` (imported on use)."""
    if framework == "torch":
        from ._torch.graph import TorchSlideBackend

        return TorchSlideBackend
    if framework == "tf":
        from ._keras.graph import KerasSlideBackend

        return KerasSlideBackend
    raise ParameterError(f"framework: expected torch or tf, got {framework!r}")


class SlideModel:
    """A merged graph ready to predict one slide at a time (see :meth:`predict`).

    Attributes
    ----------
    card : MergedCard
    backend
        The framework's graph (``TorchSlideBackend`` or ``KerasSlideBackend``).
    directory : str or None
    """

    def __init__(self, card: MergedCard, backend: Any, directory: str | None = None, device: str = "auto") -> None:
        self.card = card
        self.backend = backend
        self.directory = directory
        self.requested_device = device
        self._warned = False

    @property
    def task(self) -> str:
        return "slide"

    @property
    def framework(self) -> str:
        return self.card.framework

    def __reduce__(self) -> tuple[Any, ...]:
        """A saved merged model pickles as its directory (Dask tasks carry paths, not weights) and
        is loaded once per process through :func:`slidescope.models.load_model`'s cache."""
        if self.directory is None:
            raise CheckpointError(f"{self!r}: a merged model pickles as its directory; write it first (write_merged)")
        return (_reload, (self.directory, self.requested_device))

    def __repr__(self) -> str:
        return f"<SlideModel {self.card.name!r} ({self.card.framework}, {self.directory or 'in memory'})>"

    def predict(self, coarse: np.ndarray, fine: np.ndarray, parents: np.ndarray) -> dict[str, np.ndarray]:
        """One slide: uint8 coarse tiles ``(Nc, S, S, 3)`` at the tissue part's mpp, uint8 fine tiles
        ``(Nf, s, s, 3)`` at the cell part's, and each fine tile's coarse parent ``(Nf,)``.

        Returns ``slide_probs`` ``(K,)``, ``attention`` ``(Nc,)``, ``tissue_probs`` ``(Nc, Kt)``,
        ``tissue_logits``, ``cell_counts`` ``(Nf, T)`` and ``cell_features`` ``(Nc, T)``.

        Raises
        ------
        ParameterError
            No coarse tile, tiles of the wrong size or dtype, a parent outside ``0..Nc-1``.
        """
        coarse = self._tiles(coarse, "coarse", self.card.tissue.input.size)
        if len(coarse) == 0:
            raise ParameterError("coarse: a slide prediction needs at least one coarse tile (no tissue found?)")
        size = self.card.cell.input.size
        fine = self._tiles(fine, "fine", size)
        parents = np.asarray(parents)
        if parents.shape != (len(fine),) or (len(fine) and not np.issubdtype(parents.dtype, np.integer)):
            raise ParameterError(f"parents: expected {len(fine)} integers (one per fine tile), got {parents.dtype} "
                                 f"{parents.shape}")
        if len(fine) and (parents.min() < 0 or parents.max() >= len(coarse)):
            raise ParameterError(f"parents: expected rows of the {len(coarse)} coarse tiles, got values "
                                 f"{int(parents.min())}..{int(parents.max())}")
        if not self.card.head_trained and not self._warned:
            import warnings

            warnings.warn(f"{self.card.name}: its slide head is untrained (head_trained false): slide_probs and "
                          f"attention mean nothing until slidescope train head has trained one", stacklevel=2)
            self._warned = True
        valid = np.ones(len(fine), np.float32)
        if len(fine) == 0:  # the graph takes at least one fine tile: a blank one that weighs nothing
            fine, parents, valid = np.full((1, size, size, 3), 255, np.uint8), np.zeros(1), np.zeros(1, np.float32)
        outputs = self.backend.run(coarse, fine, parents.astype(np.int64), valid)
        if valid[0] == 0:
            outputs["cell_counts"] = outputs["cell_counts"][:0]
        return outputs

    @staticmethod
    def _tiles(tiles: Any, name: str, size: int) -> np.ndarray:
        tiles = np.asarray(tiles)
        if tiles.dtype != np.uint8 or tiles.ndim != 4 or tiles.shape[1:] != (size, size, 3):
            raise ParameterError(f"{name}: expected uint8 RGB tiles (N, {size}, {size}, 3), got {tiles.dtype} "
                                 f"{tiles.shape}")
        return np.ascontiguousarray(tiles)


def _reload(directory: str, device: str) -> SlideModel:
    from slidescope.models import load_model

    return load_model(directory, device=device)


def load_merged(directory: Any, *, device: str = "auto", check: bool = True) -> SlideModel:
    """The merged model in ``directory`` (weights checked against the card's sha256 when ``check``).

    Raises
    ------
    CheckpointError
    """
    directory = os.fspath(directory)
    card = MergedCard.load(directory)
    if not card.weights:
        raise CheckpointError(f"{directory}: the merged card names no weights file")
    path = os.path.join(directory, card.weights["file"])
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: the merged weights file is missing")
    if check and file_sha256([path]) != card.weights["sha256"]:
        raise CheckpointError(f"{path}: its sha256 is not the one card.json records; the weights were changed or "
                              f"damaged after the merge")
    backend = graph_class(card.framework)(card.tissue, card.cell, card.head, members=card.members)
    backend.load_weights(path)
    if hasattr(backend, "to_device"):  # torch: the graph moves; TensorFlow places its ops itself
        backend.to_device(device)
    return SlideModel(card, backend, directory, device)
