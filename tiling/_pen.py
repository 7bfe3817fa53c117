"""Pen-ink and dark-artefact masks from HSV rules (hue in OpenCV units: degrees / 2).

Stains are magenta to purple in H&E (hue ~ 290-345 degrees) and brown (DAB, ~ 15-40 degrees)
plus pale blue haematoxylin in IHC. Ink is what no stain is:

* green / teal ink: hue 70-200 degrees, clearly saturated; over H&E tissue it turns slate
  blue, so dark pixels of hue 190-270 degrees count too.
* blue ink: hue 200-270 degrees and strongly saturated (haematoxylin can be as blue, but is
  rarely that saturated and never forms large uniform blobs; IHC raises the bar further).
* red ink: hue >= 340 or <= 8 degrees and saturated. Strong eosin reaches that colour only
  in specks (cut by the area gate) and pale streaky red ink on glass has the very colour of
  eosin: it is told apart by the absence of haematoxylin in it (:func:`_pale_red_ink`).
* black ink: very dark (value < 60 of 255) whatever the hue (in IHC only when not strongly
  saturated, as the darkest DAB is near black too).

Each rule has a strict *core* and a looser *weak* form. Connected core pixels covering at
least ``min_area_px`` are ink seeds (a pen stroke is hundreds of microns wide; nuclei, blood
cells and eosin specks are not); ink is the weak pixels connected to a seed (hysteresis),
which follows blurred stroke rims without letting pale tissue in.
"""

from __future__ import annotations

import numpy as np

from ._morph import close, dilate, filter_components, keep_components_touching, label_areas
from ._tissue_color import ColorFeatures

__all__ = ["ink_mask", "dark_grey_mask"]


def _in(plane: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """``lo <= plane < hi`` as a bool array."""
    return (plane >= lo) & (plane < hi)


def _red(hue: np.ndarray, below_zero: int, above_zero: int) -> np.ndarray:
    """Hue within ``below_zero`` .. 180 or 0 .. ``above_zero`` (the red wrap-around)."""
    return (hue >= below_zero) | (hue <= above_zero)


def _ink_core_and_weak(f: ColorFeatures, ihc: bool) -> tuple[np.ndarray, np.ndarray]:
    hue, sat, val = f.hue, f.sat, f.val
    green = _in(hue, 35, 100)
    blue = _in(hue, 100, 135)
    # Blue ink must out-saturate haematoxylin, which in IHC is itself blue (hue ~ 220 deg).
    blue_core_sat, blue_weak_sat = (170, 110) if ihc else (100, 35)
    core = (
        (green & (sat >= 60))
        | (blue & (sat >= blue_core_sat))
        | (_red(hue, 175, 3) & (sat >= 120) & (val >= 90))
    )
    weak = (
        (green & (sat >= 30))
        | (blue & (sat >= blue_weak_sat))
        | (_red(hue, 172, 5) & (sat >= 60))
        | (val < 90)
    )
    if ihc:  # dark DAB is brown-black too, but strongly saturated
        core |= (val < 60) & (sat < 120)
    else:
        core |= val < 60
        slate = _in(hue, 95, 125)  # green ink over H&E tissue
        core |= slate & (val < 130) & (sat >= 45)
        weak |= slate & (val < 150) & (sat >= 35)
    return core, weak | core


def _pale_red_ink(f: ColorFeatures, min_area_px: float, close_px: float) -> np.ndarray:
    """Pale, streaky red ink, which has the very colour of strong eosin (H&E only).

    Red-ish pixels are grouped by a closing; a group is ink when it is large, mostly red,
    holds next to no haematoxylin-purple pixel (tissue, however eosinophilic, has nuclei
    between its pink fibres, while the gaps in a pen streak are glass) and its red is
    saturated on average (eosin-rich tissue seen too coarsely to resolve nuclei is paler).
    Returns the whole footprint of each ink group (streaks and the gaps between them).
    """
    red = _red(f.hue, 170, 5) & (f.sat >= 60)
    if not red.any():
        return red
    purple = _in(f.hue, 120, 168) & (f.sat >= 30)
    n, labels, area = label_areas(close(red, close_px))
    red_labels = labels[red]
    n_red = np.bincount(red_labels, minlength=n)
    sat_red = np.bincount(red_labels, weights=f.sat[red], minlength=n) / np.maximum(n_red, 1)
    n_purple = np.bincount(labels[purple], minlength=n)
    is_ink = (
        (area >= min_area_px)
        & (n_red >= 0.6 * area)
        & (n_purple < 0.03 * area)
        & (sat_red >= 100)  # eosin-rich tissue without resolved nuclei is paler
    )
    is_ink[0] = False
    return is_ink[labels]


def ink_mask(
    f: ColorFeatures, *, ihc: bool, min_area_px: float, margin_px: float, group_px: float
) -> np.ndarray:
    """Pixels covered by pen ink (any colour), grown by ``margin_px`` to take the blurred rims.

    Parameters
    ----------
    f
        Colour features of the image.
    ihc
        Use the IHC variant: stricter blue and black rules (haematoxylin is blue, dark DAB
        is near black) and no pale-red or slate-blue rule.
    min_area_px
        Smallest solid ink core: connected core pixels covering less are not ink (nuclei,
        red blood cells, dust, the reddest specks of eosin).
    margin_px
        Dilation radius applied to the ink, in pixels.
    group_px
        Closing radius that groups the streaks of pale red ink, in pixels (about 20 µm).
    """
    core, weak = _ink_core_and_weak(f, ihc)
    seeds = filter_components(core, min_area_px=max(min_area_px, 1.0))
    if ihc:
        pale_red = np.zeros_like(seeds)
    else:
        pale_red = _pale_red_ink(f, 4.0 * min_area_px, close_px=max(group_px, 1.0))
    if not (seeds.any() or pale_red.any()):
        return np.zeros(core.shape, dtype=bool)
    ink = keep_components_touching(weak, seeds | pale_red) | pale_red
    return dilate(ink, margin_px)


def dark_grey_mask(f: ColorFeatures, *, ihc: bool) -> np.ndarray:
    """Dark, unsaturated pixels: coverslip and slide edges, scratches, dust, shadows.

    No H&E stain is dark grey: tissue dark enough to be below value 160 is clearly saturated,
    so these pixels are glass artefacts. IHC haematoxylin can be a pale blue-grey, so there
    only darker greys (value < 110) count.
    """
    if ihc:
        return (f.val < 110) & (f.sat < 20)
    return (f.val < 160) & (f.sat < 30)
