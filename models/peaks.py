"""Nuclei from a cell model's outputs: peaks, types, counts, level-0 positions, slide-level deduplication.

Framework-free post-processing of the cell model (numpy, scikit-image, scipy, pandas):

- :func:`find_peaks`: the local maxima of one nucleus heatmap (probabilities), at least
  ``min_distance_px`` apart and scoring at least ``threshold``.
- :func:`detect`: the peaks of a batch as a table ``image, x, y, type, score``, the type being the
  most probable one *at the peak pixel*.
- :func:`count_by_type`: nuclei per image and type.
- :func:`to_level0`: tile pixels to level-0 slide coordinates (pixel centres).
- :func:`deduplicate`: each nucleus kept once where tiles overlap. Rule 1 (ownership): a detection
  is kept only by the tile whose centre is nearest in the normalised L-infinity distance
  ``max(|dx| / width, |dy| / height)``, i.e. each tile owns the core region around its centre.
  Rule 2 (safety net): among the kept detections, one within ``min_distance_l0`` of a
  higher-ranking kept detection *of another tile* is dropped (greedy, by descending score), which
  removes the edge artefacts a tile may see of a nucleus that its neighbour owns.

Every bad input raises :class:`~slidescope.models.errors.ModelInputError` naming the argument and
saying what was expected and what came.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree
from skimage.feature import peak_local_max

from slidescope.wsi.validation import (MAX_COORDINATE, MAX_EDGE, describe, parse_fraction, parse_non_negative_float,
                                       parse_non_negative_int, parse_positive_float, parse_positive_int,
                                       parse_real_array)

from .errors import ModelInputError

__all__ = ["DETECTION_COLUMNS", "find_peaks", "detect", "count_by_type", "to_level0", "deduplicate"]

#: The columns of :func:`detect`'s table, in order.
DETECTION_COLUMNS = ("image", "x", "y", "type", "score")

_CELL_COLUMNS = ("l0_x", "l0_y", "score", "tile_id")
_TILE_COLUMNS = ("tile_id", "l0_x", "l0_y", "l0_width", "l0_height")
#: Level-0 pixels within which two distances to tile centres count as equal in rule 1 (rounding
#: of ``to_level0`` in different tiles must not leave a nucleus on an ownership border to nobody).
_OWNERSHIP_TOLERANCE_L0 = 1e-4


def _type_names(type_names: Any) -> tuple[str, ...]:
    if isinstance(type_names, (str, bytes)) or not isinstance(type_names, (Sequence, np.ndarray)):
        raise ModelInputError(f"type_names: expected a sequence of type names, got {describe(type_names)}")
    names = tuple(type_names)
    if not names or not all(isinstance(name, str) and name for name in names):
        raise ModelInputError(f"type_names: expected one or more non-empty strings, got {describe(type_names)}")
    if len(set(names)) != len(names):
        raise ModelInputError(f"type_names: expected distinct names, got {describe(type_names)}")
    return names


def _require_columns(frame: Any, what: str, columns: Sequence[str]) -> pd.DataFrame:
    if not isinstance(frame, pd.DataFrame):
        raise ModelInputError(f"{what}: expected a pandas DataFrame, got {type(frame).__name__}")
    missing = [name for name in columns if name not in frame.columns]
    if missing:
        raise ModelInputError(f"{what}: expected columns {', '.join(columns)}; got no {', '.join(missing)} "
                              f"(columns: {', '.join(map(str, frame.columns))})")
    return frame


def _finite_column(frame: pd.DataFrame, what: str, column: str) -> np.ndarray:
    values = frame[column].to_numpy()
    if not len(values):  # an empty column built from [] is object: nothing to check
        return np.zeros(0, np.float64)
    if values.dtype.kind not in "iuf":
        raise ModelInputError(f"{what}.{column}: expected real numbers, got dtype {values.dtype}")
    values = values.astype(np.float64, copy=False)
    if not np.isfinite(values).all():
        raise ModelInputError(f"{what}.{column}: expected finite values, got NaN or infinity")
    return values


def _empty_detections() -> pd.DataFrame:
    return pd.DataFrame({
        "image": np.zeros(0, np.int64),
        "x": np.zeros(0, np.int64),
        "y": np.zeros(0, np.int64),
        "type": pd.Series([], dtype="str"),
        "score": np.zeros(0, np.float32),
    })


def find_peaks(heatmap: Any, *, min_distance_px: float, threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The nuclei of one heatmap: its local maxima scoring at least ``threshold``.

    Parameters
    ----------
    heatmap
        ``(H, W)`` map of nucleus-centre probabilities (values 0..1), any real dtype.
    min_distance_px
        Smallest distance between two peaks, in pixels (> 0; rounded to a whole number of at least
        1). Peaks are compared in the Chebyshev distance, as :func:`skimage.feature.peak_local_max`
        does, and a plateau gives one peak per ``min_distance_px``, never two closer ones.
    threshold
        Smallest score of a peak, in ``[0, 1]`` (inclusive: a peak scoring exactly ``threshold`` is kept).

    Returns
    -------
    rows, cols : numpy.ndarray
        int64 row and column of each peak.
    scores : numpy.ndarray
        float32 heatmap value at each peak; the three arrays are ordered by descending score
        (ties in row-major order).

    Raises
    ------
    ModelInputError
        A heatmap that is not a finite real 2-D array, or a bad ``min_distance_px`` or ``threshold``.

    Notes
    -----
    A map without any variation (every pixel equal) has no peaks, whatever its value.
    """
    image = parse_real_array(heatmap, "heatmap", ndim=2, layout="(height, width)", error=ModelInputError)
    distance = parse_positive_float(min_distance_px, "min_distance_px", maximum=MAX_EDGE, error=ModelInputError)
    threshold = parse_fraction(threshold, "threshold", error=ModelInputError)
    if image.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    image = image.astype(np.float64, copy=False)
    # peak_local_max keeps values strictly above threshold_abs; the largest float64 below the
    # threshold makes that "at least threshold" (float64 holds every float32 and integer value exactly).
    coordinates = peak_local_max(image, min_distance=max(1, int(round(distance))),
                                 threshold_abs=float(np.nextafter(threshold, -np.inf)), exclude_border=False)
    rows = coordinates[:, 0].astype(np.int64)
    cols = coordinates[:, 1].astype(np.int64)
    scores = image[rows, cols]
    order = np.argsort(-scores, kind="stable")
    return rows[order], cols[order], scores[order].astype(np.float32)


