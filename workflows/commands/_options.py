"""Options shared by several commands, and argparse types that validate through ``wsi.validation``.

``type=float`` would let ``nan``, ``inf`` and ``1e400`` through; every numeric option here is read
as a number and then checked by the same ``parse_*`` function the Python API uses, and a bad value
is an argparse error naming the option (``argument --mpp: expected a number > 0 ..., got nan``).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from slidescope.wsi.errors import ParameterError
from slidescope.wsi.validation import (
    MAX_MPP,
    parse_fraction,
    parse_non_negative_int,
    parse_positive_float,
    parse_positive_int,
)

__all__ = [
    "MPP",
    "POSITIVE_INT",
    "NON_NEGATIVE_INT",
    "SEED",
    "FRACTION",
    "add_slide_argument",
    "add_slide_options",
    "add_exact_resample_option",
    "add_method_option",
    "add_overwrite_option",
]

#: Integers beyond this are read as floats, so the validators see ``inf`` rather than an int that
#: no float can hold.
_LARGEST_EXACT_INT = 2**63


def _number(text: str) -> int | float:
    """The number a command-line word spells: ``"256"`` -> 256, ``"0.5"`` -> 0.5, ``"nan"`` -> nan."""
    try:
        value: int | float = int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    return float(text) if abs(value) > _LARGEST_EXACT_INT else value


def option_type(parse: Callable[..., Any], name: str, **bounds: Any) -> Callable[[str], Any]:
    """An argparse ``type=`` that reads a number and validates it with ``parse(value, what, **bounds)``.

    Parameters
    ----------
    parse
        One of the ``slidescope.wsi.validation.parse_*`` functions.
    name
        What argparse calls the type in its own messages.
    bounds
        Keyword arguments for ``parse`` (``maximum=`` ...).
    """
    what = "value"

    def convert(text: str) -> Any:
        try:
            return parse(_number(text), what, **bounds)
        except ParameterError as exc:  # argparse prefixes "argument --option: " itself
            raise argparse.ArgumentTypeError(str(exc).removeprefix(f"{what}: ")) from None

    convert.__name__ = name
    return convert


#: Microns per pixel: ``> 0`` and at most :data:`~slidescope.wsi.validation.MAX_MPP`.
MPP = option_type(parse_positive_float, "mpp", maximum=MAX_MPP)
#: Sizes and counts: an integer ``>= 1``.
POSITIVE_INT = option_type(parse_positive_int, "positive integer")
#: Overlaps and margins: an integer ``>= 0``.
NON_NEGATIVE_INT = option_type(parse_non_negative_int, "non-negative integer")
#: Random seeds: an integer in ``[0, 2**63 - 1]``.
SEED = option_type(parse_non_negative_int, "seed", maximum=2**63 - 1)
#: Fractions: a number in ``[0, 1]``.
FRACTION = option_type(parse_fraction, "fraction")


def add_slide_argument(parser: argparse.ArgumentParser) -> None:
    """The positional slide path."""
    parser.add_argument("slide", help="path of the slide file")


def add_slide_options(parser: argparse.ArgumentParser) -> None:
    """``--backend`` and ``--slide-mpp``, as every command that opens a slide takes them."""
    parser.add_argument("--backend", default="auto", help="auto (default), openslide or tiff")
    parser.add_argument("--slide-mpp", type=MPP, default=None, metavar="MPP",
                        help="µm per pixel of level 0, for files without it (or to override it)")


def add_exact_resample_option(parser: argparse.ArgumentParser) -> None:
    """``--exact-resample``: full JPEG decodes for every shrinking read (``open_slide(exact_resample=True)``)."""
    parser.add_argument("--exact-resample", action="store_true",
                        help="decode stored tiles in full before shrinking (default: JPEG tiles are decoded "
                             "2-8x smaller where a read shrinks them by a whole factor; see the README)")


def add_method_option(parser: argparse.ArgumentParser) -> None:
    """``--method`` of tissue detection."""
    parser.add_argument(
        "--method", default="auto", choices=("auto", "otsu", "ihc", "fluorescence"),
        help="tissue detection: auto (default: H&E on brightfield slides, an error on dark-field ones), "
             "otsu (H&E), ihc, or fluorescence (tissue by brightness)",
    )


def add_overwrite_option(parser: argparse.ArgumentParser, replaces: str) -> None:
    """``--overwrite``; ``replaces`` says what it allows replacing."""
    parser.add_argument("--overwrite", action="store_true", help=f"replace {replaces}")
