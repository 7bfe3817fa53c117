"""Macenko stain normalisation.

Macenko et al., "A method for normalizing histology slides for quantitative analysis", ISBI 2009:
tissue pixels (not near-white: optical density above a threshold) span a plane in OD space; the
stain vectors are the extreme directions (robust percentiles of the angle) in that plane. A tile is
normalised by unmixing it with its own stain vectors, rescaling each stain's concentrations so their
99th percentile matches the reference's, and remixing with the reference stain vectors.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from slidescope.wsi.validation import parse_int

from ._stain_base import StainNormalizer
from ._stain_checks import check_range, dict_array
from ._stain_optics import od_to_rgb, optical_density
from .errors import StainError

__all__ = ["MacenkoNormalizer", "estimate_macenko", "stain_angle_deg"]

#: Stain vectors closer than this (degrees) cannot be unmixed reliably: ``fit`` refuses them and
#: ``transform`` returns such a tile unchanged (one-colour tiles, pure black, a single stain).
MIN_STAIN_ANGLE_DEG = 3.0


def estimate_macenko(
    tissue_od: np.ndarray, angle_percentile: float, concentration_percentile: float
) -> tuple[np.ndarray, np.ndarray]:
    """Stain matrix (2, 3; rows H, E, unit OD vectors) and robust max concentrations (2,).

    Parameters
    ----------
    tissue_od : numpy.ndarray
        (P, 3) optical densities of tissue pixels only.
    angle_percentile : float
        Percentile (and 100 minus it) of the in-plane angle taken as the extreme stain directions.
    concentration_percentile : float
        Percentile of each stain's concentration taken as its maximum.
    """
    od = tissue_od.astype(np.float64)
    # Stain mixing is linear through the origin (OD = concentrations @ stains), so the plane is the
    # best one through the origin: eigenvectors of the uncentred second moment, as in Macenko's SVD.
    # (A centred covariance fits a plane through the mean, and unmixing then drops that offset.)
    # Moments and projections are BLAS products on (P, 3) / (3, P), much faster than np.cov.
    _, eigvecs = np.linalg.eigh(od.T @ od)
    plane = eigvecs[:, [2, 1]]  # the two largest principal directions
    plane *= np.where(plane.sum(axis=0) < 0, -1.0, 1.0)  # point into positive OD
    projected = plane.T @ od.T  # (2, P)
    angles = np.arctan2(projected[1], projected[0])
    low, high = np.percentile(angles, [angle_percentile, 100.0 - angle_percentile])
    first = plane @ np.array([np.cos(low), np.sin(low)])
    second = plane @ np.array([np.cos(high), np.sin(high)])
    # Haematoxylin absorbs red light more than eosin does: the larger red OD is H.
    stains = np.stack([first, second] if first[0] > second[0] else [second, first])
    stains /= np.linalg.norm(stains, axis=1, keepdims=True)
    concentrations = np.linalg.pinv(stains).T @ od.T  # (2, P)
    max_concentrations = np.percentile(concentrations, concentration_percentile, axis=1)
    return stains, max_concentrations


def stain_angle_deg(stains: np.ndarray) -> float:
    """Angle in degrees between the two (unit) rows of a stain matrix."""
    return float(np.degrees(np.arccos(np.clip(stains[0] @ stains[1], -1.0, 1.0))))


class MacenkoNormalizer(StainNormalizer):
    """Macenko stain normaliser for H&E tiles (uint8 RGB in and out).

    Parameters
    ----------
    od_threshold : float
        A pixel is tissue when its optical density ``-ln((v + 1) / 256)`` reaches this in at least
        one channel (0.15 by default, as in Macenko's paper: any channel value <= 219); near-white
        background is ignored when estimating stains and stays near white after ``transform``.
    angle_percentile : float
        Robust extreme of the stain angle distribution (1.0: 1st and 99th percentiles).
    concentration_percentile : float
        Percentile taken as a stain's maximum concentration (99.0).
    min_tissue_pixels : int
        ``fit`` raises below this many tissue pixels; ``transform`` returns a tile with fewer
        tissue pixels unchanged (a blank tile has no stains to estimate), and likewise a tile whose
        two stain directions are under ``MIN_STAIN_ANGLE_DEG`` apart (one colour: nothing to unmix).

    Attributes
    ----------
    stain_matrix : numpy.ndarray
        (2, 3) reference stain OD vectors, row 0 haematoxylin, row 1 eosin; columns R, G, B; unit norm.
    max_concentrations : numpy.ndarray
        (2,) reference robust maximum concentrations of H and E.
    """

    method = "macenko"

    def __init__(
        self,
        od_threshold: float = 0.15,
        angle_percentile: float = 1.0,
        concentration_percentile: float = 99.0,
        min_tissue_pixels: int = 256,
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        self.od_threshold = check_range("od_threshold", od_threshold, 0.0, 5.0, owner)
        self.angle_percentile = check_range("angle_percentile", angle_percentile, 0.0, 49.0, owner)
        self.concentration_percentile = check_range(
            "concentration_percentile", concentration_percentile, 50.0, 100.0, owner
        )
        self.min_tissue_pixels = parse_int(min_tissue_pixels, f"{owner}: min_tissue_pixels", minimum=3,
                                           maximum=10**12)
        self._max_tissue_value = int(np.floor(256.0 * np.exp(-self.od_threshold) - 1.0))
        self._stain_matrix: np.ndarray | None = None
        self._max_concentrations: np.ndarray | None = None

    @property
    def stain_matrix(self) -> np.ndarray:
        """(2, 3) reference stain vectors: rows haematoxylin, eosin; columns R, G, B OD."""
        return self._fitted_copy(self._stain_matrix, "stain_matrix")

    @property
    def max_concentrations(self) -> np.ndarray:
        """(2,) reference robust maximum concentrations of haematoxylin and eosin."""
        return self._fitted_copy(self._max_concentrations, "max_concentrations")

    def _config(self) -> dict[str, Any]:
        return {
            "od_threshold": self.od_threshold,
            "angle_percentile": self.angle_percentile,
            "concentration_percentile": self.concentration_percentile,
            "min_tissue_pixels": self.min_tissue_pixels,
        }

    def _tissue(self, pixels: np.ndarray) -> np.ndarray:
        """Tissue mask of uint8 pixels (..., 3): not near-white, i.e. OD >= od_threshold in some channel.

        Tested on uint8 values: ``-ln((v + 1) / 256) >= t`` exactly when ``v <= 256 e^-t - 1``.
        (Macenko's reference code demands the threshold in every channel; that drops pale eosin,
        whose red OD is tiny, and biases the eosin vector: on source.png 81% of pixels went.)
        """
        darkest = np.minimum(np.minimum(pixels[..., 0], pixels[..., 1]), pixels[..., 2])
        return darkest <= self._max_tissue_value

    def _tissue_od(self, pixels: np.ndarray) -> np.ndarray:
        """(P, 3) optical densities of the tissue pixels among uint8 pixels (P, 3)."""
        return optical_density(pixels[self._tissue(pixels)])

    def _estimate(self, tissue_od: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return estimate_macenko(tissue_od, self.angle_percentile, self.concentration_percentile)

    def _fit_pixels(self, pixels: np.ndarray) -> None:
        tissue = self._tissue_od(pixels)
        if len(tissue) < self.min_tissue_pixels:
            raise StainError(
                f"{type(self).__name__}.fit: expected at least {self.min_tissue_pixels} tissue pixels "
                f"(optical density >= {self.od_threshold} in some channel), got {len(tissue)} of "
                f"{len(pixels)}; the reference looks blank (background only)"
            )
        stains, max_conc = self._estimate(tissue)
        if stain_angle_deg(stains) < MIN_STAIN_ANGLE_DEG:
            raise StainError(
                f"{type(self).__name__}.fit: expected two separable stains (H and E vectors at least "
                f"{MIN_STAIN_ANGLE_DEG} degrees apart), got {stain_angle_deg(stains):.2f} degrees; "
                "the reference tissue shows a single colour"
            )
        if not np.all(max_conc > 0):
            raise StainError(
                f"{type(self).__name__}.fit: expected positive maximum H and E concentrations, "
                f"got {max_conc.tolist()}; the reference does not show two separable stains"
            )
        self._stain_matrix, self._max_concentrations = stains, max_conc

    def _transform_batch(self, batch: np.ndarray) -> np.ndarray:
        n_images = batch.shape[0]
        pixels = batch.reshape(n_images, -1, 3)
        # One 3x3 map per image (unmix with its own stains, rescale, remix with the reference's),
        # applied to the whole batch in one batched matmul; identity leaves a blank tile unchanged.
        maps = np.tile(np.eye(3, dtype=np.float32), (n_images, 1, 1))
        for index in range(n_images):
            tissue_od = self._tissue_od(pixels[index])
            if len(tissue_od) < self.min_tissue_pixels:
                continue
            stains, max_conc = self._estimate(tissue_od)
            if stain_angle_deg(stains) < MIN_STAIN_ANGLE_DEG:
                continue
            scale = self._max_concentrations / np.maximum(max_conc, 1e-6)
            maps[index] = np.linalg.pinv(stains) @ (scale[:, None] * self._stain_matrix)
        return od_to_rgb(np.matmul(optical_density(pixels), maps)).reshape(batch.shape)

    def _params(self) -> dict[str, Any]:
        return {
            "stain_matrix": self.stain_matrix.tolist(),
            "max_concentrations": self.max_concentrations.tolist(),
        }

    def _load_params(self, params: Mapping[str, Any]) -> None:
        owner = type(self).__name__
        stains = dict_array(params, "stain_matrix", (2, 3), owner)
        max_conc = dict_array(params, "max_concentrations", (2,), owner)
        if not np.all(max_conc > 0):
            raise StainError(
                f"{owner}.from_dict: key 'max_concentrations' expected positive values, "
                f"got {max_conc.tolist()}"
            )
        self._stain_matrix, self._max_concentrations = stains, max_conc
