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
    with open_slide(args.slide, backend=args.backend, mpp=args.slide_mpp) as slide:
        summary = slide_summary(slide)
    print(json.dumps(summary, indent=2) if args.json else format_summary(summary))
    return 0


def _cmd_synth(args: argparse.Namespace) -> int:
    from slidescope.wsi.synthetic import make_slide

    made = make_slide(args.out, args.width, args.height, seed=args.seed, tumour=not args.no_tumour,
                      pen_marks=args.pen_marks, mpp=args.mpp)
    print(f"wrote {made.path} ({made.width} x {made.height} px at {made.mpp} µm/px); ground truth in {made.truth_path}")
    return 0


def _cmd_tissue(args: argparse.Namespace) -> int:
    from slidescope.tiling.tissue import tissue_mask

    with open_slide(args.slide, backend=args.backend, mpp=args.slide_mpp) as slide:
        mask = tissue_mask(slide, mpp=args.mpp, method=args.method)
    mask.to_png(args.out)
    height, width = mask.shape
    print(f"wrote {args.out}: {width} x {height} px at {mask.mpp:g} µm/px, tissue {100 * mask.fraction:.1f} % "
          f"of the slide")
    return 0


def _cmd_tile(args: argparse.Namespace) -> int:
    from slidescope.tiling.plan import plan_tiles
    from slidescope.tiling.scales import Scale, parse_scale
    from slidescope.tiling.tissue import tissue_mask

    scales = [parse_scale(text) for text in args.scale]
    if args.mpp is not None:
        scales.append(Scale(args.mpp, args.tile, args.overlap, args.context))
    if not scales:
        raise SlideError("tile: expected --mpp MPP (with --tile) or at least one --scale MPP:TILE[:OVERLAP[:CONTEXT]]")
    with open_slide(args.slide, backend=args.backend, mpp=args.slide_mpp) as slide:
        mask = None if args.no_mask else tissue_mask(slide, mpp=args.mask_mpp, method=args.method)
        plan = plan_tiles(slide, mask, scales, min_tissue=args.min_tissue)
    plan.save(args.out)
    for index, scale in enumerate(plan.scales):
        print(f"scale {index}: {scale.tile} px at {scale.mpp:g} µm/px (overlap {scale.overlap}, context "
              f"{scale.context}): {len(plan.tiles(index))} tiles")
    print(f"wrote {args.out} ({len(plan)} tiles)")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(Path(args.out), slides=args.slides, width=args.width, height=args.height, tiles=args.tiles,
             stream=sys.stdout)
    return 0


def _add_mask_and_slide_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--method", default="otsu", help="tissue detection: otsu (H&E, default) or ihc")
    parser.add_argument("--backend", default="auto", help="auto (default), openslide or tiff")
    parser.add_argument("--slide-mpp", type=float, default=None, help="µm per pixel of level 0, for files without it")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="slidescope", description="Whole-slide pathology image pipeline.")
    commands = parser.add_subparsers(dest="command", required=True)

    info = commands.add_parser("info", help="vendor, dimensions, levels, mpp and associated images of a slide")
    info.add_argument("slide", help="path of the slide file")
    info.add_argument("--json", action="store_true", help="print JSON instead of a table")
    info.add_argument("--backend", default="auto", help="auto (default), openslide or tiff")
    info.add_argument("--slide-mpp", type=float, default=None, help="µm per pixel of level 0, for files without it")
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

    tissue = commands.add_parser("tissue", help="write the tissue mask of a slide as a PNG (tissue non-zero)")
    tissue.add_argument("slide", help="path of the slide file")
    tissue.add_argument("--out", required=True, help="output PNG path")
    tissue.add_argument("--mpp", type=float, default=8.0, help="µm per mask pixel (default 8)")
    _add_mask_and_slide_options(tissue)
    tissue.set_defaults(run=_cmd_tissue)

    tile = commands.add_parser("tile", help="plan tiles at one or more scales and write the plan as Parquet")
    tile.add_argument("slide", help="path of the slide file")
    tile.add_argument("--out", required=True, help="output Parquet path")
    tile.add_argument("--mpp", type=float, default=None, help="target µm per pixel of a single scale")
    tile.add_argument("--tile", type=int, default=256, help="tile size in target pixels (default 256)")
    tile.add_argument("--overlap", type=int, default=0, help="overlap in target pixels (default 0)")
    tile.add_argument("--context", type=int, default=0, help="context margin in target pixels (default 0)")
    tile.add_argument("--scale", action="append", default=[], metavar="MPP:TILE[:OVERLAP[:CONTEXT]]",
                      help="a scale; repeat for a multi-scale plan (fine tiles nest in coarse ones)")
    tile.add_argument("--min-tissue", type=float, default=0.25, help="minimum tissue fraction (default 0.25)")
    tile.add_argument("--mask-mpp", type=float, default=8.0, help="µm per pixel of the tissue mask (default 8)")
    tile.add_argument("--no-mask", action="store_true", help="keep every tile, tissue or not")
    _add_mask_and_slide_options(tile)
    tile.set_defaults(run=_cmd_tile)

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
    except (SlideError, KeyError, OSError) as exc:  # OSError: outputs that cannot be written
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"slidescope {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
