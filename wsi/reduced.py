"""Reads at least twice coarser than a stored level, from tiles decoded smaller than stored.

A backend that can decode a level ``k`` times smaller (JPEG's scaled IDCT, see
:meth:`SlideBackend.reductions`) serves a read that shrinks by ``s >= k`` from that level's
grid of ``k`` x ``k`` blocks, the *reduced grid*, whose pixel ``j`` stands for level pixels
``[k j, k j + k)``. What is left of the shrink, ``m = s / k``, is done with the same area
average as a full read (``cv2.INTER_AREA``), so a reduced read differs from a full one only by
the decoder's approximation of the block means.

That holds only where every output pixel's footprint is made of whole blocks: the box starts on
a block boundary (``x``, ``y`` multiples of ``k``) and ``m`` is a whole number. Elsewhere the
reduced grid cannot say how a block's pixels are spread inside it, and a footprint that cuts
blocks, or is shifted by part of one, is misplaced by up to a level pixel. On the sharp detail of
a 20x slide that costs far more than the decoder's approximation (CMU-1-Small-Region.svs, boxes
of 128 px, against a full decode): 0.1 grey levels on average, at most 19, for whole blocks;
2.3 on average, up to 96, reading 128 px at 1.0 µm/px (a level box of 257 px, a shrink of
2.008 from its 0.499 µm/px); 11 on a box shifted by half a block. So such a box takes the largest ``k`` that gives it whole blocks, or
is decoded in full as before (:func:`best_reduced_crop`). Tile plans start tiles on the read's
pixel grid, and a slide whose mpp divides the read's mpp by a power of two gets whole blocks.

A box must also lie inside the level's whole blocks: boxes reaching outside the slide, or into
the last, partial block of a level whose size is not a multiple of ``k``, are read in full
(see :mod:`.reading` for how).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .backends.base import Box

__all__ = ["choose_reduction", "ReducedCrop", "reduced_crop", "best_reduced_crop"]

#: How far from a whole number a shrink may be and still count as one (float error only: 7.999999999999998).
_WHOLE = 1e-9


def choose_reduction(available: Sequence[int], scale_x: float, scale_y: float) -> int:
    """The largest reduction in ``available`` that divides a whole-number shrink on both axes, else 1.

    Parameters
    ----------
    available : sequence of int
        What the backend decodes directly for the level (:meth:`SlideBackend.reductions`).
    scale_x, scale_y : float
        Level pixels per output pixel of the read: the level box's size over the output's, as
        the full read shrinks it. One that is not a whole number (257 / 128, reading 128 px at
        1 µm/px from a 0.499 µm/px level) cuts blocks in output pixels' footprints: it gets 1, a
        full decode (see the module's docstring). (Up to 124 px, the same read's level box is
        exactly twice the output, and the read is reduced.)
    """
    whole = [round(scale) for scale in (scale_x, scale_y)]
    if any(abs(scale - w) > _WHOLE for scale, w in zip((scale_x, scale_y), whole)):
        return 1
    return max((k for k in available if whole[0] % k == 0 and whole[1] % k == 0), default=1)


@dataclass(frozen=True)
class ReducedCrop:
    """What to read from the reduced grid for one level box.

    Attributes
    ----------
    reduction : int
        The block size ``k``.
    box : (x, y, width, height)
        The box's blocks, in the reduced grid.
    """

    reduction: int
    box: Box


def reduced_crop(box: Box, reduction: int, out_size: tuple[int, int], level_size: tuple[int, int]) -> ReducedCrop | None:
    """The crop of level box ``box`` in the ``reduction``-block grid, or ``None`` where it is not
    made of whole blocks, each output pixel's footprint too, or leaves the level's whole blocks.

    Parameters
    ----------
    box : (x, y, width, height)
        A box in the level's pixels (it may reach outside the level).
    reduction : int
        The block size ``k``.
    out_size : (int, int)
        ``(width, height)`` of the output the box is shrunk onto.
    level_size : (int, int)
        ``(width, height)`` of the level.
    """
    x, y, width, height = box
    k, (out_w, out_h) = reduction, out_size
    if x < 0 or y < 0 or x % k or y % k or width % (k * out_w) or height % (k * out_h):
        return None
    crop = (x // k, y // k, width // k, height // k)
    if (crop[0] + crop[2]) * k > level_size[0] or (crop[1] + crop[3]) * k > level_size[1]:
        return None
    return ReducedCrop(k, crop)


def best_reduced_crop(box: Box, reductions: Sequence[int], out_size: tuple[int, int],
                      level_size: tuple[int, int]) -> ReducedCrop | None:
    """:func:`reduced_crop` for the largest of ``reductions`` (those above 1) that it allows, else ``None``."""
    for k in sorted(reductions, reverse=True):
        if k > 1 and (crop := reduced_crop(box, k, out_size, level_size)) is not None:
            return crop
    return None
