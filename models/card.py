"""``ModelCard``: a model's input/output contract, written as ``card.json`` beside its weights.

A card says what a model expects (resolution, tile size, overlap and context, RGB channel order,
normalisation, an optional stain normaliser), what it returns (classes with display colours), how
to read its outputs (thresholds), how it is built (architecture and configuration) and where its
weights are (file name and sha256). Tiling reads the card: :meth:`ModelCard.scale` is the plan's
:class:`~slidescope.tiling.Scale`, so nothing else hard-codes 256 px or 0.5 µm/px.

Loading validates everything: a missing key, a value of the wrong type or range, an unknown task or
framework, or weights whose sha256 differs from the card is a :class:`ModelCardError` naming the
file and the key (``card.json: input.mpp: expected a number > 0, got '2'``).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from slidescope.tiling import Scale
from slidescope.wsi.atomic import atomic_path
from slidescope.wsi.validation import parse_path
from slidescope.wsi.version import slidescope_version

from .architectures import ARCHITECTURES, PADDINGS, Architecture, default_architecture, size_multiple
from .errors import ModelCardError

__all__ = [
    "CARD_FILE",
    "CARD_FORMAT_VERSION",
    "TASKS",
    "FRAMEWORKS",
    "TASK_OUTPUTS",
    "REQUIRED_THRESHOLDS",
    "AUTOCAST",
    "ClassSpec",
    "InputSpec",
    "WeightsSpec",
    "ModelCard",
    "file_sha256",
]

#: File name of a card inside a model directory.
CARD_FILE = "card.json"
#: Version of the card layout; other versions are refused.
CARD_FORMAT_VERSION = 1
#: Tasks a model may have.
TASKS = ("tissue", "cell")
#: Frameworks a model may be written in: PyTorch, or Keras 3 on TensorFlow.
FRAMEWORKS = ("torch", "tf")
#: What :meth:`Model.predict` returns, by task.
TASK_OUTPUTS = {"tissue": ("probs", "cam", "embedding"), "cell": ("heatmap", "types", "counts", "embedding")}
#: Mixed-precision modes of ``inference.autocast`` (used on CUDA; CPU inference stays float32).
AUTOCAST = (None, "bf16", "fp16")
#: Thresholds each task's card must give.
REQUIRED_THRESHOLDS = {"tissue": ("cascade_probability",), "cell": ("nucleus_score", "min_distance_um")}

_COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")
#: The keys of a card, in the order :meth:`ModelCard.to_dict` writes them.
_CARD_KEYS = ("format_version", "name", "version", "task", "framework", "architecture", "input", "classes", "outputs",
              "thresholds", "cascade_class", "training", "metrics", "weights", "inference", "created",
              "slidescope_version")
_DEFAULT_CLASSES = {
    "tissue": (("background", "#f0f0f0"), ("stroma", "#ff7fbf"), ("tumour", "#c00000")),
    "cell": (("normal", "#2060ff"), ("tumour", "#ff2020")),
}
_DEFAULT_INPUT = {"tissue": (2.0, 256, 0), "cell": (0.5, 256, 32)}
_DEFAULT_THRESHOLDS = {"tissue": {"cascade_probability": 0.5},
                       "cell": {"nucleus_score": 0.5, "min_distance_um": 4.0}}


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _freeze(value: Any) -> Any:
    """JSON data made read-only: dicts become mapping proxies, lists tuples."""
    if isinstance(value, Mapping):
        return MappingProxyType({str(k): _freeze(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


def _thaw(value: Any) -> Any:
    """The JSON form of :func:`_freeze`'s output."""
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    return value


@dataclass(frozen=True)
class ClassSpec:
    """An output class (tissue) or nucleus type (cell) and its display colour (``#rrggbb``)."""

    name: str
    color: str


