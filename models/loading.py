"""Loading, creating and saving models; the per-process model cache; shipped models by name.

A model directory holds ``card.json`` and the weights file the card names (``weights.safetensors``
for torch, ``weights.weights.h5`` for Keras), and nothing else that :func:`save_model` would lose.
Shipped models live inside the package (``slidescope/models/shipped/<task>-<framework>/``) and are
found by task name: ``load_model("tissue")``, ``load_model("cell", framework="tf")``.
"""

from __future__ import annotations

import json
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from slidescope.wsi.atomic import atomic_path, check_parent
from slidescope.wsi.errors import OutputExistsError
from slidescope.wsi.validation import parse_choice, parse_non_negative_int, parse_path

from .card import CARD_FILE, FRAMEWORKS, TASKS, ModelCard, WeightsSpec, file_sha256
from .errors import ModelCardError, ModelNotFoundError
from .model import Model
from .registry import CARD_KINDS, backend_class, card_kind_loader

__all__ = ["SHIPPED_DIR", "DEVICES", "load_model", "save_model", "create_model", "shipped_model_dir", "SHIPPED_NAMES",
           "cached_model", "model_from_weights", "clear_model_cache"]

#: Where the models this project ships live.
SHIPPED_DIR = Path(__file__).resolve().parent / "shipped"
#: Names of shipped models: the tissue and cell models, and ``"slide"``, the merged slide model
#: (``slidescope.merge.shipped`` makes it; ``load_model`` hands it to merge/ by its card's kind).
SHIPPED_NAMES = (*TASKS, "slide")
#: Devices a model may be asked to run on.
DEVICES = ("auto", "cpu", "cuda")

_CACHE_SIZE = 8


class _ModelCache:
    """Loaded models per process, keyed by directory, card digest, framework and device."""

    def __init__(self, size: int = _CACHE_SIZE):
        self._size = size
        self._items: OrderedDict[tuple[Any, ...], Model] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[Any, ...]) -> Model | None:
        with self._lock:
            model = self._items.get(key)
            if model is not None:
                self._items.move_to_end(key)
            return model

    def put(self, key: tuple[Any, ...], model: Model) -> Model:
        with self._lock:
            model = self._items.setdefault(key, model)  # two threads loading at once keep the first
            while len(self._items) > self._size:
                self._items.popitem(last=False)
            return model

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


_PROCESS_MODELS = _ModelCache()


def clear_model_cache() -> None:
    """Forget every model this process loaded (the next :func:`load_model` reads the files again)."""
    _PROCESS_MODELS.clear()


def shipped_model_dir(name: str, framework: str = "torch") -> Path:
    """The directory of the shipped model ``name`` (``"tissue"``, ``"cell"``) for ``framework``.

    Raises
    ------
    ModelNotFoundError
        This installation ships no such model.
    """
    directory = SHIPPED_DIR / f"{name}-{framework}"
    if not (directory / CARD_FILE).is_file():
        raise ModelNotFoundError(
            f"{name}: no shipped {name} model for framework {framework!r} in this installation ({directory}); "
            f"pass a model directory (save_model writes one), or a framework whose {name} model ships "
            f"({', '.join(sorted(p.name for p in SHIPPED_DIR.glob(name + '-*') if (p / CARD_FILE).is_file())) or 'none'})"
        )
    return directory


def _resolve_source(source: Any, framework: str | None) -> tuple[Path, str | None]:
    """The model directory ``source`` names (a directory, or a shipped model's name)."""
    text = parse_path(source, "model")
    path = Path(text)
    if path.is_dir():
        return path, framework
    if text in SHIPPED_NAMES and not os.path.lexists(text):
        return shipped_model_dir(text, framework or "torch"), framework
    if path.is_file() and path.name == CARD_FILE:
        return path.parent, framework
    if os.path.lexists(path):
        raise ModelNotFoundError(f"{text}: expected a model directory (card.json and weights), got a file")
    raise ModelNotFoundError(
        f"{text}: no such model directory, and not the name of a shipped model (expected a directory or one of "
        f"{', '.join(SHIPPED_NAMES)})"
    )


