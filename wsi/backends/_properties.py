"""The standard ``openslide.*`` properties, written the way OpenSlide writes them.

Every backend reports the same keys with the same text for the same file, so code that looks
up ``slide.properties["openslide.mpp-x"]`` works whichever backend opened the slide. The
formats follow OpenSlide 4: doubles as C ``%.17g`` (``g_ascii_dtostr``), integers in decimal,
and numbers parsed from vendor text with a comma taken as a decimal point.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = [
    "PROPERTY_VENDOR",
    "PROPERTY_MPP_X",
    "PROPERTY_MPP_Y",
    "PROPERTY_OBJECTIVE_POWER",
    "PROPERTY_COMMENT",
    "PROPERTY_QUICKHASH",
    "format_double",
    "parse_double",
    "standard_properties",
    "associated_properties",
]

PROPERTY_VENDOR = "openslide.vendor"
PROPERTY_MPP_X = "openslide.mpp-x"
PROPERTY_MPP_Y = "openslide.mpp-y"
PROPERTY_OBJECTIVE_POWER = "openslide.objective-power"
PROPERTY_COMMENT = "openslide.comment"
PROPERTY_QUICKHASH = "openslide.quickhash-1"


def format_double(value: float) -> str:
    """A double as OpenSlide prints it: ``%.17g`` (``1`` for 1.0, ``0.25269999999999998`` for 0.2527)."""
    return "%.17g" % value


def parse_double(text: str | None) -> float | None:
    """A number from vendor text as OpenSlide reads it, or None.

    The whole text must be a number (surrounding blanks allowed), a comma counts as the decimal
    point (a scanner's locale leaks into its files), and NaN or infinities are no number.
    """
    if text is None:
        return None
    try:
        value = float(text.strip().replace(",", "."))
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def standard_properties(
    *,
    vendor: str,
    level_dimensions: Sequence[tuple[int, int]],
    level_downsamples: Sequence[float],
    tile_sizes: Sequence[tuple[int, int] | None],
    mpp: tuple[float, float] | None = None,
    objective_power: float | None = None,
) -> dict[str, str]:
    """The vendor, pyramid, resolution and magnification keys OpenSlide reports.

    Parameters
    ----------
    vendor : str
        ``openslide.vendor``.
    level_dimensions, level_downsamples, tile_sizes : sequences, one entry per level
        ``openslide.level-count`` and ``openslide.level[i].*``; an untiled level has no
        ``tile-width``/``tile-height`` keys.
    mpp : (float, float), optional
        ``openslide.mpp-x`` and ``openslide.mpp-y``.
    objective_power : float, optional
        ``openslide.objective-power``.
    """
    properties = {PROPERTY_VENDOR: vendor, "openslide.level-count": str(len(level_dimensions))}
    for index, ((width, height), downsample, tile) in enumerate(
        zip(level_dimensions, level_downsamples, tile_sizes)
    ):
        prefix = f"openslide.level[{index}]"
        properties[f"{prefix}.width"] = str(int(width))
        properties[f"{prefix}.height"] = str(int(height))
        properties[f"{prefix}.downsample"] = format_double(float(downsample))
        if tile is not None:
            properties[f"{prefix}.tile-width"] = str(int(tile[0]))
            properties[f"{prefix}.tile-height"] = str(int(tile[1]))
    if mpp is not None:
        properties[PROPERTY_MPP_X] = format_double(float(mpp[0]))
        properties[PROPERTY_MPP_Y] = format_double(float(mpp[1]))
    if objective_power is not None:
        properties[PROPERTY_OBJECTIVE_POWER] = format_double(float(objective_power))
    return properties


def associated_properties(name: str, width: int, height: int) -> dict[str, str]:
    """``openslide.associated.NAME.width`` and ``.height`` of one associated image."""
    return {
        f"openslide.associated.{name}.width": str(int(width)),
        f"openslide.associated.{name}.height": str(int(height)),
    }
