"""Stain normalisation and stain augmentation for H&E tiles (uint8 RGB in, uint8 RGB out).

Normalisers fit once on reference tissue and transform tiles or batches::

    from slidescope.tiling.stain import MacenkoNormalizer, normalizer_from_dict

    normalizer = MacenkoNormalizer().fit(reference_tiles)     # (H, W, 3), (N, H, W, 3) or a list
    params = normalizer.to_dict()                             # plain lists: ship to Dask workers
    tiles = normalizer_from_dict(params).transform(tiles)     # (N, H, W, 3) -> (N, H, W, 3)

Training augmentation perturbs haematoxylin/eosin/DAB concentrations::

    augment = HedAugmenter(sigma=0.05, bias=0.05, seed=0)
    batch = augment(batch)

The pieces live in private modules, one job each: ``_stain_checks`` (errors, input checks),
``_stain_optics`` (optical density, RGB <-> HED), ``_stain_base`` (fit/transform/serialisation),
``_stain_macenko``, ``_stain_reinhard`` and ``_stain_augment``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._stain_augment import HedAugmenter, augment_hed, perturb_hed
from ._stain_base import StainNormalizer
from .errors import StainError, StainNotFittedError
from ._stain_macenko import MacenkoNormalizer
from ._stain_optics import hed_to_rgb, rgb_to_hed
from ._stain_reinhard import ReinhardNormalizer

__all__ = [
    "StainError",
    "StainNotFittedError",
    "StainNormalizer",
    "MacenkoNormalizer",
    "ReinhardNormalizer",
    "normalizer_from_dict",
    "HedAugmenter",
    "augment_hed",
    "perturb_hed",
    "rgb_to_hed",
    "hed_to_rgb",
]

_NORMALIZERS: dict[str, type[StainNormalizer]] = {
    cls.method: cls for cls in (MacenkoNormalizer, ReinhardNormalizer)
}


def normalizer_from_dict(data: Mapping[str, Any]) -> StainNormalizer:
    """Rebuild whichever normaliser ``to_dict`` wrote, chosen by its ``"method"`` key."""
    method = data.get("method") if isinstance(data, Mapping) else None
    if not isinstance(method, str) or method not in _NORMALIZERS:
        got = f"method {method!r}" if isinstance(data, Mapping) else type(data).__name__
        raise StainError(
            f"normalizer_from_dict: expected a dict with 'method' one of {sorted(_NORMALIZERS)}, got {got}"
        )
    return _NORMALIZERS[method].from_dict(data)
