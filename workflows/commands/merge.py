"""``slidescope inspect``: what a checkpoint holds, for a person (or as JSON).

The merge package is imported inside the handler; a reader imports torch or TensorFlow only for
a file of its format.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

__all__ = ["register", "format_checkpoint"]


def _size(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} GiB"


def format_checkpoint(summary: dict[str, Any]) -> str:
    """The ``inspect`` table of a checkpoint summary (``Checkpoint.to_dict()``)."""
    tensors = summary["tensors"]
    rows = [(t["name"], str(tuple(t["shape"])), t["dtype"], t["kind"]) for t in tensors]
    header = ("name", "shape", "dtype", "kind")
    widths = [max([len(header[i])] + [len(row[i]) for row in rows]) for i in range(4)]
    lines = [f"checkpoint  {summary['path']}", f"format      {summary['format']}",
             f"framework   {summary['framework']}"]
    if "sha256" in summary:
        lines.append(f"sha256      {summary['sha256']}")
    lines.append("")
    lines.append("  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip())
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    totals = summary["totals"]
    kinds = ", ".join(f"{n} {kind}" for kind, n in totals["kinds"].items())
    lines += ["", f"{totals['tensors']} tensors ({kinds}); {totals['parameters']:,} values; {_size(totals['bytes'])}"]
    return "\n".join(lines)


def _inspect(args: argparse.Namespace) -> int:
    from slidescope.merge import read_checkpoint

    with read_checkpoint(args.checkpoint, format=args.format) as checkpoint:
        summary = checkpoint.to_dict()
    print(json.dumps(summary, indent=2) if args.json else format_checkpoint(summary))
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``inspect`` to the root parser's subcommands."""
    inspect = commands.add_parser("inspect", help="list what a checkpoint holds: format, framework, every tensor")
    inspect.add_argument("checkpoint", help="a torch file, safetensors, a TensorFlow checkpoint (prefix, .index or "
                                            "folder), Keras .weights.h5/.keras/.h5, or a model directory")
    inspect.add_argument("--format", default="auto",
                         choices=("auto", "torch", "torch-legacy", "safetensors", "tf", "keras-h5", "keras"),
                         help="insist on a format (default: detected from the content)")
    inspect.add_argument("--json", action="store_true",
                         help='print JSON: {"format", "framework", "path", "sha256", "tensors": [{"name", "shape", '
                              '"dtype", "kind"}], "totals"}')
    inspect.set_defaults(run=_inspect)
