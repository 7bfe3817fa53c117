"""Tiling: tissue masks, multi-scale tile plans, Dask tile reading, stain, stitching, overlays.

>>> from slidescope.wsi import open_slide                                  # doctest: +SKIP
>>> from slidescope.tiling import Scale, map_batches, plan_tiles, tissue_mask
>>> with open_slide("slide.svs") as slide:                                  # doctest: +SKIP
...     mask = tissue_mask(slide)
...     plan = plan_tiles(slide, mask, [Scale(2.0, 256, name="tissue"), Scale(0.5, 256, overlap=32, name="cell")])
...     means = map_batches(lambda images, ids: images.mean(axis=(1, 2, 3)), slide, plan, "tissue")
"""

from slidescope.wsi.errors import (
    AssociatedImageNotFoundError,
    ClosedSlideError,
    CorruptSlideError,
    MissingMppError,
    OutOfBoundsError,
    OutputError,
    OutputExistsError,
    ParameterError,
    RegionError,
    ResolutionError,
    SlideAccessError,
    SlideError,
    SlideNotFoundError,
    SlidePermissionError,
    UnsupportedFormatError,
)

from .dask_read import DEFAULT_BATCH_SIZE, TileBatch, map_batches, read_batches
from .errors import (
    DarkFieldError,
    ImageTypeError,
    MaskTooSmallError,
    OverlayError,
    StainError,
    StainNotFittedError,
    StitchError,
    TileBatchError,
    TilePlanError,
    TissueMaskError,
)
from .overlays import COLORMAPS, overlay
from .plan import MAX_TILES_PER_SCALE, PLAN_COLUMNS, TilePlan, plan_tiles
from .scales import Scale, parse_scale
from .stain import (
    HedAugmenter,
    MacenkoNormalizer,
    ReinhardNormalizer,
    StainNormalizer,
    augment_hed,
    hed_to_rgb,
    normalizer_from_dict,
    perturb_hed,
    rgb_to_hed,
)
from .stitching import MAX_IN_MEMORY_BYTES, canvas_size, stitch
from .tissue import METHODS, MIN_MASK_EDGE, TissueMask, tissue_mask, tissue_mask_from_rgb

__all__ = [
    # the wsi hierarchy
    "SlideError", "SlideNotFoundError", "SlideAccessError", "SlidePermissionError", "UnsupportedFormatError",
    "CorruptSlideError", "MissingMppError", "AssociatedImageNotFoundError", "ParameterError", "RegionError",
    "OutOfBoundsError", "ResolutionError", "ClosedSlideError", "OutputError", "OutputExistsError",
    # tiling's own errors
    "TilePlanError", "TileBatchError", "TissueMaskError", "ImageTypeError", "DarkFieldError", "MaskTooSmallError",
    "StainError",
    "StainNotFittedError", "StitchError", "OverlayError",
    "Scale", "parse_scale", "TilePlan", "PLAN_COLUMNS", "MAX_TILES_PER_SCALE", "plan_tiles",
    "TileBatch", "read_batches", "map_batches", "DEFAULT_BATCH_SIZE",
    "TissueMask", "METHODS", "MIN_MASK_EDGE", "tissue_mask", "tissue_mask_from_rgb",
    "StainNormalizer", "MacenkoNormalizer", "ReinhardNormalizer",
    "normalizer_from_dict", "HedAugmenter", "augment_hed", "perturb_hed", "rgb_to_hed", "hed_to_rgb",
    "stitch", "canvas_size", "MAX_IN_MEMORY_BYTES", "overlay", "COLORMAPS",
]
