"""Slide metadata from TIFF tags, named and formatted as OpenSlide names and formats them.

What OpenSlide 4 reports for the TIFF-based formats the tiff backend reads (aperio,
generic-tiff), so that ``slide.properties`` holds the same keys and values whichever backend
opened the file:

* ``tiff.*``: the string tags of the first page (ImageDescription, Make, Model, Software,
  DateTime, Artist, HostComputer, Copyright, DocumentName; each up to its first NUL), its
  X/YResolution and X/YPosition as doubles, and its ResolutionUnit as a word (``inch`` when
  absent, the TIFF default);
* ``openslide.comment`` (the ImageDescription) and ``openslide.icc-size``;
* ``aperio.*``: the ``key = value`` fields of an Aperio ImageDescription, and the mpp and
  objective power OpenSlide derives from them;
* ``openslide.quickhash-1``: SHA-256 of the smallest level's stored tiles and of the string
  tags above, unless that level holds more than 5 MiB (OpenSlide then reports none either).
"""

from __future__ import annotations

import hashlib
import os
import xml.etree.ElementTree as ElementTree
from typing import Any

from ._properties import PROPERTY_COMMENT, PROPERTY_QUICKHASH, format_double, parse_double

__all__ = [
    "tiff_properties",
    "aperio_properties",
    "aperio_mpp",
    "aperio_objective_power",
    "resolution_mpp",
    "ome_mpp",
    "quickhash",
]

#: String tags OpenSlide stores (and hashes, in this order) as ``tiff.NAME``.
_STRING_TAGS = (
    ("ImageDescription", 270),
    ("Make", 271),
    ("Model", 272),
    ("Software", 305),
    ("DateTime", 306),
    ("Artist", 315),
    ("HostComputer", 316),
    ("Copyright", 33432),
    ("DocumentName", 269),
)
_FLOAT_TAGS = (("XResolution", 282), ("YResolution", 283), ("XPosition", 286), ("YPosition", 287))
_RESOLUTION_UNIT_TAG = 296
_ICC_PROFILE_TAG = 34675
_RESOLUTION_UNITS = {1: "none", 2: "inch", 3: "centimeter"}
_UM_PER_UNIT = {2: 25400.0, 3: 10000.0}
_QUICKHASH_MAX_BYTES = 5 << 20
_UNIT_TO_UM = {"µm": 1.0, "um": 1.0, "nm": 1e-3, "mm": 1e3, "cm": 1e4, "m": 1e6}
_BLANKS = " \t\n\v\f\r"  # what GLib's g_strstrip removes


def _string_tags(fd: int, page: Any) -> dict[str, bytes]:
    """The raw bytes of the string tags present, each up to its first NUL (what libtiff hands
    OpenSlide), read from the file rather than taken from tifffile's decoded text."""
    found = {}
    for name, code in _STRING_TAGS:
        tag = page.tags.get(code)
        if tag is not None and tag.count:
            found[name] = os.pread(fd, int(tag.count), int(tag.valueoffset)).split(b"\0", 1)[0]
    return found


def _float_tag(page: Any, code: int) -> float | None:
    value = page.tags.valueof(code)
    if value is None:
        return None
    if isinstance(value, tuple) and len(value) == 2:  # RATIONAL (numerator, denominator)
        return value[0] / value[1] if value[1] else None
    try:
        return float(value[0] if isinstance(value, tuple) else value)
    except (TypeError, ValueError, IndexError):
        return None


def tiff_properties(fd: int, page: Any) -> dict[str, str]:
    """``tiff.*``, ``openslide.comment`` and ``openslide.icc-size`` from the first page."""
    properties = {
        f"tiff.{name}": raw.decode("utf-8", errors="replace") for name, raw in _string_tags(fd, page).items()
    }
    if "tiff.ImageDescription" in properties:
        properties[PROPERTY_COMMENT] = properties["tiff.ImageDescription"]
    for name, code in _FLOAT_TAGS:
        value = _float_tag(page, code)
        if value is not None:
            properties[f"tiff.{name}"] = format_double(value)
    unit = page.tags.valueof(_RESOLUTION_UNIT_TAG)
    properties["tiff.ResolutionUnit"] = _RESOLUTION_UNITS.get(int(unit) if unit is not None else 2, "unknown")
    icc = page.tags.get(_ICC_PROFILE_TAG)
    if icc is not None and icc.count:
        properties["openslide.icc-size"] = str(int(icc.count))
    return properties


