"""``Scale``: one zoom level of a tile plan (target mpp, tile size, overlap, context)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from slidescope.wsi.errors import ParameterError, ResolutionError
from slidescope.wsi.validation import MAX_EDGE, MAX_MPP, parse_fraction, parse_int, parse_positive_float

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
        # numpy numbers become Python ones here, so plans, dicts and JSON hold plain values
        set_ = object.__setattr__
        set_(self, "mpp", parse_positive_float(self.mpp, "Scale.mpp", maximum=MAX_MPP, error=ResolutionError))
        for name, minimum in (("tile", 1), ("overlap", 0), ("context", 0)):
            set_(self, name, parse_int(getattr(self, name), f"Scale.{name}", minimum=minimum, maximum=MAX_EDGE))
        if self.overlap >= self.tile:
            raise ParameterError(f"Scale.overlap: expected less than the tile size {self.tile}, got {self.overlap}")
        if self.min_tissue is not None:
            set_(self, "min_tissue", parse_fraction(self.min_tissue, "Scale.min_tissue"))
        if self.name is not None and not isinstance(self.name, str):
            raise ParameterError(f"Scale.name: expected a str or None, got {self.name!r}")

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
    if not isinstance(text, str):
        raise ParameterError(f"--scale: expected text MPP:TILE[:OVERLAP[:CONTEXT]], got {text!r}")
    parts = text.split(":")
    if not 2 <= len(parts) <= 4:
        raise ParameterError(f"--scale: expected MPP:TILE[:OVERLAP[:CONTEXT]], got {text!r}")
    try:  # the command line's text becomes numbers here; Scale then checks their values
        mpp = float(parts[0])
        ints = [int(p) for p in parts[1:]]
    except ValueError:
        raise ParameterError(f"--scale: expected numbers in MPP:TILE[:OVERLAP[:CONTEXT]], got {text!r}") from None
    return Scale(mpp, *ints)