@dataclass(frozen=True)
class InputSpec:
    """What the model reads: ``tile + 2 * context`` px squares at ``mpp``, RGB, ``(x - mean) / std``.

    ``mean`` and ``std`` are per channel on the 0-255 scale. ``stain`` is a stain normaliser as
    its ``to_dict()`` (:func:`slidescope.tiling.normalizer_from_dict`), applied before the model.
    """

    mpp: float
    tile: int
    overlap: int = 0
    context: int = 0
    channel_order: str = "RGB"
    mean: tuple[float, float, float] = (128.0, 128.0, 128.0)
    std: tuple[float, float, float] = (64.0, 64.0, 64.0)
    stain: Mapping[str, Any] | None = None

    @property
    def size(self) -> int:
        """Edge of the images the model takes (tile plus context on both sides)."""
        return self.tile + 2 * self.context


@dataclass(frozen=True)
class WeightsSpec:
    """The weights file (a plain name inside the model directory) and its sha256."""

    file: str
    sha256: str


@dataclass(frozen=True)
class ModelCard:
    """A model's contract; see the module docstring. Build one with :meth:`new`, read one with :meth:`load`."""

    name: str
    version: str
    task: str
    framework: str
    architecture: Architecture
    input: InputSpec
    classes: tuple[ClassSpec, ...]
    thresholds: Mapping[str, float]
    cascade_class: str | None = None
    training: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    metrics: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    weights: WeightsSpec | None = None
    autocast: str | None = None
    created: str = ""
    slidescope_version: str = ""

    # -- construction ----------------------------------------------------------------------

    @classmethod
    def new(cls, task: str, framework: str = "torch", *, name: str | None = None, version: str = "0.0.0",
            architecture: Architecture | None = None, classes: Sequence[tuple[str, str]] | None = None,
            mpp: float | None = None, tile: int | None = None, overlap: int | None = None, context: int = 0,
            mean: Sequence[float] = (128.0, 128.0, 128.0), std: Sequence[float] = (64.0, 64.0, 64.0),
            stain: Mapping[str, Any] | None = None, thresholds: Mapping[str, float] | None = None,
            cascade_class: str | None = None, training: Mapping[str, Any] | None = None,
            metrics: Mapping[str, Any] | None = None, autocast: str | None = None) -> "ModelCard":
        """A card with this task's defaults for whatever is not given (tissue: 2 µm/px, 256 px,
        classes background/stroma/tumour, cascade on tumour ≥ 0.5; cell: 0.5 µm/px, 256 px with
        32 px overlap, types normal/tumour, nuclei scoring ≥ 0.5 at least 4 µm apart).

        Raises
        ------
        ModelCardError
            Any value that :meth:`from_dict` would refuse.
        """
        if task not in TASKS:
            raise ModelCardError(f"task: expected one of {', '.join(TASKS)}, got {task!r}")
        if framework not in FRAMEWORKS:
            raise ModelCardError(f"framework: expected one of {', '.join(FRAMEWORKS)}, got {framework!r}")
        default_mpp, default_tile, default_overlap = _DEFAULT_INPUT[task]
        data = {
            "format_version": CARD_FORMAT_VERSION,
            "name": name or f"{task}-{framework}",
            "version": version,
            "task": task,
            "framework": framework,
            "architecture": (architecture or default_architecture(task, framework)).to_dict(),
            "input": {"mpp": default_mpp if mpp is None else mpp, "tile": default_tile if tile is None else tile,
                      "overlap": default_overlap if overlap is None else overlap, "context": context,
                      "channel_order": "RGB", "mean": list(mean), "std": list(std),
                      "stain": None if stain is None else _thaw(stain)},
            "classes": [{"name": n, "color": c} for n, c in (classes or _DEFAULT_CLASSES[task])],
            "outputs": list(TASK_OUTPUTS[task]),
            "thresholds": dict(thresholds or _DEFAULT_THRESHOLDS[task]),
            "cascade_class": (cascade_class or ("tumour" if task == "tissue" else None)),
            "training": _thaw(training or {}),
            "metrics": _thaw(metrics or {}),
            "weights": None,
            "inference": {"autocast": autocast},
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "slidescope_version": slidescope_version(),
        }
        if task == "tissue" and cascade_class is None and "tumour" not in [c["name"] for c in data["classes"]]:
            data["cascade_class"] = data["classes"][-1]["name"]
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: Any, source: str = "card") -> "ModelCard":
        """A card from its JSON form, validated (``source`` names the file in messages).

        Raises
        ------
        ModelCardError
            Missing keys, wrong types or values, unknown task, framework or architecture.
        """
        return _CardReader(source).card(data)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (what :meth:`save` writes)."""
        return {
            "format_version": CARD_FORMAT_VERSION,
            "name": self.name,
            "version": self.version,
            "task": self.task,
            "framework": self.framework,
            "architecture": self.architecture.to_dict(),
            "input": {"mpp": self.input.mpp, "tile": self.input.tile, "overlap": self.input.overlap,
                      "context": self.input.context, "channel_order": self.input.channel_order,
                      "mean": list(self.input.mean), "std": list(self.input.std),
                      "stain": None if self.input.stain is None else _thaw(self.input.stain)},
            "classes": [{"name": c.name, "color": c.color} for c in self.classes],
            "outputs": list(self.outputs),
            "thresholds": dict(self.thresholds),
            "cascade_class": self.cascade_class,
            "training": _thaw(self.training),
            "metrics": _thaw(self.metrics),
            "weights": None if self.weights is None else {"file": self.weights.file, "sha256": self.weights.sha256},
            "inference": {"autocast": self.autocast},
            "created": self.created,
            "slidescope_version": self.slidescope_version,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"

    def replace(self, **changes: Any) -> "ModelCard":
        """A copy with ``changes`` (validated again)."""
        return self.from_dict({**replace(self, **changes).to_dict()}, "card")

    def save(self, path: str | os.PathLike[str]) -> str:
        """Write the card as JSON, atomically; returns the path."""
        target = parse_path(path)
        with atomic_path(target) as temporary:
            temporary.write_text(self.to_json(), encoding="utf-8")
        return target

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "ModelCard":
        """Read and validate ``card.json`` (a file, or a model directory holding one).

        Raises
        ------
        ModelCardError
            No such file, not JSON, or any problem :meth:`from_dict` finds (naming the file).
        """
        text = parse_path(path)
        if os.path.isdir(text):
            text = os.path.join(text, CARD_FILE)
        try:
            with open(text, encoding="utf-8") as stream:
                data = json.load(stream)
        except FileNotFoundError:
            raise ModelCardError(f"{text}: no model card (card.json) there") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ModelCardError(f"{text}: cannot read the model card: {exc}") from None
        except json.JSONDecodeError as exc:
            raise ModelCardError(f"{text}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
        return cls.from_dict(data, text)

    # -- derived ---------------------------------------------------------------------------

    @property
    def outputs(self) -> tuple[str, ...]:
        """What :meth:`Model.predict` returns for this task."""
        return TASK_OUTPUTS[self.task]

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.classes)

    def scale(self) -> Scale:
        """The tiling :class:`~slidescope.tiling.Scale` this model reads (named after its task)."""
        return Scale(self.input.mpp, self.input.tile, self.input.overlap, self.input.context, name=self.task)

    def weights_path(self, directory: str | os.PathLike[str]) -> str:
        """Where the weights of this card lie inside ``directory``.

        Raises
        ------
        ModelCardError
            The card names no weights file.
        """
        if self.weights is None:
            raise ModelCardError(f"{os.path.join(directory, CARD_FILE)}: weights: the card names no weights file")
        return os.path.join(os.fspath(directory), self.weights.file)

    def check_weights(self, directory: str | os.PathLike[str]) -> str:
        """The weights path, after checking that the file exists and its sha256 is the card's.

        Raises
        ------
        ModelCardError
            No weights file, or its sha256 differs (both names in the message).
        """
        path = self.weights_path(directory)
        card = os.path.join(os.fspath(directory), CARD_FILE)
        if not os.path.isfile(path):
            raise ModelCardError(f"{card}: weights.file: {path} does not exist")
        actual = file_sha256(path)
        if actual != self.weights.sha256:  # type: ignore[union-attr]
            raise ModelCardError(
                f"{card}: weights.sha256: expected {self.weights.sha256} (the card), got {actual} for {path}; "  # type: ignore[union-attr]
                f"the weights were changed after the card was written"
            )
        return path

    def digest(self) -> str:
        """sha256 of the card's canonical JSON (identifies a model in reports and resume keys)."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()


