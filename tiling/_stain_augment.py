"""HED stain augmentation for training (Tellez et al., "Whole-slide mitosis detection in H&E breast
histology using PHH3 as a reference to train distilled stain-invariant convolutional networks",
IEEE TMI 2018): unmix RGB into haematoxylin, eosin and DAB concentrations with the Ruifrok-Johnston
deconvolution, set each to ``alpha * c + beta`` and remix.

Concentrations here are in natural-log optical density (the units of Tellez et al.); skimage's
``rgb2hed`` reports the same quantities divided by ln(1e6) ~= 13.8. The additive ``beta`` is applied
in proportion to how stained a pixel is, so glass stays white: pixels whose largest channel optical
density is below 0.1 (RGB above ~230) get none of it, pixels above 0.3 get all of it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from slidescope.wsi.errors import ParameterError

from ._stain_checks import as_batch, check_range, restore_shape
from ._stain_optics import hed_concentrations, hed_concentrations_to_rgb, hed_optical_density
from .errors import StainError

__all__ = ["augment_hed", "perturb_hed", "HedAugmenter"]

_BIAS_OD_LOW = 0.1
_BIAS_OD_HIGH = 0.3

RngLike = np.random.Generator | int | None


def _per_image(values: object, n_images: int, name: str) -> np.ndarray:
    """Broadcast ``values`` ((3,) or (N, 3)) to a float32 (N, 1, 1, 3) array."""
    try:
        array = np.asarray(values)
    except (TypeError, ValueError) as exc:
        raise StainError(f"perturb_hed: {name} expected numbers, got {values!r}") from exc
    if array.dtype.kind not in "iuf":  # bools and strings are not scales or shifts
        raise StainError(f"perturb_hed: {name} expected numbers, got {values!r} (dtype {array.dtype})")
    array = array.astype(np.float32)
    if array.shape not in ((3,), (n_images, 3)) or not np.all(np.isfinite(array)):
        raise StainError(
            f"perturb_hed: {name} expected finite values of shape (3,) or ({n_images}, 3) "
            f"(one per H, E, DAB channel [per image]), got {array.tolist()!r} of shape {array.shape}"
        )
    return np.broadcast_to(array, (n_images, 3)).reshape(n_images, 1, 1, 3)


def perturb_hed(image: np.ndarray, alpha: object, beta: object) -> np.ndarray:
    """Set HED concentrations to ``alpha * c + beta`` (beta weighted by staining); uint8 RGB out.

    Parameters
    ----------
    image : numpy.ndarray
        uint8 RGB tile (H, W, 3) or batch (N, H, W, 3).
    alpha, beta : array-like
        Scale and shift per channel (haematoxylin, eosin, DAB): shape (3,) for all images or (N, 3).
        ``alpha = 1, beta = 0`` returns the image (up to float rounding, at most one level).
    """
    batch, was_single = as_batch(image, "perturb_hed image")
    n_images = batch.shape[0]
    scale = _per_image(alpha, n_images, "alpha")
    shift = _per_image(beta, n_images, "beta")
    stains = hed_concentrations(batch)
    if np.any(shift):
        darkest = np.minimum(np.minimum(batch[..., 0], batch[..., 1]), batch[..., 2])
        od_max = hed_optical_density(darkest[..., None])  # the largest channel OD
        weight = np.clip((od_max - _BIAS_OD_LOW) / (_BIAS_OD_HIGH - _BIAS_OD_LOW), 0.0, 1.0)
        stains = stains * scale + shift * weight
    else:
        stains *= scale
    return restore_shape(hed_concentrations_to_rgb(stains), was_single)


def _check_interval(name: str, interval: object, low: float, high: float) -> tuple[float, float]:
    """``(start, stop)`` of a (low, high) pair inside [low, high], else a ParameterError."""
    if isinstance(interval, (str, bytes)) or not hasattr(interval, "__len__") or len(interval) != 2:  # type: ignore[arg-type]
        raise ParameterError(f"augment_hed: {name}: expected a (low, high) pair, got {interval!r}")
    start, stop = (check_range(f"{name}[{i}]", value, low, high, "augment_hed")
                   for i, value in enumerate(interval))  # type: ignore[arg-type]
    if start > stop:
        raise ParameterError(f"augment_hed: {name}: expected low <= high, got {interval!r}")
    return start, stop


def augment_hed(
    image: np.ndarray,
    rng: RngLike = None,
    alpha_range: Sequence[float] = (0.95, 1.05),
    beta_range: Sequence[float] = (-0.05, 0.05),
) -> np.ndarray:
    """Random HED stain augmentation; each image of a batch gets its own draw.

    Parameters
    ----------
    image : numpy.ndarray
        uint8 RGB tile (H, W, 3) or batch (N, H, W, 3).
    rng : numpy.random.Generator, int or None
        Source of randomness (an int seeds a new generator; a Generator is advanced).
    alpha_range : (float, float)
        Uniform range of the per-channel scale (within [0, 10]).
    beta_range : (float, float)
        Uniform range of the per-channel shift in OD units (within [-5, 5]).

    Returns
    -------
    numpy.ndarray
        uint8 of the input's shape.
    """
    batch, was_single = as_batch(image, "augment_hed image")
    alpha_low, alpha_high = _check_interval("alpha_range", alpha_range, 0.0, 10.0)
    beta_low, beta_high = _check_interval("beta_range", beta_range, -5.0, 5.0)
    generator = np.random.default_rng(rng)
    n_images = batch.shape[0]
    alpha = generator.uniform(alpha_low, alpha_high, size=(n_images, 3))
    beta = generator.uniform(beta_low, beta_high, size=(n_images, 3))
    return restore_shape(perturb_hed(batch, alpha, beta), was_single)


class HedAugmenter:
    """Callable HED augmentation with its own seeded generator (``alpha ~ U(1 - sigma, 1 + sigma)``,
    ``beta ~ U(-bias, bias)`` per image and channel).

    Parameters
    ----------
    sigma : float
        Half-width of the multiplicative range (0.05: "HED-light"); in [0, 1].
    bias : float
        Half-width of the additive range in OD units (0.05); in [0, 5].
    seed : int, numpy.random.Generator or None
        Seed for reproducible draws; the same seed gives the same sequence of outputs.
    """

    def __init__(self, sigma: float = 0.05, bias: float = 0.05, seed: RngLike = None) -> None:
        self.sigma = check_range("sigma", sigma, 0.0, 1.0, "HedAugmenter")
        self.bias = check_range("bias", bias, 0.0, 5.0, "HedAugmenter")
        self._rng = np.random.default_rng(seed)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """Augment a uint8 RGB tile (H, W, 3) or batch (N, H, W, 3); uint8 of the same shape."""
        return augment_hed(
            image,
            self._rng,
            alpha_range=(1.0 - self.sigma, 1.0 + self.sigma),
            beta_range=(-self.bias, self.bias),
        )

    def __repr__(self) -> str:
        return f"HedAugmenter(sigma={self.sigma!r}, bias={self.bias!r})"
