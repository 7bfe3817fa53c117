"""Training augmentation on uint8 tiles, numpy and OpenCV only (it runs in the loader's workers).

One random geometric transform per tile (a flip, a multiple of 90°, and a small scale jitter about
the centre) is applied to the image with :func:`cv2.warpAffine` and to the tile's nucleus points
with the same matrix, so point targets are rendered after augmentation and stay exact; then HED
stain jitter (:func:`slidescope.tiling.augment_hed`, Tellez et al.) and, sometimes, a slight
Gaussian blur. Every draw comes from the generator passed in, so a batch is a function of its seed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np

from slidescope.tiling import augment_hed
from slidescope.wsi.validation import parse_fraction, parse_non_negative_float

__all__ = ["Augmentation", "NO_AUGMENTATION"]


@dataclass(frozen=True)
class Augmentation:
    """What to draw for each training tile.

    Attributes
    ----------
    flips : bool
        Mirror left-right and/or top-bottom, each with probability 1/2.
    rotations : bool
        Rotate by 0, 90, 180 or 270 degrees.
    scale : float
        Zoom by a factor drawn uniformly in ``[1 - scale, 1 + scale]`` (borders reflected).
    hed_sigma, hed_bias : float
        HED jitter: concentrations scaled by ``U(1 - sigma, 1 + sigma)`` and shifted by
        ``U(-bias, bias)`` optical density, per tile and channel.
    blur : float
        Probability of a Gaussian blur with sigma drawn in ``[0.3, 1.0]`` px.
    """

    flips: bool = True
    rotations: bool = True
    scale: float = 0.1
    hed_sigma: float = 0.08
    hed_bias: float = 0.08
    blur: float = 0.2

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "scale", parse_fraction(self.scale, "augmentation scale"))
        set_(self, "hed_sigma", parse_fraction(self.hed_sigma, "augmentation hed_sigma"))
        set_(self, "hed_bias", parse_non_negative_float(self.hed_bias, "augmentation hed_bias", maximum=5.0))
        set_(self, "blur", parse_fraction(self.blur, "augmentation blur"))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def matrix(self, size: int, rng: np.random.Generator) -> np.ndarray:
        """A random 2x3 affine matrix about the centre of a ``size`` px tile (pixel-centre coordinates)."""
        centre = (size - 1) / 2.0
        linear = np.eye(2)
        if self.flips:
            linear = np.diag([-1.0 if rng.random() < 0.5 else 1.0, -1.0 if rng.random() < 0.5 else 1.0]) @ linear
        if self.rotations:
            quarter = int(rng.integers(4))
            rotation = np.array([[0.0, -1.0], [1.0, 0.0]])
            linear = np.linalg.matrix_power(rotation, quarter) @ linear
        if self.scale > 0:
            linear = linear * rng.uniform(1.0 - self.scale, 1.0 + self.scale)
        offset = np.array([centre, centre]) - linear @ np.array([centre, centre])
        return np.hstack([linear, offset[:, None]])

    def apply(self, image: np.ndarray, rng: np.random.Generator,
              points: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """Augment one uint8 ``(S, S, 3)`` tile and its ``(K, 2)`` points ``(x, y)`` in tile pixels.

        Returns the new tile and the points moved with it (those leaving the tile are dropped by
        the caller, which knows their types).
        """
        size = image.shape[0]
        matrix = self.matrix(size, rng)
        if not np.allclose(matrix, [[1, 0, 0], [0, 1, 0]]):
            image = cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR,
                                   borderMode=cv2.BORDER_REFLECT_101)
            if points is not None and len(points):
                points = points @ matrix[:, :2].T + matrix[:, 2]
        if self.hed_sigma > 0 or self.hed_bias > 0:
            image = augment_hed(image, rng, alpha_range=(1 - self.hed_sigma, 1 + self.hed_sigma),
                                beta_range=(-self.hed_bias, self.hed_bias))
        if self.blur > 0 and rng.random() < self.blur:
            image = cv2.GaussianBlur(image, (0, 0), sigmaX=float(rng.uniform(0.3, 1.0)))
        return np.ascontiguousarray(image), points


#: No augmentation (validation, and the in-memory benchmark baseline).
NO_AUGMENTATION = Augmentation(flips=False, rotations=False, scale=0.0, hed_sigma=0.0, hed_bias=0.0, blur=0.0)