def load_model(source: Any, *, framework: str | None = None, device: str = "auto") -> Model:
    """Load a model directory, or a shipped model by name, once per process.

    Parameters
    ----------
    source : str or PathLike
        A model directory (``card.json`` and weights), or ``"tissue"`` / ``"cell"`` for a shipped model.
    framework : {"torch", "tf"}, optional
        For a shipped model: which one (default torch). For a directory: the framework its card
        must name (a model is not converted between frameworks when loaded).
    device : {"auto", "cpu", "cuda"}
        ``"auto"`` uses a GPU when the framework sees one.

    Returns
    -------
    Model
        The same object for the same directory, card, framework and device in this process. A
        merged slide model directory (``slidescope merge``) gives a
        :class:`slidescope.merge.SlideModel`, cached the same way.

    Raises
    ------
    ModelNotFoundError
        No such directory or shipped model.
    ModelCardError
        A missing or invalid card, a framework other than asked, weights whose sha256 differs.
    ModelWeightsError
        Weights that cannot be read or do not fit the architecture.
    FrameworkError
        The framework is not installed, or ``device="cuda"`` without a GPU.
    """
    if framework is not None:
        framework = parse_choice(framework, "framework", FRAMEWORKS, error=ModelCardError)
    device = parse_choice(device, "device", DEVICES)
    directory, framework = _resolve_source(source, framework)
    kind = _card_kind(directory / CARD_FILE)
    if kind is not None:  # a merged slide model (slidescope.merge): its own loader, same cache rules
        key = (str(directory.resolve()), kind, device, _stat(directory / CARD_FILE))
        cached = _PROCESS_MODELS.get(key)
        if cached is None:
            cached = _PROCESS_MODELS.put(key, card_kind_loader(kind)(directory, device=device))
        return cached
    card = ModelCard.load(directory / CARD_FILE)
    if framework is not None and card.framework != framework:
        raise ModelCardError(
            f"{directory / CARD_FILE}: framework: expected {framework!r} (as asked), got {card.framework!r}; "
            f"load it with framework={card.framework!r} (a model is not converted between frameworks when loaded)"
        )
    adapter = backend_class(card.framework)
    if card.weights is not None and not card.weights.file.endswith(adapter.weights_suffix):
        raise ModelCardError(
            f"{directory / CARD_FILE}: weights.file: expected a {adapter.weights_suffix} file for framework "
            f"{card.framework!r}, got {card.weights.file}; the card's framework and its weights disagree"
        )
    resolved = adapter.resolve_device(device)
    # The weights are hashed once per process and file version, not on every call: an unpickled model
    # (one per Dask task) comes through here. A rewritten weights file has another size or time, so
    # another key, and is hashed again.
    key = (str(directory.resolve()), card.digest(), card.framework, resolved, _file_version(card, directory))
    cached = _PROCESS_MODELS.get(key)
    if cached is not None:
        return cached
    weights = card.check_weights(directory)
    backend = adapter(card, resolved)
    backend.load_weights(weights)
    return _PROCESS_MODELS.put(key, _model(card, backend, directory=str(directory), requested_device=device))


def _card_kind(path: Path) -> str | None:
    """The registered ``kind`` of a card (:data:`~slidescope.models.registry.CARD_KINDS`), or None."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # ModelCard.load reports it, naming the file
    kind = data.get("kind") if isinstance(data, dict) else None
    return kind if kind in CARD_KINDS else None


def _stat(path: Path) -> tuple[int, int] | None:
    """Size and modification time of ``path`` in ns (None when it cannot be read: reported later)."""
    try:
        info = path.stat()
    except OSError:
        return None
    return info.st_size, info.st_mtime_ns


def _file_version(card: ModelCard, directory: Path) -> tuple[int, int] | None:
    """Size and modification time of the card's weights file (None when it is missing: checked later)."""
    return _stat(Path(card.weights_path(directory)))


def _model(card: ModelCard, backend: Any, *, directory: str | None = None, requested_device: str = "auto") -> Model:
    """A :class:`Model` that pickles through this module's restore functions."""
    return Model(card, backend, directory=directory, requested_device=requested_device, reload=cached_model,
                 rebuild=model_from_weights)


def cached_model(directory: str, framework: str, device: str) -> Model:
    """What an unpickled saved :class:`Model` becomes: :func:`load_model` through the process cache."""
    return load_model(directory, framework=framework, device=device)


