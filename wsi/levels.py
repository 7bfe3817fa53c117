"""Pyramid metadata: what a backend knows about a slide, and one pyramid level."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

__all__ = ["Level", "SlideInfo", "openslide_downsample"]


@dataclass(frozen=True)
class Level:
    """One stored level of a slide pyramid.

    Attributes
    ----------
    index : int
        Position in the pyramid, 0 being the full-resolution level.
    dimensions : tuple[int, int]
        ``(width, height)`` of the level in its own pixels.
    downsample : float
        Level-0 pixels per level pixel (OpenSlide's definition: the mean over both axes).
    mpp : tuple[float, float] or None
        Microns per pixel ``(x, y)`` of this level (None only on a slide opened with
        ``require_mpp=False`` whose file does not say).
    tile_size : tuple[int, int] or None
        ``(width, height)`` of the stored tiles, when the level is tiled.
    """

    index: int
    dimensions: tuple[int, int]
    downsample: float
    mpp: tuple[float, float] | None
    tile_size: tuple[int, int] | None = None

    @property
    def width(self) -> int:
        return self.dimensions[0]

    @property
    def height(self) -> int:
        return self.dimensions[1]


def openslide_downsample(l0_dimensions: tuple[int, int], lvl_dimensions: tuple[int, int]) -> float:
    """Downsample of a level as OpenSlide computes it: the mean of the two axis ratios."""
    return (l0_dimensions[0] / lvl_dimensions[0] + l0_dimensions[1] / lvl_dimensions[1]) / 2.0


@dataclass(frozen=True)
class SlideInfo:
    """Everything a backend reports about a slide when it opens it.

    Attributes
    ----------
    vendor : str
        Format or scanner vendor as OpenSlide names it (``aperio``, ``hamamatsu``, ``generic-tiff``...).
    level_dimensions : tuple of (width, height)
        One entry per level, finest first.
    level_downsamples : tuple of float
        Level-0 pixels per level pixel, one per level.
    mpp : tuple[float, float] or None
        Microns per pixel of level 0, or None when the file does not say.
    objective_power : float or None
        Scanning objective magnification, a label only.
    tile_sizes : tuple of (width, height) or None
        Stored tile size of each level, None for an untiled level.
    properties : Mapping[str, str]
        Raw metadata, keys namespaced like OpenSlide's (``aperio.MPP``, ``tiff.ImageDescription``).
    associated_names : tuple of str
        Names of associated images (``label``, ``macro``, ``thumbnail``).
    """

    vendor: str
    level_dimensions: tuple[tuple[int, int], ...]
    level_downsamples: tuple[float, ...]
    mpp: tuple[float, float] | None
    objective_power: float | None = None
    tile_sizes: tuple[tuple[int, int] | None, ...] = ()
    properties: Mapping[str, str] = field(default_factory=dict)
    associated_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "properties", MappingProxyType(dict(self.properties)))
        if not self.tile_sizes:
            object.__setattr__(self, "tile_sizes", (None,) * len(self.level_dimensions))
