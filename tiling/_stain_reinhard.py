"""Reinhard colour normalisation in CIE L*a*b*.

Reinhard et al., "Color transfer between images", IEEE CG&A 2001: match each L*a*b* channel's mean
and standard deviation to a reference's. Colour conversion is OpenCV's (float32, sRGB, D65; L* in
[0, 100]). With ``mask_background`` the statistics come from tissue only (L* below ``background_l``)
and near-white background keeps its colour, blended smoothly over :data:`_BLEND_WIDTH` L* units so no
seam appears at the threshold.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import cv2
import numpy as np

from slidescope.wsi.validation import parse_bool, parse_int

from ._stain_base import StainNormalizer
from ._stain_checks import check_range, dict_array
from .errors import StainError

__all__ = ["ReinhardNormalizer"]

#: Pixels with L* in [background_l - _BLEND_WIDTH, background_l] are partly normalised.
_BLEND_WIDTH = 5.0


def _as_cv_image(values: np.ndarray) -> np.ndarray:
    """View (N, H, W, 3) as one (N*H, W, 3) image, and a (P, 3) table as (1, P, 3).

    OpenCV splits work by rows; a (P, 1, 3) column would cost one call per pixel row.
    """
    if values.ndim == 2:
        return values.reshape(1, -1, 3)
    return values.reshape(-1, values.shape[-2], 3)


def _rgb_to_lab(pixels: np.ndarray) -> np.ndarray:
    """uint8 RGB (..., 3) to float32 CIE L*a*b* of the same shape, in one OpenCV call."""
    scaled = _as_cv_image(pixels).astype(np.float32)
    scaled *= np.float32(1.0 / 255.0)
    return cv2.cvtColor(scaled, cv2.COLOR_RGB2LAB).reshape(pixels.shape)


def _lab_to_rgb255(lab: np.ndarray) -> np.ndarray:
    """float32 L*a*b* (..., 3) to float32 RGB scaled to about [0, 255], same shape."""
    rgb = cv2.cvtColor(np.ascontiguousarray(_as_cv_image(lab)), cv2.COLOR_LAB2RGB)
    rgb *= np.float32(255.0)
    return rgb.reshape(lab.shape)


def _masked_stats(
    lab: np.ndarray, mask: np.ndarray, dtype: type[np.floating] = np.float32
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-image means (N, 3), stds (N, 3) and counts (N,) of (N, P, 3) values where mask (N, P).

    Sums are matrix products ((N, 1, P) @ (N, P, 3)), much faster than numpy reductions over the
    pixel axis and blocked, so float32 is exact enough for a tile; ``fit`` pools millions of pixels
    and asks for float64. Two passes (mean, then squared deviations) avoid cancellation.
    """
    weights = mask.astype(dtype)[:, None, :]
    values = lab.astype(dtype, copy=False)
    counts = mask.sum(axis=1, dtype=np.float64)[:, None]  # (N, 1)
    safe = np.maximum(counts, 1.0)
    means = np.matmul(weights, values)[:, 0, :] / safe
    centred = values - means[:, None, :].astype(dtype)
    np.square(centred, out=centred)
    variances = np.matmul(weights, centred)[:, 0, :] / safe
    return means, np.sqrt(variances), counts[:, 0]


