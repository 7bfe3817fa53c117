"""``plan``: what a remap does to a checkpoint against a target, every problem at once, and applying it.

:func:`plan` maps each source entry (see :class:`~slidescope.merge.remap.Remap`) and compares the
result with the target's names, shapes and dtypes. Its :class:`RemapReport` lists:

- ``mapped``: source -> target, with the layout transforms and any dtype cast;
- ``ignored``: source entries set aside, each with its reason;
- ``missing``: target names no source entry reached;
- ``unexpected``: mapped names the target does not have;
- ``shape_mismatches``: a source tensor whose (transformed) shape is not the target's;
- ``dtype_casts``: float to float or integer to integer, reported and applied; a cast between
  kinds (float <-> integer, bool) is a ``dtype_mismatches`` problem;
- ``collisions``: two source entries onto one target name.

Strict by default: any problem raises :class:`~slidescope.merge.errors.RemapError` carrying the
whole report. ``allow_missing`` / ``allow_unexpected`` (regexes) accept named exceptions;
``strict=False`` reports problems without raising.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from slidescope.wsi.errors import ParameterError

from .checkpoint import Checkpoint, TensorInfo
from .errors import RemapError
from .remap import Mapped, Remap, Transform

__all__ = ["RemapReport", "plan", "apply_plan", "PROBLEMS"]

#: The report sections that are problems (the others are information).
PROBLEMS = ("missing", "unexpected", "shape_mismatches", "dtype_mismatches", "collisions")


@dataclass
class RemapReport:
    """Everything a remap did and every problem it met (see the module docstring)."""

    source: str
    target: str
    rules: list[str] = field(default_factory=list)
    mapped: list[dict[str, Any]] = field(default_factory=list)
    ignored: list[dict[str, str]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    shape_mismatches: list[dict[str, Any]] = field(default_factory=list)
    dtype_casts: list[dict[str, str]] = field(default_factory=list)
    dtype_mismatches: list[dict[str, str]] = field(default_factory=list)
    collisions: list[dict[str, Any]] = field(default_factory=list)
    allowed_missing: list[str] = field(default_factory=list)
    allowed_unexpected: list[str] = field(default_factory=list)

    @property
    def problem_count(self) -> int:
        return sum(len(getattr(self, section)) for section in PROBLEMS)

    @property
    def ok(self) -> bool:
        return self.problem_count == 0

    def summary(self) -> str:
        """One line: the counts of every section."""
        parts = [f"{len(self.mapped)} mapped", f"{len(self.ignored)} ignored"]
        parts += [f"{len(getattr(self, s))} {s.replace('_', ' ')}" for s in PROBLEMS if getattr(self, s)]
        if self.dtype_casts:
            parts.append(f"{len(self.dtype_casts)} dtype casts")
        if self.allowed_missing:
            parts.append(f"{len(self.allowed_missing)} missing but allowed (left at their initial values)")
        if self.allowed_unexpected:
            parts.append(f"{len(self.allowed_unexpected)} unexpected but allowed (not loaded)")
        return f"{self.source} -> {self.target}: " + ", ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "target": self.target, "ok": self.ok, "rules": self.rules,
                "mapped": self.mapped, "ignored": self.ignored, "missing": self.missing,
                "unexpected": self.unexpected, "shape_mismatches": self.shape_mismatches,
                "dtype_casts": self.dtype_casts, "dtype_mismatches": self.dtype_mismatches,
                "collisions": self.collisions, "allowed_missing": self.allowed_missing,
                "allowed_unexpected": self.allowed_unexpected}

    def problem_lines(self, limit: int | None = None) -> list[str]:
        """One line per problem (at most ``limit``, then how many more)."""
        lines = [f"missing: {name}" for name in self.missing]
        lines += [f"unexpected: {name}" for name in self.unexpected]
        lines += [f"shape mismatch: {m['source']} -> {m['target']}: expected {tuple(m['expected'])}, got "
                  f"{tuple(m['got'])}" for m in self.shape_mismatches]
        lines += [f"dtype mismatch: {m['source']} -> {m['target']}: expected {m['expected']}, got {m['got']}"
                  for m in self.dtype_mismatches]
        lines += [f"collision: {', '.join(c['sources'])} -> {c['target']}" for c in self.collisions]
        if limit is not None and len(lines) > limit:
            lines = lines[:limit] + [f"... and {len(lines) - limit} more"]
        return lines

    def to_text(self) -> str:
        """The report as a plain-text table: every mapping, every ignored entry, every problem."""
        rows = [("mapped", m["source"], m["target"], ", ".join(m["transforms"] + ([m["cast"]] if m.get("cast") else [])))
                for m in self.mapped]
        rows += [("ignored", i["source"], "", i["reason"]) for i in self.ignored]
        rows += [("MISSING", "", name, "") for name in self.missing]
        rows += [("UNEXPECTED", m, "", "") for m in self.unexpected]
        rows += [("SHAPE", m["source"], m["target"], f"expected {tuple(m['expected'])}, got {tuple(m['got'])}")
                 for m in self.shape_mismatches]
        rows += [("DTYPE", m["source"], m["target"], f"expected {m['expected']}, got {m['got']}")
                 for m in self.dtype_mismatches]
        rows += [("COLLISION", " + ".join(c["sources"]), c["target"], "") for c in self.collisions]
        rows += [("allowed", "", name, "missing, allowed") for name in self.allowed_missing]
        rows += [("allowed", name, "", "unexpected, allowed") for name in self.allowed_unexpected]
        header = ("status", "source", "target", "note")
        widths = [max(len(header[i]), *(len(row[i]) for row in rows)) if rows else len(header[i]) for i in range(4)]
        lines = ["  ".join(cell.ljust(width) for cell, width in zip(header, widths)).rstrip()]
        lines += ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
        return "\n".join(lines + ["", self.summary()])


def _compiled(pattern: str, option: str) -> "re.Pattern[str]":
    try:
        return re.compile(pattern)
    except (re.error, TypeError) as exc:
        raise ParameterError(f"{option} pattern {pattern!r}: not a valid regular expression: {exc}") from None


def _infos(entries: Any) -> list[TensorInfo]:
    """The entries of a checkpoint, a ``name -> TensorInfo`` mapping or a sequence of them."""
    if isinstance(entries, Checkpoint):
        return list(entries.infos)
    return list(entries.values() if isinstance(entries, Mapping) else entries)


def _casts(source: str, target: str) -> str | None:
    """None when ``source`` may become ``target`` (same kind of number), else why not."""
    a, b = np.dtype(source), np.dtype(target)
    if a == b:
        return None
    if a.kind == b.kind or (a.kind in "iu" and b.kind in "iu"):
        return None
    return f"{a.name} cannot become {b.name}"


def plan(source: Checkpoint | Sequence[TensorInfo], remap: Remap, target: Mapping[str, TensorInfo] | Sequence[TensorInfo],
         *, allow_missing: Sequence[str] = (), allow_unexpected: Sequence[str] = (), strict: bool = True,
         source_name: str | None = None, target_name: str = "target") -> tuple[dict[str, Mapped], RemapReport]:
    """Map ``source`` onto ``target`` with ``remap``; returns ``target name -> Mapped`` and the report.

    Parameters
    ----------
    source : Checkpoint or sequence of TensorInfo
        What is loaded from.
    remap : Remap
        The rules.
    target : mapping or sequence of TensorInfo
        The names, shapes and dtypes to fill (a checkpoint, or a graph's own list).
    allow_missing, allow_unexpected : sequence of str
        Regexes of target names that may stay unfilled, and of mapped names the target may lack.
    strict : bool
        Raise :class:`RemapError` (with the report) on any problem left.

    Raises
    ------
    RemapError
    """
    infos = _infos(source)
    targets = {info.name: info for info in _infos(target)}
    label = source_name or (source.path if isinstance(source, Checkpoint) else "source")
    report = RemapReport(label, target_name, rules=remap.describe())
    by_target: dict[str, list[tuple[Mapped, TensorInfo]]] = {}
    source_infos = {info.name: info for info in infos}
    for mapped in remap.map(infos):
        if mapped.target is None:
            report.ignored.append({"source": mapped.source, "reason": mapped.reason or ""})
        else:
            by_target.setdefault(mapped.target, []).append((mapped, source_infos[mapped.source]))
    mapping: dict[str, Mapped] = {}
    allow_m = [_compiled(p, "allow_missing") for p in allow_missing]
    allow_u = [_compiled(p, "allow_unexpected") for p in allow_unexpected]
    for name, entries in by_target.items():
        if len(entries) > 1:
            report.collisions.append({"target": name, "sources": [m.source for m, _ in entries]})
            continue
        mapped, info = entries[0]
        if name not in targets:
            (report.allowed_unexpected if any(p.search(name) for p in allow_u) else report.unexpected).append(name)
            continue
        shape = info.shape
        for transform in mapped.transforms:
            shape = transform.shape(shape)
        want = targets[name]
        if tuple(shape) != tuple(want.shape):
            report.shape_mismatches.append({"source": mapped.source, "target": name, "expected": list(want.shape),
                                            "got": list(shape)})
            continue
        problem = _casts(info.dtype, want.dtype)
        if problem is not None:
            report.dtype_mismatches.append({"source": mapped.source, "target": name, "expected": want.dtype,
                                            "got": info.dtype})
            continue
        cast = None
        if info.dtype != want.dtype:
            cast = f"{info.dtype} -> {want.dtype}"
            report.dtype_casts.append({"source": mapped.source, "target": name, "from": info.dtype, "to": want.dtype})
        mapping[name] = mapped
        report.mapped.append({"source": mapped.source, "target": name, "transforms": [t.name for t in mapped.transforms],
                              **({"cast": cast} if cast else {})})
    for name in targets:
        if name not in by_target:
            (report.allowed_missing if any(p.search(name) for p in allow_m) else report.missing).append(name)
    if strict and not report.ok:
        raise RemapError(f"{report.summary()}\n" + "\n".join(report.problem_lines(limit=20)), report)
    return mapping, report


def apply_plan(source: Checkpoint, mapping: Mapping[str, Mapped],
               target: Mapping[str, TensorInfo] | Sequence[TensorInfo]) -> Iterator[tuple[str, np.ndarray]]:
    """``(target name, array)`` for every planned entry, in the target's order, one tensor at a time
    (read, transformed, cast to the target's dtype)."""
    for info in _infos(target):
        mapped = mapping.get(info.name)
        if mapped is None:
            continue
        array = source[mapped.source]
        transform: Transform
        for transform in mapped.transforms:
            array = transform.apply(array)
        if array.dtype != np.dtype(info.dtype):
            array = array.astype(info.dtype)
        yield info.name, array
