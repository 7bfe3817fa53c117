"""``slidescope inspect`` (what a checkpoint holds, for a person or as JSON) and ``slidescope merge``
(separately trained tissue and cell checkpoints into one slide graph, checked and exported).

The merge package is imported inside the handlers; a reader imports torch or TensorFlow only for
a file of its format.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

__all__ = ["register", "format_checkpoint", "EXIT_REMAP"]

#: Exit status of a merge whose plan has problems (the report is printed on stderr).
EXIT_REMAP = 1


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
    count = totals["tensors"]
    lines += ["", f"{count} tensor{'' if count == 1 else 's'} ({kinds}); {totals['parameters']:,} values; "
                  f"{_size(totals['bytes'])}"]
    return "\n".join(lines)


def _inspect(args: argparse.Namespace) -> int:
    from slidescope.merge import read_checkpoint

    with read_checkpoint(args.checkpoint, format=args.format) as checkpoint:
        summary = checkpoint.to_dict()
    print(json.dumps(summary, indent=2) if args.json else format_checkpoint(summary))
    return 0


def _merge(args: argparse.Namespace) -> int:
    import os
    import sys
    import time

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up lines stay off stderr
    from slidescope.merge import RemapError
    from slidescope.merge.export import check_exports, check_merged_out, write_merged
    from slidescope.merge.merging import MergeOptions, merge_models
    from slidescope.merge.remap import parse_rule
    from slidescope.models.card import ModelCard

    # Everything that can be refused without the work is refused first: the output, the exports.
    exports = check_exports(args.target, args.exports)
    check_merged_out(args.out, overwrite=args.overwrite,
                     sources=[*args.tissue, *args.cell, *([args.head] if args.head else [])])
    cards = {role: ModelCard.load(path) for role, path in (("tissue", args.tissue_card), ("cell", args.cell_card)) if path}
    options = MergeOptions(rules=tuple(parse_rule(rule) for rule in args.rule), ignore=tuple(args.ignore),
                           allow_missing=tuple(args.allow_missing), lenient=args.lenient, cards=cards)
    started = time.perf_counter()
    try:
        model, reports = merge_models(args.tissue, args.cell, target=args.target, head=args.head, options=options,
                                      name=args.name)
    except RemapError as exc:
        print(exc.report.to_text(), file=sys.stderr)
        print(f"slidescope merge: error: {str(exc).splitlines()[0]}; nothing was written (fix the rules, or "
              f"--allow-missing / --lenient to accept it)", file=sys.stderr)
        return EXIT_REMAP
    for role, report in reports.items():
        print(report.to_text() if args.verbose or not report.ok else report.summary())
        for line in report.problem_lines():
            print(f"  accepted ({'lenient' if args.lenient else 'allowed'}): {line}")
    for role, result in model.card.training.get("verified_against_sources", {}).items():
        if isinstance(result, dict) and "error" in result:
            print(f"warning: {result['error']}", file=sys.stderr)
        elif isinstance(result, dict):
            print(f"{role} part: agrees with its source run alone (largest difference {result['max_difference']:.3g})")
        else:
            print(f"{role} part: {result}")
    checks = write_merged(model, args.out, exports=exports, overwrite=args.overwrite)
    for name, worst in checks.items():
        print(f"{name}: reloaded and checked (largest difference {worst:.3g})")
    if not model.card.head_trained:
        print("note: the slide head is untrained (no --head); train it with slidescope train head before trusting "
              "slide-level probabilities")
    print(f"merged {args.target} model written to {args.out} in {time.perf_counter() - started:.1f} s")
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``inspect`` and ``merge`` to the root parser's subcommands."""
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

    merge = commands.add_parser(
        "merge", help="merge tissue and cell checkpoints (any framework) into one slide graph; check and export it",
        description="Each part is a model directory or a bare checkpoint (torch, safetensors, TF, Keras). Its names "
                    "are remapped into the graph's scope (optimiser state and counters dropped, a torch file's "
                    "state_dict/module. unwrapped, names and layouts ported across frameworks); every name, shape "
                    "and dtype is checked and the report printed. Writes one merged checkpoint and card, and the "
                    "exports (torch: .pt2 and ONNX; tf: SavedModel and ONNX), each reloaded and checked.")
    merge.add_argument("--tissue", required=True, nargs="+", metavar="M",
                       help="the tissue model: a model directory or a checkpoint; several make an ensemble (averaged)")
    merge.add_argument("--cell", required=True, nargs="+", metavar="M",
                       help="the cell model: a model directory or a checkpoint; several make an ensemble (averaged)")
    merge.add_argument("--head", metavar="M", help="a merged model directory whose trained head to take")
    merge.add_argument("--target", choices=("torch", "tf"), required=True, help="framework of the merged graph")
    merge.add_argument("--out", required=True,
                       help="the merged model directory to write (created when its parent folder exists)")
    merge.add_argument("--rule", action="append", default=[], metavar="'REGEX=>REPL'",
                       help="rename source tensors (applied first, before the standard remap); repeatable")
    merge.add_argument("--ignore", action="append", default=[], metavar="REGEX",
                       help="leave out source tensors whose names match; repeatable")
    merge.add_argument("--allow-missing", action="append", default=[], metavar="REGEX",
                       help="graph tensors that may stay at their initial values; repeatable")
    merge.add_argument("--lenient", action="store_true", help="report problems instead of refusing the merge")
    merge.add_argument("--tissue-card", metavar="CARD", help="card.json describing a bare tissue checkpoint of "
                                                              "another architecture than the standard one")
    merge.add_argument("--cell-card", metavar="CARD", help="the same for a bare cell checkpoint")
    merge.add_argument("--exports", nargs="*", default=None, metavar="FORMAT",
                       help="exports to write (torch: pt2 onnx; tf: savedmodel onnx; default all; none: --exports)")
    merge.add_argument("--name", default="slidescope-slide-model", help="the merged model's name in its card")
    merge.add_argument("--verbose", action="store_true", help="print every mapping, not only the summaries")
    merge.add_argument("--overwrite", action="store_true", help="replace a merged model directory at --out")
    merge.set_defaults(run=_merge)