def aperio_properties(description: str) -> dict[str, str]:
    """``aperio.KEY`` for each ``KEY = value`` field of an Aperio ImageDescription.

    The first ``|``-separated field is the image summary, not a field; a later duplicate key
    wins, as in OpenSlide.
    """
    properties = {}
    for item in description.split("|")[1:]:
        key, sep, value = item.partition("=")
        if sep:
            properties[f"aperio.{key.strip(_BLANKS)}"] = value.strip(_BLANKS)
    return properties


def aperio_mpp(properties: dict[str, str]) -> tuple[float, float] | None:
    """Microns per pixel from ``aperio.MPP``, when it is a positive number."""
    value = parse_double(properties.get("aperio.MPP"))
    return (value, value) if value is not None and value > 0 else None


def aperio_objective_power(properties: dict[str, str]) -> float | None:
    """Objective magnification from ``aperio.AppMag``, when it is a positive number."""
    value = parse_double(properties.get("aperio.AppMag"))
    return value if value is not None and value > 0 else None


def resolution_mpp(page: Any) -> tuple[float, float] | None:
    """Microns per pixel from X/YResolution in pixels per centimetre or inch."""
    unit = page.tags.valueof(_RESOLUTION_UNIT_TAG)
    um_per_unit = _UM_PER_UNIT.get(int(unit) if unit is not None else 2)
    x_res, y_res = _float_tag(page, 282), _float_tag(page, 283)
    if um_per_unit is None or not x_res or not y_res or x_res <= 0 or y_res <= 0:
        return None
    return um_per_unit / x_res, um_per_unit / y_res


def ome_mpp(ome_xml: str) -> tuple[float, float] | None:
    """Microns per pixel from OME-XML ``Pixels`` physical sizes."""
    try:
        root = ElementTree.fromstring(ome_xml)
    except ElementTree.ParseError:
        return None
    pixels = next((el for el in root.iter() if el.tag.endswith("}Pixels") or el.tag == "Pixels"), None)
    if pixels is None:
        return None
    sizes = []
    for axis in ("X", "Y"):
        value = parse_double(pixels.get(f"PhysicalSize{axis}"))
        factor = _UNIT_TO_UM.get(pixels.get(f"PhysicalSize{axis}Unit", "µm"))
        if value is None or factor is None or value <= 0:
            return None
        sizes.append(value * factor)
    return sizes[0], sizes[1]


def quickhash(fd: int, smallest_level_page: Any, first_page: Any) -> dict[str, str]:
    """``openslide.quickhash-1`` as OpenSlide computes it for TIFF-based slides, or nothing.

    Parameters
    ----------
    fd : int
        The slide file, open for reading.
    smallest_level_page : tifffile.TiffPage
        The pyramid's lowest-resolution level, whose stored tiles are hashed.
    first_page : tifffile.TiffPage
        The page whose string tags are hashed (the one :func:`tiff_properties` reads).
    """
    offsets, counts = smallest_level_page.dataoffsets, smallest_level_page.databytecounts
    if sum(int(count) for count in counts) > _QUICKHASH_MAX_BYTES:
        return {}
    digest = hashlib.sha256()
    for offset, count in zip(offsets, counts):
        if count:
            digest.update(os.pread(fd, int(count), int(offset)))
    strings = _string_tags(fd, first_page)
    for name, _ in _STRING_TAGS:
        digest.update(f"tiff.{name}".encode() + b"\0")
        digest.update(strings.get(name, b"") + b"\0")
    return {PROPERTY_QUICKHASH: digest.hexdigest()}
