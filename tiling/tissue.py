"""Tissue detection: which parts of a slide hold tissue, as a :class:`TissueMask`.

:func:`tissue_mask_from_rgb` does the image work on any RGB picture of known resolution;
:func:`tissue_mask` reads a slide at a coarse resolution and wraps the result with its
level-0 geometry. All sizes are given in microns and converted to pixels at the mask's mpp,
so the same settings work on a 16 um/px thumbnail and on a 0.5 um/px tile.

Pipeline (each step O(pixels); about 0.5 s on one core for a 3,125 x 3,125 mask, i.e. a
100,000 px slide at 0.25 um/px seen at 8 um/px):

1. Colour features of the image after a 5 x 5 median filter (removes per-pixel chroma noise
   of glass without moving edges): HSV, the glass colour (brightest near-grey pixels) and
   the optical density (OD) relative to it.
2. Candidate tissue: ``method="otsu"`` (H&E) thresholds HSV saturation with Otsu clamped to
   [15, 25] of 255 (stains are coloured, glass is grey) and asks for OD > 0.02;
   ``method="ihc"`` thresholds mean OD with Otsu clamped to [0.05, 0.10] (pale haematoxylin
   in IHC is barely saturated but absorbs light); ``method="fluorescence"`` (dark-field
   slides: black glass, glowing tissue) thresholds brightness (see ``_tissue_darkfield``).
   ``method="auto"`` (the default) is ``"otsu"`` on a bright, coloured image; ``"ihc"`` (optical
   density, which needs no colour) on a bright achromatic one, whose three channels are nearly
   equal everywhere (a greyscale scan, or grey stored as RGB: saturation is zero there and
   ``"otsu"`` would find no tissue; see ``_tissue_color.is_achromatic``); and raises
   :class:`DarkFieldError` on a dark background, rather than report 0 % or 100 % tissue.
3. Artefacts (brightfield only): pen ink of any colour with the tissue under it (see
   ``_pen``), and dark grey pixels (coverslip and slide edges, scratches).
4. Morphology sized in microns: close, fill small holes, open, then drop small objects,
   objects nowhere thicker than ``min_thickness_um`` and long thin ones (edges, bands).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from slidescope.wsi.errors import MissingMppError, ResolutionError
from slidescope.wsi.validation import MAX_MPP, parse_choice, parse_int, parse_non_negative_float, parse_positive_float
from slidescope.wsi.whole_slide import read_whole_slide, whole_slide_size

from ._morph import close, fill_holes as _fill_holes, filter_components, open_
from ._pen import dark_grey_mask, ink_mask
from ._tissue_color import check_rgb, clamped_otsu, color_features, is_achromatic
from ._tissue_darkfield import DARK_MEDIAN, background, fluorescence_candidate
from ._tissue_mask import MAX_AREA_UM2, MAX_LENGTH_UM, TissueMask
from .errors import DarkFieldError, ImageTypeError, MaskTooSmallError, TissueMaskError

__all__ = [
    "TissueMask",
    "TissueMaskError",
    "ImageTypeError",
    "DarkFieldError",
    "METHODS",
    "MIN_MASK_EDGE",
    "tissue_mask",
    "tissue_mask_from_rgb",
]

#: Detection methods accepted by ``method=``.
METHODS = ("auto", "otsu", "ihc", "fluorescence")

#: Fewest mask pixels along the slide's short side: a coarser mask cannot show where tissue is.
MIN_MASK_EDGE = 8

# Threshold bounds for the clamped Otsu of each method (saturation 0..255; OD in hundredths).
_SAT_BOUNDS = (15.0, 25.0)
_OD_BOUNDS = (5.0, 10.0)
# Streaks of pale red ink closer than twice this (µm) are judged as one mark.
_PEN_GROUP_UM = 20.0


def _parse_mpp(mpp: Any) -> float:
    return parse_positive_float(mpp, "mpp", maximum=MAX_MPP, error=ResolutionError)


def _resolve_method(method: Any, rgb: np.ndarray, path: str | None) -> str:
    """The concrete method: ``"auto"`` becomes ``"otsu"``, ``"ihc"`` on an achromatic image, or raises
    on a dark-field image."""
    method = parse_choice(method, "method", METHODS)
    if method != "auto":
        return method
    seen = background(rgb)
    if seen.dark:
        raise DarkFieldError(path, seen.level, DARK_MEDIAN)
    return "ihc" if is_achromatic(rgb) else "otsu"


def tissue_mask_from_rgb(
    rgb: np.ndarray,
    mpp: float,
    *,
    method: str = "auto",
    min_object_um2: float = 10_000.0,
    close_um: float = 20.0,
    open_um: float = 10.0,
    fill_holes: bool = True,
    max_hole_um2: float | None = 10_000.0,
    reject_pen: bool = True,
    reject_lines: bool = True,
    min_thickness_um: float = 40.0,
    line_width_um: float = 300.0,
    pen_min_um2: float = 5_000.0,
    pen_margin_um: float = 5.0,
) -> np.ndarray:
    """Detect tissue in an RGB image of known resolution.

    Parameters
    ----------
    rgb
        ``(H, W, 3)`` uint8 RGB image (drop an alpha channel first).
    mpp
        Microns per pixel of ``rgb``; every ``*_um`` / ``*_um2`` size is converted with it.
    method
        ``"otsu"`` for H&E (saturation), ``"ihc"`` for DAB + haematoxylin (optical density),
        ``"fluorescence"`` for dark-field images (brightness); ``"auto"`` (the default) is
        ``"otsu"`` on a coloured image, ``"ihc"`` on an achromatic one (R, G and B within
        ``ACHROMATIC_SPREAD`` = 12 of each other on 99.9 % of a subsample: a greyscale scan has no
        saturation, but its optical density shows the tissue), and raises :class:`DarkFieldError`
        when the background is dark. A method given explicitly is always applied (``"otsu"`` on a
        greyscale image finds no tissue).
    min_object_um2
        Tissue pieces smaller than this area are dropped (at most a quarter of the image's
        area is asked for, so a small tile full of tissue stays tissue).
    close_um, open_um
        Radii of the disks for morphological closing (bridges gaps in loose tissue) and
        opening (removes specks and strands thinner than twice the radius).
    fill_holes
        Fill background enclosed by tissue (fat cells, small lumens, tears).
    max_hole_um2
        Only holes up to this area are filled; ``None`` fills every hole.
    reject_pen
        Remove pen ink of any colour (and the tissue under it); brightfield methods only.
    reject_lines
        Remove dark grey pixels (coverslip and slide edges, scratches; brightfield methods
        only) and objects nowhere thicker than ``min_thickness_um``.
    min_thickness_um
        Objects nowhere wider than this are dropped (with ``reject_lines``).
    line_width_um
        Objects nowhere wider than this and about 10 times longer than wide are dropped as
        coverslip or slide edges and dirt bands (with ``reject_lines``). A tissue strip that
        thin and long is lost too; set 0 to keep it.
    pen_min_um2
        Smallest solid ink mark; ink-coloured specks smaller than this are kept as tissue
        (nuclei, red blood cells, the reddest eosin).
    pen_margin_um
        Ink is grown by this radius to take its blurred rim.

    Returns
    -------
    numpy.ndarray
        Bool mask ``(H, W)``; True is tissue. An image without tissue gives all False.

    Raises
    ------
    ImageTypeError
        ``rgb`` is not a uint8 ndarray.
    TissueMaskError
        ``rgb`` is not ``(H, W, 3)`` or is empty.
    DarkFieldError
        ``method="auto"`` and the image has a dark background.
    ParameterError
        ``method`` is unknown, or a size is negative or not a number.
    ResolutionError
        ``mpp`` is not a positive finite number.
    """
    image = check_rgb(rgb)
    mpp = _parse_mpp(mpp)
    method = parse_choice(method, "method", METHODS)
    sizes = {
        "min_object_um2": min_object_um2,
        "close_um": close_um,
        "open_um": open_um,
        "min_thickness_um": min_thickness_um,
        "line_width_um": line_width_um,
        "pen_min_um2": pen_min_um2,
        "pen_margin_um": pen_margin_um,
    }
    if max_hole_um2 is not None:
        sizes["max_hole_um2"] = max_hole_um2
    px = {  # the same sizes in pixels (areas in square pixels) at this resolution
        k: parse_non_negative_float(v, k, maximum=MAX_AREA_UM2 if k.endswith("um2") else MAX_LENGTH_UM)
        / (mpp * mpp if k.endswith("um2") else mpp)
        for k, v in sizes.items()
    }
    method = _resolve_method(method, image, None)  # after the parameters: a typo is reported first

    if method == "fluorescence":
        candidate = fluorescence_candidate(image)
        ink = artefacts = np.zeros_like(candidate)
    else:
        candidate, ink, artefacts = _brightfield_candidate(image, mpp, method == "ihc", px, reject_pen, reject_lines)
    candidate &= ~artefacts
    del image

    mask = close(candidate, px["close_um"])
    mask &= ~artefacts  # closing may bridge back over thin ink or edges
    if fill_holes:  # before opening, which would break the thin walls of fat cells
        mask = _fill_holes(mask, px.get("max_hole_um2"))
        mask &= ~ink  # ink drawn inside tissue is a hole; keep it out
    mask = open_(mask, px["open_um"])
    # A small tile cannot hold min_object_um2: never ask for more than a quarter of the image.
    min_area_px = min(px["min_object_um2"], 0.25 * mask.size)
    return filter_components(
        mask,
        min_area_px=max(min_area_px, 1.0),
        min_thickness_px=px["min_thickness_um"] if reject_lines else 0.0,
        line_width_px=px["line_width_um"] if reject_lines else 0.0,
    )


def _brightfield_candidate(
    image: np.ndarray, mpp: float, ihc: bool, px: dict[str, float], reject_pen: bool, reject_lines: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Candidate tissue, pen ink and all artefacts (ink, dark grey lines) of a brightfield image."""
    f = color_features(image)
    if ihc:
        candidate = f.od > clamped_otsu(f.od, *_OD_BOUNDS)
    else:
        candidate = (f.sat > clamped_otsu(f.sat, *_SAT_BOUNDS)) & (f.od > 2)
    ink = np.zeros_like(candidate)
    if reject_pen:
        ink = ink_mask(
            f,
            ihc=ihc,
            min_area_px=px["pen_min_um2"],
            margin_px=px["pen_margin_um"],
            group_px=_PEN_GROUP_UM / mpp,
        )
    artefacts = ink | dark_grey_mask(f, ihc=ihc) if reject_lines else ink
    return candidate, ink, artefacts  # the colour planes are freed here, before the morphology peaks