class _CardReader:
    """Reads one card's JSON, naming ``source`` and the key in every error."""

    def __init__(self, source: str):
        self.source = source

    def fail(self, key: str, expected: str, got: Any) -> ModelCardError:
        shown = repr(got)
        shown = shown if len(shown) <= 80 else shown[:77] + "..."
        return ModelCardError(f"{self.source}: {key}: expected {expected}, got {shown}")

    def section(self, data: Any, key: str) -> Mapping[str, Any]:
        if not isinstance(data, Mapping):
            raise self.fail(key or "card", "a JSON object", data)
        return data

    def get(self, data: Mapping[str, Any], key: str, path: str) -> Any:
        if key not in data:
            raise ModelCardError(f"{self.source}: {path}: missing key")
        return data[key]

    def text(self, data: Mapping[str, Any], key: str, path: str, *, optional: bool = False) -> str | None:
        value = self.get(data, key, path)
        if value is None and optional:
            return None
        if not isinstance(value, str) or (not value and not optional):
            raise self.fail(path, "a non-empty string", value)
        return value

    def number(self, data: Mapping[str, Any], key: str, path: str, *, positive: bool = False,
               minimum: float | None = None, maximum: float | None = None) -> float:
        value = self.get(data, key, path)
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if ok and positive and value <= 0:
            ok = False
        if ok and minimum is not None and value < minimum:
            ok = False
        if ok and maximum is not None and value > maximum:
            ok = False
        if not ok:
            bounds = " > 0" if positive else ""
            bounds += f" >= {minimum:g}" if minimum is not None else ""
            bounds += f" <= {maximum:g}" if maximum is not None else ""
            raise self.fail(path, f"a finite number{bounds}", value)
        return float(value)

    def integer(self, data: Mapping[str, Any], key: str, path: str, *, minimum: int = 0,
                maximum: int = 2**20) -> int:
        value = self.get(data, key, path)
        if not isinstance(value, int) or isinstance(value, bool) or not minimum <= value <= maximum:
            raise self.fail(path, f"an integer in [{minimum}, {maximum}]", value)
        return value

    def choice(self, data: Mapping[str, Any], key: str, path: str, choices: Sequence[str]) -> str:
        value = self.get(data, key, path)
        if value not in choices:
            raise self.fail(path, f"one of {', '.join(map(repr, choices))}", value)
        return value

    def triple(self, data: Mapping[str, Any], key: str, path: str, *, positive: bool) -> tuple[float, float, float]:
        value = self.get(data, key, path)
        if not isinstance(value, list) or len(value) != 3:
            raise self.fail(path, "a list of 3 numbers (R, G, B)", value)
        return tuple(self.number({"v": v}, "v", f"{path}[{i}]", positive=positive) for i, v in enumerate(value))  # type: ignore[return-value]

    def known(self, data: Mapping[str, Any], path: str, keys: Sequence[str]) -> None:
        """Refuse keys a card does not have (a typo would otherwise be dropped without a word)."""
        unknown = [str(k) for k in data if k not in keys]
        if unknown:
            where = f"{path}." if path else ""
            raise ModelCardError(f"{self.source}: {where}{unknown[0]}: unknown key; expected only "
                                 f"{', '.join(keys)}")

    def card(self, data: Any) -> ModelCard:
        data = self.section(data, "card")
        self.known(data, "", _CARD_KEYS)
        fmt = self.get(data, "format_version", "format_version")
        if fmt != CARD_FORMAT_VERSION:
            raise self.fail("format_version", f"{CARD_FORMAT_VERSION} (this slidescope's card layout)", fmt)
        task = self.choice(data, "task", "task", TASKS)
        framework = self.choice(data, "framework", "framework", FRAMEWORKS)
        architecture = self.architecture(self.section(self.get(data, "architecture", "architecture"), "architecture"),
                                         task)
        inputs = self.inputs(self.section(self.get(data, "input", "input"), "input"), architecture)
        classes = self.classes(self.get(data, "classes", "classes"), task)
        outputs = self.get(data, "outputs", "outputs")
        if outputs != list(TASK_OUTPUTS[task]):
            raise self.fail("outputs", f"{list(TASK_OUTPUTS[task])} for a {task} model", outputs)
        thresholds = self.thresholds(self.section(self.get(data, "thresholds", "thresholds"), "thresholds"), task)
        cascade = self.text(data, "cascade_class", "cascade_class", optional=True)
        if task == "tissue" and cascade not in [c.name for c in classes]:
            raise self.fail("cascade_class", f"one of the classes {[c.name for c in classes]}", cascade)
        if task == "cell" and cascade is not None:
            raise self.fail("cascade_class", "null for a cell model (the cascade is the tissue model's)", cascade)
        weights = self.get(data, "weights", "weights")
        spec = None
        if weights is not None:
            weights = self.section(weights, "weights")
            self.known(weights, "weights", ("file", "sha256"))
            file = self.text(weights, "file", "weights.file")
            if os.path.basename(file) != file or file in (".", ".."):  # type: ignore[arg-type]
                raise self.fail("weights.file", "a file name inside the model directory", file)
            digest = self.text(weights, "sha256", "weights.sha256")
            if not re.fullmatch(r"[0-9a-f]{64}", digest or ""):
                raise self.fail("weights.sha256", "64 lower-case hex digits", digest)
            spec = WeightsSpec(file, digest)  # type: ignore[arg-type]
        for key in ("training", "metrics"):
            self.section(self.get(data, key, key), key)
        inference = self.section(self.get(data, "inference", "inference"), "inference")
        self.known(inference, "inference", ("autocast",))
        autocast = self.get(inference, "autocast", "inference.autocast")
        if autocast not in AUTOCAST:
            raise self.fail("inference.autocast", f"one of {AUTOCAST} (mixed precision on CUDA)", autocast)
        return ModelCard(
            name=self.text(data, "name", "name"),  # type: ignore[arg-type]
            version=self.text(data, "version", "version"),  # type: ignore[arg-type]
            task=task, framework=framework, architecture=architecture, input=inputs, classes=classes,
            thresholds=MappingProxyType(thresholds), cascade_class=cascade,
            training=_freeze(data["training"]), metrics=_freeze(data["metrics"]), weights=spec, autocast=autocast,
            created=self.text(data, "created", "created"),  # type: ignore[arg-type]
            slidescope_version=self.text(data, "slidescope_version", "slidescope_version"),  # type: ignore[arg-type]
        )

    def architecture(self, data: Mapping[str, Any], task: str) -> Architecture:
        self.known(data, "architecture", tuple(Architecture.__dataclass_fields__))
        name = self.choice(data, "name", "architecture.name", (ARCHITECTURES[task],))
        widths = self.get(data, "widths", "architecture.widths")
        lengths = (1, 8) if task == "tissue" else (2, 6)
        if (not isinstance(widths, list) or not lengths[0] <= len(widths) <= lengths[1]
                or not all(isinstance(w, int) and not isinstance(w, bool) and 1 <= w <= 4096 for w in widths)):
            raise self.fail("architecture.widths", f"a list of {lengths[0]} to {lengths[1]} integers in [1, 4096]",
                            widths)
        kernel = self.integer(data, "kernel", "architecture.kernel", minimum=1, maximum=15)
        if kernel % 2 == 0:
            raise self.fail("architecture.kernel", "an odd integer", kernel)
        return Architecture(
            name=name, widths=tuple(widths),
            depth=self.integer(data, "depth", "architecture.depth", minimum=1, maximum=8),
            kernel=kernel,
            batchnorm_epsilon=self.number(data, "batchnorm_epsilon", "architecture.batchnorm_epsilon",
                                          positive=True, maximum=1.0),
            batchnorm_momentum=self.number(data, "batchnorm_momentum", "architecture.batchnorm_momentum",
                                           positive=True, maximum=1.0),
            padding=self.choice(data, "padding", "architecture.padding", PADDINGS),
        )

    def inputs(self, data: Mapping[str, Any], architecture: Architecture) -> InputSpec:
        self.known(data, "input", ("mpp", "tile", "overlap", "context", "channel_order", "mean", "std", "stain"))
        tile = self.integer(data, "tile", "input.tile", minimum=8, maximum=8192)
        overlap = self.integer(data, "overlap", "input.overlap", minimum=0, maximum=tile - 1)
        context = self.integer(data, "context", "input.context", minimum=0, maximum=8192)
        multiple = size_multiple(architecture)
        if (tile + 2 * context) % multiple:
            raise self.fail("input.tile", f"tile + 2 * context a multiple of {multiple} (the U-Net pools "
                            f"{len(architecture.widths) - 1} times)", tile + 2 * context)
        order = self.choice(data, "channel_order", "input.channel_order", ("RGB",))
        stain = self.get(data, "stain", "input.stain")
        if stain is not None:
            stain = self.section(stain, "input.stain")
            from slidescope.tiling import StainError, normalizer_from_dict

            try:
                normalizer_from_dict(dict(stain))
            except StainError as exc:
                raise ModelCardError(f"{self.source}: input.stain: {exc}") from None
        return InputSpec(
            mpp=self.number(data, "mpp", "input.mpp", positive=True, maximum=1e4), tile=tile, overlap=overlap,
            context=context, channel_order=order,
            mean=self.triple(data, "mean", "input.mean", positive=False),
            std=self.triple(data, "std", "input.std", positive=True),
            stain=None if stain is None else _freeze(stain),
        )

    def classes(self, value: Any, task: str) -> tuple[ClassSpec, ...]:
        if not isinstance(value, list) or len(value) < 2:
            raise self.fail("classes", "a list of at least 2 {name, color} objects", value)
        specs = []
        for i, entry in enumerate(value):
            entry = self.section(entry, f"classes[{i}]")
            self.known(entry, f"classes[{i}]", ("name", "color"))
            name = self.text(entry, "name", f"classes[{i}].name")
            color = self.text(entry, "color", f"classes[{i}].color")
            if not _COLOR.match(color or ""):
                raise self.fail(f"classes[{i}].color", "a colour '#rrggbb'", color)
            specs.append(ClassSpec(name, color.lower()))  # type: ignore[union-attr, arg-type]
        names = [c.name for c in specs]
        if len(set(names)) != len(names):
            raise self.fail("classes", "distinct names", names)
        return tuple(specs)

    def thresholds(self, data: Mapping[str, Any], task: str) -> dict[str, float]:
        values = {}
        for key in data:
            bounds = {"positive": True, "maximum": 1000.0} if key == "min_distance_um" else {"minimum": 0.0,
                                                                                               "maximum": 1.0}
            values[str(key)] = self.number(data, key, f"thresholds.{key}", **bounds)  # type: ignore[arg-type]
        for key in REQUIRED_THRESHOLDS[task]:
            self.get(data, key, f"thresholds.{key}")
        return values
