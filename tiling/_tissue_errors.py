"""Errors raised by tissue detection (leaves of :class:`slidescope.wsi.errors.SlideError`)."""

from __future__ import annotations

from slidescope.wsi.errors import ResolutionError, SlideError

__all__ = ["TissueMaskError", "ImageTypeError", "ResolutionError", "check_mpp", "check_non_negative"]


class TissueMaskError(SlideError):
    """A tissue-detection input or parameter is malformed (bad shape, unknown method...)."""


class ImageTypeError(TissueMaskError, TypeError):
    """An image is not a numpy array of the expected dtype (e.g. float instead of uint8)."""


def check_mpp(mpp: object, name: str = "mpp") -> float:
    """Return ``mpp`` as a float, or raise :class:`ResolutionError` if it is not positive and finite.

    Parameters
    ----------
    mpp
        Microns per pixel.
    name
        Parameter name used in the message.
    """
    try:
        value = float(mpp)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ResolutionError(
            f"{name}: expected a positive number of microns per pixel, got {mpp!r}"
        ) from None
    if not (value > 0.0 and value < float("inf")):
        raise ResolutionError(
            f"{name}: expected a positive finite number of microns per pixel, got {mpp!r}"
        )
    return value


def check_non_negative(value: object, name: str) -> float:
    """Return ``value`` as a float, or raise :class:`TissueMaskError` if negative or not finite."""
    try:
        out = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise TissueMaskError(f"{name}: expected a non-negative number, got {value!r}") from None
    if not (out >= 0.0 and out < float("inf")):
        raise TissueMaskError(f"{name}: expected a non-negative finite number, got {value!r}")
    return out