def _mask_mpp(slide: Any, mpp: float) -> float:
    """The mask's resolution: ``mpp``, or level 0's where that is coarser; refused when too coarse."""
    if slide.mpp is None:
        raise MissingMppError(slide.path)
    mpp0 = (float(slide.mpp[0]) + float(slide.mpp[1])) / 2.0
    mask_mpp = max(mpp, mpp0)
    width, height = whole_slide_size(slide, mask_mpp)
    if min(width, height) < MIN_MASK_EDGE:
        (w0, h0), (mx, my) = slide.dimensions, slide.mpp
        if min(w0, h0) < MIN_MASK_EDGE:
            raise MaskTooSmallError(
                f"{slide.path}: the slide is {w0} x {h0} px; expected at least {MIN_MASK_EDGE} px along its short "
                f"side for a tissue mask", (width, height), None
            )
        finest = min(w0 * mx, h0 * my) / MIN_MASK_EDGE
        raise MaskTooSmallError(
            f"{slide.path}: mpp: a tissue mask at {mpp:g} µm/px would be {width} x {height} px for this "
            f"{w0} x {h0} px slide ({w0 * mx:.0f} x {h0 * my:.0f} µm); expected at least {MIN_MASK_EDGE} px "
            f"along the short side, i.e. mpp <= {finest:.3g}", (width, height), finest
        )
    return mask_mpp