def detect(heatmaps: Any, types: Any, *, min_distance_px: float, threshold: float,
           type_names: Sequence[str]) -> pd.DataFrame:
    """The nuclei of a batch of images as one table.

    Parameters
    ----------
    heatmaps
        ``(N, H, W)`` nucleus-centre probabilities.
    types
        ``(N, H, W, T)`` per-pixel type probabilities, ``T == len(type_names)``.
    min_distance_px, threshold
        As in :func:`find_peaks`.
    type_names
        The ``T`` type names, in the order of the last axis of ``types``.

    Returns
    -------
    pandas.DataFrame
        Columns ``image`` (int64, index in the batch), ``x`` (int64 column), ``y`` (int64 row),
        ``type`` (str, the most probable type at the peak pixel; the first on ties) and ``score``
        (float32, the heatmap at the peak), ordered by image then descending score, index
        ``0..n-1``. No images or no peaks give an empty table with these columns and dtypes.

    Raises
    ------
    ModelInputError
        Arrays of the wrong dimensions or disagreeing shapes, non-finite values, bad type names
        or bad numbers.
    """
    maps = parse_real_array(heatmaps, "heatmaps", ndim=3, layout="(images, height, width)", error=ModelInputError)
    probabilities = parse_real_array(types, "types", ndim=4, layout="(images, height, width, types)", error=ModelInputError)
    names = _type_names(type_names)
    if probabilities.shape[:3] != maps.shape:
        raise ModelInputError(f"types: expected (images, height, width) = {maps.shape} like heatmaps, "
                              f"got {probabilities.shape[:3]}")
    if probabilities.shape[3] != len(names):
        raise ModelInputError(f"types: expected {len(names)} types (one per type name), got {probabilities.shape[3]}")
    distance = parse_positive_float(min_distance_px, "min_distance_px", maximum=MAX_EDGE, error=ModelInputError)
    threshold = parse_fraction(threshold, "threshold", error=ModelInputError)

    images, rows, cols, scores = [], [], [], []
    for index, heatmap in enumerate(maps):
        r, c, s = find_peaks(heatmap, min_distance_px=distance, threshold=threshold)
        images.append(np.full(len(r), index, np.int64))
        rows.append(r)
        cols.append(c)
        scores.append(s)
    if not images or not sum(len(r) for r in rows):
        return _empty_detections()
    image = np.concatenate(images)
    row = np.concatenate(rows)
    col = np.concatenate(cols)
    codes = np.argmax(probabilities[image, row, col], axis=1)
    return pd.DataFrame({
        "image": image,
        "x": col,
        "y": row,
        "type": pd.Series(np.asarray(names, dtype=object)[codes], dtype="str"),
        "score": np.concatenate(scores),
    })


