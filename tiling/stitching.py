"""Stitching per-tile values of a tile plan into one slide-wide map (canvas plus count).

Each tile's value - one number (or one vector) per tile, or a small map per tile such as a
class activation map - is placed onto a canvas covering the whole slide at ``out_mpp``; where
tiles overlap the canvas holds their mean (a sum canvas divided by a count canvas, the way
TIAToolbox merges patch predictions), and NaN where no tile lies.

The output is built in horizontal bands of ``chunk`` rows. A band accumulates only the tiles
that intersect it (tiles sorted by their top edge, ``np.searchsorted`` finds them), so peak
memory is a few bands, never the slide: the result goes into a numpy array when it is small and
streams band by band into a zarr v3 array on disk when ``out`` is a path or it would exceed
:data:`MAX_IN_MEMORY_BYTES`. Both paths run the same code and give the same numbers.

Geometry: a tile's level-0 box ``[l0_x, l0_x + l0_width)`` maps to output pixels
``[round(l0_x * s), round((l0_x + l0_width) * s))`` with ``s = mpp_x / out_mpp`` (likewise in y),
at least one pixel wide. NaN values count as "no value": they neither add to the sum nor to
the count.
"""

from __future__ import annotations

import math
import os
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd

from slidescope.wsi.atomic import atomic_path
from slidescope.wsi.errors import ResolutionError
from slidescope.wsi.validation import MAX_EDGE, MAX_MPP, parse_path, parse_positive_float, parse_positive_int

from .errors import StitchError
from .plan import TilePlan
from .scales import Scale

__all__ = ["MAX_IN_MEMORY_BYTES", "StitchError", "canvas_size", "stitch"]

#: Largest output kept in memory when ``out`` is None; a larger one streams into a zarr array
#: in a fresh temporary folder (a warning names it).
MAX_IN_MEMORY_BYTES = 512 * 2**20

# cv2.resize handles at most 4 channels in some OpenCV builds (5.x); more are resized in groups.
_CV_MAX_CHANNELS = 4


# ----------------------------------------------------------------------------- validation


def _parse_out_mpp(out_mpp: Any) -> float:
    return parse_positive_float(out_mpp, "out_mpp (µm per pixel)", maximum=MAX_MPP, error=ResolutionError)


def _as_values(values: Any) -> np.ndarray:
    """The values as a numeric array of 1 to 4 dimensions (not yet converted to float32)."""
    if isinstance(values, pd.DataFrame):
        raise StitchError(
            "values: expected an array, got a DataFrame; pass its value columns and ids explicitly, "
            "e.g. stitch(plan, scale, frame[['value']].to_numpy()[:, 0], tile_ids=frame.tile_id, out_mpp=...)"
        )
    array = np.asarray(values)
    if array.dtype.kind not in "biuf":
        raise StitchError(f"values: expected a numeric array, got dtype {array.dtype} (shape {array.shape})")
    if not 1 <= array.ndim <= 4:
        raise StitchError(
            "values: expected (N,) or (N, C) numbers or (N, h, w) or (N, h, w, C) maps per tile, "
            f"got shape {array.shape}"
        )
    if array.ndim >= 3 and (array.shape[1] == 0 or array.shape[2] == 0):
        raise StitchError(f"values: expected non-empty maps per tile, got shape {array.shape}")
    if array.ndim in (2, 4) and array.shape[-1] == 0:
        raise StitchError(f"values: expected at least one channel, got shape {array.shape}")
    return array


def _select_rows(plan: TilePlan, index: int, tile_ids: Any, count: int) -> pd.DataFrame:
    """The plan rows that the value rows belong to, in value order."""
    tiles = plan.tiles(index)
    label = plan.scales[index].name or f"{index} ({plan.scales[index].mpp:g} µm/px)"
    if tile_ids is None:
        if count != len(tiles):
            raise StitchError(
                f"values: expected one row per tile of scale {label} ({len(tiles)} rows), got {count} rows; "
                "pass tile_ids= to stitch a subset"
            )
        return tiles
    ids = np.asarray(tile_ids)
    if ids.ndim != 1 or (ids.dtype.kind not in "iu" and ids.size):
        raise StitchError(f"tile_ids: expected a 1-D array of integer tile ids, got {ids.dtype} shape {ids.shape}")
    if len(ids) != count:
        raise StitchError(f"values: expected one row per tile id ({len(ids)} rows), got {count} rows")
    positions = pd.Index(tiles.tile_id.to_numpy()).get_indexer(ids.astype(np.int64))
    unknown = ids[positions < 0]
    if unknown.size:
        elsewhere = np.isin(unknown, plan.table.tile_id.to_numpy())
        where = (f"; {int(elsewhere.sum())} of them belong to another scale" if elsewhere.any() else "")
        shown = ", ".join(str(int(i)) for i in unknown[:10]) + (", ..." if unknown.size > 10 else "")
        raise StitchError(
            f"tile_ids: expected ids of tiles of scale {label}, got {unknown.size} unknown id(s): {shown}{where}"
        )
    return tiles.iloc[positions]


