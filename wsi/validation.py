"""The one home of argument validation: every public entry point parses its numbers here.

Rules, the same everywhere:

- Python and numpy numbers are accepted (``np.float32(0.5)``, ``np.int64(256)``).
- ``bool`` is refused (``True`` is not one micron per pixel), and so are strings and bytes
  (``"0.5"`` comes from a command line, which converts it itself).
- NaN and infinities are refused; integers may be given as integral floats (``256.0``).
- Every value has a sane upper bound, so a typo (``1e30``) is an error naming the parameter,
  never an ``OverflowError`` or a ``MemoryError`` later.

Each function raises :class:`~slidescope.wsi.errors.ParameterError` (or the subclass passed as
``error=``) with a message that names the parameter and says what was expected and what came.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from .errors import ParameterError, RegionError, ResolutionError, SlideError

__all__ = [
    "MAX_COORDINATE",
    "MAX_EDGE",
    "MAX_MPP",
    "parse_number",
    "parse_int",
    "parse_positive_int",
    "parse_non_negative_int",
    "parse_positive_float",
    "parse_non_negative_float",
    "parse_fraction",
    "parse_mpp",
    "parse_size",
    "parse_locations",
    "parse_path",
    "parse_choice",
    "parse_real_array",
    "describe",
]

#: Largest level-0 coordinate accepted (far beyond any scanner: 2**31 px is 500 m at 0.25 µm/px).
MAX_COORDINATE = 2**31
#: Largest edge of a requested output, in pixels (a 2**20 px square is 3 TB of RGB).
MAX_EDGE = 2**20
#: Coarsest resolution accepted, µm per pixel (one pixel a metre wide).
MAX_MPP = 1e6


def describe(value: Any) -> str:
    """``repr(value)`` cut to 80 characters, for messages that say what came."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


_describe = describe


def parse_real_array(value: Any, what: str, *, ndim: int, layout: str,
                     error: type[SlideError] = ParameterError) -> np.ndarray:
    """``value`` as a finite real numpy array of ``ndim`` dimensions (no copy when it already is one).

    ``layout`` describes the axes for messages (``"(height, width)"``).
    """
    if isinstance(value, (str, bytes)) or value is None:
        raise error(f"{what}: expected a {ndim}-D array {layout}, got {describe(value)}")
    try:
        array = np.asarray(value)
    except (TypeError, ValueError):
        raise error(f"{what}: expected a {ndim}-D array {layout}, got {describe(value)}") from None
    if array.dtype.kind not in "iuf":
        raise error(f"{what}: expected a {ndim}-D array of real numbers {layout}, got dtype {array.dtype}")
    if array.ndim != ndim:
        raise error(f"{what}: expected a {ndim}-D array {layout}, got shape {array.shape}")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise error(f"{what}: expected finite values, got NaN or infinity")
    return array