class ReinhardNormalizer(StainNormalizer):
    """Reinhard colour normaliser: match L*a*b* means and standard deviations (uint8 RGB in and out).

    Parameters
    ----------
    mask_background : bool
        If True (default), statistics use tissue pixels only (L* < ``background_l``) and background
        keeps its colour; if False every pixel counts and every pixel is mapped.
    background_l : float
        CIE L* (0-100) at and above which a pixel is background (90: glass is about 90-95).
    min_tissue_pixels : int
        ``fit`` raises below this many tissue pixels; ``transform`` returns such a tile unchanged.

    Attributes
    ----------
    lab_means, lab_stds : numpy.ndarray
        (3,) reference L*, a*, b* means and standard deviations (OpenCV float L*a*b*).
    """

    method = "reinhard"

    def __init__(
        self, mask_background: bool = True, background_l: float = 90.0, min_tissue_pixels: int = 256
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        self.mask_background = parse_bool(mask_background, f"{owner}: mask_background")
        self.background_l = check_range("background_l", background_l, _BLEND_WIDTH, 100.0, owner)
        self.min_tissue_pixels = parse_int(min_tissue_pixels, f"{owner}: min_tissue_pixels", minimum=2,
                                           maximum=10**12)
        self._means: np.ndarray | None = None
        self._stds: np.ndarray | None = None

    @property
    def lab_means(self) -> np.ndarray:
        """(3,) reference means of L*, a*, b*."""
        return self._fitted_copy(self._means, "lab_means")

    @property
    def lab_stds(self) -> np.ndarray:
        """(3,) reference standard deviations of L*, a*, b*."""
        return self._fitted_copy(self._stds, "lab_stds")

    def _config(self) -> dict[str, Any]:
        return {
            "mask_background": self.mask_background,
            "background_l": self.background_l,
            "min_tissue_pixels": self.min_tissue_pixels,
        }

    def _tissue(self, lab: np.ndarray) -> np.ndarray:
        if not self.mask_background:
            return np.ones(lab.shape[:-1], dtype=bool)
        return lab[..., 0] < self.background_l

    def _fit_pixels(self, pixels: np.ndarray) -> None:
        lab = _rgb_to_lab(pixels)[None]  # (1, P, 3)
        tissue = self._tissue(lab)
        means, stds, counts = _masked_stats(lab, tissue, np.float64)
        if counts[0] < self.min_tissue_pixels:
            raise StainError(
                f"{type(self).__name__}.fit: expected at least {self.min_tissue_pixels} tissue pixels "
                f"(L* < {self.background_l}), got {int(counts[0])} of {len(pixels)}; "
                "the reference looks blank (background only)"
            )
        if not np.all(stds[0] > 1e-3):
            raise StainError(
                f"{type(self).__name__}.fit: expected colour variation in the reference tissue, "
                f"got L*a*b* standard deviations {stds[0].tolist()}"
            )
        self._means, self._stds = means[0], stds[0]

    def _transform_batch(self, batch: np.ndarray) -> np.ndarray:
        n_images = batch.shape[0]
        lab = _rgb_to_lab(batch).reshape(n_images, -1, 3)
        means, stds, counts = _masked_stats(lab, self._tissue(lab))
        scale = (self._stds / np.maximum(stds, 1e-6)).astype(np.float32)[:, None, :]
        blank = counts < self.min_tissue_pixels
        # (lab - mean) * scale + reference mean: centring first keeps a near-flat tile exact
        # (a folded "lab * scale + shift" loses it to cancellation when the scale is huge).
        mapped = lab - means.astype(np.float32)[:, None, :]
        mapped *= scale
        mapped += self._means.astype(np.float32)
        rgb = _lab_to_rgb255(mapped.reshape(batch.shape)).reshape(n_images, -1, 3)
        if self.mask_background:
            # Blend in RGB so pure background is returned bit for bit (a L*a*b* round trip is not).
            weight = np.clip((self.background_l - lab[..., :1]) / _BLEND_WIDTH, 0.0, 1.0)
            original = batch.reshape(n_images, -1, 3).astype(np.float32)
            rgb = original + weight * (rgb - original)
        np.clip(rgb, 0.0, 255.0, out=rgb)
        rgb += 0.5
        out = rgb.astype(np.uint8).reshape(batch.shape)
        out[blank] = batch[blank]  # too little tissue to measure: returned unchanged
        return out

    def _params(self) -> dict[str, Any]:
        return {"lab_means": self.lab_means.tolist(), "lab_stds": self.lab_stds.tolist()}

    def _load_params(self, params: Mapping[str, Any]) -> None:
        owner = type(self).__name__
        means = dict_array(params, "lab_means", (3,), owner)
        stds = dict_array(params, "lab_stds", (3,), owner)
        if not np.all(stds > 0):
            raise StainError(
                f"{owner}.from_dict: key 'lab_stds' expected positive values, got {stds.tolist()}"
            )
        self._means, self._stds = means, stds
