"""What every stain normaliser shares: fit/transform plumbing and plain-dict serialisation.

A subclass supplies ``method`` (its name in dicts), ``_config()`` (constructor keywords),
``_fit_pixels`` (fit on a (P, 3) uint8 pixel table), ``_transform_batch`` (a (N, H, W, 3) uint8 batch
to the same), ``_params()`` and ``_load_params()`` (fitted parameters as plain lists and back).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar

import numpy as np

from ._stain_checks import as_batch, gather_pixels, restore_shape
from .errors import StainError, StainNotFittedError

__all__ = ["StainNormalizer", "FORMAT_VERSION", "MAX_FIT_PIXELS"]

#: Version of the dict layout written by ``to_dict``; ``from_dict`` refuses others.
FORMAT_VERSION = 1

#: ``fit`` keeps every k-th pooled pixel beyond this many: a deterministic sample that bounds fit
#: time and memory on many tiles without moving means, covariances or percentiles noticeably.
MAX_FIT_PIXELS = 4_000_000

_Self = TypeVar("_Self", bound="StainNormalizer")


class StainNormalizer(ABC):
    """Base class of the stain normalisers: ``fit`` on reference tissue, then ``transform`` tiles."""

    method: ClassVar[str]

    def __init__(self) -> None:
        self._fitted = False

    # -- public API -------------------------------------------------------------------------

    @property
    def is_fitted(self) -> bool:
        """True once ``fit`` or ``from_dict`` has set the reference parameters."""
        return self._fitted

    def _fitted_copy(self, value: np.ndarray | None, name: str) -> np.ndarray:
        """A copy of fitted parameter ``name``, or StainNotFittedError before ``fit``."""
        if value is None:
            raise StainNotFittedError(f"{type(self).__name__}.{name}: not fitted; call fit() first")
        return value.copy()

    def fit(self: _Self, reference: object) -> _Self:
        """Estimate the reference parameters from tissue pixels; returns ``self``.

        Parameters
        ----------
        reference : numpy.ndarray or sequence of numpy.ndarray
            uint8 RGB: one tile (H, W, 3), a batch (N, H, W, 3) or a list of tiles (sizes may differ).
            All pixels are pooled (beyond ``MAX_FIT_PIXELS`` an evenly strided sample); background
            is ignored.

        Raises
        ------
        StainError
            Wrong dtype or shape, or too little tissue to fit on.
        """
        pixels = gather_pixels(reference, f"{type(self).__name__}.fit reference")
        if len(pixels) > MAX_FIT_PIXELS:
            pixels = pixels[:: -(-len(pixels) // MAX_FIT_PIXELS)]
        self._fit_pixels(pixels)
        self._fitted = True
        return self

    def transform(self, image: np.ndarray) -> np.ndarray:
        """Normalise a uint8 RGB tile (H, W, 3) or batch (N, H, W, 3) to the reference.

        Each image of a batch is normalised on its own statistics, so a batch gives exactly what
        transforming its images one at a time gives. Returns uint8 of the input's shape.
        """
        self._require_fitted("transform")
        batch, was_single = as_batch(image, f"{type(self).__name__}.transform image")
        return restore_shape(self._transform_batch(batch), was_single)

    __call__ = transform

    def to_dict(self) -> dict[str, Any]:
        """Configuration and fitted parameters as plain Python types (JSON-ready).

        ``params`` is None for an unfitted normaliser.
        """
        return {
            "method": self.method,
            "format_version": FORMAT_VERSION,
            "config": self._config(),
            "params": self._params() if self._fitted else None,
        }

    @classmethod
    def from_dict(cls: type[_Self], data: Mapping[str, Any]) -> _Self:
        """Rebuild a normaliser written by :meth:`to_dict` (e.g. on a Dask worker)."""
        owner = cls.__name__
        if not isinstance(data, Mapping):
            raise StainError(f"{owner}.from_dict: expected a dict, got {type(data).__name__}")
        missing = [key for key in ("method", "format_version", "config", "params") if key not in data]
        if missing:
            raise StainError(f"{owner}.from_dict: missing keys {missing}; got keys {sorted(data)}")
        if data["method"] != cls.method:
            raise StainError(
                f"{owner}.from_dict: expected method {cls.method!r}, got {data['method']!r}"
            )
        if data["format_version"] != FORMAT_VERSION:
            raise StainError(
                f"{owner}.from_dict: expected format_version {FORMAT_VERSION}, "
                f"got {data['format_version']!r}"
            )
        config = data["config"]
        if not isinstance(config, Mapping):
            raise StainError(f"{owner}.from_dict: key 'config' expected a dict, got {config!r}")
        try:
            normalizer = cls(**config)
        except TypeError as exc:
            raise StainError(f"{owner}.from_dict: bad 'config' {dict(config)!r}: {exc}") from exc
        params = data["params"]
        if params is not None:
            if not isinstance(params, Mapping):
                raise StainError(f"{owner}.from_dict: key 'params' expected a dict, got {params!r}")
            normalizer._load_params(params)
            normalizer._fitted = True
        return normalizer

    def __repr__(self) -> str:
        config = ", ".join(f"{key}={value!r}" for key, value in self._config().items())
        state = "fitted" if self._fitted else "not fitted"
        return f"{type(self).__name__}({config}) [{state}]"

    # -- for subclasses ---------------------------------------------------------------------

    def _require_fitted(self, action: str) -> None:
        if not self._fitted:
            raise StainNotFittedError(
                f"{type(self).__name__}.{action}: the normaliser is not fitted; call "
                f"fit(reference_tile) first or rebuild it with {type(self).__name__}.from_dict(params)"
            )

    @abstractmethod
    def _config(self) -> dict[str, Any]: ...

    @abstractmethod
    def _fit_pixels(self, pixels: np.ndarray) -> None: ...

    @abstractmethod
    def _transform_batch(self, batch: np.ndarray) -> np.ndarray: ...

    @abstractmethod
    def _params(self) -> dict[str, Any]: ...

    @abstractmethod
    def _load_params(self, params: Mapping[str, Any]) -> None: ...