# ----------------------------------------------------------------------------- geometry


def canvas_size(plan: TilePlan, out_mpp: float) -> tuple[int, int]:
    """``(width, height)`` in pixels of the whole slide of ``plan`` at ``out_mpp``."""
    out_mpp = _parse_out_mpp(out_mpp)
    (width, height), (mpp_x, mpp_y) = plan.slide.dimensions, plan.slide.mpp
    # The small slack keeps float noise (1000 * 0.25 / 0.5 = 500.00000001) from adding a pixel.
    return (max(1, math.ceil(width * mpp_x / out_mpp - 1e-6)), max(1, math.ceil(height * mpp_y / out_mpp - 1e-6)))


def _axis_boxes(start: np.ndarray, extent: np.ndarray, scale: float, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Output pixel spans ``[lo, hi)`` of level-0 spans, rounded, at least one pixel, touching the canvas."""
    first, last = start * scale, (start + extent) * scale
    lo, hi = np.floor(first + 0.5).astype(np.int64), np.floor(last + 0.5).astype(np.int64)
    tiny = hi <= lo  # narrower than a pixel: the pixel holding its centre
    lo[tiny] = np.floor((first[tiny] + last[tiny]) / 2).astype(np.int64)
    lo = np.clip(lo, 0, size - 1)
    hi = np.maximum(hi, lo + 1)
    return lo, hi


def _output_boxes(rows: pd.DataFrame, slide_mpp: Sequence[float], out_mpp: float,
                  size: tuple[int, int]) -> np.ndarray:
    """``(N, 4)`` output-pixel boxes ``x0, y0, x1, y1`` (x1, y1 may pass the canvas edge)."""
    l0 = rows[["l0_x", "l0_y", "l0_width", "l0_height"]].to_numpy(np.float64)
    x0, x1 = _axis_boxes(l0[:, 0], l0[:, 2], slide_mpp[0] / out_mpp, size[0])
    y0, y1 = _axis_boxes(l0[:, 1], l0[:, 3], slide_mpp[1] / out_mpp, size[1])
    return np.stack([x0, y0, x1, y1], axis=1)


# ----------------------------------------------------------------------------- resizing


def _cv_resize(image: np.ndarray, size: tuple[int, int], interpolation: int) -> np.ndarray:
    """cv2.resize of a float32 ``(h, w)`` or ``(h, w, C)`` image, any C, channel axis kept."""
    if image.ndim == 2:
        return cv2.resize(image, size, interpolation=interpolation)
    groups = []
    for start in range(0, image.shape[2], _CV_MAX_CHANNELS):
        part = np.ascontiguousarray(image[:, :, start:start + _CV_MAX_CHANNELS])
        resized = cv2.resize(part, size, interpolation=interpolation)
        groups.append(resized.reshape(size[1], size[0], part.shape[2]))
    return groups[0] if len(groups) == 1 else np.concatenate(groups, axis=2)


def _resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a float32 map to ``size`` = (width, height), NaN-aware.

    INTER_AREA when shrinking, INTER_LINEAR otherwise. NaN marks "no value": values and a
    validity weight are resized separately and divided (normalised interpolation), and an output
    pixel keeps a value where at least half of what it samples was valid. A NaN-free map takes
    the plain cv2.resize path.
    """
    height, width = image.shape[:2]
    if (width, height) == tuple(size):
        return image
    shrink = size[0] <= width and size[1] <= height
    interpolation = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    valid = ~np.isnan(image)
    if valid.all():
        return _cv_resize(image, size, interpolation)
    weight = _cv_resize(valid.astype(np.float32), size, interpolation)
    total = _cv_resize(np.where(valid, image, np.float32(0)), size, interpolation)
    with np.errstate(invalid="ignore", divide="ignore"):
        result = total / weight
    result[weight < 0.5 - 1e-6] = np.nan
    return result.astype(np.float32, copy=False)


def _axis_crop(map_extent: int, fraction: float, box_extent: int) -> tuple[int, int, int]:
    """How to drop a context margin along one axis: (map px to crop, resize target, output px to crop).

    The margin is ``fraction`` of the map on each side. It is cut on whichever grid is finer, so
    the error is at most half of the finer pixel: in map pixels when it is a whole number of them
    or when map pixels are smaller than output pixels, else (a coarse map, e.g. a 7x7 CAM) after
    resizing the whole map so that the tile part fills the box.
    """
    if fraction == 0:
        return 0, box_extent, 0
    margin = map_extent * fraction
    inner = map_extent - 2 * margin
    if abs(margin - round(margin)) < 1e-6 or inner >= box_extent:
        crop = min(round(margin), (map_extent - 1) // 2)
        return crop, box_extent, 0
    out_margin = round(margin * box_extent / inner)
    return 0, box_extent + 2 * out_margin, out_margin


def _map_patch(tile_map: np.ndarray, context_fraction: float, box_w: int, box_h: int) -> np.ndarray:
    """A tile's map, context margin removed, resized to its ``box_w x box_h`` output box."""
    tile_map = np.asarray(tile_map, dtype=np.float32)
    height, width = tile_map.shape[:2]
    crop_x, target_w, out_x = _axis_crop(width, context_fraction, box_w)
    crop_y, target_h, out_y = _axis_crop(height, context_fraction, box_h)
    cropped = tile_map[crop_y:height - crop_y, crop_x:width - crop_x]
    resized = _resize(cropped, (target_w, target_h))
    return resized[out_y:out_y + box_h, out_x:out_x + box_w]


# ----------------------------------------------------------------------------- the band loop


class _Bands:
    """Tiles sorted by top edge, to find those intersecting a band of rows quickly."""

    def __init__(self, boxes: np.ndarray):
        self.boxes = boxes
        self.order = np.argsort(boxes[:, 1], kind="stable")
        self.tops = boxes[self.order, 1]
        self.tallest = int((boxes[:, 3] - boxes[:, 1]).max()) if len(boxes) else 0

    def tiles_in(self, top: int, bottom: int) -> np.ndarray:
        lo = np.searchsorted(self.tops, top - self.tallest, side="right")
        hi = np.searchsorted(self.tops, bottom, side="left")
        candidates = self.order[lo:hi]
        return candidates[self.boxes[candidates, 3] > top]


def _fill(dest: Any, data: np.ndarray, boxes: np.ndarray, context_fraction: float, chunk: int) -> None:
    """Write every band of rows of ``dest`` that any tile touches, each once."""
    height, width = dest.shape[:2]
    channels = tuple(dest.shape[2:])
    is_map = data.ndim >= 3
    bands = _Bands(boxes)
    patches: dict[int, np.ndarray] = {}  # resized maps of tiles reaching into the next band
    for top in range(0, height, chunk):
        bottom = min(top + chunk, height)
        tiles = bands.tiles_in(top, bottom)
        if len(tiles) == 0:
            continue  # already NaN (numpy) or the fill value (zarr)
        # float32 accumulators: a handful of overlaps per pixel lose nothing that matters.
        total = np.zeros((bottom - top, width) + channels, np.float32)
        count = np.zeros_like(total)
        for i in tiles:
            x0, y0, x1, y1 = (int(v) for v in boxes[i])
            ys, ye, xs, xe = max(y0, top), min(y1, bottom), max(x0, 0), min(x1, width)
            if is_map:
                patch = patches.get(i)
                if patch is None:
                    patch = _map_patch(data[i], context_fraction, x1 - x0, y1 - y0)
                    if y1 - y0 <= chunk:  # keeps the cache within about one band; taller ones are redone
                        patches[i] = patch
                value = patch[ys - y0:ye - y0, xs - x0:xe - x0]
            else:
                value = data[i]
            valid = ~np.isnan(value)
            target = (slice(ys - top, ye - top), slice(xs, xe))
            if valid.all():
                total[target] += value
                count[target] += 1
            else:
                total[target] += np.where(valid, value, np.float32(0))
                count[target] += valid
        for i in [i for i in patches if boxes[i, 3] <= bottom]:
            del patches[i]
        with np.errstate(invalid="ignore", divide="ignore"):
            np.divide(total, count, out=total)  # 0 / 0 is NaN: no tile there
        dest[top:bottom] = total


# ----------------------------------------------------------------------------- output folders


def _is_replaceable(path: Path) -> bool:
    """An existing target we may replace: a zarr store or an empty folder (never anything else)."""
    return path.is_dir() and ((path / "zarr.json").is_file() or not any(path.iterdir()))


def _out_path(out: Any) -> Path:
    path = Path(parse_path(out, "out"))
    if os.path.lexists(path) and not _is_replaceable(path):
        raise StitchError(f"out: {path} exists and is not a zarr array; expected a new path or a zarr store")
    return path


# ----------------------------------------------------------------------------- public


def stitch(
    plan: TilePlan,
    scale: int | Scale | str,
    values: Any,
    *,
    out_mpp: float,
    tile_ids: Any = None,
    out: str | os.PathLike[str] | None = None,
    chunk: int = 1024,
) -> Any:
    """Place per-tile values of one scale of ``plan`` onto a whole-slide canvas at ``out_mpp``.

    Parameters
    ----------
    plan : TilePlan
        The plan the tiles come from.
    scale : int, Scale or str
        Which scale of the plan (index, object or name).
    values : array-like
        One row per tile: ``(N,)`` or ``(N, C)`` numbers (the tile's box is filled with them), or
        ``(N, h, w)`` / ``(N, h, w, C)`` maps covering each tile (any ``h, w``; resized to the box
        with cv2, INTER_AREA when shrinking, INTER_LINEAR when enlarging). When the scale has a
        context margin the map covers the read box (tile plus ``context`` px on each side) and
        the margin is cropped proportionally. NaN counts as "no value".
    out_mpp : float
        Resolution of the canvas in µm per pixel; its size is :func:`canvas_size`.
    tile_ids : array-like of int, optional
        Plan tile id of each value row; default: the rows of ``plan.tiles(scale)`` in order.
    out : path, optional
        Write the canvas as a zarr v3 array at this path (atomically: built in a temporary folder
        beside it, renamed onto it; an existing zarr store there is replaced).
    chunk : int
        Rows per band (and zarr chunk edge); peak memory is about three bands.

    Returns
    -------
    numpy.ndarray or zarr.Array
        float32 ``(H, W)`` for single values or maps, ``(H, W, C)`` with channels; overlaps
        averaged, NaN where no tile lies. A zarr array (opened read-only) when ``out`` is given
        or the canvas exceeds :data:`MAX_IN_MEMORY_BYTES` (then in a new temporary folder, and a
        warning names it; pass ``out=`` to choose the place).

    Raises
    ------
    StitchError
        Values with the wrong number of rows or shape, unknown tile ids, an ``out`` path holding
        something other than a zarr store.
    ResolutionError
        ``out_mpp`` not a positive number.
    ParameterError
        ``chunk`` not a positive integer, ``out`` not a path.
    TilePlanError
        An unknown scale.
    """
    if not isinstance(plan, TilePlan):
        raise StitchError(f"plan: expected a TilePlan, got {type(plan).__name__}")
    index = plan.scale_index(scale)
    chosen = plan.scales[index]
    out_mpp = _parse_out_mpp(out_mpp)
    chunk = parse_positive_int(chunk, "chunk (rows per band)", maximum=MAX_EDGE)
    data = _as_values(values)
    rows = _select_rows(plan, index, tile_ids, len(data))
    if data.ndim <= 2:
        data = data.astype(np.float32, copy=False)  # maps are converted tile by tile
    size = canvas_size(plan, out_mpp)
    channels = (int(data.shape[-1]),) if data.ndim in (2, 4) else ()
    shape = (size[1], size[0]) + channels
    boxes = _output_boxes(rows, plan.slide.mpp, out_mpp, size)
    context_fraction = chosen.context / chosen.read_size

    nbytes = math.prod(shape) * 4
    if out is None and nbytes > MAX_IN_MEMORY_BYTES:
        out = Path(tempfile.mkdtemp(prefix="slidescope-stitch-")) / "stitch.zarr"
        warnings.warn(
            f"stitch: a {size[0]}x{size[1]} canvas ({nbytes / 2**20:.0f} MiB) exceeds MAX_IN_MEMORY_BYTES "
            f"({MAX_IN_MEMORY_BYTES / 2**20:.0f} MiB); streaming it to {out} (pass out= to choose the path)",
            UserWarning, stacklevel=2,
        )
    if out is None:
        canvas = np.full(shape, np.nan, np.float32)
        _fill(canvas, data, boxes, context_fraction, chunk)
        return canvas

    import zarr

    target = _out_path(out)
    with atomic_path(target) as temporary:  # an existing zarr store is replaced, kept aside until then
        temporary.mkdir()  # os.mkdir, not tempfile.mkdtemp (0700): the store gets the umask's permissions
        array = zarr.create_array(store=str(temporary), shape=shape, chunks=(chunk, min(size[0], chunk)) + channels,
                                  dtype="float32", fill_value=np.nan)
        _fill(array, data, boxes, context_fraction, chunk)
    return zarr.open_array(store=str(target), mode="r")
