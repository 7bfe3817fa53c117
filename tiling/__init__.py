"""Tiling: tissue masks, multi-scale tile plans, Dask tile reading, stain, stitching, overlays.

>>> from slidescope.wsi import open_slide                                  # doctest: +SKIP
>>> from slidescope.tiling import Scale, map_batches, plan_tiles, tissue_mask
>>> with open_slide("slide.svs") as slide:                                  # doctest: +SKIP
...     mask = tissue_mask(slide)
...     plan = plan_tiles(slide, mask, [Scale(2.0, 256, name="tissue"), Scale(0.5, 256, overlap=32, name="cell")])
...     means = map_batches(lambda images, ids: images.mean(axis=(1, 2, 3)), slide, plan, "tissue")
"""

from slidescope.wsi.errors import (
    ClosedSlideError,
    CorruptSlideError,
    MissingMppError,
    OutOfBoundsError,
    RegionError,
    ResolutionError,
    SlideError,
    SlideNotFoundError,
    UnsupportedFormatError,
)

from .dask_read import DEFAULT_BATCH_SIZE, TileBatch, map_batches, read_batches
from .overlays import COLORMAPS, OverlayError, overlay
from .plan import PLAN_COLUMNS, TilePlan, TilePlanError, plan_tiles
from .scales import Scale, parse_scale
from .stain import (
    HedAugmenter,
    MacenkoNormalizer,
    ReinhardNormalizer,
    StainError,
    StainNormalizer,
    StainNotFittedError,
    augment_hed,
    hed_to_rgb,
    normalizer_from_dict,
    perturb_hed,
    rgb_to_hed,
)
from .stitching import MAX_IN_MEMORY_BYTES, StitchError, canvas_size, stitch
from .tissue import METHODS, ImageTypeError, TissueMask, TissueMaskError, tissue_mask, tissue_mask_from_rgb

__all__ = [
    "SlideError", "SlideNotFoundError", "UnsupportedFormatError", "CorruptSlideError", "MissingMppError",
    "RegionError", "OutOfBoundsError", "ResolutionError", "ClosedSlideError",
    "Scale", "parse_scale", "TilePlan", "TilePlanError", "PLAN_COLUMNS", "plan_tiles",
    "TileBatch", "read_batches", "map_batches", "DEFAULT_BATCH_SIZE",
    "TissueMask", "TissueMaskError", "ImageTypeError", "METHODS", "tissue_mask", "tissue_mask_from_rgb",
    "StainError", "StainNotFittedError", "StainNormalizer", "MacenkoNormalizer", "ReinhardNormalizer",
    "normalizer_from_dict", "HedAugmenter", "augment_hed", "perturb_hed", "rgb_to_hed", "hed_to_rgb",
    "stitch", "StitchError", "canvas_size", "MAX_IN_MEMORY_BYTES", "overlay", "OverlayError", "COLORMAPS",
]
