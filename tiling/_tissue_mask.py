"""The :class:`TissueMask` value: a bool mask of a slide, its resolution and level-0 geometry."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from os import PathLike
from typing import Any

import cv2
import numpy as np

from slidescope.wsi.atomic import atomic_path
from slidescope.wsi.errors import ParameterError, ResolutionError
from slidescope.wsi.validation import (
    MAX_COORDINATE,
    MAX_MPP,
    parse_non_negative_float,
    parse_number,
    parse_path,
    parse_positive_float,
    parse_positive_int,
)

from .errors import ImageTypeError, TissueMaskError

__all__ = ["TissueMask", "MAX_LENGTH_UM", "MAX_AREA_UM2"]

Ring = np.ndarray  # (N, 2) float64 level-0 (x, y), closed: first point == last point
Polygon = list[Ring]  # [outer, hole, hole, ...]

#: Largest size (µm) and area (µm²) a detection option accepts: a metre, a square metre.
MAX_LENGTH_UM = 1e6
MAX_AREA_UM2 = 1e12


def _parse_coordinate(value: object, what: str) -> float:
    """A level-0 coordinate or extent (fractional allowed), within ±MAX_COORDINATE."""
    return parse_number(value, what, minimum=-MAX_COORDINATE, maximum=MAX_COORDINATE)


def _check_dimensions(slide_dimensions: object) -> tuple[int, int]:
    if isinstance(slide_dimensions, (str, bytes)) or not hasattr(slide_dimensions, "__len__") \
            or len(slide_dimensions) != 2:  # type: ignore[arg-type]
        raise ParameterError(f"slide_dimensions: expected level-0 (width, height), got {slide_dimensions!r}")
    width, height = slide_dimensions  # type: ignore[misc]
    return (parse_positive_int(width, "slide_dimensions width", maximum=MAX_COORDINATE),
            parse_positive_int(height, "slide_dimensions height", maximum=MAX_COORDINATE))


def _check_mask_array(array: object) -> np.ndarray:
    if not isinstance(array, np.ndarray):
        raise ImageTypeError(f"array: expected a numpy.ndarray, got {type(array).__name__}")
    if array.ndim != 2:
        raise TissueMaskError(f"array: expected a 2-D (H, W) mask, got shape {array.shape}")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise TissueMaskError(f"array: expected a non-empty mask, got shape {array.shape}")
    if array.dtype != np.bool_ and not (
        np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)
    ):
        raise ImageTypeError(f"array: expected a bool or numeric mask, got dtype {array.dtype}")
    out = np.ascontiguousarray(array != 0)
    out.flags.writeable = False
    return out


@dataclass(frozen=True, eq=False)
class TissueMask:
    """A tissue mask of a slide, with the geometry to ask it about level-0 boxes.

    Mask pixel ``(row, col)`` covers the level-0 box
    ``[col * sx, (col + 1) * sx) x [row * sy, (row + 1) * sy)`` where
    ``sx = slide_width / mask_width`` and ``sy = slide_height / mask_height``
    (see :attr:`downsample_xy`). Build one with :func:`slidescope.tiling.tissue_mask` or
    :meth:`from_array`.

    Attributes
    ----------
    array
        Read-only bool mask ``(H, W)``; True is tissue.
    mpp
        Microns per mask pixel.
    slide_dimensions
        Level-0 ``(width, height)`` of the slide.
    slide_path
        Path of the slide, or None.
    """

    array: np.ndarray
    mpp: float
    slide_dimensions: tuple[int, int]
    slide_path: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "array", _check_mask_array(self.array))
        object.__setattr__(self, "mpp", parse_positive_float(self.mpp, "mpp", maximum=MAX_MPP,
                                                             error=ResolutionError))
        object.__setattr__(self, "slide_dimensions", _check_dimensions(self.slide_dimensions))
        if self.slide_path is not None:
            object.__setattr__(self, "slide_path", parse_path(self.slide_path, "slide_path"))

    # -- construction ------------------------------------------------------------------

    @classmethod
    def from_array(
        cls,
        array: np.ndarray,
        mpp: float,
        slide_dimensions: tuple[int, int],
        slide_path: str | PathLike[str] | None = None,
    ) -> TissueMask:
        """Wrap a mask array (bool, or numeric where non-zero is tissue) covering the whole slide."""
        return cls(array, mpp, slide_dimensions, slide_path)  # type: ignore[arg-type]

    @classmethod
    def from_png(
        cls,
        path: str | PathLike[str],
        mpp: float,
        slide_dimensions: tuple[int, int],
        slide_path: str | PathLike[str] | None = None,
    ) -> TissueMask:
        """Read a mask written by :meth:`to_png` (any single-channel PNG; non-zero is tissue)."""
        source = parse_path(path)
        image = cv2.imread(source, cv2.IMREAD_GRAYSCALE)
        if image is None:
            raise TissueMaskError(f"{source}: expected a readable PNG mask, got none")
        return cls(image, mpp, slide_dimensions, slide_path)  # type: ignore[arg-type]

    # -- geometry ----------------------------------------------------------------------

    @property
    def shape(self) -> tuple[int, int]:
        """Mask ``(height, width)`` in pixels."""
        return self.array.shape  # type: ignore[return-value]

    @property
    def downsample_xy(self) -> tuple[float, float]:
        """Level-0 pixels per mask pixel along x and y."""
        h, w = self.array.shape
        return self.slide_dimensions[0] / w, self.slide_dimensions[1] / h

    @property
    def downsample(self) -> float:
        """Level-0 pixels per mask pixel (mean of x and y; they differ only by rounding)."""
        sx, sy = self.downsample_xy
        return (sx + sy) / 2.0

    @property
    def fraction(self) -> float:
        """Fraction of mask pixels that are tissue."""
        return float(np.count_nonzero(self.array)) / self.array.size

    @property
    def is_empty(self) -> bool:
        """True when no pixel is tissue."""
        return not self.array.any()

    @cached_property
    def _integral(self) -> np.ndarray:
        """Summed-area table ``(H + 1, W + 1)`` of the mask (int32, or float64 past 2**31 px)."""
        depth = cv2.CV_32S if self.array.size < 2**31 else cv2.CV_64F
        return cv2.integral(self.array.view(np.uint8), sdepth=depth)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_integral", None)  # cheap to rebuild, as large as the mask
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.array.flags.writeable = False

    def fractions_in(self, boxes: np.ndarray) -> np.ndarray:
        """Tissue fraction of many level-0 boxes at once.

        A box counts every mask pixel it touches; the part of a box outside the slide counts
        as non-tissue. Cost is O(N) after a one-off O(mask pixels) summed-area table.

        Parameters
        ----------
        boxes
            ``(N, 4)`` level-0 ``x, y, width, height`` (any real dtype); widths and heights > 0.

        Returns
        -------
        numpy.ndarray
            ``(N,)`` float64 in ``[0, 1]``.
        """
        b = np.asarray(boxes, dtype=np.float64)
        if b.ndim != 2 or b.shape[1] != 4:
            raise TissueMaskError(f"boxes: expected shape (N, 4) of x, y, w, h, got {b.shape}")
        if b.shape[0] == 0:
            return np.zeros(0)
        if not np.isfinite(b).all() or (b[:, 2:] <= 0).any():
            bad = int(np.flatnonzero(~np.isfinite(b).all(1) | (b[:, 2:] <= 0).any(1))[0])
            raise TissueMaskError(
                f"boxes[{bad}]: expected finite x, y and positive width, height, got {b[bad].tolist()}"
            )
        sx, sy = self.downsample_xy
        h, w = self.array.shape
        c0 = np.floor(b[:, 0] / sx).astype(np.int64)
        r0 = np.floor(b[:, 1] / sy).astype(np.int64)
        c1 = np.maximum(np.ceil((b[:, 0] + b[:, 2]) / sx).astype(np.int64), c0 + 1)
        r1 = np.maximum(np.ceil((b[:, 1] + b[:, 3]) / sy).astype(np.int64), r0 + 1)
        area = (c1 - c0) * (r1 - r0)
        cc0, cc1 = np.clip(c0, 0, w), np.clip(c1, 0, w)
        rr0, rr1 = np.clip(r0, 0, h), np.clip(r1, 0, h)
        ii = self._integral
        tissue = (
            ii[rr1, cc1].astype(np.float64) - ii[rr0, cc1] - ii[rr1, cc0] + ii[rr0, cc0]
        )
        return tissue / area

    def fraction_in(self, l0_x: float, l0_y: float, l0_w: float, l0_h: float) -> float:
        """Tissue fraction of one level-0 box (see :meth:`fractions_in` for the rules)."""
        box = [_parse_coordinate(v, name) for v, name in ((l0_x, "l0_x"), (l0_y, "l0_y"), (l0_w, "l0_w"), (l0_h, "l0_h"))]
        return float(self.fractions_in(np.array([box], dtype=np.float64))[0])

    def contains(self, l0_x: float, l0_y: float) -> bool:
        """Whether the level-0 point lies on tissue (False outside the slide)."""
        sx, sy = self.downsample_xy
        x, y = _parse_coordinate(l0_x, "l0_x"), _parse_coordinate(l0_y, "l0_y")
        col, row = int(np.floor(x / sx)), int(np.floor(y / sy))
        h, w = self.array.shape
        return bool(0 <= row < h and 0 <= col < w and self.array[row, col])

    # -- vector and file output --------------------------------------------------------

    def polygons(self, min_area_um2: float = 0.0) -> list[Polygon]:
        """Tissue outlines as polygons in level-0 coordinates, ready for GeoJSON.

        Each polygon is ``[outer, hole, ...]``; each ring is an ``(N, 2)`` float64 array of
        level-0 ``(x, y)`` through the centres of the boundary mask pixels, closed (first
        point repeated last). Outer rings have a positive shoelace area on the raw ``(x, y)``
        values and holes a negative one: RFC 7946's right-hand rule (counter-clockwise
        exteriors) as a GeoJSON validator computes it; on screen, with y down, outer rings
        therefore appear clockwise.

        Parameters
        ----------
        min_area_um2
            Drop polygons (outer ring minus holes) smaller than this, in square microns.
        """
        min_area = parse_non_negative_float(min_area_um2, "min_area_um2", maximum=MAX_AREA_UM2)
        if self.is_empty:
            return []
        contours, hierarchy = cv2.findContours(
            self.array.view(np.uint8).copy(), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE
        )
        if hierarchy is None:
            return []
        hier = hierarchy[0]
        sx, sy = self.downsample_xy
        px_um2 = self.mpp * self.mpp
        out: list[Polygon] = []
        for i, contour in enumerate(contours):
            if hier[i][3] != -1:  # a hole; handled with its parent
                continue
            rings = [contour]
            child = hier[i][2]
            while child != -1:
                rings.append(contours[child])
                child = hier[child][0]
            area_px = cv2.contourArea(rings[0]) - sum(cv2.contourArea(r) for r in rings[1:])
            if area_px * px_um2 < min_area:
                continue
            out.append([self._ring_to_l0(r, sx, sy, outer=(k == 0)) for k, r in enumerate(rings)])
        return out

    def to_geojson(self, min_area_um2: float = 0.0) -> dict[str, Any]:
        """The tissue as one GeoJSON Feature (a MultiPolygon in level-0 pixel coordinates).

        Plain lists and floats only, so ``json.dumps`` takes it as is; properties carry the
        slide path, mask mpp and tissue fraction.
        """
        polygons = self.polygons(min_area_um2=min_area_um2)
        return {
            "type": "Feature",
            "geometry": {
                "type": "MultiPolygon",
                "coordinates": [[ring.tolist() for ring in poly] for poly in polygons],
            },
            "properties": {
                "object_type": "tissue",
                "slide_path": self.slide_path,
                "mask_mpp": self.mpp,
                "tissue_fraction": self.fraction,
            },
        }

    @staticmethod
    def _ring_to_l0(contour: np.ndarray, sx: float, sy: float, *, outer: bool) -> Ring:
        pts = contour.reshape(-1, 2).astype(np.float64)
        # Orientation in the y-down image frame, by the shoelace sum.
        x, y = pts[:, 0], pts[:, 1]
        signed = np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y)
        if (signed < 0) == outer:  # outer wants signed >= 0 (clockwise on screen)
            pts = pts[::-1]
        pts = np.vstack([pts, pts[:1]])
        pts[:, 0] = (pts[:, 0] + 0.5) * sx
        pts[:, 1] = (pts[:, 1] + 0.5) * sy
        return pts

    def to_png(self, path: str | PathLike[str]) -> str:
        """Write the mask as an 8-bit PNG (tissue 255, background 0), atomically.

        Written through :class:`slidescope.wsi.atomic.atomic_path`, so readers never see a
        half-written file.

        Returns
        -------
        str
            The path written.

        Raises
        ------
        ParameterError
            ``path`` does not end in ``.png`` (the bytes are PNG whatever the name says).
        OutputError
            The folder above the path's folder is missing (only the last folder level is made).
        """
        target = parse_path(path)
        if not target.lower().endswith(".png"):
            raise ParameterError(f"path: expected a .png path (the mask is written as PNG), got {target!r}")
        ok, data = cv2.imencode(".png", self.array.view(np.uint8) * np.uint8(255))
        if not ok:  # pragma: no cover - OpenCV fails only on exotic inputs
            raise TissueMaskError(f"{target}: OpenCV could not encode the mask as PNG")
        with atomic_path(target) as temporary:
            temporary.write_bytes(data.tobytes())
        return target

    def __repr__(self) -> str:
        h, w = self.array.shape
        return (
            f"TissueMask({w}x{h} px at {self.mpp:g} um/px, slide {self.slide_dimensions[0]}x"
            f"{self.slide_dimensions[1]}, fraction={self.fraction:.3f}, path={self.slide_path!r})"
        )
