"""``slidescope demo``: the built-in default job: generated slides through ``slidescope run`` (needs no data)."""

from __future__ import annotations

import argparse
import sys

from ._options import POSITIVE_INT

__all__ = ["register"]


def _demo(args: argparse.Namespace) -> int:
    from ..demo import run_demo
    from ..outputs import check_output_folder
    from ..run_display import BatchDisplay

    folder = check_output_folder(args.out)
    display = BatchDisplay(quiet=False)
    with display.running():
        frame = run_demo(folder, width=args.width, height=args.height, workers=args.workers, stream=sys.stdout,
                         events=display.events())
    display.summary(frame, str(folder / "run"))
    print("the corrupt slide's error row is expected: a bad slide never stops the batch")
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``demo`` to the root parser's subcommands."""
    demo = commands.add_parser("demo", help="the built-in default job: generated slides through slidescope run")
    demo.add_argument("--out", default="demo-output", help="output folder (default demo-output)")
    demo.add_argument("--width", type=POSITIVE_INT, default=8192, help="width of the generated slides (default 8192)")
    demo.add_argument("--height", type=POSITIVE_INT, default=6144, help="height (default 6144)")
    demo.add_argument("--workers", type=POSITIVE_INT, default=None, help="local Dask workers (default: one per core)")
    demo.set_defaults(run=_demo)
