"""The parts a merge starts from: a model directory, or a bare checkpoint of a role's standard architecture.

A model directory brings its card (architecture, classes, input contract, thresholds). A bare
checkpoint (a torch file, safetensors, a TF checkpoint, Keras weights) is taken to be the role's
standard architecture in the checkpoint's own framework conventions (torch: symmetric padding,
BatchNorm epsilon 1e-5; TensorFlow: "same" padding, 1e-3), with the default classes unless the
classifier's shape says how many there are.

:func:`default_remap` is what a person would write for such a source: drop optimiser state and
counters, unwrap a torch file's ``state_dict``/``model``/``model_state_dict``/``ema`` and strip
``module.``, port names and layouts when the frameworks differ, and put everything under the
role's scope.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from slidescope.wsi.errors import ParameterError

from .checkpoint import Checkpoint
from .reading import read_checkpoint
from .remap import Remap, add_scope, drop_training_state, port, strip_module, unwrap

__all__ = ["Source", "open_source", "default_remap", "standard_remap", "WRAPPERS", "ROLES"]

#: Keys a torch file nests its state dict under (checked in this order).
WRAPPERS = ("state_dict", "model_state_dict", "model", "ema", "net", "network")
#: The roles a source plays in the merged graph.
ROLES = ("tissue", "cell")


@dataclass
class Source:
    """One part's checkpoint and what is known about it.

    Attributes
    ----------
    role : str
        ``"tissue"`` or ``"cell"``.
    path : str
        What the user named (a model directory or a checkpoint).
    checkpoint : Checkpoint
        Its tensors.
    card : ModelCard
        The source's card, or the standard one for a bare checkpoint (``from_directory`` False).
    from_directory : bool
        Whether the card came from a model directory.
    """

    role: str
    path: str
    checkpoint: Checkpoint
    card: Any
    from_directory: bool

    @property
    def framework(self) -> str:
        """Whose names and layouts the checkpoint's tensors follow (``"torch"`` or ``"tf"``)."""
        framework = self.checkpoint.framework
        return framework if framework in ("torch", "tf") else self.card.framework

    def describe(self) -> dict[str, Any]:
        """What the merged card records of this source."""
        return {"path": os.path.realpath(self.path), "format": self.checkpoint.format, "framework": self.framework,
                "sha256": self.checkpoint.sha256, "card": self.card.to_dict() if self.from_directory else None}


def _classes_from(checkpoint: Checkpoint, role: str) -> int | None:
    """The class (tissue) or type (cell) count the checkpoint's output layer has, when it has one."""
    for info in checkpoint.infos:
        leaf = info.name.replace("/", ".")
        if role == "tissue" and leaf.endswith(("classifier.bias",)) and len(info.shape) == 1:
            return info.shape[0]
        if role == "cell" and leaf.endswith(("type_head.bias",)) and len(info.shape) == 1:
            return info.shape[0]
    return None


def open_source(path: Any, role: str, card: Any = None) -> Source:
    """The ``role`` part at ``path`` (a model directory or a checkpoint).

    ``card`` (a :class:`~slidescope.models.ModelCard`) describes a bare checkpoint whose architecture
    is not the role's standard one; a model directory brings its own.

    Raises
    ------
    CheckpointError, CheckpointNotFoundError, ModelCardError, ParameterError
    """
    from slidescope.models.card import CARD_FILE, ModelCard

    if role not in ROLES:
        raise ParameterError(f"role: expected one of {', '.join(ROLES)}, got {role!r}")
    path = os.fspath(path)
    if not os.path.exists(path) and path in ROLES and not os.path.exists(path + ".index"):
        from slidescope.models.loading import shipped_model_dir

        path = str(shipped_model_dir(path))  # a shipped model by name, as load_model takes it (torch)
    if os.path.isfile(os.path.join(path, CARD_FILE)):
        if card is not None:
            raise ParameterError(f"{path}: a model directory brings its own card; a card is given only for a bare "
                                 f"checkpoint (--{role}-card)")
        card = ModelCard.load(path)
        if card.task != role:
            raise ParameterError(f"{path}: a {card.task} model given as the {role} part; expected a {role} model")
        return Source(role, path, read_checkpoint(path), card, True)
    checkpoint = read_checkpoint(path)
    if card is not None:
        if card.task != role:
            raise ParameterError(f"{path}: the card given for it is a {card.task} card; expected a {role} card")
        return Source(role, path, checkpoint, card, False)
    framework = checkpoint.framework if checkpoint.framework in ("torch", "tf") else "torch"
    card = ModelCard.new(role, framework, name=f"{role}-{os.path.basename(path.rstrip('/'))}")
    count = _classes_from(checkpoint, role)
    if count is not None and count != len(card.classes):
        raise ParameterError(f"{path}: its output layer has {count} {'classes' if role == 'tissue' else 'types'}; the "
                             f"standard {role} model has {len(card.classes)} ({', '.join(card.class_names)}). Give a "
                             f"model directory whose card.json names them")
    return Source(role, path, checkpoint, card, False)


def _wrapper(checkpoint: Checkpoint) -> str | None:
    """The key every weight of a torch file sits under, when there is one."""
    weights = [info.name for info in checkpoint.infos if info.kind in ("weight", "buffer")]
    for key in WRAPPERS:
        if weights and all(name.startswith(key + ".") for name in weights):
            return key
    return None


def standard_remap(checkpoint: Checkpoint, framework: str, target_framework: str, scope: str) -> Remap:
    """What a person would write for ``checkpoint`` (names and layouts of ``framework``) going under
    ``scope`` of a ``target_framework`` graph: drop optimiser state and counters, unwrap a torch
    file's state dict and strip ``module.``, port when the frameworks differ, add the scope."""
    remap = drop_training_state()
    if framework == "torch":
        key = _wrapper(checkpoint)
        if key is not None:
            remap = remap + unwrap(key)
        names = [info.name for info in checkpoint.infos if info.kind in ("weight", "buffer")]
        if key is not None:
            names = [name[len(key) + 1:] for name in names]
        if any(name.startswith("module.") for name in names):  # DataParallel's prefix
            remap = remap + strip_module()
    if framework != target_framework:
        remap = remap + port(framework, target_framework)
    return remap + add_scope(scope, target_framework)


def default_remap(source: Source, target_framework: str, scope: str | None = None) -> Remap:
    """The usual remap of ``source`` into a ``target_framework`` graph under ``scope`` (the role by default)."""
    return standard_remap(source.checkpoint, source.framework, target_framework, scope or source.role)
