"""Training labels from QuPath annotations: read "Export objects as GeoJSON", label tiles, find points.

A lab retrains slidescope's models on its own scans with the objects it drew in QuPath. This module
reads QuPath's GeoJSON export and turns it into labels for level-0 tile boxes:

- :func:`read_geojson`: the file as :class:`Annotations`: polygon *regions* (annotations and tiles,
  with their holes) and *points* (point annotations, and one point per detection or cell).
- :func:`region_fractions`: the fraction of each box covered by each class's regions.
- :func:`tile_labels`: one class per box. **Rule: the tile label is the class covering most of the
  tile** (the largest fraction, the lowest class index on ties), provided it covers at least
  ``min_fraction`` of the tile (default one half) and any of it at all; other tiles are
  unannotated: ``-1`` (excluded from training), or the class ``unlabelled_as`` when given
  (annotate the tumour, call the rest of the tissue "normal").
- :func:`points_in_box`: the points inside one box (half-open ``[x, x + w) x [y, y + h)``).

What is read (QuPath 0.2 to 0.5):

- The file is a ``FeatureCollection``, a bare JSON list of features, or one ``Feature``.
- The object type is ``properties.objectType`` (0.4+), ``properties.object_type`` (0.3) or the
  feature's ``id`` (0.2 stored ``"PathAnnotationObject"`` there); absent, it is an annotation, as
  QuPath itself reads it.
- ``annotation`` and ``tile`` objects: a ``Polygon`` or ``MultiPolygon`` is one region per polygon
  (all with the feature's index); ``Point`` and ``MultiPoint`` are points.
- ``detection`` and ``cell`` objects are points, never regions: a polygon becomes its area centroid,
  and a cell with a ``nucleusGeometry`` (beside ``geometry``) the centroid of its nucleus.
- ``root`` and TMA cores label nothing; child objects (``properties.childObjects``, written by
  hierarchy exports) are read with their parent's feature index.
- The class is ``classification.name``, or the ``names`` of a derived class joined as QuPath
  shows them (``"Tumor: Positive"``); pre-0.4 files (``colorRGB``, ``parentClass``) and a plain
  string are read too. An object without one is *unclassified*: it is kept with class ``None``,
  counted in :attr:`Annotations.unclassified`, and labels nothing.
- Coordinates are level-0 pixels ``(x, y)``; rings may be closed (QuPath) or not, and are stored
  open (the closing point dropped).

Every problem in the file raises :class:`~slidescope.models.errors.AnnotationError` naming the file
and the feature index (``slide.geojson: feature 3: ...``, counted from 0 in the file's list);
bad arguments raise :class:`~slidescope.wsi.errors.ParameterError`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from slidescope.wsi.errors import ParameterError
from slidescope.wsi.validation import (MAX_COORDINATE, describe, parse_fraction, parse_path, parse_positive_int,
                                       parse_real_array)

from .errors import AnnotationError

__all__ = [
    "POINT_COLUMNS",
    "Region",
    "Annotations",
    "read_geojson",
    "region_fractions",
    "tile_labels",
    "points_in_box",
]

#: The columns of :attr:`Annotations.points`, in order.
POINT_COLUMNS = ("x", "y", "cls", "feature")

#: Raster edge (pixels) of one box in :func:`region_fractions`: fractions are multiples of 1 / 64².
DEFAULT_RESOLUTION = 64

_REGION_TYPES = frozenset({"annotation", "tile"})
_POINT_TYPES = frozenset({"detection", "cell"})
_SKIPPED_TYPES = frozenset({"root", "tma_core"})
#: QuPath's object types, by every name its versions wrote (0.2 class names, 0.3 snake case).
_OBJECT_TYPES = {
    "annotation": "annotation", "PathAnnotationObject": "annotation",
    "detection": "detection", "PathDetectionObject": "detection",
    "cell": "cell", "PathCellObject": "cell",
    "tile": "tile", "PathTileObject": "tile",
    "tma_core": "tma_core", "tmaCore": "tma_core", "TMACoreObject": "tma_core",
    "root": "root", "PathRootObject": "root",
}
#: Boxes per block of the box-by-region bounding-box test (bounds its memory).
_BLOCK_CELLS = 1 << 22



def _frozen(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


@dataclass(frozen=True, repr=False)
class Region:
    """One polygon of an annotation: an exterior ring and its holes, in level-0 pixels.

    Attributes
    ----------
    cls
        The class name (after ``rename``), or ``None`` for an unclassified annotation.
    exterior
        ``(K, 2)`` float64 ``(x, y)`` vertices of the exterior ring, open (the closing point dropped).
    holes
        The holes, each a ``(K, 2)`` float64 open ring.
    feature
        The index of the feature in the file (the polygons of one MultiPolygon share it).
    """

    cls: str | None
    exterior: np.ndarray
    holes: tuple[np.ndarray, ...] = ()
    feature: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "exterior", _frozen(np.array(self.exterior, dtype=np.float64)))
        object.__setattr__(self, "holes", tuple(_frozen(np.array(h, dtype=np.float64)) for h in self.holes))

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """``(x_min, y_min, x_max, y_max)`` of the exterior, level-0 pixels."""
        low, high = self.exterior.min(axis=0), self.exterior.max(axis=0)
        return float(low[0]), float(low[1]), float(high[0]), float(high[1])

    def __repr__(self) -> str:
        return (f"Region(cls={self.cls!r}, exterior=<{len(self.exterior)} vertices>, "
                f"holes={len(self.holes)}, feature={self.feature})")


@dataclass(frozen=True, repr=False)
class Annotations:
    """The labels of one QuPath GeoJSON file.

    Attributes
    ----------
    path
        The file they were read from.
    regions
        The polygons of annotation and tile objects, in file order (later ones paint over earlier
        ones in :func:`region_fractions`).
    points
        A table with columns ``x, y`` (float64, level-0 pixels), ``cls`` (str, or None when
        unclassified) and ``feature`` (int64): point annotations, and one row per detection or cell.
    unclassified
        How many objects had no class (or were renamed to ``None``); they label nothing.
    """

    path: str
    regions: tuple[Region, ...] = ()
    points: pd.DataFrame = field(default_factory=lambda: _points_frame([], [], [], []))
    unclassified: int = 0

    @property
    def class_names(self) -> tuple[str, ...]:
        """The class names present (regions, then points), in order of first appearance."""
        names = [r.cls for r in self.regions] + list(self.points["cls"])
        return tuple(dict.fromkeys(n for n in names if n is not None))

    def __repr__(self) -> str:
        return (f"Annotations(path={self.path!r}, regions={len(self.regions)}, points={len(self.points)}, "
                f"unclassified={self.unclassified})")


def _points_frame(xs: Sequence[np.ndarray], ys: Sequence[np.ndarray], classes: Sequence[Any],
                  features: Sequence[Any]) -> pd.DataFrame:
    return pd.DataFrame({
        "x": np.concatenate(list(xs)).astype(np.float64) if len(xs) else np.zeros(0),
        "y": np.concatenate(list(ys)).astype(np.float64) if len(ys) else np.zeros(0),
        "cls": pd.Series(list(classes), dtype=object),
        "feature": np.asarray(features, dtype=np.int64),
    }, columns=list(POINT_COLUMNS))


# ----------------------------------------------------------------------------------------------
# Reading


def _parse_classes(classes: Any, what: str = "classes") -> tuple[str, ...]:
    if isinstance(classes, (str, bytes)) or not isinstance(classes, Sequence):
        raise ParameterError(f"{what}: expected a sequence of class names, got {describe(classes)}")
    names = tuple(classes)
    if not names:
        raise ParameterError(f"{what}: expected at least one class name, got none")
    for name in names:
        if not isinstance(name, str) or not name:
            raise ParameterError(f"{what}: expected non-empty str class names, got {describe(name)}")
    if len(set(names)) != len(names):
        raise ParameterError(f"{what}: expected distinct class names, got {describe(list(names))}")
    return names


def _parse_rename(rename: Any) -> dict[str, str | None]:
    if rename is None:
        return {}
    if not isinstance(rename, Mapping):
        raise ParameterError(f"rename: expected a dict of QuPath class name -> class name (or None), "
                             f"got {describe(rename)}")
    for key, value in rename.items():
        if not isinstance(key, str) or not (value is None or (isinstance(value, str) and value)):
            raise ParameterError(f"rename: expected str -> non-empty str or None, got {key!r}: {value!r}")
    return dict(rename)


class _Reader:
    """Walks the features of one file, collecting regions and points; ``fail`` names file and feature."""

    def __init__(self, path: str, classes: tuple[str, ...] | None, rename: dict[str, str | None]):
        self.path = path
        self.classes = classes
        self.rename = rename
        self.regions: list[Region] = []
        self.xs: list[np.ndarray] = []
        self.ys: list[np.ndarray] = []
        self.point_classes: list[str | None] = []
        self.point_features: list[int] = []
        self.unclassified = 0
        self.where = ""

    def fail(self, message: str) -> AnnotationError:
        return AnnotationError(f"{self.path}: {self.where}: {message}")

    # -- features ------------------------------------------------------------------------------

    def feature(self, feature: Any, index: int, where: str) -> None:
        self.where = where
        if not isinstance(feature, dict):
            raise self.fail(f"expected a GeoJSON Feature (a JSON object), got {describe(feature)}")
        kind = feature.get("type", "Feature")
        if kind != "Feature":
            raise self.fail(f"expected a GeoJSON Feature, got type {describe(kind)}")
        properties = feature.get("properties")
        if properties is None:
            properties = {}
        if not isinstance(properties, dict):
            raise self.fail(f"expected 'properties' to be a JSON object, got {describe(properties)}")
        object_type = self.object_type(feature, properties)
        if object_type not in _SKIPPED_TYPES:
            self.labels(feature, properties, object_type, index)
        children = properties.get("childObjects", properties.get("children"))
        if children is not None:
            if not isinstance(children, list):
                raise self.fail(f"expected 'childObjects' to be a list of features, got {describe(children)}")
            for number, child in enumerate(children):
                self.feature(child, index, f"{where}: child {number}")

    def object_type(self, feature: dict, properties: dict) -> str:
        for key in ("objectType", "object_type", "type"):
            if key in properties:
                name = properties[key]
                if not isinstance(name, str):
                    raise self.fail(f"expected '{key}' to be a string, got {describe(name)}")
                return _OBJECT_TYPES.get(name, "annotation")  # QuPath reads unknown types as annotations
        legacy = feature.get("id")
        return _OBJECT_TYPES.get(legacy, "annotation") if isinstance(legacy, str) else "annotation"

    def class_name(self, properties: dict) -> str | None:
        name = self._qupath_class(properties.get("classification"))
        if name is not None and name in self.rename:
            name = self.rename[name]
        if name is not None and self.classes is not None and name not in self.classes:
            close = [c for c in self.classes if c.casefold() == name.casefold()]
            hint = f" (did you mean {close[0]!r}? names are case-sensitive)" if close else ""
            raise self.fail(f"unknown class {name!r}{hint}; known classes: {', '.join(self.classes)} "
                            f"(map QuPath's names with rename=, or to None to ignore a class)")
        return name

    def _qupath_class(self, value: Any) -> str | None:
        if value is None:
            return None
        if isinstance(value, str):
            return value or None
        if not isinstance(value, dict):
            raise self.fail(f"expected 'classification' to be an object with a 'name', got {describe(value)}")
        if not value:  # QuPath's null class is written {}
            return None
        names = value.get("names")
        if names is not None:  # a derived class, 0.4+: {"names": ["Tumor", "Positive"], "color": [...]}
            if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
                raise self.fail(f"expected classification 'names' to be a list of strings, got {describe(names)}")
            return ": ".join(names)
        name = value.get("name")
        if not isinstance(name, str) or not name:
            raise self.fail(f"expected a classification with a 'name' string, got {describe(value)}")
        parent = value.get("parentClass")  # a derived class before 0.4: the parent serialised whole
        parent_name = self._qupath_class(parent) if parent is not None else None
        return f"{parent_name}: {name}" if parent_name else name

    def labels(self, feature: dict, properties: dict, object_type: str, index: int) -> None:
        if "geometry" not in feature or feature["geometry"] is None:
            raise self.fail("a feature without geometry")
        cls = self.class_name(properties)
        polygons, points = self.geometry(feature["geometry"], "geometry")
        if cls is None:
            self.unclassified += 1
        if object_type in _POINT_TYPES:
            nucleus = feature.get("nucleusGeometry") if object_type == "cell" else None
            if nucleus is not None:
                nucleus_polygons, nucleus_points = self.geometry(nucleus, "nucleusGeometry")
                if nucleus_polygons or nucleus_points:
                    polygons, points = nucleus_polygons, nucleus_points
            if polygons:  # one object, one point: the area centroid of its polygons
                points, polygons = [_centroid(polygons)[None, :]], []
        for exterior, holes in polygons:
            self.regions.append(Region(cls, exterior, tuple(holes), index))
        for array in points:
            self.xs.append(array[:, 0])
            self.ys.append(array[:, 1])
            self.point_classes.extend([cls] * len(array))
            self.point_features.extend([index] * len(array))

    # -- geometry ------------------------------------------------------------------------------

    def geometry(self, geometry: Any, key: str) -> tuple[list[tuple[np.ndarray, list[np.ndarray]]], list[np.ndarray]]:
        """``(polygons, point arrays)`` of one GeoJSON geometry."""
        if not isinstance(geometry, dict) or not isinstance(geometry.get("type"), str):
            raise self.fail(f"expected '{key}' to be a GeoJSON geometry with a 'type', got {describe(geometry)}")
        kind = geometry["type"]
        if kind == "GeometryCollection":
            members = geometry.get("geometries")
            if not isinstance(members, list):
                raise self.fail(f"expected a GeometryCollection's 'geometries' to be a list, got {describe(members)}")
            polygons: list[tuple[np.ndarray, list[np.ndarray]]] = []
            points: list[np.ndarray] = []
            for member in members:
                more_polygons, more_points = self.geometry(member, f"{key} member")
                polygons += more_polygons
                points += more_points
            return polygons, points
        if kind in ("LineString", "MultiLineString"):
            raise self.fail(f"a {kind}: lines are not labels (a QuPath line or polyline annotation, such as "
                            f"a measurement); delete it or leave it out of the export")
        if kind not in ("Polygon", "MultiPolygon", "Point", "MultiPoint"):
            raise self.fail(f"unsupported geometry type {describe(kind)}; expected Polygon, MultiPolygon, "
                            f"Point or MultiPoint")
        if "coordinates" not in geometry:
            raise self.fail(f"a {kind} without 'coordinates'")
        coordinates = geometry["coordinates"]
        if kind == "Point":
            return [], [self.positions(coordinates, kind, point=True)]
        if kind == "MultiPoint":
            if not isinstance(coordinates, list):
                raise self.fail(f"expected a MultiPoint's coordinates to be a list of positions, "
                                f"got {describe(coordinates)}")
            return [], [self.positions(coordinates, kind)] if coordinates else []
        if kind == "Polygon":
            return [self.polygon(coordinates, kind)], []
        if not isinstance(coordinates, list) or not coordinates:
            raise self.fail(f"expected a MultiPolygon's coordinates to be a non-empty list of polygons, "
                            f"got {describe(coordinates)}")
        return [self.polygon(p, f"MultiPolygon polygon {n}") for n, p in enumerate(coordinates)], []

    def polygon(self, rings: Any, what: str) -> tuple[np.ndarray, list[np.ndarray]]:
        if not isinstance(rings, list) or not rings:
            raise self.fail(f"expected the {what} to be a non-empty list of rings, got {describe(rings)}")
        opened = []
        for number, ring in enumerate(rings):
            label = f"{what} {'exterior ring' if number == 0 else f'hole {number - 1}'}"
            array = self.positions(ring, label)
            if len(array) > 1 and np.array_equal(array[0], array[-1]):
                array = array[:-1]
            if not _three_distinct(array):
                raise self.fail(f"the {label} has fewer than 3 distinct points ({describe(ring)})")
            opened.append(array)
        return opened[0], opened[1:]

    def positions(self, value: Any, what: str, *, point: bool = False) -> np.ndarray:
        """``(K, 2)`` float64 ``(x, y)`` of a GeoJSON position list (or one position when ``point``)."""
        try:
            array = np.array(value)
        except (TypeError, ValueError):
            array = None
        if point and array is not None:
            array = array[None, ...]
        if (array is None or array.ndim != 2 or array.shape[1] not in (2, 3) or len(array) == 0
                or array.dtype.kind not in "iuf"):
            shape = "an [x, y] position" if point else "a list of [x, y] positions"
            raise self.fail(f"expected the {what} coordinates to be {shape} of numbers, got {describe(value)}")
        array = array[:, :2].astype(np.float64)  # a third (z) coordinate is allowed by GeoJSON; QuPath has none
        if not np.all(np.isfinite(array)):
            raise self.fail(f"expected finite {what} coordinates, got NaN or infinity in {describe(value)}")
        if np.abs(array).max() > MAX_COORDINATE:
            raise self.fail(f"expected {what} coordinates within ±{MAX_COORDINATE} level-0 pixels, got "
                            f"{np.abs(array).max():g}")
        return array


def _three_distinct(ring: np.ndarray) -> bool:
    """Whether ``ring`` holds at least three distinct points (cheaper than ``np.unique`` on small rings)."""
    first = ring[:3].tolist()
    if len(first) == 3 and first[0] != first[1] and first[1] != first[2] and first[0] != first[2]:
        return True
    off_first = (ring != ring[0]).any(axis=1)
    if not off_first.any():
        return False
    off_second = (ring != ring[np.argmax(off_first)]).any(axis=1)
    return bool((off_first & off_second).any())


def _ring_moments(ring: np.ndarray, origin: np.ndarray) -> np.ndarray:
    """Unsigned area and first moments ``(A, A*cx, A*cy)`` of a ring (shoelace), about ``origin``."""
    p = ring - origin
    q = np.concatenate((p[1:], p[:1]))
    cross = p[:, 0] * q[:, 1] - q[:, 0] * p[:, 1]
    moments = np.concatenate(([cross.sum() / 2.0], (p + q).T @ cross / 6.0))
    return moments if moments[0] >= 0 else -moments


def _centroid(polygons: Sequence[tuple[np.ndarray, Sequence[np.ndarray]]]) -> np.ndarray:
    """The area centroid of polygons with holes; the mean exterior vertex when the area is zero."""
    origin = polygons[0][0][0]
    total = np.zeros(3)
    for exterior, holes in polygons:
        total += _ring_moments(exterior, origin)
        for hole in holes:
            total -= _ring_moments(hole, origin)
    if total[0] <= 1e-12 * max(1.0, float(np.abs(polygons[0][0] - origin).max()) ** 2):
        return np.concatenate([p[0] for p in polygons]).mean(axis=0)
    return origin + total[1:] / total[0]


def read_geojson(
    path: str | os.PathLike[str],
    classes: Sequence[str] | None = None,
    rename: Mapping[str, str | None] | None = None,
) -> Annotations:
    """Read QuPath's "Export objects as GeoJSON" as regions and points in level-0 pixels.

    Parameters
    ----------
    path
        The ``.geojson`` (or ``.json``) file: a FeatureCollection, a list of features, or one Feature.
    classes
        The allowed class names (after ``rename``): any other class is an error. ``None`` accepts
        every class.
    rename
        QuPath class name -> class name, applied first (``{"Tumor": "tumour"}``); a name mapped to
        ``None`` makes its objects unclassified (``{"Ignore*": None}``). Names are matched exactly;
        a derived class is named as QuPath shows it (``"Tumor: Positive"``).

    Returns
    -------
    Annotations
        Regions (annotation and tile polygons, one per polygon of a MultiPolygon), points (point
        annotations, and detection and cell centroids) and the number of unclassified objects.

    Raises
    ------
    AnnotationError
        No such file, not JSON, not a FeatureCollection / list / Feature, or a feature without
        geometry, with lines, unsupported geometry, coordinates that are not finite numbers within
        ±2**31, a ring with fewer than 3 distinct points, or an unknown class; the message names the
        file and the feature index.
    ParameterError
        ``path``, ``classes`` or ``rename`` of the wrong type.
    """
    path = parse_path(path)
    allowed = None if classes is None else _parse_classes(classes)
    renames = _parse_rename(rename)
    try:
        with open(path, "rb") as stream:
            raw = stream.read()
    except FileNotFoundError:
        raise AnnotationError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise AnnotationError(f"{path}: expected a GeoJSON file, got a folder") from None
    except OSError as exc:
        raise AnnotationError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    try:
        document = json.loads(raw)  # bytes: UTF-8/16/32 detected; NaN (QuPath measurements) accepted
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise AnnotationError(f"{path}: not JSON: {exc}") from None

    if isinstance(document, list):
        features = document
    elif isinstance(document, dict) and document.get("type") == "FeatureCollection":
        features = document.get("features")
        if not isinstance(features, list):
            raise AnnotationError(f"{path}: expected the FeatureCollection's 'features' to be a list, "
                                  f"got {describe(features)}")
    elif isinstance(document, dict) and document.get("type") == "Feature":
        features = [document]
    else:
        got = (f"a JSON object of type {describe(document.get('type'))}" if isinstance(document, dict)
               else f"{type(document).__name__} {describe(document)}")
        raise AnnotationError(f"{path}: expected a GeoJSON FeatureCollection, a list of features or one "
                              f"Feature (QuPath's 'Export objects as GeoJSON'), got {got}")

    reader = _Reader(path, allowed, renames)
    for index, feature in enumerate(features):
        reader.feature(feature, index, f"feature {index}")
    points = _points_frame(reader.xs, reader.ys, reader.point_classes, reader.point_features)
    return Annotations(path=path, regions=tuple(reader.regions), points=points, unclassified=reader.unclassified)


# ----------------------------------------------------------------------------------------------
# Labels


def _parse_boxes(boxes: Any, what: str = "boxes") -> np.ndarray:
    """Level-0 ``(x, y, w, h)`` boxes as ``(N, 4)`` float64 (finite, ``w, h > 0``)."""
    array = parse_real_array(boxes, what, ndim=2, layout="(N, 4) of level-0 boxes (x, y, w, h)")
    if array.shape[1] != 4:
        raise ParameterError(f"{what}: expected (N, 4) level-0 boxes (x, y, w, h), got shape {array.shape}")
    array = array.astype(np.float64)
    if array.size and np.abs(array).max() > MAX_COORDINATE:
        raise ParameterError(f"{what}: expected level-0 values within ±{MAX_COORDINATE}, got "
                             f"{np.abs(array).max():g}")
    empty = np.flatnonzero(np.any(array[:, 2:] <= 0, axis=1))
    if empty.size:
        raise ParameterError(f"{what}: expected widths and heights > 0, got {array[empty[0]].tolist()} "
                             f"(box {empty[0]})")
    return array


class _Edges:
    """The edges of all rings of one region (exterior and holes), for the even-odd scanline fill."""

    def __init__(self, region: Region):
        rings = (region.exterior, *region.holes)
        start = np.concatenate(rings)
        end = np.concatenate([np.roll(r, -1, axis=0) for r in rings])
        self.x0, self.y0 = start[:, 0], start[:, 1]
        self.ymin, self.ymax = np.minimum(self.y0, end[:, 1]), np.maximum(self.y0, end[:, 1])
        self.xmin = np.minimum(self.x0, end[:, 0])
        dy = end[:, 1] - self.y0
        flat = dy == 0
        self.dxdy = np.where(flat, 0.0, (end[:, 0] - self.x0) / np.where(flat, 1.0, dy))


def _inside(edges: _Edges, box: np.ndarray, resolution: int) -> np.ndarray | None:
    """Which pixel centres of a ``resolution``² raster of ``box`` lie inside the region (even-odd).

    A scanline fill with half-open rules: pixel ``(i, j)`` is inside when an odd number of edges
    cross its row's centre line left of (or at) its centre, and an edge counts for the rows whose
    centres lie in ``[y_min, y_max)``; an axis-aligned rectangle whose sides fall on pixel borders
    is therefore filled exactly (OpenCV's ``fillPoly`` also fills the pixels its right and bottom
    sides touch). ``None`` when no edge crosses the box's rows (the region misses the box).
    """
    bx, by, bw, bh = box
    size = resolution
    sx, sy = size / bw, size / bh
    near = np.flatnonzero((edges.ymax > by) & (edges.ymin < by + bh) & (edges.xmin < bx + bw))
    if near.size == 0:
        return None
    low = np.clip(np.ceil((edges.ymin[near] - by) * sy - 0.5), 0, size).astype(np.intp)
    high = np.clip(np.ceil((edges.ymax[near] - by) * sy - 0.5), 0, size).astype(np.intp)
    counts = high - low
    total = int(counts.sum())
    if total == 0:
        return None
    which = np.repeat(near, counts)
    offsets = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
    rows = np.repeat(low, counts) + offsets
    centre_y = by + (rows + 0.5) / sy
    cross_x = edges.x0[which] + (centre_y - edges.y0[which]) * edges.dxdy[which]
    first = np.clip(np.ceil((cross_x - bx) * sx - 0.5), 0, size).astype(np.intp)  # first pixel right of it
    hits = np.bincount(rows * (size + 1) + first, minlength=size * (size + 1)).reshape(size, size + 1)
    return (np.cumsum(hits[:, :size], axis=1) & 1).astype(bool)


def region_fractions(
    annotations: Annotations,
    boxes: Any,
    classes: Sequence[str],
    *,
    resolution: int = DEFAULT_RESOLUTION,
) -> np.ndarray:
    """The fraction of each level-0 box covered by each class's regions.

    Each box is rasterised at ``resolution`` x ``resolution`` pixels (its own scale in x and y) and
    the regions that reach it are painted in file order, so where regions of different classes
    overlap the later feature wins; a region's holes are not painted (what an earlier region
    painted there stays). Unclassified regions paint nothing.

    Parameters
    ----------
    annotations
        From :func:`read_geojson`.
    boxes
        ``(N, 4)`` level-0 ``(x, y, width, height)``.
    classes
        The class names; column ``c`` of the result is ``classes[c]``.
    resolution
        Raster edge per box: fractions are multiples of ``1 / resolution**2``, and a region's
        border is placed within about one raster pixel (``1 / resolution`` of the box's edge).

    Returns
    -------
    numpy.ndarray
        ``(N, len(classes))`` float64 fractions in ``[0, 1]``, each row summing to at most 1 (the
        rest is unannotated).

    Raises
    ------
    AnnotationError
        A classified region whose class is not in ``classes`` (the message names the file and the
        feature).
    ParameterError
        Malformed ``boxes``, ``classes`` or ``resolution``.
    """
    names = _parse_classes(classes)
    array = _parse_boxes(boxes)
    size = parse_positive_int(resolution, "resolution", maximum=4096)
    index = {name: k for k, name in enumerate(names)}
    painted: list[tuple[int, Region]] = []
    for region in annotations.regions:
        if region.cls is None:
            continue
        if region.cls not in index:
            raise AnnotationError(
                f"{annotations.path}: feature {region.feature}: class {region.cls!r} is not among the classes "
                f"({', '.join(names)}); add it, or rename it to None in read_geojson to ignore it")
        painted.append((index[region.cls], region))
    fractions = np.zeros((len(array), len(names)))
    if not painted or not len(array):
        return fractions
    bounds = np.array([region.bounds for _, region in painted])
    edges: dict[int, _Edges] = {}
    block = max(1, _BLOCK_CELLS // len(painted))
    for start in range(0, len(array), block):
        chunk = array[start:start + block]
        x, y, w, h = (chunk[:, k:k + 1] for k in range(4))
        meets = ((bounds[:, 0] < x + w) & (bounds[:, 2] > x) & (bounds[:, 1] < y + h) & (bounds[:, 3] > y))
        for row in np.flatnonzero(meets.any(axis=1)):
            canvas = np.zeros((size, size), dtype=np.int32)
            for candidate in np.flatnonzero(meets[row]):
                if candidate not in edges:
                    edges[candidate] = _Edges(painted[candidate][1])
                inside = _inside(edges[candidate], chunk[row], size)
                if inside is not None:
                    canvas[inside] = painted[candidate][0] + 1
            counts = np.bincount(canvas.ravel(), minlength=len(names) + 1)
            fractions[start + row] = counts[1:] / float(size * size)
    return fractions


def tile_labels(
    annotations: Annotations,
    boxes: Any,
    classes: Sequence[str],
    *,
    unlabelled_as: str | None = None,
    min_fraction: float = 0.5,
    resolution: int = DEFAULT_RESOLUTION,
) -> np.ndarray:
    """One class index per box: the class covering most of the tile.

    Rule: the label of a tile is the class with the largest :func:`region_fractions` (the lowest
    class index on ties), when it covers at least ``min_fraction`` of the tile and some of it at
    all. Any other tile is unannotated: ``-1`` (to exclude from training), or the index of
    ``unlabelled_as`` when given (unannotated tissue taken as that class).

    Parameters
    ----------
    annotations
        From :func:`read_geojson`.
    boxes
        ``(N, 4)`` level-0 ``(x, y, width, height)``.
    classes
        The class names; labels index them.
    unlabelled_as
        A name in ``classes`` given to unannotated tiles; ``None`` labels them ``-1``.
    min_fraction
        The least fraction of the tile the top class must cover, in ``[0, 1]`` (``0``: any of it).
    resolution
        Raster edge per box (see :func:`region_fractions`).

    Returns
    -------
    numpy.ndarray
        ``(N,)`` int64 class indices, ``-1`` for unannotated tiles.

    Raises
    ------
    AnnotationError
        A classified region whose class is not in ``classes``.
    ParameterError
        Malformed ``boxes``, ``classes``, ``min_fraction``, or an ``unlabelled_as`` not in ``classes``.
    """
    names = _parse_classes(classes)
    fill = -1
    if unlabelled_as is not None:
        if not isinstance(unlabelled_as, str) or unlabelled_as not in names:
            raise ParameterError(f"unlabelled_as: expected one of the classes ({', '.join(names)}) or None, "
                                 f"got {describe(unlabelled_as)}")
        fill = names.index(unlabelled_as)
    threshold = parse_fraction(min_fraction, "min_fraction")
    fractions = region_fractions(annotations, boxes, names, resolution=resolution)
    if not len(fractions):
        return np.zeros(0, dtype=np.int64)
    best = np.argmax(fractions, axis=1)  # the first maximum: the lowest class index on ties
    top = fractions[np.arange(len(fractions)), best]
    return np.where((top > 0) & (top >= threshold), best, fill).astype(np.int64)


def points_in_box(annotations: Annotations, box: Any) -> pd.DataFrame:
    """The points inside one level-0 box, half-open: ``x <= px < x + w`` and ``y <= py < y + h``.

    Parameters
    ----------
    annotations
        From :func:`read_geojson`.
    box
        ``(x, y, width, height)`` in level-0 pixels.

    Returns
    -------
    pandas.DataFrame
        The rows of :attr:`Annotations.points` inside the box (columns ``x, y, cls, feature``), in
        file order, with a fresh index.
    """
    if isinstance(box, (str, bytes)) or np.ndim(box) != 1:
        raise ParameterError(f"box: expected one level-0 box (x, y, w, h), got {describe(box)}")
    (x, y, w, h), = _parse_boxes(np.asarray(box)[None, :], "box")
    points = annotations.points
    px, py = points["x"].to_numpy(), points["y"].to_numpy()
    keep = (px >= x) & (px < x + w) & (py >= y) & (py < y + h)
    return points.loc[keep].reset_index(drop=True)
