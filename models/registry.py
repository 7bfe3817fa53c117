"""Framework adapters by name, imported only when first used.

``import slidescope.models`` loads neither torch nor TensorFlow: the card, the inference path and
the post-processing are framework-free, and an adapter module is imported here, by name, the first
time a model of its framework is built or loaded.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from .errors import FrameworkError

if TYPE_CHECKING:
    from .backend import ModelBackend

__all__ = ["ADAPTERS", "backend_class"]

#: framework -> (module, class, the package to install when it is missing).
ADAPTERS = {
    "torch": ("slidescope.models._torch.adapter", "TorchBackend", "torch==2.13.0 (make install)"),
    "tf": ("slidescope.models._keras.adapter", "KerasBackend", "tensorflow-cpu and keras>=3 (make install)"),
}


def backend_class(framework: str) -> "type[ModelBackend]":
    """The adapter class of ``framework`` (``"torch"`` or ``"tf"``), importing it now.

    Raises
    ------
    FrameworkError
        An unknown framework, or its library is not installed (the message says what to install).
    """
    if framework not in ADAPTERS:
        raise FrameworkError(f"framework: expected one of {', '.join(ADAPTERS)}, got {framework!r}")
    module_name, class_name, install = ADAPTERS[framework]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise FrameworkError(f"framework {framework!r}: cannot import {exc.name or exc}; install {install}") from exc
    return getattr(module, class_name)
