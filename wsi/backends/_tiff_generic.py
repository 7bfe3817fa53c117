"""Which pages of a generic tiled TIFF are pyramid levels, by OpenSlide's generic-tiff rule.

OpenSlide 4.0.1 (checked on crafted files, see tests/wsi/test_tiff_generic_layout.py) takes
as levels page 0 and every later *tiled* page whose NewSubfileType has the reduced-image bit
(1), skips every other page (stripped pages, full-resolution pages without that bit), and
orders the levels by width, widest first, pages of equal width keeping their file order.

tifffile's generic series is not used for this: it splits a pyramid into several series
wherever the downsample between two pages is not a whole number (4000, 1333, 547 and 233 px
wide come out as two series of two levels), so the tiff backend would drop levels OpenSlide
reads and ``auto`` would then hand the file to OpenSlide, which interpolates such levels.
"""

from __future__ import annotations

from typing import Any

__all__ = ["generic_levels", "REDUCED_IMAGE"]

#: NewSubfileType bit of a reduced-resolution version of another page.
REDUCED_IMAGE = 1


def generic_levels(pages: Any) -> tuple[Any, ...]:
    """The pages OpenSlide reads as pyramid levels of a generic TIFF, widest first.

    Parameters
    ----------
    pages : tifffile.TiffPages
        ``TiffFile.pages`` (the main IFD chain; SubIFDs are not in it, nor in OpenSlide's view).

    Returns
    -------
    tuple of tifffile.TiffPage
        Page 0 first in file order (even when stripped, so that the caller refuses it as
        OpenSlide does), then the tiled reduced-resolution pages; sorted stably by width.
    """
    levels = []
    for index in range(len(pages)):
        page = pages.get(index, aspage=True)
        if index == 0 or (page.is_tiled and int(page.subfiletype) & REDUCED_IMAGE):
            levels.append(page)
    return tuple(sorted(levels, key=lambda page: -int(page.imagewidth)))  # sorted() is stable
