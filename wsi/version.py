"""The installed slidescope version, for the files and reports that record what wrote them."""

from __future__ import annotations

from functools import lru_cache

__all__ = ["slidescope_version"]


@lru_cache(maxsize=1)
def slidescope_version() -> str:
    """The version of the installed distribution, or ``"0+unknown"`` for a source tree never installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("slidescope")
    except PackageNotFoundError:
        return "0+unknown"
