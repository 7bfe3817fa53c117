"""``slidescope demo``: the built-in default job on generated slides (needs no data)."""

from __future__ import annotations

import argparse
import sys

from ._options import POSITIVE_INT

__all__ = ["register"]


def _demo(args: argparse.Namespace) -> int:
    from ..demo import run_demo
    from ..outputs import check_output_folder

    folder = check_output_folder(args.out)
    run_demo(folder, slides=args.slides, width=args.width, height=args.height, tiles=args.tiles, stream=sys.stdout)
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``demo`` to the root parser's subcommands."""
    demo = commands.add_parser("demo", help="the built-in default job on generated slides")
    demo.add_argument("--out", default="demo-output", help="output folder (default demo-output)")
    demo.add_argument("--slides", type=POSITIVE_INT, default=2)
    demo.add_argument("--width", type=POSITIVE_INT, default=12000)
    demo.add_argument("--height", type=POSITIVE_INT, default=9000)
    demo.add_argument("--tiles", type=POSITIVE_INT, default=512)
    demo.set_defaults(run=_demo)
