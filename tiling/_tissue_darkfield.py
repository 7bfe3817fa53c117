"""Dark-field (fluorescence) images: recognising them, and finding tissue on them by brightness.

Brightfield methods (``otsu``, ``ihc``) look for colour or absorbance against bright glass. On a
fluorescence slide the glass is black and tissue glows, so they report 0 % or 100 % tissue. This
module tells the two apart and gives the fluorescence candidate mask.

Brightness is the largest of the three channels (HSV value): a fluorophore rendered in one colour
(DAPI blue, FITC green) is as bright as its channel. Measured on the shared real images: every
brightfield picture (H&E and IHC tiles, thumbnails, pen marks) has a median brightness of at least
130 out of 255; fluorescence ones (a DAPI NDPI, a Vectra QPTIFF, a 16-bit field of cells) at most 45.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ._tissue_color import regular_subsample

__all__ = ["DARK_MEDIAN", "DARK_BORDER", "Background", "background", "fluorescence_candidate"]

#: Median brightness (0-255) below which an image is dark-field whatever its border.
DARK_MEDIAN = 80.0
#: Border brightness below which an image with a median under :data:`_BRIGHTFIELD_MEDIAN` is dark-field
#: (a fluorescence slide mostly covered by tissue, whose border is still black glass).
DARK_BORDER = 40.0
# A brightfield image is brighter than this almost everywhere, even with black padding around it.
_BRIGHTFIELD_MEDIAN = 128.0
# Statistics are taken on about this many pixels (a regular subsample).
_SAMPLES = 250_000
# The border ring is this fraction of the short side wide.
_BORDER_FRACTION = 0.05
# The fluorescence threshold is at least this much above the darkest percent of the image (noise).
_MIN_CONTRAST = 4.0


@dataclass(frozen=True)
class Background:
    """Brightness statistics of an image (0-255, the largest channel).

    Attributes
    ----------
    median : float
        Median brightness of the whole image.
    border : float
        Median brightness of a ring along the image's edges (5 % of the short side wide).
    """

    median: float
    border: float

    @property
    def dark(self) -> bool:
        """Whether the background is dark (a fluorescence or dark-field image)."""
        return self.median < DARK_MEDIAN or (self.border < DARK_BORDER and self.median < _BRIGHTFIELD_MEDIAN)

    @property
    def level(self) -> float:
        """The background brightness as reported to the user: the darker of median and border."""
        return min(self.median, self.border)


def _brightness(rgb: np.ndarray) -> np.ndarray:
    """The largest channel of an ``(H, W, 3)`` uint8 image, ``(H, W)`` uint8."""
    return rgb.max(axis=2)


def background(rgb: np.ndarray) -> Background:
    """Brightness statistics of a checked ``(H, W, 3)`` uint8 image, on a regular subsample."""
    value = _brightness(regular_subsample(rgb, _SAMPLES))
    height, width = value.shape
    k = max(1, int(min(height, width) * _BORDER_FRACTION))
    ring = np.concatenate([value[:k].ravel(), value[-k:].ravel(), value[:, :k].ravel(), value[:, -k:].ravel()])
    return Background(median=float(np.median(value)), border=float(np.median(ring)))


def fluorescence_candidate(rgb: np.ndarray) -> np.ndarray:
    """Pixels bright enough to be fluorescent tissue, before morphology; ``(H, W)`` bool.

    The image is smoothed with a 5 x 5 median filter (camera and JPEG noise) and its brightness
    thresholded with the triangle method, which suits a histogram dominated by one dark background
    peak with a long tail of signal (Zack et al. 1977; ImageJ's and scikit-image's
    ``threshold_triangle``; Otsu, tuned to two balanced classes, keeps only the brightest nuclei of a
    DAPI image). The threshold is at least :data:`_MIN_CONTRAST` above the darkest percent, so an
    image of background only is not split on its noise.
    """
    value = _brightness(cv2.medianBlur(np.ascontiguousarray(rgb), 5))
    flat = value.reshape(-1, 1)
    floor = float(np.percentile(value[:: max(1, value.shape[0] // 512), :: max(1, value.shape[1] // 512)], 1))
    if flat.min() == flat.max():
        return np.zeros(value.shape, dtype=bool)
    triangle, _ = cv2.threshold(flat, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_TRIANGLE)
    return value > max(float(triangle), floor + _MIN_CONTRAST)
