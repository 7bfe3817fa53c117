"""Optical density and Ruifrok-Johnston colour deconvolution (RGB <-> HED), vectorised in numpy.

Hand-written rather than calling ``skimage.color.rgb2hed``/``hed2rgb`` because the stain code needs
what those functions do not offer: a 256-entry lookup table for uint8 input (no per-pixel log), float32
on hot paths, the unclipped stain concentrations (so a round trip is exact) and uint8 output. The public
:func:`rgb_to_hed` / :func:`hed_to_rgb` reproduce skimage's results and units to float64 precision
(tests/tiling/test_stain.py checks this).

Two optical-density conventions live here, each named for its user:

* HED (skimage): ``od = -ln(max(v / 255, 1e-6))``; skimage's HED values are these stain
  concentrations divided by ``ln(1e6)`` (:data:`HED_LOG_ADJUST`).
* Macenko: ``od = -ln((v + 1) / 256)``: white (255) is 0 and black stays finite (5.55).
"""

from __future__ import annotations

import numpy as np

from ._stain_checks import as_batch, restore_shape
from .errors import StainError

__all__ = [
    "RGB_FROM_HED",
    "HED_FROM_RGB",
    "HED_LOG_ADJUST",
    "rgb_to_hed",
    "hed_to_rgb",
    "hed_optical_density",
    "hed_concentrations",
    "hed_concentrations_to_rgb",
    "optical_density",
    "od_to_rgb",
]

# Stain OD vectors (rows: haematoxylin, eosin, DAB; columns: R, G, B) from Ruifrok & Johnston,
# "Quantification of histochemical staining by color deconvolution", Anal. Quant. Cytol. Histol.
# 23(4):291-299, 2001 -- the same values skimage.color uses.
RGB_FROM_HED = np.array([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]])
HED_FROM_RGB = np.linalg.inv(RGB_FROM_HED)
RGB_FROM_HED.setflags(write=False)
HED_FROM_RGB.setflags(write=False)

_MIN_TRANSMISSION = 1e-6
#: skimage divides natural-log optical density by this (``-ln(1e-6)``) so HED values stay near [0, 1].
HED_LOG_ADJUST = float(-np.log(_MIN_TRANSMISSION))

_LEVELS = np.arange(256, dtype=np.float64)
_HED_OD_LUT = -np.log(np.maximum(_LEVELS / 255.0, _MIN_TRANSMISSION))
_MACENKO_OD_LUT = -np.log((_LEVELS + 1.0) / 256.0)
_HED_OD_LUT32 = _HED_OD_LUT.astype(np.float32)
_MACENKO_OD_LUT32 = _MACENKO_OD_LUT.astype(np.float32)
_HED_FROM_RGB32 = HED_FROM_RGB.astype(np.float32)
_RGB_FROM_HED32 = RGB_FROM_HED.astype(np.float32)


def rgb_to_hed(image: np.ndarray) -> np.ndarray:
    """Haematoxylin, eosin and DAB concentrations of uint8 RGB pixels, as ``skimage.color.rgb2hed``.

    Parameters
    ----------
    image : numpy.ndarray
        uint8 RGB, shape (H, W, 3) or (N, H, W, 3).

    Returns
    -------
    numpy.ndarray
        float64 of the same shape; channel 0 haematoxylin, 1 eosin, 2 DAB, in skimage's units
        (optical density / ln(1e6)), negative values clipped to 0 exactly as skimage does.
    """
    batch, was_single = as_batch(image, "rgb_to_hed image")
    stains = (_HED_OD_LUT[batch] / HED_LOG_ADJUST) @ HED_FROM_RGB
    np.maximum(stains, 0.0, out=stains)
    return restore_shape(stains, was_single)


def hed_to_rgb(hed: np.ndarray, *, as_float: bool = False) -> np.ndarray:
    """RGB pixels from HED concentrations in skimage's units, as ``skimage.color.hed2rgb``.

    Parameters
    ----------
    hed : numpy.ndarray
        Real array of shape (..., 3): haematoxylin, eosin, DAB (e.g. from :func:`rgb_to_hed`).
    as_float : bool
        If True return float64 RGB in [0, 1] (skimage's output); otherwise uint8 (rounded).

    Returns
    -------
    numpy.ndarray
        Same leading shape as ``hed``, uint8 (default) or float64.
    """
    if not isinstance(hed, np.ndarray) or hed.ndim < 1 or hed.shape[-1] != 3:
        got = f"shape {hed.shape}" if isinstance(hed, np.ndarray) else type(hed).__name__
        raise StainError(f"hed_to_rgb: expected a real array of shape (..., 3), got {got}")
    if not (np.issubdtype(hed.dtype, np.floating) or np.issubdtype(hed.dtype, np.integer)):
        raise StainError(f"hed_to_rgb: expected real HED values, got dtype {hed.dtype}")
    od = (np.asarray(hed, dtype=np.float64) * HED_LOG_ADJUST) @ RGB_FROM_HED
    rgb = np.exp(-od)
    np.clip(rgb, 0.0, 1.0, out=rgb)
    if as_float:
        return rgb
    return _to_uint8(rgb * 255.0)


def hed_optical_density(pixels: np.ndarray) -> np.ndarray:
    """skimage-convention optical density ``-ln(max(v / 255, 1e-6))`` of uint8 values, float32."""
    return _HED_OD_LUT32[pixels]


def hed_concentrations(batch: np.ndarray) -> np.ndarray:
    """Unclipped HED concentrations in natural-log OD units, float32, for a checked uint8 array."""
    return _HED_OD_LUT32[batch] @ _HED_FROM_RGB32


def hed_concentrations_to_rgb(stains: np.ndarray) -> np.ndarray:
    """Inverse of :func:`hed_concentrations`: uint8 RGB pixels."""
    od = stains @ _RGB_FROM_HED32
    return _to_uint8(np.float32(255.0) * np.exp(-od))


def optical_density(batch: np.ndarray) -> np.ndarray:
    """Macenko optical density ``-ln((v + 1) / 256)`` of checked uint8 pixels, float32, same shape."""
    return _MACENKO_OD_LUT32[batch]


def od_to_rgb(od: np.ndarray) -> np.ndarray:
    """Inverse of :func:`optical_density`: uint8 RGB pixels (clipped to 0-255, rounded)."""
    return _to_uint8(np.float32(256.0) * np.exp(-od) - np.float32(1.0))


def _to_uint8(values: np.ndarray) -> np.ndarray:
    """Clip to [0, 255] and round half up into uint8 (in place on ``values``)."""
    np.clip(values, 0.0, 255.0, out=values)
    values += 0.5
    return values.astype(np.uint8)
