"""The errors of slidescope.tiling: leaves of the one hierarchy of :mod:`slidescope.wsi.errors`.

Every class here derives from :class:`~slidescope.wsi.errors.SlideError` (a ``ValueError``), and a
leaf also subclasses the builtin a caller would naturally catch (``TypeError`` for an array of the
wrong type, ``RuntimeError`` for a normaliser used before ``fit``).

Which error for what:

- a number, choice or resolution parameter of the wrong type or out of range (``close_um=-5``,
  ``batch_size=True``, ``alpha=2``): :class:`~slidescope.wsi.errors.ParameterError`, or its
  :class:`~slidescope.wsi.errors.ResolutionError` for a resolution, raised by the ``parse_*``
  functions of :mod:`slidescope.wsi.validation` that every tiling entry point uses;
- the data a function works on (an image, a mask, per-tile values, a plan file) or a request
  that the data cannot serve: the domain's error below.

:mod:`slidescope.tiling` re-exports these together with the whole wsi hierarchy.
"""

from __future__ import annotations

from os import PathLike

from slidescope.wsi.errors import ResolutionError, SlideError

__all__ = [
    "TilePlanError",
    "TileBatchError",
    "TissueMaskError",
    "ImageTypeError",
    "DarkFieldError",
    "MaskTooSmallError",
    "StainError",
    "StainNotFittedError",
    "StitchError",
    "OverlayError",
]


class TilePlanError(SlideError):
    """A plan cannot be made, saved or loaded as asked (unknown scale, scales that cannot nest,
    a plan of another slide, a file that is not a plan)."""


class TileBatchError(SlideError):
    """What a batch function returned cannot be gathered into a table of one row per tile."""


class TissueMaskError(SlideError):
    """A tissue-detection input is malformed (bad shape, empty image, a mask of the wrong size...)."""


class ImageTypeError(TissueMaskError, TypeError):
    """An image is not a numpy array of the expected dtype (e.g. float instead of uint8)."""


class DarkFieldError(TissueMaskError):
    """The image has a dark background (fluorescence, dark-field): the brightfield methods do not apply.

    Raised by :func:`slidescope.tiling.tissue_mask` and :func:`~slidescope.tiling.tissue_mask_from_rgb`
    with ``method="auto"`` (the default). Pass ``method="fluorescence"`` to find tissue by its
    brightness, or ``method="otsu"`` / ``"ihc"`` to force a brightfield method anyway.

    Attributes
    ----------
    path : str or None
        The slide, when known.
    background : float
        The estimated background brightness, 0-255.
    limit : float
        The brightness below which a background counts as dark.
    """

    def __init__(self, path: str | PathLike[str] | None, background: float, limit: float) -> None:
        where = f"{path}: " if path is not None else ""
        super().__init__(
            f"{where}the image looks dark-field (fluorescence): background brightness {background:.0f} of 255, "
            f"expected a bright glass background (above {limit:.0f}) for the brightfield methods 'otsu' and "
            f"'ihc'; pass method='fluorescence' (--method fluorescence) to find tissue by its brightness, or "
            f"method='otsu' to force brightfield detection"
        )
        self.path = None if path is None else str(path)
        self.background = float(background)
        self.limit = float(limit)

    def __reduce__(self) -> tuple[type, tuple[str | None, float, float]]:  # picklable across Dask workers
        return type(self), (self.path, self.background, self.limit)


class MaskTooSmallError(ResolutionError):
    """A tissue mask at the asked resolution would be under ``MIN_MASK_EDGE`` px along its short side.

    Attributes
    ----------
    mask_size : tuple of int
        The mask's ``(width, height)`` at that resolution.
    finest_mpp : float or None
        The coarsest mask mpp that would fit; None when the slide itself is too small for any.
    """

    def __init__(self, message: str, mask_size: tuple[int, int], finest_mpp: float | None) -> None:
        super().__init__(message)
        self.mask_size = (int(mask_size[0]), int(mask_size[1]))
        self.finest_mpp = None if finest_mpp is None else float(finest_mpp)

    def __reduce__(self) -> tuple[type, tuple[str, tuple[int, int], float | None]]:  # picklable across Dask workers
        return type(self), (str(self), self.mask_size, self.finest_mpp)


class StainError(SlideError):
    """Bad input for stain normalisation or augmentation (wrong dtype or shape, too little tissue,
    a malformed parameter dict)."""


class StainNotFittedError(StainError, RuntimeError):
    """A normaliser was used (``transform``, fitted parameters) before ``fit``/``from_dict``."""


class StitchError(SlideError):
    """Per-tile values cannot be stitched as asked (wrong rows or shape, unknown tile ids, an output
    path holding something else)."""


class OverlayError(StitchError):
    """A heatmap cannot be drawn over a slide as asked."""
