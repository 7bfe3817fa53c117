"""``slidescope tissue`` and ``slidescope tile``: a slide's tissue mask (PNG) and tile plan (Parquet).

The tiling package is imported inside the handlers, so other commands never load it.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from ._options import (
    FRACTION,
    MPP,
    NON_NEGATIVE_INT,
    POSITIVE_INT,
    add_method_option,
    add_overwrite_option,
    add_slide_argument,
    add_exact_resample_option,
    add_slide_options,
)

if TYPE_CHECKING:
    from slidescope.tiling import TilePlan, TissueMask

__all__ = ["register"]


def _tissue(args: argparse.Namespace) -> int:
    from slidescope.tiling.tissue import tissue_mask
    from slidescope.wsi import open_slide

    from ..outputs import PNG_MASK, check_output

    target = check_output(args.out, PNG_MASK, inputs=[args.slide], overwrite=args.overwrite)
    with open_slide(args.slide, backend=args.backend, mpp=args.slide_mpp, exact_resample=args.exact_resample) as slide:
        mask = tissue_mask(slide, mpp=args.mpp, method=args.method)
    with target.writing():
        mask.to_png(target.path)
    height, width = mask.shape
    print(f"wrote {target.path}: {width} x {height} px at {mask.mpp:g} µm/px, tissue {100 * mask.fraction:.1f} % "
          f"of the slide")
    return 0


def _tile(args: argparse.Namespace) -> int:
    from slidescope.tiling.plan import plan_tiles
    from slidescope.tiling.scales import Scale, parse_scale
    from slidescope.tiling.tissue import tissue_mask
    from slidescope.wsi import ParameterError, open_slide

    from ..outputs import TILE_PLAN, check_output

    scales = []
    for text in args.scale:
        try:
            scales.append(parse_scale(text))
        except ParameterError as exc:
            raise ParameterError(f"--scale {text}: {exc}") from None
    if args.mpp is not None:
        try:
            scales.append(Scale(args.mpp, args.tile, args.overlap, args.context))
        except ParameterError as exc:
            raise ParameterError(f"--mpp {args.mpp:g} --tile {args.tile} --overlap {args.overlap} "
                                 f"--context {args.context}: {exc}") from None
    if not scales:
        raise ParameterError("tile: expected --mpp MPP (with --tile) or at least one --scale "
                             "MPP:TILE[:OVERLAP[:CONTEXT]]")
    target = check_output(args.out, TILE_PLAN, inputs=[args.slide], overwrite=args.overwrite)
    with open_slide(args.slide, backend=args.backend, mpp=args.slide_mpp, exact_resample=args.exact_resample) as slide:
        mask = None if args.no_mask else tissue_mask(slide, mpp=args.mask_mpp, method=args.method)
        plan = plan_tiles(slide, mask, scales, min_tissue=args.min_tissue)
    with target.writing():
        plan.save(target.path)
    for index, scale in enumerate(plan.scales):
        print(f"scale {index}: {scale.tile} px at {scale.mpp:g} µm/px (overlap {scale.overlap}, context "
              f"{scale.context}): {len(plan.tiles(index))} tiles")
    print(f"wrote {target.path} ({len(plan)} tiles)")
    _warn_if_empty(plan, mask, args)
    return 0


def _warn_if_empty(plan: "TilePlan", mask: "TissueMask | None", args: argparse.Namespace) -> None:
    """Say on stderr why a scale kept no tile: the plan is written, but a lab should not miss it."""
    import sys

    empty = [index for index, _ in enumerate(plan.scales) if len(plan.tiles(index)) == 0]
    if not empty:
        return
    tissue = "no mask" if mask is None else f"tissue {100 * mask.fraction:.1f} % of the slide"
    width_um = plan.slide.dimensions[0] * plan.slide.mpp[0] if plan.slide.mpp else None
    for index in empty:
        scale = plan.scales[index]
        reason = f"({tissue}, --min-tissue {args.min_tissue:g})"
        if width_um is not None and scale.tile * scale.mpp > width_um:
            reason += f"; its {scale.tile * scale.mpp:g} µm tiles are wider than the slide ({width_um:g} µm)"
        print(f"slidescope tile: warning: scale {index} ({scale.tile} px at {scale.mpp:g} µm/px) kept no tile "
              f"{reason}", file=sys.stderr)


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``tissue`` and ``tile`` to the root parser's subcommands."""
    tissue = commands.add_parser("tissue", help="write the tissue mask of a slide as a PNG (tissue non-zero)")
    add_slide_argument(tissue)
    tissue.add_argument("--out", required=True, help="output PNG path")
    tissue.add_argument("--mpp", type=MPP, default=8.0, help="µm per mask pixel (default 8)")
    add_method_option(tissue)
    add_slide_options(tissue)
    add_exact_resample_option(tissue)
    add_overwrite_option(tissue, "an existing file that is not a slidescope mask PNG (never the slide itself)")
    tissue.set_defaults(run=_tissue)

    tile = commands.add_parser("tile", help="plan tiles at one or more scales and write the plan as Parquet")
    add_slide_argument(tile)
    tile.add_argument("--out", required=True, help="output Parquet path")
    tile.add_argument("--mpp", type=MPP, default=None, help="target µm per pixel of a single scale")
    tile.add_argument("--tile", type=POSITIVE_INT, default=256, help="tile size in target pixels (default 256)")
    tile.add_argument("--overlap", type=NON_NEGATIVE_INT, default=0, help="overlap in target pixels (default 0)")
    tile.add_argument("--context", type=NON_NEGATIVE_INT, default=0,
                      help="context margin in target pixels (default 0)")
    tile.add_argument("--scale", action="append", default=[], metavar="MPP:TILE[:OVERLAP[:CONTEXT]]",
                      help="a scale; repeat for a multi-scale plan (fine tiles nest in coarse ones)")
    tile.add_argument("--min-tissue", type=FRACTION, default=0.25, help="minimum tissue fraction (default 0.25)")
    tile.add_argument("--mask-mpp", type=MPP, default=8.0, help="µm per pixel of the tissue mask (default 8)")
    tile.add_argument("--no-mask", action="store_true", help="keep every tile, tissue or not")
    add_method_option(tile)
    add_slide_options(tile)
    add_exact_resample_option(tile)
    add_overwrite_option(tile, "an existing file that is not a slidescope tile plan (never the slide itself)")
    tile.set_defaults(run=_tile)
