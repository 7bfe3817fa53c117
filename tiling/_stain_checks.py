"""The input checks every stain function shares.

One job: turn what a caller passed (a tile, a batch, a list of tiles, a parameter dict) into the
array shapes the stain code works on, or raise a :class:`~slidescope.tiling.errors.StainError` that
says what was expected and what was got. Scalar parameters go through
:mod:`slidescope.wsi.validation` (:func:`check_range` is its ``parse_number`` with the owner named).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from slidescope.wsi.validation import parse_number

from .errors import StainError

__all__ = [
    "as_batch",
    "gather_pixels",
    "restore_shape",
    "dict_array",
    "dict_float",
    "check_range",
]


def _describe(value: object) -> str:
    if isinstance(value, np.ndarray):
        return f"array of dtype {value.dtype} and shape {value.shape}"
    return f"{type(value).__name__}"


def _check_pixels(image: object, what: str) -> np.ndarray:
    """Check one uint8 RGB array of shape (H, W, 3) or (N, H, W, 3); return it unchanged."""
    if not isinstance(image, np.ndarray):
        raise StainError(
            f"{what}: expected a numpy uint8 array of shape (H, W, 3) or (N, H, W, 3), "
            f"got {_describe(image)}"
        )
    if image.ndim not in (3, 4) or image.shape[-1] != 3:
        hint = " (drop the alpha channel with image[..., :3])" if image.shape[-1:] == (4,) else ""
        raise StainError(
            f"{what}: expected RGB pixels of shape (H, W, 3) or (N, H, W, 3), "
            f"got shape {image.shape}{hint}"
        )
    if image.dtype != np.uint8:
        raise StainError(
            f"{what}: expected uint8 RGB pixels (0-255), got dtype {image.dtype}; "
            "convert floats in [0, 1] with (image * 255).round().astype(np.uint8)"
        )
    if image.size == 0:
        raise StainError(f"{what}: expected a non-empty image, got shape {image.shape}")
    return image


def as_batch(image: object, what: str = "image") -> tuple[np.ndarray, bool]:
    """Return ``(batch, was_single)``: a (N, H, W, 3) uint8 view and whether the input was (H, W, 3)."""
    checked = _check_pixels(image, what)
    if checked.ndim == 3:
        return checked[np.newaxis], True
    return checked, False


def restore_shape(batch: np.ndarray, was_single: bool) -> np.ndarray:
    """Undo :func:`as_batch`: drop the batch axis again when the input was one image."""
    return batch[0] if was_single else batch


def gather_pixels(images: object, what: str = "reference") -> np.ndarray:
    """Flatten a tile, a batch or a list of tiles/batches into one (P, 3) uint8 pixel table.

    Tiles in a list may have different sizes; every one must be uint8 RGB.
    """
    if isinstance(images, np.ndarray):
        return _check_pixels(images, what).reshape(-1, 3)
    if isinstance(images, Sequence) and not isinstance(images, (str, bytes)):
        if len(images) == 0:
            raise StainError(f"{what}: expected at least one tile, got an empty {type(images).__name__}")
        parts = [
            _check_pixels(tile, f"{what}[{i}]").reshape(-1, 3) for i, tile in enumerate(images)
        ]
        return np.concatenate(parts, axis=0)
    raise StainError(
        f"{what}: expected a uint8 (H, W, 3) tile, an (N, H, W, 3) batch or a list of tiles, "
        f"got {_describe(images)}"
    )


def dict_array(params: Mapping[str, Any], key: str, shape: tuple[int, ...], owner: str) -> np.ndarray:
    """Read ``params[key]`` as a finite float64 array of exactly ``shape``."""
    if key not in params:
        raise StainError(f"{owner}.from_dict: missing key {key!r}; got keys {sorted(params)}")
    try:
        value = np.asarray(params[key], dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise StainError(
            f"{owner}.from_dict: key {key!r} expected numbers of shape {shape}, got {params[key]!r}"
        ) from exc
    if value.shape != shape:
        raise StainError(
            f"{owner}.from_dict: key {key!r} expected shape {shape}, got shape {value.shape}"
        )
    if not np.all(np.isfinite(value)):
        raise StainError(f"{owner}.from_dict: key {key!r} expected finite numbers, got {value.tolist()}")
    return value


def dict_float(params: Mapping[str, Any], key: str, owner: str) -> float:
    """Read ``params[key]`` as one finite float."""
    return float(dict_array(params, key, (), owner))


def check_range(name: str, value: object, low: float, high: float, owner: str) -> float:
    """``value`` as a float in ``[low, high]``, else a :class:`~slidescope.wsi.errors.ParameterError`
    naming ``owner`` and ``name``."""
    return parse_number(value, f"{owner}: {name}", minimum=low, maximum=high)
