"""Per-pixel colour features for tissue detection: HSV, optical density, background white.

Everything here is O(pixels) and works on uint8 planes through OpenCV so that a
3,000 x 3,000 thumbnail costs tens of milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .errors import ImageTypeError, TissueMaskError

__all__ = ["ACHROMATIC_SPREAD", "ColorFeatures", "check_rgb", "color_features", "clamped_otsu", "is_achromatic"]

#: Optical density is stored as uint8 in hundredths (OD 0.00 .. 2.55).
OD_SCALE = 100.0

#: Largest channel spread (max - min of R, G, B, 0-255) that 99.9 % of an achromatic image's pixels stay
#: within: a greyscale picture stored as RGB has 0, JPEG chroma noise a few; stained tissue (pale eosin
#: included) is tens, and 0.1 % of such pixels (a small piece on a thumbnail) makes an image coloured.
ACHROMATIC_SPREAD = 12
# The spread is measured on about this many pixels (a regular subsample).
_ACHROMATIC_SAMPLES = 250_000
_ACHROMATIC_QUANTILE = 99.9


def check_rgb(rgb: object, name: str = "rgb") -> np.ndarray:
    """Validate an RGB image and return it C-contiguous.

    Parameters
    ----------
    rgb
        Candidate image; must be a ``numpy.ndarray`` of dtype ``uint8`` and shape ``(H, W, 3)``.
    name
        Parameter name used in error messages.

    Raises
    ------
    ImageTypeError
        Not an ndarray, or not uint8.
    TissueMaskError
        Wrong number of dimensions or channels, or an empty image.
    """
    if not isinstance(rgb, np.ndarray):
        raise ImageTypeError(f"{name}: expected a numpy.ndarray, got {type(rgb).__name__}")
    if rgb.dtype != np.uint8:
        raise ImageTypeError(
            f"{name}: expected dtype uint8 RGB, got dtype {rgb.dtype} "
            f"(scale to 0..255 and cast with .astype(np.uint8))"
        )
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        hint = "; drop alpha with rgb[..., :3]" if rgb.ndim == 3 and rgb.shape[2] == 4 else ""
        raise TissueMaskError(f"{name}: expected shape (H, W, 3) RGB, got shape {rgb.shape}{hint}")
    if rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise TissueMaskError(f"{name}: expected a non-empty image, got shape {rgb.shape}")
    return np.ascontiguousarray(rgb)


@dataclass(frozen=True)
class ColorFeatures:
    """Colour planes of one image, all ``(H, W)`` uint8.

    Attributes
    ----------
    hue, sat, val
        OpenCV HSV planes (hue 0..179, i.e. degrees / 2; saturation and value 0..255).
    od
        Mean optical density of the three channels relative to ``white``, in hundredths
        (``od == 20`` means OD 0.20), clipped at 0.
    white
        Estimated RGB colour of the empty glass (float, 3 values).
    """

    hue: np.ndarray
    sat: np.ndarray
    val: np.ndarray
    od: np.ndarray
    white: np.ndarray


def estimate_white(rgb: np.ndarray, sat: np.ndarray, val: np.ndarray) -> np.ndarray:
    """Estimate the RGB colour of the empty glass.

    Glass is bright and nearly grey. Among pixels with saturation < 30 and value > 150 we keep
    the brightest tenth and take their median colour. With fewer than 1 % such pixels (a tile
    that is all tissue) the glass is assumed white (255, 255, 255). Large images are
    subsampled on a regular grid to about a million pixels: it is a statistic.
    """
    step = max(1, int(np.sqrt(rgb.shape[0] * rgb.shape[1] / 1_000_000)))  # ~1 M samples
    rgb, sat, val = rgb[::step, ::step], sat[::step, ::step], val[::step, ::step]
    candidates = (sat < 30) & (val > 150)
    n = int(np.count_nonzero(candidates))
    if n < max(16, rgb.shape[0] * rgb.shape[1] // 100):
        return np.full(3, 255.0)
    v_cut = np.percentile(val[candidates], 90)
    brightest = candidates & (val >= v_cut)
    white = np.median(rgb[brightest], axis=0).astype(np.float64)
    return np.maximum(white, 1.0)


def _od_lut(white: np.ndarray) -> np.ndarray:
    """256-entry, 3-channel LUT: OD relative to ``white`` in hundredths, uint8."""
    levels = np.maximum(np.arange(256, dtype=np.float64), 1.0)
    od = np.log10(white[None, :] / levels[:, None])  # (256, 3)
    od = np.clip(np.rint(od * OD_SCALE), 0, 255).astype(np.uint8)
    return od.reshape(256, 1, 3)


def color_features(rgb: np.ndarray) -> ColorFeatures:
    """Compute HSV planes, the glass colour and relative optical density of a checked RGB image.

    The image is first smoothed with a 5 x 5 Gaussian: scanner and JPEG chroma noise makes
    single glass pixels look as saturated as pale tissue (saturation is a ratio, noisy when
    the channels are close), and averaging a few pixels removes it.
    """
    rgb = cv2.medianBlur(rgb, 5)
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
    hue, sat, val = cv2.split(hsv)
    white = estimate_white(rgb, sat, val)
    od3 = cv2.LUT(rgb, _od_lut(white))
    od = cv2.transform(od3, np.full((1, 3), 1.0 / 3.0))
    return ColorFeatures(hue=hue, sat=sat, val=val, od=od, white=white)


def regular_subsample(image: np.ndarray, samples: int) -> np.ndarray:
    """Every ``step``-th row and column of ``image``, ``step`` chosen to keep about ``samples`` pixels (a view)."""
    step = max(1, int(np.sqrt(image.shape[0] * image.shape[1] / samples)))
    return image[::step, ::step]


def is_achromatic(rgb: np.ndarray) -> bool:
    """Whether a checked RGB image is grey everywhere (a greyscale scan, or grey stored as RGB).

    True when 99.9 % of the pixels of a regular subsample (about 250,000) have their three channels
    within :data:`ACHROMATIC_SPREAD` of each other. Saturation says nothing about such an image, so
    tissue detection uses optical density on it.
    """
    sample = regular_subsample(rgb, _ACHROMATIC_SAMPLES)
    spread = sample.max(axis=2) - sample.min(axis=2)  # uint8: max >= min, no wrap
    return float(np.percentile(spread, _ACHROMATIC_QUANTILE)) <= ACHROMATIC_SPREAD


def clamped_otsu(plane: np.ndarray, lo: float, hi: float) -> float:
    """Otsu threshold of a uint8 plane, clamped to ``[lo, hi]``.

    The clamp keeps Otsu useful where it is meaningful (a thumbnail with glass and tissue) and
    harmless where it is not: on an all-glass image Otsu splits noise (raised to ``lo``); on an
    all-tissue tile it splits pale from dark tissue (lowered to ``hi``).
    """
    if lo > hi:
        raise TissueMaskError(f"threshold bounds: expected lo <= hi, got lo={lo}, hi={hi}")
    flat = plane.reshape(-1, 1)
    if flat.min() == flat.max():
        return float(lo)
    t, _ = cv2.threshold(flat, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    return float(min(max(t, lo), hi))
