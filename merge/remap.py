"""Remap rules: how the names (and layouts) of one checkpoint become the names of another graph.

A :class:`Remap` is applied to each source entry in turn:

1. ``ignore`` (regexes on the source name) and ``ignore_kinds`` (``"optimizer"``, ``"counter"``...)
   set entries aside, each with its reason;
2. with ``prefer_ema``, an entry ``<prefix>X`` stands in for ``X`` (the plain ``X`` is set aside);
3. the ``rules`` rewrite the name one after the other (each sees the previous one's result): a
   :class:`RegexRule` (``re.sub`` of its first match), :class:`AddScope`, :class:`StripScope`,
   :class:`PortLayout` (torch <-> TensorFlow names, with the layout transform a tensor needs);
4. ``transforms`` (regex on the resulting name -> :class:`Transform`) change a tensor's layout.

Ready pieces build the usual remaps: :func:`add_scope`, :func:`strip_scope`, :func:`strip_module`,
:func:`unwrap`, :func:`drop_training_state`, :func:`prefer_ema`, :func:`port`, and
:func:`parse_rule` reads the command line's ``'REGEX=>REPLACEMENT'``. Remaps add up with ``+``, and
a remap built from invertible pieces has an :meth:`Remap.inverse`: remapping then inverting gives
back every name and tensor unchanged.

Porting between frameworks changes names and layouts only; what a framework computes differently
(TensorFlow's asymmetric "same" padding, Keras' BatchNorm epsilon 1e-3 against torch's 1e-5) is
carried by the target model's architecture (its card), which implements both conventions.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from slidescope.wsi.errors import ParameterError

from .checkpoint import KINDS, TensorInfo

__all__ = ["Transform", "Rule", "RegexRule", "AddScope", "StripScope", "PortLayout", "Remap", "Mapped",
           "OIHW_TO_HWIO", "HWIO_TO_OIHW", "TRANSPOSE", "add_scope", "strip_scope", "strip_module", "unwrap",
           "drop_training_state", "prefer_ema", "port", "parse_rule", "SEPARATORS", "layer_of", "norm_layers"]

#: The separator between scopes in each framework's names.
SEPARATORS = {"torch": ".", "tf": "/"}


@dataclass(frozen=True)
class Transform:
    """A layout change: the array's axes permuted (``np.transpose(array, axes)``)."""

    name: str
    axes: tuple[int, ...]

    def apply(self, array: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(np.transpose(array, self.axes))

    def shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The shape after the transform (``shape`` must have ``len(axes)`` dimensions)."""
        return tuple(shape[axis] for axis in self.axes)

    def fits(self, shape: tuple[int, ...]) -> bool:
        return len(shape) == len(self.axes)

    def inverse(self) -> "Transform":
        back = tuple(int(i) for i in np.argsort(self.axes))
        name = " -> ".join(reversed(self.name.split(" -> "))) if " -> " in self.name else f"inverse of {self.name}"
        return Transform(name, back)


#: torch conv weights ``(out, in, kH, kW)`` to Keras kernels ``(kH, kW, in, out)``, and back.
OIHW_TO_HWIO = Transform("OIHW -> HWIO", (2, 3, 1, 0))
HWIO_TO_OIHW = OIHW_TO_HWIO.inverse()
#: torch dense ``(out, in)`` <-> Keras dense ``(in, out)``.
TRANSPOSE = Transform("transpose", (1, 0))


class Rule:
    """One renaming step; :meth:`apply` returns the new name and any transform, or None (no match).

    ``norm`` tells whether the entry belongs to a normalisation layer of the source (a layer with
    running/moving statistics, a ``gamma``, or a 1-D ``weight``), which :class:`PortLayout` needs to
    tell a BatchNorm ``bias`` (``beta``) from a convolution's.
    """

    def apply(self, name: str, info: TensorInfo, norm: bool = False) -> tuple[str, Transform | None] | None:
        raise NotImplementedError

    def inverse(self) -> "Rule":
        raise ParameterError(f"{self.describe()}: this rule has no inverse; give one explicitly")

    def describe(self) -> str:
        raise NotImplementedError


@dataclass(frozen=True)
class RegexRule(Rule):
    """``re.sub(pattern, replacement, name, count=1)`` when ``pattern`` matches; ``inverse_rule`` is
    the ``(pattern, replacement)`` that undoes it, when known."""

    pattern: str
    replacement: str
    inverse_rule: tuple[str, str] | None = None

    def __post_init__(self) -> None:
        try:
            re.compile(self.pattern)
        except re.error as exc:
            raise ParameterError(f"rule {self.pattern!r} => {self.replacement!r}: not a valid regular expression: "
                                 f"{exc}") from None

    def apply(self, name: str, info: TensorInfo, norm: bool = False) -> tuple[str, Transform | None] | None:
        if re.search(self.pattern, name) is None:
            return None
        try:
            return re.sub(self.pattern, self.replacement, name, count=1), None
        except (re.error, IndexError) as exc:
            raise ParameterError(f"rule {self.pattern!r} => {self.replacement!r} on {name!r}: {exc}") from None

    def inverse(self) -> Rule:
        if self.inverse_rule is None:
            return super().inverse()
        return RegexRule(*self.inverse_rule, inverse_rule=(self.pattern, self.replacement))

    def describe(self) -> str:
        return f"{self.pattern} => {self.replacement}"


@dataclass(frozen=True)
class AddScope(Rule):
    """``scope + separator + name`` for every name."""

    scope: str
    separator: str = "/"

    def apply(self, name: str, info: TensorInfo, norm: bool = False) -> tuple[str, Transform | None] | None:
        return f"{self.scope}{self.separator}{name}", None

    def inverse(self) -> Rule:
        return StripScope(self.scope, self.separator)

    def describe(self) -> str:
        return f"add scope {self.scope}{self.separator}"


@dataclass(frozen=True)
class StripScope(Rule):
    """Removes a leading ``scope + separator`` (names without it are left alone)."""

    scope: str
    separator: str = "/"

    def apply(self, name: str, info: TensorInfo, norm: bool = False) -> tuple[str, Transform | None] | None:
        prefix = f"{self.scope}{self.separator}"
        return (name[len(prefix):], None) if name.startswith(prefix) and len(name) > len(prefix) else None

    def inverse(self) -> Rule:
        return AddScope(self.scope, self.separator)

    def describe(self) -> str:
        return f"strip scope {self.scope}{self.separator}"


#: Per direction: (last name part, number of dimensions or None for any) -> (new part, transform).
_PORT = {
    ("torch", "tf"): {("weight", 4): ("kernel", OIHW_TO_HWIO), ("weight", 2): ("kernel", TRANSPOSE),
                      ("weight", 1): ("gamma", None), ("running_mean", None): ("moving_mean", None),
                      ("running_var", None): ("moving_variance", None)},
    ("tf", "torch"): {("kernel", 4): ("weight", HWIO_TO_OIHW), ("kernel", 2): ("weight", TRANSPOSE),
                      ("gamma", None): ("weight", None), ("beta", None): ("bias", None),
                      ("moving_mean", None): ("running_mean", None), ("moving_variance", None): ("running_var", None)},
}
#: The last name parts that make a layer a normalisation layer (see :class:`Rule`).
_NORM_PARTS = ("running_mean", "running_var", "moving_mean", "moving_variance", "gamma", "beta")


def layer_of(name: str) -> str:
    """The layer path of a tensor name: everything before its last ``.`` or ``/``."""
    return name[:max(name.rfind("."), name.rfind("/"), 0)]


def norm_layers(infos: Sequence[TensorInfo]) -> set[str]:
    """The layers of ``infos`` that are normalisation layers (see :class:`Rule`)."""
    found = set()
    for info in infos:
        last = info.name[len(layer_of(info.name)):].lstrip("./")
        if last in _NORM_PARTS or (last == "weight" and len(info.shape) == 1):
            found.add(layer_of(info.name))
    return found


@dataclass(frozen=True)
class PortLayout(Rule):
    """torch names and layouts to TensorFlow's, or back (``source``/``target``: ``"torch"``, ``"tf"``).

    The scope separator changes (``.`` <-> ``/``) and the last part is renamed by what it is:
    conv ``weight`` (4-D, OIHW) <-> ``kernel`` (HWIO), dense ``weight`` (2-D, ``(out, in)``) <->
    ``kernel`` (``(in, out)``), normalisation ``weight``/``bias``/``running_*`` <->
    ``gamma``/``beta``/``moving_*``; a convolution's or dense layer's ``bias`` stays ``bias``.
    Other names (``num_batches_tracked``) only change separator.
    """

    source: str
    target: str

    def __post_init__(self) -> None:
        if (self.source, self.target) not in _PORT:
            raise ParameterError(f"port: expected torch -> tf or tf -> torch, got {self.source} -> {self.target}")

    def apply(self, name: str, info: TensorInfo, norm: bool = False) -> tuple[str, Transform | None] | None:
        separator, target_separator = SEPARATORS[self.source], SEPARATORS[self.target]
        layer, _, last = name.rpartition(separator)
        if not layer:
            return None
        moved = layer.replace(separator, target_separator) + target_separator
        if last == "bias" and self.target == "tf":
            return moved + ("beta" if norm else "bias"), None
        table = _PORT[(self.source, self.target)]
        found = table.get((last, len(info.shape))) or table.get((last, None))
        if found is None:
            return moved + last, None
        return moved + found[0], found[1]

    def inverse(self) -> Rule:
        return PortLayout(self.target, self.source)

    def describe(self) -> str:
        return f"port {self.source} -> {self.target} (names and layouts)"


@dataclass(frozen=True)
class Mapped:
    """One source entry's fate: its target name and transforms, or why it was set aside."""

    source: str
    target: str | None
    transforms: tuple[Transform, ...] = ()
    reason: str | None = None


@dataclass(frozen=True)
class Remap:
    """Rules, ignore patterns and transforms (see the module docstring); ``+`` concatenates."""

    rules: tuple[Rule, ...] = ()
    ignore: tuple[str, ...] = ()
    ignore_kinds: tuple[str, ...] = ()
    transforms: tuple[tuple[str, Transform], ...] = ()
    prefer_ema: str | None = None
    _compiled: tuple[Any, ...] = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for kind in self.ignore_kinds:
            if kind not in KINDS:
                raise ParameterError(f"ignore_kinds: expected kinds among {list(KINDS)}, got {kind!r}")
        compiled = []
        for pattern in self.ignore:
            try:
                compiled.append(re.compile(pattern))
            except re.error as exc:
                raise ParameterError(f"ignore pattern {pattern!r}: not a valid regular expression: {exc}") from None
        object.__setattr__(self, "_compiled", tuple(compiled))

    def __add__(self, other: "Remap") -> "Remap":
        if not isinstance(other, Remap):
            return NotImplemented
        return Remap(self.rules + other.rules, self.ignore + other.ignore,
                     tuple(dict.fromkeys(self.ignore_kinds + other.ignore_kinds)), self.transforms + other.transforms,
                     other.prefer_ema or self.prefer_ema)

    def inverse(self) -> "Remap":
        """The remap that undoes this one's renames and transforms (ignores are not undone)."""
        return Remap(tuple(rule.inverse() for rule in reversed(self.rules)),
                     transforms=tuple((pattern, transform.inverse()) for pattern, transform in self.transforms))

    def describe(self) -> list[str]:
        """One line per step, for reports and cards."""
        lines = [f"ignore {pattern}" for pattern in self.ignore]
        lines += [f"ignore kind {kind}" for kind in self.ignore_kinds]
        if self.prefer_ema:
            lines.append(f"prefer EMA shadows {self.prefer_ema}*")
        lines += [rule.describe() for rule in self.rules]
        lines += [f"transform {pattern}: {transform.name}" for pattern, transform in self.transforms]
        return lines

    def rename(self, name: str, info: TensorInfo, norm: bool = False) -> tuple[str, tuple[Transform, ...]]:
        """``name`` through the rules and transforms (no ignores): the target name and the transforms;
        ``norm`` says whether it belongs to a normalisation layer (see :class:`Rule`)."""
        transforms: list[Transform] = []
        shape = info.shape
        for rule in self.rules:
            result = rule.apply(name, TensorInfo(name, shape, info.dtype, info.kind), norm)
            if result is None:
                continue
            name, transform = result
            if transform is not None:
                transforms.append(transform)
                shape = transform.shape(shape)
        for pattern, transform in self.transforms:
            if re.search(pattern, name) and transform.fits(shape):
                transforms.append(transform)
                shape = transform.shape(shape)
        return name, tuple(transforms)

    def map(self, infos: Sequence[TensorInfo]) -> list[Mapped]:
        """The fate of every entry of ``infos`` (a checkpoint's), in order."""
        norms = norm_layers(infos)
        out = []
        for info in infos:
            if info.kind in self.ignore_kinds:
                out.append(Mapped(info.name, None, reason=f"kind {info.kind}"))
                continue
            hit = next((p.pattern for p in self._compiled if p.search(info.name)), None)
            if hit is not None:
                out.append(Mapped(info.name, None, reason=f"ignore {hit}"))
                continue
            target, transforms = self.rename(info.name, info, layer_of(info.name) in norms)
            out.append(Mapped(info.name, target, transforms))
        if self.prefer_ema:
            out = self._prefer_ema(out)
        return out

    def _prefer_ema(self, mapped: list[Mapped]) -> list[Mapped]:
        """Where an EMA shadow and the plain weight reach one name, the shadow wins (see :func:`prefer_ema`)."""
        shadow = re.compile(rf"(^|[./]){re.escape(str(self.prefer_ema))}[./]")
        by_target: dict[str, list[Mapped]] = {}
        for entry in mapped:
            if entry.target is not None:
                by_target.setdefault(entry.target, []).append(entry)
        losers: dict[str, str] = {}
        for target, entries in by_target.items():
            shadows = [e for e in entries if shadow.search(e.source)]
            if len(entries) > 1 and len(shadows) == 1:
                for entry in entries:
                    if entry is not shadows[0]:
                        losers[entry.source] = f"EMA shadow {shadows[0].source} preferred"
        return [Mapped(e.source, None, reason=losers[e.source]) if e.source in losers else e for e in mapped]


# -- ready pieces ------------------------------------------------------------------------------------


def add_scope(scope: str, framework: str = "tf") -> Remap:
    """Put every name under ``scope`` (``tissue/conv1/kernel``; ``tissue.conv1.weight`` in torch)."""
    return Remap((AddScope(scope, SEPARATORS[framework]),))


def strip_scope(scope: str, framework: str = "tf") -> Remap:
    """Remove a leading ``scope`` from the names that have it."""
    return Remap((StripScope(scope, SEPARATORS[framework]),))


def strip_module() -> Remap:
    """Remove DataParallel's / DistributedDataParallel's ``module.`` prefix."""
    return Remap((StripScope("module", "."),))


def unwrap(key: str) -> Remap:
    """Take a state dict nested under ``key`` in a larger torch file (``state_dict``, ``model``,
    ``model_state_dict``, ``ema``): its entries lose the prefix, the rest of the file is ignored."""
    escaped = re.escape(key)
    return Remap((StripScope(key, "."),), ignore=(rf"^(?!{escaped}\.)",))


def drop_training_state() -> Remap:
    """Ignore optimiser state, step counters and other training state (RNG states)."""
    return Remap(ignore_kinds=("optimizer", "counter", "other"))


def prefer_ema(scope: str = "ema") -> Remap:
    """Load exponential-moving-average shadows in place of the weights they shadow: the scope
    ``scope`` is removed wherever it appears (``ema.fc.weight``, ``model.ema.fc.weight``), and where a
    shadow and the plain weight then reach one name, the shadow wins and the weight is ignored."""
    escaped = re.escape(scope)
    return Remap((RegexRule(rf"(^|[./]){escaped}[./]", r"\1"),), prefer_ema=scope)


def port(source: str, target: str) -> Remap:
    """torch names and layouts to TensorFlow's or back (see :class:`PortLayout`)."""
    return Remap((PortLayout(source, target),))


def parse_rule(text: str) -> RegexRule:
    """The command line's ``'REGEX=>REPLACEMENT'`` as a :class:`RegexRule`."""
    if not isinstance(text, str) or "=>" not in text:
        raise ParameterError(f"--rule: expected 'REGEX=>REPLACEMENT', got {text!r}")
    pattern, replacement = text.split("=>", 1)
    if not pattern:
        raise ParameterError(f"--rule {text!r}: the regular expression is empty")
    return RegexRule(pattern, replacement)
