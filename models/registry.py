"""Framework adapters by name, imported only when first used.

``import slidescope.models`` loads neither torch nor TensorFlow: the card, the inference path and
the post-processing are framework-free, and an adapter module is imported here, by name, the first
time a model of its framework is built or loaded.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import FrameworkError

if TYPE_CHECKING:
    from .backend import ModelBackend
    from .trainer import Trainer

__all__ = ["ADAPTERS", "TRAINERS", "CARD_KINDS", "backend_class", "trainer_class", "card_kind_loader"]

#: framework -> (module, class, the package to install when it is missing).
ADAPTERS = {
    "torch": ("slidescope.models._torch.adapter", "TorchBackend", "torch==2.13.0 (make install)"),
    "tf": ("slidescope.models._keras.adapter", "KerasBackend", "tensorflow-cpu and keras>=3 (make install)"),
}

#: framework -> (module, class) of its trainer.
TRAINERS = {
    "torch": ("slidescope.models._torch.training", "TorchTrainer"),
    "tf": ("slidescope.models._keras.training", "KerasTrainer"),
}


#: Model directories of other kinds that :func:`~slidescope.models.load_model` loads too: the
#: ``kind`` of their ``card.json`` -> (module, function(directory, device)). The merged slide models
#: of :mod:`slidescope.merge` are built on this package, so they are named here by module path and
#: imported only when such a directory is loaded (the dependency stays merge -> models).
CARD_KINDS = {"slidescope-merged-model": ("slidescope.merge.merged", "load_merged")}


def card_kind_loader(kind: str) -> Any:
    """The loader of model directories whose card has ``"kind": kind`` (see :data:`CARD_KINDS`)."""
    module_name, function = CARD_KINDS[kind]
    return getattr(importlib.import_module(module_name), function)


def _import(framework: str, module_name: str, class_name: str) -> Any:
    install = ADAPTERS[framework][2]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise FrameworkError(f"framework {framework!r}: cannot import {exc.name or exc}; install {install}") from exc
    return getattr(module, class_name)


def backend_class(framework: str) -> "type[ModelBackend]":
    """The adapter class of ``framework`` (``"torch"`` or ``"tf"``), importing it now.

    Raises
    ------
    FrameworkError
        An unknown framework, or its library is not installed (the message says what to install).
    """
    if framework not in ADAPTERS:
        raise FrameworkError(f"framework: expected one of {', '.join(ADAPTERS)}, got {framework!r}")
    module_name, class_name, _ = ADAPTERS[framework]
    return _import(framework, module_name, class_name)


def trainer_class(framework: str) -> "type[Trainer]":
    """The trainer class of ``framework``, importing it now (see :func:`backend_class`)."""
    if framework not in TRAINERS:
        raise FrameworkError(f"framework: expected one of {', '.join(TRAINERS)}, got {framework!r}")
    return _import(framework, *TRAINERS[framework])
