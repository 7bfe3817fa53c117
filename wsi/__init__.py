"""Slide access: open any whole-slide image, know its pyramid and mpp, read regions as numpy.

>>> from slidescope.wsi import open_slide                    # doctest: +SKIP
>>> with open_slide("slide.svs") as slide:                   # doctest: +SKIP
...     tiles = slide.read_tiles([(0, 0), (512, 0)], (224, 224), mpp=0.5)
"""

from .errors import (
    SlideError,
    SlideNotFoundError,
    SlideAccessError,
    SlidePermissionError,
    UnsupportedFormatError,
    CorruptSlideError,
    MissingMppError,
    AssociatedImageNotFoundError,
    ParameterError,
    RegionError,
    OutOfBoundsError,
    ResolutionError,
    ClosedSlideError,
    OutputError,
    OutputExistsError,
)
from .levels import Level, SlideInfo
from .open import BACKENDS, from_array, open_slide
from .slide import Slide

__all__ = [
    "open_slide",
    "from_array",
    "Slide",
    "Level",
    "SlideInfo",
    "BACKENDS",
    "SlideError",
    "SlideNotFoundError",
    "SlideAccessError",
    "SlidePermissionError",
    "UnsupportedFormatError",
    "CorruptSlideError",
    "MissingMppError",
    "AssociatedImageNotFoundError",
    "ParameterError",
    "RegionError",
    "OutOfBoundsError",
    "ResolutionError",
    "ClosedSlideError",
    "OutputError",
    "OutputExistsError",
]