def tissue_mask(
    slide: Any,
    *,
    mpp: float = 8.0,
    method: str = "auto",
    max_mask_pixels: int = 100_000_000,
    **options: Any,
) -> TissueMask:
    """Detect tissue on a whole slide at a coarse resolution.

    The slide is read at ``mpp`` from ``slide.best_level_for_mpp(mpp)`` (the coarsest pyramid
    level fine enough), in bands if that level is large, never as a whole level-0 array of a
    big slide. Where level 0 is already coarser than ``mpp``, the mask is made at level 0's
    resolution.

    Parameters
    ----------
    slide
        An open :class:`slidescope.wsi.Slide` with an mpp.
    mpp
        Resolution of the mask in microns per pixel. A mask coarser than the slide's short side
        (in µm) divided by :data:`MIN_MASK_EDGE` is refused; where level 0 is coarser than
        ``mpp``, the mask is made at level 0's resolution.
    method
        ``"auto"`` (default: ``"otsu"``, ``"ihc"`` on an achromatic (greyscale) slide, or
        :class:`DarkFieldError` on a dark-field slide),
        ``"otsu"`` (H&E), ``"ihc"`` or ``"fluorescence"``; see :func:`tissue_mask_from_rgb`.
    max_mask_pixels
        Refuse masks larger than this (a guard against a finer mpp than intended).
    **options
        Passed to :func:`tissue_mask_from_rgb` (``min_object_um2``, ``close_um``, ``open_um``,
        ``fill_holes``, ``max_hole_um2``, ``reject_pen``, ``reject_lines``...).

    Returns
    -------
    TissueMask
        The mask with its resolution, level-0 dimensions and slide path.

    Raises
    ------
    DarkFieldError
        ``method="auto"`` on a slide with a dark background (fluorescence); the message names the
        slide and suggests ``method="fluorescence"``.
    ResolutionError
        ``mpp`` not a positive number, or so coarse that the mask would have fewer than
        :data:`MIN_MASK_EDGE` pixels along the slide's short side (a 1 x 1 "100 % tissue" mask
        says nothing), or a mask larger than ``max_mask_pixels``.
    MissingMppError
        The slide has no mpp.
    """
    mpp = _parse_mpp(mpp)
    max_mask_pixels = parse_int(max_mask_pixels, "max_mask_pixels", minimum=1)
    method = parse_choice(method, "method", METHODS)
    mask_mpp = _mask_mpp(slide, mpp)
    rgb = read_whole_slide(slide, mask_mpp, max_mask_pixels)
    concrete = _resolve_method(method, rgb, slide.path)  # here, so that a DarkFieldError names the slide
    array = tissue_mask_from_rgb(rgb, mask_mpp, method=concrete, **options)
    return TissueMask(array, mask_mpp, tuple(slide.dimensions), slide.path)
