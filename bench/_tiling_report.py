"""Targets, statistics and the printed table of the tiling benchmark."""

from __future__ import annotations

import json
import os
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = ["Target", "spread", "render_table", "write_json"]


def spread(values: list[float]) -> dict[str, Any]:
    """Median, min, max and all values of repeated timings (the median is what is judged)."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": list(values)}


@dataclass
class Target:
    """One figure of the issue with its threshold; ``value`` None means it could not be measured."""

    key: str
    name: str
    value: float | None
    threshold: float
    op: str  # ">=", "<=" or "<"
    unit: str = "x"
    detail: str = ""

    @property
    def passed(self) -> bool | None:
        if self.value is None:
            return None
        return {">=": self.value >= self.threshold, "<=": self.value <= self.threshold,
                "<": self.value < self.threshold}[self.op]

    @property
    def verdict(self) -> str:
        return {True: "PASS", False: "FAIL", None: "n/a"}[self.passed]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed, "verdict": self.verdict}


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "s":
        return f"{value:.3f} s"
    return f"{value:.2f}{unit}"


def render_table(targets: list[Target]) -> str:
    """A fixed-width table: target, figure, measured value, threshold, PASS/FAIL, detail."""
    rows = [("#", "target", "measured", "needed", "verdict", "figures")]
    for t in targets:
        rows.append((t.key, t.name, _fmt(t.value, t.unit), f"{t.op} {_fmt(t.threshold, t.unit)}", t.verdict, t.detail))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = []
    for k, row in enumerate(rows):
        cells = [row[i].ljust(widths[i]) for i in range(5)]
        lines.append("  ".join(cells) + "  " + row[5])
        if k == 0:
            lines.append("  ".join("-" * w for w in widths) + "  " + "-" * 7)
    return "\n".join(lines)


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` as indented JSON, atomically (temporary file, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=_default) + "\n")
    os.replace(tmp, path)


def _default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
