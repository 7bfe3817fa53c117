"""``slidescope info`` and ``slidescope synth``: describe a slide, write a synthetic one.

Only argparse is imported at module level; each handler imports what it uses, so ``info`` loads
the slide backends and nothing of tiling, Dask or the model frameworks.
"""

from __future__ import annotations

import argparse
import json

from slidescope.wsi.validation import parse_int, parse_positive_float

from ._options import FRACTION, MPP, SEED, add_overwrite_option, add_slide_argument, add_slide_options, option_type

__all__ = ["register", "SYNTH_EDGE_RANGE", "SYNTH_NUCLEUS_SCALE_MAX", "SYNTH_NUCLEUS_DENSITY_MAX"]

#: Width and height ``make_slide`` accepts, in level-0 pixels (its MIN_SIZE and MAX_SIZE; a test
#: keeps them equal). Repeated here so that building the parser does not import the generator.
SYNTH_EDGE_RANGE = (64, 2**18)
SYNTH_EDGE = option_type(parse_int, "slide edge", minimum=SYNTH_EDGE_RANGE[0], maximum=SYNTH_EDGE_RANGE[1])
#: Largest ``--nucleus-scale`` and ``--nucleus-density`` (``make_slide``'s MAX_NUCLEUS_SCALE and
#: MAX_NUCLEUS_DENSITY, repeated for the same reason).
SYNTH_NUCLEUS_SCALE_MAX, SYNTH_NUCLEUS_DENSITY_MAX = 4.0, 8.0
NUCLEUS_SCALE = option_type(parse_positive_float, "nucleus scale", maximum=SYNTH_NUCLEUS_SCALE_MAX)
NUCLEUS_DENSITY = option_type(parse_positive_float, "nucleus density", maximum=SYNTH_NUCLEUS_DENSITY_MAX)


def _info(args: argparse.Namespace) -> int:
    from slidescope.wsi import open_slide

    from ..info import format_summary, slide_summary

    with open_slide(args.slide, backend=args.backend, mpp=args.slide_mpp, require_mpp=False) as slide:
        summary = slide_summary(slide)
    print(json.dumps(summary, indent=2) if args.json else format_summary(summary))
    return 0


def _synth(args: argparse.Namespace) -> int:
    from slidescope.wsi.synthetic import make_slide, truth_path_for

    from ..outputs import SLIDE, SYNTHETIC_TRUTH, check_output

    slide_target = check_output(args.out, SLIDE, overwrite=args.overwrite, option="out")
    truth_target = check_output(truth_path_for(slide_target.path), SYNTHETIC_TRUTH, overwrite=args.overwrite,
                                option="out (its ground truth)")
    with slide_target.writing(), truth_target.writing():
        made = make_slide(slide_target.path, args.width, args.height, seed=args.seed, tumour=not args.no_tumour,
                          pen_marks=args.pen_marks, mpp=args.mpp, stain_shift=args.stain_shift,
                          nucleus_scale=args.nucleus_scale, nucleus_density=args.nucleus_density)
    print(f"wrote {made.path} ({made.width} x {made.height} px at {made.mpp} µm/px); ground truth in {made.truth_path}")
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``info`` and ``synth`` to the root parser's subcommands."""
    info = commands.add_parser("info", help="vendor, dimensions, levels, mpp and associated images of a slide")
    add_slide_argument(info)
    info.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_slide_options(info)
    info.set_defaults(run=_info)

    synth = commands.add_parser("synth", help="write a synthetic H&E-like Aperio SVS with ground truth")
    synth.add_argument("out", help="output .svs path (its ground truth is written beside it as .truth.npz)")
    edges = f"level-0 px, {SYNTH_EDGE_RANGE[0]} to {SYNTH_EDGE_RANGE[1]}"
    synth.add_argument("--width", type=SYNTH_EDGE, required=True, help=edges)
    synth.add_argument("--height", type=SYNTH_EDGE, required=True, help=edges)
    synth.add_argument("--seed", type=SEED, default=0)
    synth.add_argument("--mpp", type=MPP, default=0.25, help="µm per pixel of level 0 (default 0.25)")
    synth.add_argument("--no-tumour", action="store_true", help="no tumour regions")
    synth.add_argument("--pen-marks", action="store_true", help="draw pen marks")
    synth.add_argument("--stain-shift", type=FRACTION, default=None, metavar="X",
                       help="domain shift: stain colours as another lab's H&E, 0 (none, the default) to 1")
    synth.add_argument("--nucleus-scale", type=NUCLEUS_SCALE, default=1.0, metavar="X",
                       help=f"domain shift: multiply nucleus sizes, > 0 and at most {SYNTH_NUCLEUS_SCALE_MAX:g} "
                            "(default 1)")
    synth.add_argument("--nucleus-density", type=NUCLEUS_DENSITY, default=1.0, metavar="X",
                       help=f"domain shift: multiply nuclei per area, > 0 and at most {SYNTH_NUCLEUS_DENSITY_MAX:g} "
                            "(default 1)")
    add_overwrite_option(synth, "an existing slide (and its ground truth); a file that is not a slide is never "
                                "replaced")
    synth.set_defaults(run=_synth)