def count_by_type(detections: pd.DataFrame, n_images: int, type_names: Sequence[str]) -> np.ndarray:
    """Nuclei per image and type.

    Parameters
    ----------
    detections
        A table with at least ``image`` and ``type`` (as from :func:`detect`).
    n_images
        Number of images in the batch (rows of the result).
    type_names
        The type names (columns of the result, in this order).

    Returns
    -------
    numpy.ndarray
        ``(n_images, len(type_names))`` int64 counts.

    Raises
    ------
    ModelInputError
        Missing columns, an image index outside ``[0, n_images)`` or a type not in ``type_names``.
    """
    frame = _require_columns(detections, "detections", ("image", "type"))
    n_images = parse_non_negative_int(n_images, "n_images", maximum=MAX_COORDINATE, error=ModelInputError)
    names = _type_names(type_names)
    image = frame["image"].to_numpy()
    if len(image) and (image.dtype.kind not in "iu" or image.min() < 0 or image.max() >= n_images):
        raise ModelInputError(f"detections.image: expected integers in [0, {n_images}), got "
                              f"{image.dtype} values in [{image.min()}, {image.max()}]")
    codes = pd.Index(names).get_indexer(frame["type"]).astype(np.int64)
    if (codes < 0).any():
        unknown = sorted({str(v) for v in frame["type"][codes < 0]})
        raise ModelInputError(f"detections.type: expected one of {', '.join(names)}; got {', '.join(unknown)}")
    flat = np.bincount(image.astype(np.int64) * len(names) + codes, minlength=n_images * len(names))
    return flat.reshape(n_images, len(names)).astype(np.int64)


def to_level0(detections: pd.DataFrame, boxes: Any, read_size: int) -> pd.DataFrame:
    """Level-0 slide coordinates of detections: the centre of each peak pixel.

    Parameters
    ----------
    detections
        A table with at least ``image``, ``x`` and ``y`` (as from :func:`detect`).
    boxes
        ``(N, 4)`` integer level-0 boxes ``(x, y, width, height)``: image ``i`` is the read of box
        ``i``, resampled to ``read_size`` pixels square.
    read_size
        Edge of every image in pixels.

    Returns
    -------
    pandas.DataFrame
        A copy of ``detections`` with float64 columns ``l0_x = box_x + (x + 0.5) * box_w / read_size``
        and ``l0_y = box_y + (y + 0.5) * box_h / read_size`` added (replaced if present).

    Raises
    ------
    ModelInputError
        Missing columns, boxes that are not ``(N, 4)`` integers with positive sizes, or an
        image index without a box.
    """
    frame = _require_columns(detections, "detections", ("image", "x", "y"))
    array = parse_real_array(boxes, "boxes", ndim=2, layout="(boxes, 4) of level-0 x, y, width, height", error=ModelInputError)
    if array.shape[1] != 4:
        raise ModelInputError(f"boxes: expected shape (N, 4) of level-0 x, y, width, height, got {array.shape}")
    if array.dtype.kind == "f" and not (array == np.floor(array)).all():
        raise ModelInputError("boxes: expected integer level-0 coordinates, got fractional values")
    if len(array) and (array[:, 2:] <= 0).any():
        bad = array[(array[:, 2:] <= 0).any(axis=1)][0].tolist()
        raise ModelInputError(f"boxes: expected positive widths and heights, got the box {describe(bad)}")
    size = parse_positive_int(read_size, "read_size", error=ModelInputError)
    image = frame["image"].to_numpy()
    if len(image) and (image.dtype.kind not in "iu" or image.min() < 0 or image.max() >= len(array)):
        raise ModelInputError(f"detections.image: expected integers in [0, {len(array)}) (one box each), got "
                              f"{image.dtype} values in [{image.min()}, {image.max()}]")
    box = array.astype(np.float64)[image.astype(np.int64)]
    x = _finite_column(frame, "detections", "x")
    y = _finite_column(frame, "detections", "y")
    out = frame.copy()
    out["l0_x"] = box[:, 0] + (x + 0.5) * box[:, 2] / size
    out["l0_y"] = box[:, 1] + (y + 0.5) * box[:, 3] / size
    return out


