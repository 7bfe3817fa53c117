"""Annotations and cells as GeoJSON that QuPath imports (File > Import objects, or drag and drop).

The features follow what QuPath's own "Export objects as GeoJSON" writes (``PathObjectTypeAdapters``
of QuPath 0.4 and later): ``"id"`` a UUID, and in ``"properties"`` an ``"objectType"``
(``"annotation"`` or ``"detection"``), a ``"classification"`` ``{"name", "color": [r, g, b]}`` and
``"measurements"`` as a mapping name -> number. Coordinates are level-0 pixels, origin at the top
left of the slide, as QuPath draws them.

- :func:`region_features`: the regions where a coarse probability map reaches a threshold, as
  polygons with holes that follow the map's pixel edges exactly (one feature per 8-connected
  region; a region whose parts touch only at corners is a MultiPolygon, so no ring touches itself).
- :func:`write_geojson`: a FeatureCollection, atomically (gzip-compressed when the name ends ``.gz``).
- :func:`write_cells_geojson_gz`: millions of nuclei streamed chunk by chunk into a gzip-compressed
  FeatureCollection of octagon detections, never holding all of them. QuPath 0.5 and later read
  ``.geojson.gz`` directly (``PathIO.readObjects`` unzips ``.gz``); QuPath 0.4 needs it gunzipped.
- :func:`read_geojson`: either file back as JSON.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import uuid
from collections.abc import Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from slidescope.wsi.atomic import atomic_path
from slidescope.wsi.errors import OutputError, ParameterError, SlideError
from slidescope.wsi.validation import (
    MAX_MPP,
    describe,
    parse_non_negative_float,
    parse_number,
    parse_path,
    parse_positive_float,
)

from .errors import WorkflowError

__all__ = ["region_features", "write_geojson", "write_cells_geojson_gz", "read_geojson", "CELL_COLUMNS"]

#: Columns every chunk of cells given to :func:`write_cells_geojson_gz` has.
CELL_COLUMNS = ("l0_x", "l0_y", "type", "score")

_GZIP_MAGIC = b"\x1f\x8b"
#: zlib level of the cell files: level 1 is ~3x faster than 6 for ~15 % more bytes.
_CELLS_COMPRESSLEVEL = 1
#: Decimals kept in cell coordinates (level-0 pixels: 0.1 px is 0.025 µm at 0.25 µm/px) and scores.
_COORDINATE_DECIMALS = 1
_SCORE_DECIMALS = 4
#: A cell's octagon: vertex k at angle k * 45° (counter-clockwise in (x, y)) from the centre; its
#: x offset is ``_OCTAGON_STEPS[_OCTAGON[k][0]] * radius``, its y offset ``_OCTAGON_STEPS[_OCTAGON[k][1]] * radius``.
_OCTAGON_STEPS = np.array([1.0, math.sqrt(0.5), 0.0, -math.sqrt(0.5), -1.0])
_OCTAGON = [(0, 2), (1, 1), (2, 0), (3, 1), (4, 2), (3, 3), (2, 4), (1, 3)]
#: Largest magnitude of a cell coordinate or score (as :data:`~slidescope.wsi.validation.MAX_COORDINATE`).
_MAX_CELL_NUMBER = 2.0**31


# ----------------------------------------------------------------------------------------------
# Regions of a probability map


def region_features(
    probability: Any,
    *,
    l0_per_px: float,
    threshold: float = 0.5,
    name: str = "Tumor",
    color: tuple[int, int, int] = (200, 0, 0),
    min_area_l0: float = 0,
    measurements: Mapping[str, float] | None = None,
    mpp: float | None = None,
    extent: tuple[float, float] | None = None,
) -> list[dict[str, Any]]:
    """QuPath annotations of the regions where a 2-D probability map is ``>= threshold``.

    Each map pixel ``(row i, column j)`` covers level-0 ``[j*s, (j+1)*s) x [i*s, (i+1)*s)`` with
    ``s = l0_per_px``; the polygons run along the edges of the selected pixels, so a region's area
    is exactly its pixel count times ``s**2`` (less what lies past ``extent``). Regions are OpenCV's
    8-connected components; within one, the parts joined by edges (4-connected) are the polygons of a
    MultiPolygon, each with its holes (``cv2.findContours(..., RETR_CCOMP, CHAIN_APPROX_SIMPLE)`` traced on the
    lattice of pixel corners and edge midpoints, so collinear vertices are dropped). Exterior rings
    are counter-clockwise and holes clockwise in the ``(x, y)`` numbers (RFC 7946), every ring
    closed.

    Parameters
    ----------
    probability
        2-D array ``(height, width)`` of real numbers; NaN (not analysed) counts as below the
        threshold.
    l0_per_px
        Level-0 pixels per map pixel (``s`` above), > 0.
    threshold
        Pixels ``>= threshold`` are selected.
    name, color
        The QuPath class: its name and ``(r, g, b)`` colour (integers in 0..255).
    min_area_l0
        Regions smaller than this, in level-0 pixels², are left out.
    measurements
        Extra measurements (name -> finite number) given to every feature.
    mpp
        µm per level-0 pixel; when given, features also measure ``area_mm2``.
    extent
        The slide's level-0 ``(width, height)``: polygons and areas are cut at its edges (a map's last
        row and column of pixels usually reach past them).

    Returns
    -------
    list of dict
        One GeoJSON Feature per region in raster order of the regions' first pixels, with
        measurements ``area_l0_px2``, ``mean_probability`` (over the region's pixels), ``area_mm2``
        when ``mpp`` is given, and ``measurements``.

    Raises
    ------
    ParameterError
        ``probability`` not a 2-D real array, or holding infinities; ``l0_per_px``, ``threshold``,
        ``min_area_l0`` or ``mpp`` not a finite number in range; a bad ``name``, ``color`` or
        measurement.
    """
    import cv2

    values = _parse_probability(probability)
    scale = parse_positive_float(l0_per_px, "l0_per_px (level-0 pixels per map pixel)", maximum=2.0**31)
    threshold = parse_number(threshold, "threshold")
    classification = _classification(name, color, "name", "color")
    min_area = parse_non_negative_float(min_area_l0, "min_area_l0 (level-0 pixels²)")
    extra = _parse_measurements(measurements)
    mpp_l0 = None if mpp is None else parse_positive_float(mpp, "mpp (µm per level-0 pixel)", maximum=MAX_MPP)
    height, width = values.shape
    limit = (np.array([width, height], np.float64) * scale if extent is None else
             np.array([parse_positive_float(extent[0], "extent width"), parse_positive_float(extent[1], "extent height")]))
    # level-0 width of each map column and height of each map row, cut at the extent
    col_w = np.clip(np.minimum((np.arange(width) + 1) * scale, limit[0]) - np.arange(width) * scale, 0, None)
    row_h = np.clip(np.minimum((np.arange(height) + 1) * scale, limit[1]) - np.arange(height) * scale, 0, None)

    with np.errstate(invalid="ignore"):
        mask = (values >= threshold).astype(np.uint8)  # NaN >= t is False
    count8, labels8, stats8, _ = cv2.connectedComponentsWithStats(mask, connectivity=8, ltype=cv2.CV_32S)
    features = []
    for label in range(1, count8):
        x, y, w, h, pixels = (int(v) for v in stats8[label])
        region = labels8[y:y + h, x:x + w] == label
        area_l0 = float(row_h[y:y + h] @ region @ col_w[x:x + w])
        if area_l0 < min_area or area_l0 <= 0:
            continue
        polygons = _region_polygons(region, x, y, scale, limit)
        geometry = ({"type": "Polygon", "coordinates": polygons[0]} if len(polygons) == 1
                    else {"type": "MultiPolygon", "coordinates": polygons})
        measured: dict[str, float] = {"area_l0_px2": area_l0,
                                      "mean_probability": float(values[y:y + h, x:x + w][region].mean())}
        if mpp_l0 is not None:
            measured["area_mm2"] = area_l0 * mpp_l0 * mpp_l0 / 1e6
        measured.update(extra)
        features.append({
            "type": "Feature",
            "id": str(uuid.uuid4()),
            "geometry": geometry,
            "properties": {"objectType": "annotation", "classification": dict(classification),
                           "measurements": measured},
        })
    return features


def _region_polygons(region: np.ndarray, x0: int, y0: int, scale: float,
                     limit: np.ndarray) -> list[list[list[list[float]]]]:
    """GeoJSON polygons (exterior ring then holes) of the 4-connected parts of one 8-connected region."""
    import cv2

    count4, labels4, stats4, _ = cv2.connectedComponentsWithStats(region.astype(np.uint8), connectivity=4,
                                                                  ltype=cv2.CV_32S)
    polygons = []
    for label in range(1, count4):
        x, y, w, h, _ = (int(v) for v in stats4[label])
        part = labels4[y:y + h, x:x + w] == label
        # vertices are pixel corners: only the far edges of a last row or column can pass the extent
        rings = [np.minimum((ring / 2 + (x0 + x, y0 + y)) * scale, limit) for ring in _part_rings(part)]
        polygons.append([_closed(ring, exterior=(i == 0)) for i, ring in enumerate(rings)])
    return polygons


def _part_rings(part: np.ndarray) -> list[np.ndarray]:
    """Rings of one 4-connected set of pixels along pixel edges, exterior first, in lattice units.

    The lattice has a point at every pixel corner, edge midpoint and centre (coordinate ``v`` is
    ``v / 2`` pixels); a point is set when it lies in the closed union of the pixel squares, i.e.
    the pixel centres dilated by 3 x 3. Its contours pass through corners and edge midpoints only;
    OpenCV's 8-connected tracing cuts a corner with one diagonal step between two edge midpoints,
    which :func:`_restore_corners` puts back.
    """
    import cv2

    h, w = part.shape
    lattice = np.zeros((2 * h + 3, 2 * w + 3), np.uint8)  # lattice v at index v + 1: one empty border
    lattice[2:2 * h + 1:2, 2:2 * w + 1:2] = part
    lattice = cv2.dilate(lattice, np.ones((3, 3), np.uint8))
    contours, hierarchy = cv2.findContours(lattice, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    links = hierarchy[0]
    outer = [i for i in range(len(contours)) if links[i][3] < 0]
    assert len(outer) == 1, "a 4-connected set of pixels has one exterior ring"
    holes = [i for i in range(len(contours)) if links[i][3] == outer[0]]
    return [_restore_corners(contours[i][:, 0, :].astype(np.int64) - 1) for i in outer + holes]


def _restore_corners(points: np.ndarray) -> np.ndarray:
    """Put back the pixel corners cut by diagonal steps, then drop vertices that do not turn."""
    following = np.roll(points, -1, axis=0)
    step = following - points
    diagonal = (step[:, 0] != 0) & (step[:, 1] != 0)
    assert np.all(np.abs(step[diagonal]) == 1), "corner cuts are single lattice steps"
    # Of the two points completing the diagonal step, the corner has both coordinates even (the
    # other one is a pixel centre, never on the boundary).
    first = np.stack([following[:, 0], points[:, 1]], axis=1)
    second = np.stack([points[:, 0], following[:, 1]], axis=1)
    corner = np.where((first % 2 == 0).all(axis=1, keepdims=True), first, second)
    ring = np.stack([points, corner], axis=1)[np.stack([np.ones(len(points), bool), diagonal], axis=1)]
    before, after = np.roll(ring, 1, axis=0), np.roll(ring, -1, axis=0)
    turn = (ring - before)[:, 0] * (after - ring)[:, 1] - (ring - before)[:, 1] * (after - ring)[:, 0]
    return ring[turn != 0]


def _closed(ring: np.ndarray, *, exterior: bool) -> list[list[float]]:
    """The ring as a closed GeoJSON coordinate list, exterior counter-clockwise, holes clockwise."""
    following = np.roll(ring, -1, axis=0)
    signed_area = float(np.sum(ring[:, 0] * following[:, 1] - following[:, 0] * ring[:, 1]))
    if (signed_area > 0) != exterior:
        ring = ring[::-1]
    return np.concatenate([ring, ring[:1]]).astype(float).tolist()


# ----------------------------------------------------------------------------------------------
# Writing and reading


def write_geojson(path: str | os.PathLike[str], features: Iterable[Mapping[str, Any]]) -> Path:
    """Write features as one GeoJSON FeatureCollection, atomically; gzip-compressed if ``path`` ends ``.gz``.

    Parameters
    ----------
    path
        The ``.geojson`` (or ``.geojson.gz``) file; its folder must exist, or only its last level
        be missing.
    features
        GeoJSON Features (as :func:`region_features` makes them).

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    ParameterError
        A feature is not a mapping with ``"type": "Feature"``, or holds something JSON cannot
        write (NaN, infinity, an object).
    OutputError
        The file cannot be written; the previous one, if any, is left as it was.
    """
    target = parse_path(path)
    if isinstance(features, (str, bytes, Mapping)) or not isinstance(features, Iterable):
        raise ParameterError(f"features: expected an iterable of GeoJSON Features, got {describe(features)}")
    items = []
    for index, feature in enumerate(features):
        if not isinstance(feature, Mapping) or feature.get("type") != "Feature":
            raise ParameterError(f"features[{index}]: expected a GeoJSON Feature (a mapping with "
                                 f"'type': 'Feature'), got {describe(feature)}")
        items.append(dict(feature))
    try:
        text = json.dumps({"type": "FeatureCollection", "features": items}, allow_nan=False,
                          separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise ParameterError(f"features: expected JSON-serialisable features with finite numbers, got: {exc}") from None
    data = text.encode("utf-8")
    try:
        with atomic_path(target) as temporary:
            if target.lower().endswith(".gz"):
                with open(temporary, "wb") as raw, gzip.GzipFile(filename=os.path.basename(target), mode="wb",
                                                                 fileobj=raw, mtime=0) as stream:
                    stream.write(data)
            else:
                with open(temporary, "wb") as stream:
                    stream.write(data)
    except SlideError:
        raise
    except OSError as exc:
        raise OutputError(f"{target}: cannot write the GeoJSON: {exc.strerror or exc}") from exc
    return Path(target)


def write_cells_geojson_gz(
    path: str | os.PathLike[str],
    chunks: Iterable[Any],
    *,
    classes: Mapping[str, tuple[int, int, int]],
    radius_l0: float,
    mpp: float | None = None,
) -> int:
    """Stream cells into a gzip-compressed GeoJSON FeatureCollection of QuPath detections, atomically.

    Each cell becomes a detection whose geometry is a regular octagon of circumradius
    ``radius_l0`` around its centre (coordinates rounded to 0.1 level-0 px), classified by its
    ``type`` with the colour ``classes`` gives, and measuring its ``score`` (rounded to 4 decimals).
    Only one chunk is held at a time; the file is written beside ``path`` and renamed onto it
    once every chunk was written.

    Parameters
    ----------
    path
        The ``.geojson.gz`` file; its folder must exist, or only its last level be missing.
    chunks
        Iterable of pandas DataFrames with columns :data:`CELL_COLUMNS`: ``l0_x``, ``l0_y``
        (the centre, level-0 pixels), ``type`` (a class name) and ``score``; empty frames are
        skipped.
    classes
        Class name -> ``(r, g, b)`` colour (integers in 0..255); a ``type`` not named here is an error.
    radius_l0
        The octagon's circumradius, level-0 pixels, > 0.
    mpp
        µm per level-0 pixel, recorded with ``radius_l0`` in the collection's foreign member
        ``"slidescope"`` (GeoJSON readers, QuPath among them, ignore it).

    Returns
    -------
    int
        The number of cells written.

    Raises
    ------
    ParameterError
        A chunk that is not a DataFrame, lacks a column, has a coordinate or score that is not a
        finite number, or a ``type`` that ``classes`` does not name (the message names the chunk
        and the types); bad ``classes``, ``radius_l0`` or ``mpp``. Nothing is left at ``path``.
    OutputError
        The file cannot be written; the previous one, if any, is left as it was.
    """
    target = parse_path(path)
    if not isinstance(classes, Mapping) or not classes:
        raise ParameterError(f"classes: expected a non-empty mapping cell type -> (r, g, b), got {describe(classes)}")
    class_json = []
    for label, rgb in classes.items():
        classification = _classification(label, rgb, "classes (a cell type name)", f"classes[{label!r}]")
        class_json.append(json.dumps(classification, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
    class_index = {label: i for i, label in enumerate(classes)}
    class_width = max(len(text) for text in class_json)  # each padded with spaces to one width
    class_table = np.frombuffer(b"".join(text.ljust(class_width) for text in class_json),
                                dtype=np.uint8).reshape(len(class_json), class_width)
    radius = parse_positive_float(radius_l0, "radius_l0 (level-0 pixels)", maximum=2.0**31)
    mpp_l0 = None if mpp is None else parse_positive_float(mpp, "mpp (µm per level-0 pixel)", maximum=MAX_MPP)
    if isinstance(chunks, (str, bytes)) or not isinstance(chunks, Iterable):
        raise ParameterError(f"chunks: expected an iterable of DataFrames, got {describe(chunks)}")

    metadata = json.dumps({"mpp": mpp_l0, "radius_l0": radius}, separators=(",", ":"))
    written = 0
    try:
        with atomic_path(target) as temporary:
            with open(temporary, "wb") as raw, gzip.GzipFile(filename=os.path.basename(target), mode="wb",
                                                             fileobj=raw, compresslevel=_CELLS_COMPRESSLEVEL,
                                                             mtime=0) as stream:
                stream.write(b'{"type":"FeatureCollection","slidescope":' + metadata.encode() + b',"features":[')
                # zlib releases the GIL: one chunk is compressed in a thread while the next is laid out.
                with ThreadPoolExecutor(max_workers=1, thread_name_prefix="cells-gzip") as compressor:
                    pending: Future[Any] | None = None
                    for index, chunk in enumerate(chunks):
                        text, count = _cells_bytes(chunk, index, class_table, class_index, radius)
                        if not count:
                            continue
                        if pending is not None:
                            pending.result()
                        pending = compressor.submit(stream.write, text if written else text[1:])  # no comma first
                        written += count
                    if pending is not None:
                        pending.result()
                stream.write(b"\n]}\n")
    except SlideError:
        raise
    except OSError as exc:
        raise OutputError(f"{target}: cannot write the cells GeoJSON: {exc.strerror or exc}") from exc
    return written


def _cells_bytes(chunk: Any, index: int, class_table: np.ndarray, class_index: Mapping[str, int],
                 radius: float) -> tuple[bytes, int]:
    """The features of one chunk of cells, each preceded by ``b",\\n"``, and their number.

    Every feature of a chunk is laid out in the same fixed-width template (numbers right-aligned
    in space-padded fields, which JSON allows between tokens, the class JSON padded with trailing
    spaces), so the whole chunk is one ``uint8`` matrix built column block by column block with
    numpy: no Python loop over cells (about 10x faster than formatting each cell; the padding
    costs next to nothing once compressed).
    """
    import pandas as pd

    what = f"chunks[{index}]"
    if not isinstance(chunk, pd.DataFrame):
        raise ParameterError(f"{what}: expected a pandas DataFrame with columns {list(CELL_COLUMNS)}, "
                             f"got {describe(chunk)} ({type(chunk).__name__})")
    missing = [c for c in CELL_COLUMNS if c not in chunk.columns]
    if missing:
        raise ParameterError(f"{what}: expected columns {list(CELL_COLUMNS)}, missing {missing}")
    count = len(chunk)
    if count == 0:
        return b"", 0
    types = chunk["type"]
    unknown = [t for t in pd.unique(types) if not isinstance(t, str) or t not in class_index]
    if unknown:
        raise ParameterError(f"{what}: unknown cell type(s) {sorted(map(repr, unknown))}; expected one of "
                             f"the classes {sorted(class_index)}")
    numbers = {}
    for column in ("l0_x", "l0_y", "score"):
        try:
            values = chunk[column].to_numpy(dtype=np.float64)
        except (TypeError, ValueError):
            raise ParameterError(f"{what}: column {column!r}: expected numbers, got dtype {chunk[column].dtype}") from None
        finite = np.isfinite(values) & (np.abs(values) < _MAX_CELL_NUMBER)
        if not finite.all():
            row = int(np.flatnonzero(~finite)[0])
            raise ParameterError(f"{what}: column {column!r}: expected finite numbers within "
                                 f"±{_MAX_CELL_NUMBER:g}, got {values[row]!r} in row {row}")
        numbers[column] = values

    # An octagon's x (and y) coordinates take 5 values: format those, then pick them per vertex.
    xs = _fixed_point((numbers["l0_x"][:, None] + _OCTAGON_STEPS * radius).ravel(), _COORDINATE_DECIMALS)
    ys = _fixed_point((numbers["l0_y"][:, None] + _OCTAGON_STEPS * radius).ravel(), _COORDINATE_DECIMALS)
    xs, ys = xs.reshape(count, len(_OCTAGON_STEPS), -1), ys.reshape(count, len(_OCTAGON_STEPS), -1)
    codes = pd.Categorical(types, categories=list(class_index)).codes.astype(np.intp)

    blocks: list[np.ndarray] = [_text(',\n{"type":"Feature","id":"'), _uuid4_bytes(count),
                                _text('","geometry":{"type":"Polygon","coordinates":[[')]
    for vertex, (x_step, y_step) in enumerate(_OCTAGON + _OCTAGON[:1]):  # closed: the first vertex again
        blocks += [_text("[" if vertex == 0 else ",["), xs[:, x_step], _text(","), ys[:, y_step], _text("]")]
    blocks += [_text(']]},"properties":{"objectType":"detection","classification":'), class_table[codes],
               _text(',"measurements":{"score":'), _fixed_point(numbers["score"], _SCORE_DECIMALS), _text("}}}")]
    lines = np.concatenate([np.broadcast_to(block, (count, block.shape[-1])) for block in blocks], axis=1)
    return lines.tobytes(), count


def _text(text: str) -> np.ndarray:
    """``text`` as a ``(1, len)`` ``uint8`` row (a constant block of :func:`_cells_bytes`)."""
    return np.frombuffer(text.encode("utf-8"), dtype=np.uint8)[None, :]


def _fixed_point(values: np.ndarray, decimals: int) -> np.ndarray:
    """Numbers as ASCII JSON numbers with ``decimals`` decimals, right-aligned in one width: ``(n, width)`` uint8.

    ``values`` are finite, below :data:`_MAX_CELL_NUMBER` in magnitude; a minus sign sits right
    before the leading digit (``"  -12.5"``), as JSON requires.
    """
    scaled = np.rint(values * 10.0**decimals)
    negative = scaled < 0
    magnitude = np.abs(scaled)
    dtype = np.int32 if magnitude.size and magnitude.max() < 2**31 else np.int64  # int32 divides faster
    rest = magnitude.astype(dtype)
    frac_width = decimals + 1 if decimals else 0
    columns: list[np.ndarray] = []  # right to left
    for _ in range(decimals):
        rest, digit = np.divmod(rest, 10)
        columns.append(digit.astype(np.uint8) + ord("0"))
    if decimals:
        columns.append(np.full(len(values), ord("."), dtype=np.uint8))
    digits = np.zeros(len(values), dtype=np.int64)  # digits of the whole part (at least one)
    while True:
        shown = (rest > 0) | (digits == 0)
        rest, digit = np.divmod(rest, 10)
        columns.append(np.where(shown, digit.astype(np.uint8) + ord("0"), ord(" ")).astype(np.uint8))
        digits += shown
        if not rest.any():
            break
    columns.append(np.full(len(values), ord(" "), dtype=np.uint8))  # room for a minus sign
    out = np.stack(columns[::-1])  # (width, n): each column written contiguously
    width = len(columns)
    rows = np.flatnonzero(negative)
    out[width - frac_width - 1 - digits[rows], rows] = ord("-")
    return out.T


def _uuid4_bytes(count: int) -> np.ndarray:
    """``count`` random (version 4) UUIDs as ASCII, ``(count, 36)`` uint8 (``uuid.uuid4()`` costs ~2 µs each)."""
    raw = np.frombuffer(os.urandom(16 * count), dtype=np.uint8).reshape(count, 16).copy()
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40  # version 4
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80  # RFC 4122 variant
    digits = np.frombuffer(raw.tobytes().hex().encode("ascii"), dtype=np.uint8).reshape(count, 32)
    text = np.full((count, 36), ord("-"), dtype=np.uint8)
    for shift, (start, stop) in enumerate(((0, 8), (8, 12), (12, 16), (16, 20), (20, 32))):
        text[:, start + shift:stop + shift] = digits[:, start:stop]  # 8-4-4-4-12, a dash between
    return text


def read_geojson(path: str | os.PathLike[str]) -> Any:
    """The JSON document of a ``.geojson`` file, gzip-compressed or not (recognised by its first bytes).

    Raises
    ------
    WorkflowError
        No such file, a folder, unreadable, or not (gzip-compressed) JSON.
    ParameterError
        ``path`` is not a str or PathLike.
    """
    text = parse_path(path)
    try:
        with open(text, "rb") as stream:
            data = stream.read()
    except FileNotFoundError:
        raise WorkflowError(f"{text}: no such file") from None
    except IsADirectoryError:
        raise WorkflowError(f"{text}: expected a GeoJSON file, got a folder") from None
    except OSError as exc:
        raise WorkflowError(f"{text}: cannot read: {exc.strerror or exc}") from exc
    try:
        if data[:2] == _GZIP_MAGIC:
            data = gzip.decompress(data)
        return json.loads(data)
    except (OSError, EOFError, ValueError, UnicodeDecodeError) as exc:
        raise WorkflowError(f"{text}: not GeoJSON (gzip-compressed or not): {exc}") from None


# ----------------------------------------------------------------------------------------------
# Validation


def _parse_probability(probability: Any) -> np.ndarray:
    if isinstance(probability, (str, bytes)) or probability is None:
        raise ParameterError(f"probability: expected a 2-D array (height, width), got {describe(probability)}")
    try:
        values = np.asarray(probability)
    except (TypeError, ValueError):
        raise ParameterError(f"probability: expected a 2-D array (height, width), got {describe(probability)}") from None
    if values.dtype.kind not in "biuf":
        raise ParameterError(f"probability: expected a 2-D array of real numbers, got dtype {values.dtype}")
    if values.ndim != 2:
        raise ParameterError(f"probability: expected a 2-D array (height, width), got shape {values.shape}")
    if values.dtype.kind == "f" and np.isinf(values).any():
        raise ParameterError("probability: expected finite values or NaN (not analysed), got infinity")
    return values


def _classification(name: Any, color: Any, name_what: str, color_what: str) -> dict[str, Any]:
    """QuPath's ``{"name": ..., "color": [r, g, b]}``."""
    if not isinstance(name, str) or not name:
        raise ParameterError(f"{name_what}: expected a non-empty string, got {describe(name)}")
    if (isinstance(color, (str, bytes)) or not hasattr(color, "__len__") or len(color) != 3
            or not all(isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)) and 0 <= v <= 255
                       for v in color)):
        raise ParameterError(f"{color_what}: expected (r, g, b) integers in 0..255, got {describe(color)}")
    return {"name": name, "color": [int(v) for v in color]}


def _parse_measurements(measurements: Any) -> dict[str, float]:
    if measurements is None:
        return {}
    if not isinstance(measurements, Mapping):
        raise ParameterError(f"measurements: expected a mapping name -> number, got {describe(measurements)}")
    parsed = {}
    for key, value in measurements.items():
        if not isinstance(key, str) or not key:
            raise ParameterError(f"measurements: expected non-empty string names, got {describe(key)}")
        parsed[key] = parse_number(value, f"measurements[{key!r}]")
    return parsed
