"""``Scale``: one zoom level of a tile plan (target mpp, tile size, overlap, context)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from slidescope.wsi.errors import RegionError, ResolutionError

__all__ = ["Scale", "parse_scale"]


@dataclass(frozen=True)
class Scale:
    """A zoom level at which to tile a slide.

    Parameters
    ----------
    mpp : float
        Target resolution in µm per pixel (what the model wants), e.g. 2.0 for a tissue model.
    tile : int
        Tile edge in target pixels (tiles are square).
    overlap : int
        Target pixels shared by neighbouring tiles: the grid stride is ``tile - overlap``.
    context : int
        Extra target pixels read around each tile on every side (a halo for models that need
        context); the plan's box is the tile itself, reads return ``tile + 2 * context`` px.
    min_tissue : float, optional
        Keep tiles whose tissue fraction is at least this; None uses the plan's ``min_tissue``.
    name : str, optional
        A label (``"tissue"``, ``"cell"``) carried into the plan.
    """

    mpp: float
    tile: int
    overlap: int = 0
    context: int = 0
    min_tissue: float | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.mpp, (int, float)) or not math.isfinite(self.mpp) or self.mpp <= 0:
            raise ResolutionError(f"Scale.mpp: expected a positive number of µm per pixel, got {self.mpp!r}")
        for name, minimum in (("tile", 1), ("overlap", 0), ("context", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise RegionError(f"Scale.{name}: expected an integer >= {minimum}, got {value!r}")
        if self.overlap >= self.tile:
            raise RegionError(f"Scale.overlap: expected less than the tile size {self.tile}, got {self.overlap}")
        if self.min_tissue is not None and not 0.0 <= self.min_tissue <= 1.0:
            raise RegionError(f"Scale.min_tissue: expected a fraction in [0, 1], got {self.min_tissue!r}")

    @property
    def stride(self) -> int:
        """Grid step in target pixels."""
        return self.tile - self.overlap

    @property
    def read_size(self) -> int:
        """Edge of what a read returns, context included, in target pixels."""
        return self.tile + 2 * self.context

    def extent_um(self) -> float:
        """Tile edge in microns."""
        return self.tile * self.mpp

    def to_dict(self) -> dict[str, Any]:
        return {"mpp": self.mpp, "tile": self.tile, "overlap": self.overlap, "context": self.context,
                "min_tissue": self.min_tissue, "name": self.name}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Scale":
        return cls(**data)


def parse_scale(text: str) -> Scale:
    """Parse ``MPP:TILE[:OVERLAP[:CONTEXT]]`` (the command line's ``--scale``)."""
    parts = text.split(":")
    if not 2 <= len(parts) <= 4:
        raise RegionError(f"--scale: expected MPP:TILE[:OVERLAP[:CONTEXT]], got {text!r}")
    try:
        mpp = float(parts[0])
        ints = [int(p) for p in parts[1:]]
    except ValueError:
        raise RegionError(f"--scale: expected numbers in MPP:TILE[:OVERLAP[:CONTEXT]], got {text!r}") from None
    return Scale(mpp, *ints)
