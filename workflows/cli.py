"""The ``slidescope`` command line."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from slidescope.wsi import SlideError, open_slide

from .info import format_summary, slide_summary

__all__ = ["main", "build_parser"]


def _cmd_info(args: argparse.Namespace) -> int:
    with open_slide(args.slide, backend=args.backend, mpp=args.mpp) as slide:
        summary = slide_summary(slide)
    print(json.dumps(summary, indent=2) if args.json else format_summary(summary))
    return 0


def _cmd_synth(args: argparse.Namespace) -> int:
    from slidescope.wsi.synthetic import make_slide

    made = make_slide(args.out, args.width, args.height, seed=args.seed, tumour=not args.no_tumour,
                      pen_marks=args.pen_marks, mpp=args.mpp)
    print(f"wrote {made.path} ({made.width} x {made.height} px at {made.mpp} µm/px); ground truth in {made.truth_path}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(Path(args.out), slides=args.slides, width=args.width, height=args.height, tiles=args.tiles,
             stream=sys.stdout)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="slidescope", description="Whole-slide pathology image pipeline.")
    commands = parser.add_subparsers(dest="command", required=True)

    info = commands.add_parser("info", help="vendor, dimensions, levels, mpp and associated images of a slide")
    info.add_argument("slide", help="path of the slide file")
    info.add_argument("--json", action="store_true", help="print JSON instead of a table")
    info.add_argument("--backend", default="auto", help="auto (default), openslide or tiff")
    info.add_argument("--mpp", type=float, default=None, help="µm per pixel of level 0, for files without it")
    info.set_defaults(run=_cmd_info)

    synth = commands.add_parser("synth", help="write a synthetic H&E-like Aperio SVS with ground truth")
    synth.add_argument("out", help="output .svs path")
    synth.add_argument("--width", type=int, required=True)
    synth.add_argument("--height", type=int, required=True)
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--mpp", type=float, default=0.25, help="µm per pixel of level 0 (default 0.25)")
    synth.add_argument("--no-tumour", action="store_true", help="no tumour regions")
    synth.add_argument("--pen-marks", action="store_true", help="draw pen marks")
    synth.set_defaults(run=_cmd_synth)

    demo = commands.add_parser("demo", help="the built-in default job on generated slides")
    demo.add_argument("--out", default="demo-output", help="output folder (default demo-output)")
    demo.add_argument("--slides", type=int, default=2)
    demo.add_argument("--width", type=int, default=12000)
    demo.add_argument("--height", type=int, default=9000)
    demo.add_argument("--tiles", type=int, default=512)
    demo.set_defaults(run=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``slidescope`` command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except (SlideError, KeyError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"slidescope {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