def parse_number(
    value: Any,
    what: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    exclusive_minimum: bool = False,
    error: type[SlideError] = ParameterError,
) -> float:
    """A finite real number within bounds, as a Python ``float``.

    Parameters
    ----------
    value
        The caller's value: ``int``, ``float`` or a numpy number (not ``bool``, not a string).
    what
        The parameter's name, for the message.
    minimum, maximum
        Inclusive bounds (``minimum`` exclusive when ``exclusive_minimum``).
    error
        The error class to raise.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise error(f"{what}: expected a number, got {_describe(value)} ({type(value).__name__})")
    try:
        number = float(value)
    except OverflowError:  # an int beyond float range (10**400)
        number = math.inf
    if not math.isfinite(number):
        raise error(f"{what}: expected a finite number, got {_describe(value)}")
    low_fails = minimum is not None and (number <= minimum if exclusive_minimum else number < minimum)
    if low_fails or (maximum is not None and number > maximum):
        low = "" if minimum is None else f"{'>' if exclusive_minimum else '>='} {minimum:g}"
        high = "" if maximum is None else f"<= {maximum:g}"
        bounds = " and ".join(part for part in (low, high) if part)
        raise error(f"{what}: expected a number {bounds}, got {_describe(value)}")
    return number


def parse_int(
    value: Any,
    what: str,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
    error: type[SlideError] = ParameterError,
) -> int:
    """An integer within inclusive bounds (integral floats such as ``256.0`` accepted)."""
    number = parse_number(value, what, error=error)
    if number != math.floor(number):
        raise error(f"{what}: expected an integer, got {_describe(value)}")
    if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
        bounds = " and ".join(
            part for part in ("" if minimum is None else f">= {minimum}", "" if maximum is None else f"<= {maximum}")
            if part
        )
        raise error(f"{what}: expected an integer {bounds}, got {_describe(value)}")
    return int(value) if isinstance(value, (int, np.integer)) else int(number)


def parse_positive_int(
    value: Any, what: str, *, maximum: int = MAX_EDGE, error: type[SlideError] = ParameterError
) -> int:
    """An integer in ``[1, maximum]``."""
    return parse_int(value, what, minimum=1, maximum=maximum, error=error)


def parse_non_negative_int(
    value: Any, what: str, *, maximum: int = MAX_EDGE, error: type[SlideError] = ParameterError
) -> int:
    """An integer in ``[0, maximum]``."""
    return parse_int(value, what, minimum=0, maximum=maximum, error=error)


def parse_positive_float(
    value: Any, what: str, *, maximum: float | None = None, error: type[SlideError] = ParameterError
) -> float:
    """A finite number ``> 0`` (and ``<= maximum`` when given)."""
    return parse_number(value, what, minimum=0.0, exclusive_minimum=True, maximum=maximum, error=error)


def parse_non_negative_float(
    value: Any, what: str, *, maximum: float | None = None, error: type[SlideError] = ParameterError
) -> float:
    """A finite number ``>= 0`` (and ``<= maximum`` when given)."""
    return parse_number(value, what, minimum=0.0, maximum=maximum, error=error)


def parse_fraction(value: Any, what: str, *, error: type[SlideError] = ParameterError) -> float:
    """A number in ``[0, 1]``."""
    return parse_number(value, what, minimum=0.0, maximum=1.0, error=error)


def parse_mpp(mpp: Any, what: str = "mpp", *, error: type[SlideError] = ResolutionError) -> tuple[float, float]:
    """A resolution in µm per pixel: one positive number or an ``(x, y)`` pair, at most :data:`MAX_MPP`."""
    if isinstance(mpp, (tuple, list, np.ndarray)):
        values = list(np.asarray(mpp, dtype=object).ravel()) if isinstance(mpp, np.ndarray) else list(mpp)
        if len(values) != 2:
            raise error(f"{what}: expected one number or an (x, y) pair of microns per pixel, got {_describe(mpp)}")
    else:
        values = [mpp, mpp]
    parsed = [parse_positive_float(v, f"{what} (µm per pixel)", maximum=MAX_MPP, error=error) for v in values]
    return parsed[0], parsed[1]


def parse_size(size: Any, what: str = "size", *, maximum: int = MAX_EDGE) -> tuple[int, int]:
    """``(width, height)``: two integers in ``[1, maximum]``."""
    if isinstance(size, (str, bytes)) or not hasattr(size, "__len__") or len(size) != 2:
        raise RegionError(f"{what}: expected (width, height), got {_describe(size)}")
    width, height = size
    return (parse_positive_int(width, f"{what} width", maximum=maximum, error=RegionError),
            parse_positive_int(height, f"{what} height", maximum=maximum, error=RegionError))


def parse_locations(locations: Any, what: str = "locations") -> np.ndarray:
    """Level-0 ``(x, y)`` locations as an ``(N, 2)`` int64 array (integers within ±:data:`MAX_COORDINATE`)."""
    if isinstance(locations, (str, bytes)):
        raise RegionError(f"{what}: expected (x, y) pairs of level-0 pixels, got {_describe(locations)}")
    try:
        array = np.asarray(locations)
        # numpy turns True into 1 beside integers: look at the caller's own values (lists are short).
        has_bool = array.dtype == np.bool_ or (not isinstance(locations, np.ndarray) and any(
            isinstance(v, (bool, np.bool_)) for v in np.asarray(locations, dtype=object).ravel()))
    except (TypeError, ValueError):
        raise RegionError(f"{what}: expected (x, y) pairs of level-0 pixels, got {_describe(locations)}") from None
    if has_bool:
        raise RegionError(f"{what}: expected integer level-0 pixel coordinates, got a bool in {_describe(locations)}")
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2 or array.shape[1] != 2 or array.dtype.kind not in "iuf":
        raise RegionError(f"{what}: expected (x, y) pairs of level-0 pixels, got {_describe(locations)}")
    if array.dtype.kind == "f":
        if not np.all(np.isfinite(array)):
            raise RegionError(f"{what}: expected finite level-0 pixel coordinates, got NaN or infinity")
        if not np.all(array == np.floor(array)):
            raise RegionError(f"{what}: expected integer level-0 pixel coordinates, got fractional values")
    if array.size and (array.max() > MAX_COORDINATE or array.min() < -MAX_COORDINATE):
        raise RegionError(
            f"{what}: expected level-0 coordinates within ±{MAX_COORDINATE}, got values up to "
            f"{max(abs(float(array.max())), abs(float(array.min()))):g}"
        )
    return array.astype(np.int64)


def parse_path(path: Any, what: str = "path") -> str:
    """A filesystem path as ``str``: ``str`` or ``os.PathLike`` of ``str`` (not bytes, not empty)."""
    if isinstance(path, os.PathLike):
        path = os.fspath(path)
    if not isinstance(path, str):
        raise ParameterError(f"{what}: expected a str or pathlib.Path, got {_describe(path)} ({type(path).__name__})")
    if not path or "\x00" in path:
        raise ParameterError(f"{what}: expected a non-empty path without NUL characters, got {_describe(path)}")
    return path


def parse_bool(value: Any, what: str, *, error: type[Exception] = ParameterError) -> bool:
    """``True`` or ``False`` (a numpy boolean too), as a Python bool; nothing else (not 0, 1 or "yes")."""
    if not isinstance(value, (bool, np.bool_)):
        raise error(f"{what}: expected True or False, got {value!r}")
    return bool(value)


def parse_choice(value: Any, what: str, choices: tuple[str, ...], *, error: type[SlideError] = ParameterError) -> str:
    """One of ``choices`` (exact, case-sensitive string match)."""
    if not isinstance(value, str) or value not in choices:
        raise error(f"{what}: expected one of {', '.join(choices)}; got {_describe(value)}")
    return value
