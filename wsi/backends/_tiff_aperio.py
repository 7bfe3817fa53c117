"""Which pages of an Aperio SVS are pyramid levels and which are associated images.

OpenSlide's rule, which the tiff backend follows so that both backends see the same slide
(checked against OpenSlide 4.0.1 on crafted files, see tests/wsi/test_tiff_aperio_layout.py):

* page 0 is the baseline and every other tiled page a pyramid level, in file order (OpenSlide
  takes a file for Aperio only when page 0 is tiled; the tiff backend refuses a stripped one);
* a stripped page 1 is the ``thumbnail``;
* any later stripped page is the ``label`` when its NewSubfileType is 1 and the ``macro`` when
  it is 9, whatever its ImageDescription says (a later page of the same name replaces an
  earlier one); other stripped pages are not associated images.

tifffile's own SVS series is not used because it always takes page 1 as the thumbnail: an SVS
written without a thumbnail page would lose its second level there, and that level's pixels
would then come from OpenSlide, which interpolates levels whose downsample is not a whole
number.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["AperioLayout", "aperio_layout", "LABEL_SUBFILETYPE", "MACRO_SUBFILETYPE"]

#: NewSubfileType of an Aperio label (reduced-resolution image) and macro (reduced | 8).
LABEL_SUBFILETYPE = 1
MACRO_SUBFILETYPE = 9
_NAMES_BY_SUBFILETYPE = {LABEL_SUBFILETYPE: "label", MACRO_SUBFILETYPE: "macro"}
_THUMBNAIL_PAGE = 1


@dataclass(frozen=True)
class AperioLayout:
    """The pages of an SVS file by role.

    Attributes
    ----------
    levels : tuple of tifffile.TiffPage
        Page 0 and the other tiled pages, in file order.
    associated : dict of str to tifffile.TiffPage
        ``thumbnail``, ``label`` and ``macro`` pages, those present.
    """

    levels: tuple[Any, ...]
    associated: dict[str, Any]


def aperio_layout(pages: Any) -> AperioLayout:
    """Sort an SVS file's pages into pyramid levels and associated images as OpenSlide does.

    Parameters
    ----------
    pages : tifffile.TiffPages
        ``TiffFile.pages`` of the file; each directory is read as a full ``TiffPage`` (its own
        tags, never a ``TiffFrame`` sharing another page's).

    Returns
    -------
    AperioLayout
    """
    levels = []
    associated: dict[str, Any] = {}
    for index in range(len(pages)):
        page = pages.get(index, aspage=True)
        if page.is_tiled or index == 0:
            levels.append(page)
            continue
        name = "thumbnail" if index == _THUMBNAIL_PAGE else _NAMES_BY_SUBFILETYPE.get(int(page.subfiletype))
        if name is not None:
            associated[name] = page
    return AperioLayout(levels=tuple(levels), associated=associated)