def model_from_weights(card: dict[str, Any], weights: dict[str, np.ndarray], device: str) -> Model:
    """What an unpickled in-memory :class:`Model` becomes: its card and weights, rebuilt."""
    parsed = ModelCard.from_dict(card)
    adapter = backend_class(parsed.framework)
    backend = adapter(parsed, adapter.resolve_device(device))
    backend.set_weights(weights)
    return _model(parsed, backend, requested_device=device)


def create_model(task: str, framework: str = "torch", *, card: ModelCard | None = None, seed: int = 0,
                 device: str = "auto", **card_options: Any) -> Model:
    """A model with random (seeded) weights: what training starts from, and what tests run.

    Parameters
    ----------
    task : {"tissue", "cell"}
    framework : {"torch", "tf"}
    card : ModelCard, optional
        The card to build; default :meth:`ModelCard.new` with ``card_options``.
    seed : int
        Seed of the initial weights.
    device : {"auto", "cpu", "cuda"}

    Raises
    ------
    ModelCardError
        A card whose task or framework differs from ``task`` / ``framework``, or bad ``card_options``.
    """
    seed = parse_non_negative_int(seed, "seed", maximum=2**31 - 1)
    device = parse_choice(device, "device", DEVICES)
    if card is None:
        card = ModelCard.new(task, framework, **card_options)
    elif card_options:
        raise ModelCardError(f"create_model: pass either card= or card options, got both ({sorted(card_options)})")
    if (card.task, card.framework) != (task, framework):
        raise ModelCardError(f"card: expected a {task} card for {framework}, got {card.task} for {card.framework}")
    adapter = backend_class(framework)
    backend = adapter(card, adapter.resolve_device(device), seed)
    return _model(card.replace(weights=None), backend, requested_device=device)


def _check_model_folder(folder: Path) -> None:
    """Refuse to replace a folder that holds anything but a previous model (a card and weights)."""
    if not folder.exists():
        return
    if not folder.is_dir() or folder.is_symlink():
        raise OutputExistsError(f"{folder}: expected a model directory (or a new path), got an existing file")
    entries = sorted(os.listdir(folder))
    if not entries:
        return
    if CARD_FILE not in entries:
        raise OutputExistsError(
            f"{folder}: exists and is not a model directory (no {CARD_FILE}); refusing to replace it: choose a new "
            f"or empty folder"
        )
    others = [e for e in entries if e != CARD_FILE and not e.startswith("weights.")]
    if others:
        raise OutputExistsError(
            f"{folder}: holds files other than a model's card and weights ({', '.join(others[:5])}); refusing to "
            f"replace it: choose a new or empty folder"
        )


def _share_like(path: Path, reference: Path) -> None:
    """Give ``path`` the permissions of ``reference`` (a file written with the usual umask): safetensors
    writes 0600, and a model directory a lab shares must be readable like the card beside it."""
    import stat

    os.chmod(path, stat.S_IMODE(os.stat(reference).st_mode))


def save_model(model: Model, directory: Any) -> str:
    """Write ``model`` as a model directory (card and weights), atomically; returns the directory.

    The directory is built beside its target and renamed into place, so readers see the previous
    model or the new one, never a mix. The card gets the weights file name and sha256; the model
    then refers to the new directory (and pickles as it).

    Raises
    ------
    OutputExistsError
        ``directory`` is a file, or a folder holding anything but a model (never replaced).
    OutputError
        The folder above ``directory`` is missing (more than one level) or cannot be written.
    """
    if not isinstance(model, Model):
        raise ModelCardError(f"model: expected a slidescope Model, got {type(model).__name__}")
    target = check_parent(directory)
    _check_model_folder(target)
    file = "weights" + model.backend.weights_suffix
    with atomic_path(target) as temporary:
        temporary.mkdir()
        model.backend.save_weights(str(temporary / file))
        card = model.card.replace(weights=WeightsSpec(file, file_sha256(temporary / file)))
        card.save(temporary / CARD_FILE)
        _share_like(temporary / file, temporary / CARD_FILE)
    model.card = card
    model.directory = str(target)
    return str(target)
