"""``merge``: separately trained tissue and cell checkpoints (and a head) into one slide graph.

For each part, :func:`~slidescope.merge.sources.default_remap` plus the caller's rules map the
source's names onto the graph's ``tissue``/``cell`` scope; :func:`~slidescope.merge.report.plan`
checks every name, shape and dtype (strict unless told otherwise); the tensors are copied one at a
time into the graph of the target framework. The parts keep their architectures (padding
convention, BatchNorm epsilon) whatever the target, so the merged graph computes what each source
computed. The result is written as one merged model directory (:mod:`slidescope.merge.merged`) and
exported (:mod:`slidescope.merge.export`).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from slidescope.wsi.errors import ParameterError

from .errors import RemapError
from .head import HeadSpec, member_scopes
from .merged import MergedCard, SlideModel, graph_class, is_merged_directory
from .checkpoint import Checkpoint
from .remap import RegexRule, Remap, port
from .report import RemapReport, apply_plan, plan
from .sources import Source, default_remap, open_source

__all__ = ["MergeOptions", "merge_models", "part_card", "verify_parts", "PART_TOLERANCE"]

#: Largest difference allowed between a part in the merged graph and its source model run alone:
#: none in the same framework, float32 rounding across frameworks.
PART_TOLERANCE = {"same": 0.0, "across": 1e-4}


@dataclass(frozen=True)
class MergeOptions:
    """What the caller adds to the default remaps (the command line's ``--rule``, ``--ignore``...)."""

    rules: tuple[RegexRule, ...] = ()
    ignore: tuple[str, ...] = ()
    allow_missing: tuple[str, ...] = ()
    lenient: bool = False
    head_classes: tuple[str, ...] = ("normal", "tumour")
    #: Cards of bare checkpoints whose architecture is not their role's standard one (by role).
    cards: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Patterns are checked when the options are made, before any checkpoint is read.
        for option, patterns in (("ignore", self.ignore), ("allow_missing", self.allow_missing)):
            for pattern in patterns:
                try:
                    re.compile(pattern)
                except (re.error, TypeError) as exc:
                    raise ParameterError(f"{option} pattern {pattern!r}: not a valid regular expression: {exc}") from None


def part_card(source: Source, target: str) -> Any:
    """The card a part has inside a ``target`` graph: the source's, in the target framework
    (architecture kept: padding and epsilon travel with the weights)."""
    return source.card.replace(framework=target, weights=None)


def _differences(first: dict[str, Any], other: dict[str, Any]) -> list[str]:
    """What differs between two cards' sections: ``architecture.padding ('tf_same' against 'symmetric')``."""
    found = []
    for key, value in first.items():
        if value == other[key]:
            continue
        if isinstance(value, dict) and isinstance(other[key], dict):
            found += [f"{key}.{k} ({value.get(k)!r} against {other[key].get(k)!r})"
                      for k in sorted(set(value) | set(other[key])) if value.get(k) != other[key].get(k)]
        else:
            found.append(key)
    return found


def _member_card(role: str, sources: list[Source], target: str) -> Any:
    """The card of a part (the first member's, in the target framework); an ensemble's members must
    agree on everything but their weights and names."""
    cards = [part_card(source, target) for source in sources]
    keys = ("architecture", "input", "classes", "thresholds", "cascade_class")
    first = {key: cards[0].to_dict()[key] for key in keys}
    for source, card in zip(sources[1:], cards[1:]):
        other = {key: card.to_dict()[key] for key in keys}
        details = _differences(first, other)
        if details:
            raise ParameterError(f"{source.path}: an ensemble's {role} models must share their architecture (padding "
                                 f"and BatchNorm epsilon included), input, classes and thresholds; it differs from "
                                 f"{sources[0].path} in {'; '.join(details)}")
    return cards[0]


def _check_head_parts(head: Any, card: dict[str, Any], members: dict[str, list[Source]]) -> None:
    """Refuse a head trained on other parts: it learned their embeddings and counts, not these."""
    trained_on = {scope: (source or {}).get("sha256") for scope, source in card.get("sources", {}).items()
                  if scope != "head"}
    for role, sources in members.items():
        for scope, source in zip(member_scopes(role, len(sources)), sources):
            if trained_on.get(scope) != source.checkpoint.sha256:
                raise ParameterError(
                    f"{head}: its head was trained on other {role} weights ({scope} sha256 "
                    f"{str(trained_on.get(scope))[:12]}..., here {source.checkpoint.sha256[:12]}... from {source.path}); "
                    f"a head fits only the parts it was trained with: train one for these (slidescope train head)")


def _head_source(head: Any) -> tuple[Checkpoint, HeadSpec, dict[str, Any]]:
    """The trained head of the merged model directory ``head``: its tensors (scope ``head``), spec, description."""
    from .merged import load_merged

    if not is_merged_directory(head):
        raise ParameterError(f"{head}: --head expects a merged model directory whose head was trained "
                             f"(slidescope train head); got something else")
    model = load_merged(head)
    if not model.card.head_trained:
        raise ParameterError(f"{head}: its head was never trained (head_trained is false in card.json)")
    arrays = {k: v for k, v in model.backend.get_arrays().items() if k.startswith(("head.", "head/"))}
    description = {"path": os.path.realpath(os.fspath(head)), "framework": model.card.framework,
                   "sha256": (model.card.weights or {}).get("sha256", ""), "card": model.card.to_dict()}
    return Checkpoint.from_arrays(arrays, framework=model.card.framework, path=os.fspath(head)), model.card.head, description


def merge_models(tissue: Any, cell: Any, *, target: str = "torch", head: Any = None,
                 options: MergeOptions | None = None, name: str = "slidescope-slide-model",
                 seed: int = 0) -> tuple[SlideModel, dict[str, RemapReport]]:
    """Build the merged graph from the ``tissue`` and ``cell`` sources (model directories or checkpoints).

    Parameters
    ----------
    tissue, cell : path
        The parts (see :func:`~slidescope.merge.sources.open_source`).
    target : str
        ``"torch"`` or ``"tf"``: the framework of the merged graph.
    head : path, optional
        A merged model directory whose trained head is taken; without one the head starts untrained
        (seeded) and the card says so.
    options : MergeOptions, optional
        Extra rules, ignores, allowed missing names, leniency.

    Returns
    -------
    (SlideModel, reports)
        The merged model (in memory; :func:`~slidescope.merge.export.write_merged` writes it) and
        each part's report.

    Raises
    ------
    RemapError
        A strict plan with problems (the exception carries that part's whole report).
    CheckpointError, ParameterError
    """
    options = options or MergeOptions()
    if target not in ("torch", "tf"):
        raise ParameterError(f"target: expected torch or tf, got {target!r}")
    members: dict[str, list[Source]] = {}
    for role, given in (("tissue", tissue), ("cell", cell)):
        paths = [given] if isinstance(given, (str, os.PathLike)) else list(given)
        if not paths:
            raise ParameterError(f"{role}: expected at least one model or checkpoint, got none")
        members[role] = [open_source(path, role, options.cards.get(role)) for path in paths]
    for role, sources in members.items():
        hashes = [source.checkpoint.sha256 for source in sources]
        twice = [sources[i].path for i, h in enumerate(hashes) if h in hashes[:i]]
        if twice:
            raise ParameterError(f"{role}: {', '.join(twice)} given twice (the same weights); an ensemble averages "
                                 f"different models")
    cards = {role: _member_card(role, sources, target) for role, sources in members.items()}
    head_checkpoint, head_spec, head_description = None, None, None
    if head is not None:
        head_checkpoint, head_spec, head_description = _head_source(head)
        _check_head_parts(head, head_description["card"], members)
    spec = head_spec or HeadSpec(cards["tissue"].architecture.widths[-1], len(cards["cell"].classes),
                                 classes=tuple(options.head_classes))
    if spec.embedding != cards["tissue"].architecture.widths[-1] or spec.cell_types != len(cards["cell"].classes):
        raise ParameterError(f"{head}: its head takes {spec.embedding} tissue features and {spec.cell_types} cell types; "
                             f"these parts give {cards['tissue'].architecture.widths[-1]} and "
                             f"{len(cards['cell'].classes)}")
    counts = {role: len(sources) for role, sources in members.items()}
    backend = graph_class(target)(cards["tissue"], cards["cell"], spec, seed=seed, members=counts)
    infos = backend.target_infos()
    separator = "." if target == "torch" else "/"
    arrays: dict[str, np.ndarray] = {}
    reports: dict[str, RemapReport] = {}
    extra = Remap(tuple(options.rules), ignore=tuple(options.ignore))
    described: dict[str, Any] = {}
    for role, sources in members.items():
        for scope, source in zip(member_scopes(role, len(sources)), sources):
            scoped = [info for info in infos if info.name.startswith(scope + separator)]
            remap = default_remap(source, target, scope)
            if options.rules or options.ignore:
                remap = extra + remap
            allow = tuple(options.allow_missing) + ((r"\.num_batches_tracked$",) if target == "torch" else ())
            try:
                mapping, report = plan(source.checkpoint, remap, scoped, allow_missing=allow,
                                       strict=not options.lenient, source_name=source.path,
                                       target_name=f"{target} graph, scope {scope}")
            except RemapError as exc:
                raise RemapError(f"{scope} part: {exc}", exc.report) from None
            reports[scope] = report
            arrays.update(apply_plan(source.checkpoint, mapping, scoped))
            described[scope] = source.describe()
            source.checkpoint.close()
    if head_checkpoint is not None:
        scoped = [info for info in infos if info.name.startswith("head" + separator)]
        remap = port(head_checkpoint.framework, target) if head_checkpoint.framework != target else Remap()
        mapping, reports["head"] = plan(head_checkpoint, remap, scoped, source_name=os.fspath(head),
                                        target_name=f"{target} graph, scope head")
        arrays.update(apply_plan(head_checkpoint, mapping, scoped))
        described["head"] = head_description
    else:
        arrays.update({k: v for k, v in backend.get_arrays().items() if k.startswith("head" + separator)})
    backend.load_arrays(arrays)
    card = MergedCard(name=name, framework=target, tissue=cards["tissue"], cell=cards["cell"], head=spec,
                      head_trained=head_checkpoint is not None, members=counts, sources=described,
                      remap={scope: r.to_dict() for scope, r in reports.items()})
    model = SlideModel(card, backend)
    verified = verify_parts(model, members, strict=not options.lenient)
    model.card = card.replace(training={**card.training, "verified_against_sources": verified})
    return model, reports


def verify_parts(model: SlideModel, members: dict[str, list[Source]], *, strict: bool = True) -> dict[str, Any]:
    """Run each part's sources alone and the part in the merged graph on the same sample tiles: tissue
    logits (an ensemble: the mean of its members') and nuclei counts (an ensemble: peaks of the mean
    heatmap and type logits) must agree (:data:`PART_TOLERANCE`).

    Returns per role the largest difference found, or why the check could not run (a source that
    is a bare checkpoint, or whose framework is not installed here); with ``strict`` False, a part
    that disagrees is recorded (``{"error": ...}``) instead of raised.

    Raises
    ------
    CheckpointError
        A part computes something else than its sources: a wrong padding convention or BatchNorm
        epsilon, a layout converted wrongly, tensors mixed up.
    """
    from slidescope.models import FrameworkError, load_model

    from .errors import CheckpointError
    from .export import sample_inputs
    from .head import peak_counts

    coarse, fine, parents, valid = sample_inputs(model.card)
    merged = model.backend.run(coarse, fine, parents, valid)
    results: dict[str, Any] = {}
    for role, sources in members.items():
        if not all(source.from_directory for source in sources):
            results[role] = "not checked: a bare checkpoint has no model to run alone"
            continue
        try:
            alone = [load_model(source.path, device="cpu") for source in sources]
        except FrameworkError as exc:
            results[role] = f"not checked: {exc}"
            continue
        same = all(m.framework == model.card.framework for m in alone)
        tolerance = PART_TOLERANCE["same" if same and len(alone) == 1 else "across"]
        if role == "tissue":
            expected = np.mean(np.stack([m.backend.run(coarse)["logits"] for m in alone]), axis=0)
            difference = float(np.max(np.abs(merged["tissue_logits"].astype(np.float64) - expected)))
            what = "tissue logits"
        else:
            raws = [m.backend.run(fine) for m in alone]
            heat = np.mean(np.stack([raw["heatmap"] for raw in raws]), axis=0)
            types = np.mean(np.stack([raw["types"] for raw in raws]), axis=0)
            logits = model.backend.cell_logits(fine)  # the part's logits, compared as the tissue logits are
            difference = max(float(np.max(np.abs(logits["heatmap"] - heat))),
                             float(np.max(np.abs(logits["types"] - types))))
            what = "heatmap and type logits"
            thresholds = model.card.cell.thresholds
            expected = peak_counts(heat, types, threshold=float(thresholds["nucleus_score"]),
                                   min_distance_px=float(thresholds["min_distance_um"]) / model.card.cell.input.mpp)
            counted = float(np.max(np.abs(merged["cell_counts"].astype(np.float64) - expected)))
            # a peak whose score sits on the threshold may flip across frameworks: one nucleus a tile
            count_tolerance = 0.0 if tolerance == 0.0 else 1.0
            if difference <= tolerance and not counted <= count_tolerance:
                difference, what, tolerance = counted, "nuclei counts", count_tolerance
        if not difference <= tolerance:
            names = ", ".join(source.path for source in sources)
            message = (f"{role} part: the merged graph's {what} differ from {names} run alone by "
                       f"{difference:.3g} (at most {tolerance:g} allowed): the part does not compute what its source "
                       f"computes (padding convention, BatchNorm epsilon, a tensor layout, or tensors left out)")
            if strict:
                raise CheckpointError(message)
            results[role] = {"error": message, "max_difference": difference, "tolerance": tolerance}
            continue
        results[role] = {"max_difference": difference, "tolerance": tolerance,
                         "framework": ",".join(sorted({m.framework for m in alone})), "members": len(alone)}
    return results