def deduplicate(cells: pd.DataFrame, tiles: pd.DataFrame, *, min_distance_l0: float) -> pd.DataFrame:
    """Each nucleus of a slide once, where the tiles of one scale overlap.

    Parameters
    ----------
    cells
        Detections with at least ``l0_x``, ``l0_y`` (level-0 position), ``score`` and ``tile_id``
        (the tile that saw them); other columns are carried along.
    tiles
        The tiles of one scale: ``tile_id`` (distinct), ``l0_x``, ``l0_y``, ``l0_width``,
        ``l0_height`` (the core box, without context). Every tile has the same width and height;
        neighbours may overlap by any amount.
    min_distance_l0
        Rule 2's radius in level-0 pixels (Euclidean, inclusive), ``>= 0``.

    Returns
    -------
    pandas.DataFrame
        The kept rows of ``cells`` with all their columns, sorted by ``tile_id`` then descending
        score, index reset.

    Raises
    ------
    ModelInputError
        Missing columns (named), non-finite coordinates or scores, duplicate tile ids, tiles of
        different sizes, or a ``cells.tile_id`` that is not in ``tiles``.

    Notes
    -----
    Rule 1 (ownership): a detection is kept only if its tile's centre is the nearest to it in
    ``max(|dx| / width, |dy| / height)`` (a k-d tree on the centres scaled by ``1 / width`` and
    ``1 / height``, ``p = inf``). For tiles of equal size the nearest centre's tile contains the
    point whenever any tile does. Distances within 1e-4 level-0 pixel count as equal, so a nucleus
    exactly on an ownership border (seen by both tiles, with rounding) is kept by both and
    resolved by rule 2.

    Rule 2 (safety net): the kept detections are ranked by descending score (ties: the tile's row
    in ``tiles``, then position); in that order a detection is dropped when a kept detection of a *different* tile
    ranked before it lies within ``min_distance_l0``. Detections of one tile never suppress each
    other (their spacing is the peak finder's business).
    """
    cells = _require_columns(cells, "cells", _CELL_COLUMNS)
    tiles = _require_columns(tiles, "tiles", _TILE_COLUMNS)
    radius = parse_non_negative_float(min_distance_l0, "min_distance_l0", maximum=float(MAX_COORDINATE),
                                      error=ModelInputError)
    tile_ids = tiles["tile_id"].to_numpy()
    if pd.Index(tile_ids).has_duplicates:
        raise ModelInputError("tiles.tile_id: expected distinct tile ids, got duplicates "
                              f"{describe(sorted(set(pd.Index(tile_ids)[pd.Index(tile_ids).duplicated()].tolist())))}")
    position = pd.Index(tile_ids).get_indexer(cells["tile_id"])
    if (position < 0).any():
        unknown = pd.unique(cells["tile_id"][position < 0])
        raise ModelInputError(f"cells.tile_id: expected ids of tiles, got {len(unknown)} not in tiles: "
                              f"{describe(unknown[:10].tolist())}")
    cx = _finite_column(cells, "cells", "l0_x")
    cy = _finite_column(cells, "cells", "l0_y")
    score = _finite_column(cells, "cells", "score")
    tx, ty = _finite_column(tiles, "tiles", "l0_x"), _finite_column(tiles, "tiles", "l0_y")
    tw, th = _finite_column(tiles, "tiles", "l0_width"), _finite_column(tiles, "tiles", "l0_height")
    if len(tiles) and ((tw <= 0).any() or (th <= 0).any()):
        raise ModelInputError("tiles.l0_width, tiles.l0_height: expected positive sizes, got zero or negative ones")
    if len(tiles) and (np.ptp(tw) != 0 or np.ptp(th) != 0):
        raise ModelInputError(f"tiles: expected tiles of one size (one scale), got widths {np.unique(tw)[:5].tolist()} "
                              f"and heights {np.unique(th)[:5].tolist()}")
    if not len(cells):
        return cells.iloc[:0].reset_index(drop=True)

    # Rule 1: ownership by the nearest tile centre in the normalised L-infinity distance.
    width, height = tw[0], th[0]
    centres = np.column_stack([(tx + width / 2) / width, (ty + height / 2) / height])
    points = np.column_stack([cx / width, cy / height])
    nearest, _ = cKDTree(centres).query(points, k=1, p=np.inf)
    own = np.max(np.abs(points - centres[position]), axis=1)
    kept = np.flatnonzero(own <= nearest + _OWNERSHIP_TOLERANCE_L0 / min(width, height))

    # Rule 2: greedy suppression across tiles, by descending score.
    order = np.lexsort((cx[kept], cy[kept], position[kept], -score[kept]))
    ranked = kept[order]  # rank i = i-th best kept detection
    pairs = cKDTree(np.column_stack([cx[ranked], cy[ranked]])).query_pairs(radius, p=2.0, output_type="ndarray")
    if len(pairs):
        pairs = pairs[position[ranked[pairs[:, 0]]] != position[ranked[pairs[:, 1]]]]
    suppressed = np.zeros(len(ranked), bool)
    if len(pairs):
        better, worse = pairs.min(axis=1), pairs.max(axis=1)
        by_worse = np.argsort(worse, kind="stable")
        better, worse = better[by_worse], worse[by_worse]
        starts = np.searchsorted(worse, np.arange(len(ranked) + 1))
        for rank in np.unique(worse):  # ascending rank: every better one is decided before
            suppressed[rank] = not suppressed[better[starts[rank]:starts[rank + 1]]].all()
    result = cells.iloc[np.sort(ranked[~suppressed])]
    return result.sort_values(["tile_id", "score"], ascending=[True, False], kind="mergesort").reset_index(drop=True)
