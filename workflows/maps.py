"""Slide maps (tumour probability, cell densities...) as one multi-channel OME-Zarr image.

A map is a small 2-D float32 array over the whole slide (callers coarsen it to a few thousand
pixels a side), NaN where nothing was analysed. :func:`write_ome_zarr_maps` writes several maps
of one shape as the channels of one OME-Zarr image that napari (``napari-ome-zarr``), QuPath
0.6+, Fiji (MoBIE, n5-viewer) and ``ome_zarr.reader`` open:

- axes ``c, y, x``; y and x in micrometres, level 0 scaled by the maps' ``mpp``;
- a pyramid, each level half the previous one (a NaN-aware 2 x 2 mean, so an unanalysed pixel
  does not blank its neighbours) until the longer side is at most :data:`PYRAMID_MIN_EDGE` px;
  level ``k`` is scaled by ``2**k * mpp`` and translated by ``(2**k - 1) / 2 * mpp`` µm, the
  centre of its first pixel (the halving is exact: an odd edge is padded, not stretched);
- the channel names (and colours and display windows) in the ``omero`` metadata;
- float32 chunks of at most :data:`CHUNK_EDGE` px a side, zstd-compressed (zarr's default).

The layout is OME-NGFF 0.5 on zarr format 3 (what ``ome-zarr`` 0.18 writes by default), staged in a
temporary folder beside the target and renamed into place when complete
(:func:`~slidescope.wsi.atomic.atomic_path`).

>>> write_ome_zarr_maps("S1.maps.zarr", {"tumour": probability, "cells_per_mm2": density},
...                     mpp=16.0)                                                   # doctest: +SKIP
>>> maps, mpp = read_ome_zarr_maps("S1.maps.zarr")                                   # doctest: +SKIP
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from slidescope.wsi.atomic import atomic_path
from slidescope.wsi.errors import OutputError, ParameterError, SlideError
from slidescope.wsi.validation import MAX_MPP, describe, parse_path, parse_positive_float

from .errors import WorkflowError

__all__ = ["write_ome_zarr_maps", "read_ome_zarr_maps", "NGFF_VERSION", "PYRAMID_MIN_EDGE", "CHUNK_EDGE"]

#: The OME-NGFF version written (zarr format 3).
NGFF_VERSION = "0.5"
#: The pyramid stops at the first level whose longer side is at most this many pixels.
PYRAMID_MIN_EDGE = 256
#: Largest chunk edge, in pixels (a chunk is one channel by at most this square).
CHUNK_EDGE = 1024

#: Channel colours used when ``colors`` names none for a channel, in channel order.
_DEFAULT_COLORS = ("FF0000", "00FF00", "0000FF", "FFFF00", "FF00FF", "00FFFF", "FFFFFF")

_AXES = (
    {"name": "c", "type": "channel"},
    {"name": "y", "type": "space", "unit": "micrometer"},
    {"name": "x", "type": "space", "unit": "micrometer"},
)


def write_ome_zarr_maps(
    path: str | os.PathLike[str],
    channels: Mapping[str, Any],
    *,
    mpp: float,
    name: str = "maps",
    colors: Mapping[str, Any] | None = None,
) -> Path:
    """Write 2-D maps of one shape as the channels of one OME-Zarr image (NGFF 0.5), atomically.

    Parameters
    ----------
    path
        The ``.zarr`` folder to write; an existing one is replaced only once the new one is
        complete (its parent folder must exist, or only its last level be missing).
    channels
        Ordered mapping channel name -> 2-D array ``(height, width)`` of real numbers, every one of
        the same shape; NaN marks pixels where nothing was analysed. Stored as float32.
    mpp
        µm per pixel of the maps (the same in x and y).
    name
        The image's name in the multiscales metadata.
    colors
        Optional channel name -> colour, ``(r, g, b)`` integers in 0..255 or a hex string
        ``"FF0000"``; channels it does not name get a default colour.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    ParameterError
        ``channels`` empty or not a mapping, a name that is not a non-empty string, an array that
        is not 2-D, empty, not real or holds infinities, shapes that differ (the message names the
        channel, the expected and the actual shape), ``mpp`` not a finite number > 0, a bad
        ``name`` or colour.
    OutputError
        The folder cannot be written (its parent is missing, the disk is full...); the previous
        output, if any, is left as it was.
    """
    target = parse_path(path)
    mpp = parse_positive_float(mpp, "mpp (µm per pixel of the maps)", maximum=MAX_MPP)
    if not isinstance(name, str) or not name:
        raise ParameterError(f"name: expected a non-empty string, got {describe(name)}")
    names, stack = _parse_channels(channels)
    channel_colors = _parse_colors(colors, names)

    pyramid = _pyramid(stack)
    omero = {"channels": [_omero_channel(label, stack[i], channel_colors[i]) for i, label in enumerate(names)]}
    try:
        with atomic_path(target) as temporary:
            _write(temporary, pyramid, mpp=mpp, name=name, omero=omero)
    except SlideError:
        raise
    except OSError as exc:
        raise OutputError(f"{target}: cannot write the OME-Zarr maps: {exc.strerror or exc}") from exc
    return Path(target)


def read_ome_zarr_maps(path: str | os.PathLike[str]) -> tuple[dict[str, np.ndarray], float]:
    """The level-0 maps and their resolution from an OME-Zarr image (read with ``ome_zarr.reader``).

    Parameters
    ----------
    path
        An OME-Zarr image with axes ``c, y, x`` (as :func:`write_ome_zarr_maps` writes).

    Returns
    -------
    dict of str to numpy.ndarray, float
        Channel name -> float32 ``(height, width)`` array of level 0 (NaN kept), in channel order;
        and µm per pixel of level 0.

    Raises
    ------
    WorkflowError
        No such folder, not an OME-Zarr multiscale image, axes other than ``c, y, x``, spatial
        units other than micrometres, different x and y scales, or two channels with one name.
    ParameterError
        ``path`` is not a str or PathLike.
    """
    import dask
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Multiscales, Reader

    text = parse_path(path)
    if not os.path.isdir(text):
        raise WorkflowError(f"{text}: no such OME-Zarr folder")
    location = parse_url(text, mode="r")
    if location is None:
        raise WorkflowError(f"{text}: not a zarr store")
    node = next(iter(Reader(location)()), None)
    if node is None or node.first(Multiscales) is None or not node.data:
        raise WorkflowError(f"{text}: expected an OME-Zarr multiscale image, found no multiscales metadata")
    axes = [axis["name"] if isinstance(axis, dict) else axis for axis in node.metadata.get("axes", [])]
    if axes != ["c", "y", "x"]:
        raise WorkflowError(f"{text}: expected axes ['c', 'y', 'x'], got {axes}")
    units = {axis.get("unit") for axis in node.metadata["axes"] if isinstance(axis, dict) and axis["name"] in "yx"}
    if units != {"micrometer"}:
        raise WorkflowError(f"{text}: expected y and x in micrometer, got units {sorted(map(str, units))}")
    transforms = (node.metadata.get("coordinateTransformations") or [None])[0] or []
    scales = [t["scale"] for t in transforms if t.get("type") == "scale"]
    if len(scales) != 1 or len(scales[0]) != 3:
        raise WorkflowError(f"{text}: expected one scale transformation of 3 values for level 0, got {transforms}")
    _, mpp_y, mpp_x = (float(v) for v in scales[0])
    if not math.isclose(mpp_x, mpp_y, rel_tol=1e-9):
        raise WorkflowError(f"{text}: expected the same µm per pixel in x and y, got x {mpp_x}, y {mpp_y}")

    with dask.config.set(scheduler="synchronous"):
        level0 = np.asarray(node.data[0], dtype=np.float32)
    count = level0.shape[0]
    names = list(node.metadata.get("channel_names") or [f"channel_{i}" for i in range(count)])
    if len(names) != count:
        raise WorkflowError(f"{text}: expected {count} channel names, got {len(names)}")
    if len(set(names)) != len(names):
        raise WorkflowError(f"{text}: expected distinct channel names, got {names}")
    return {label: level0[i] for i, label in enumerate(names)}, mpp_x


# ----------------------------------------------------------------------------------------------
# Validation


def _parse_channels(channels: Any) -> tuple[list[str], np.ndarray]:
    """Channel names and a float32 ``(C, H, W)`` stack; ParameterError naming the first bad channel."""
    if not isinstance(channels, Mapping):
        raise ParameterError(f"channels: expected a mapping channel name -> 2-D array, got "
                             f"{describe(channels)} ({type(channels).__name__})")
    if not channels:
        raise ParameterError("channels: expected at least one channel, got an empty mapping")
    names: list[str] = []
    arrays: list[np.ndarray] = []
    shape: tuple[int, ...] | None = None
    for label, value in channels.items():
        if not isinstance(label, str) or not label:
            raise ParameterError(f"channels: expected non-empty string names, got {describe(label)}")
        what = f"channels[{label!r}]"
        try:
            array = np.asarray(value)
        except (TypeError, ValueError):
            raise ParameterError(f"{what}: expected a 2-D array (height, width), got {describe(value)}") from None
        if array.dtype.kind not in "iuf":
            raise ParameterError(f"{what}: expected a 2-D array of real numbers, got dtype {array.dtype}")
        if array.ndim != 2:
            raise ParameterError(f"{what}: expected a 2-D array (height, width), got shape {array.shape}")
        if array.size == 0:
            raise ParameterError(f"{what}: expected a non-empty array, got shape {array.shape}")
        if shape is None:
            shape = array.shape
        elif array.shape != shape:
            raise ParameterError(f"{what}: expected shape {shape} (that of channel {names[0]!r}), "
                                 f"got {array.shape}")
        array = array.astype(np.float32)  # a copy: the caller's array is never changed
        if np.isinf(array).any():  # also catches float64 values beyond float32's range
            raise ParameterError(f"{what}: expected finite values or NaN, got infinity (or a value "
                                 f"beyond float32's range)")
        names.append(label)
        arrays.append(array)
    return names, np.stack(arrays)


def _parse_colors(colors: Any, names: list[str]) -> list[str]:
    """One hex colour per channel (``"FF0000"``), defaults where ``colors`` names none."""
    chosen = [_DEFAULT_COLORS[i % len(_DEFAULT_COLORS)] for i in range(len(names))]
    if colors is None:
        return chosen
    if not isinstance(colors, Mapping):
        raise ParameterError(f"colors: expected a mapping channel name -> (r, g, b), got {describe(colors)}")
    for label, color in colors.items():
        if label not in names:
            raise ParameterError(f"colors: expected names of channels ({', '.join(names)}), got {label!r}")
        chosen[names.index(label)] = _hex_color(color, f"colors[{label!r}]")
    return chosen


def _hex_color(color: Any, what: str) -> str:
    if isinstance(color, str):
        text = color.removeprefix("#").upper()
        if len(text) == 6 and all(c in "0123456789ABCDEF" for c in text):
            return text
        raise ParameterError(f"{what}: expected a hex colour such as 'FF0000', got {describe(color)}")
    if (isinstance(color, (tuple, list)) and len(color) == 3
            and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and 0 <= v <= 255 for v in color)):
        return "".join(f"{int(v):02X}" for v in color)
    raise ParameterError(f"{what}: expected (r, g, b) integers in 0..255 or a hex string, got {describe(color)}")


# ----------------------------------------------------------------------------------------------
# Pyramid and writing


def _halve(level: np.ndarray) -> np.ndarray:
    """NaN-aware 2 x 2 mean of a ``(C, H, W)`` array; an odd edge is padded with NaN (ceil halving).

    A coarse pixel is the mean of its analysed (non-NaN) fine pixels, NaN only when none was.
    """
    c, h, w = level.shape
    padded = np.full((c, h + h % 2, w + w % 2), np.nan, dtype=np.float32)
    padded[:, :h, :w] = level
    blocks = padded.reshape(c, padded.shape[1] // 2, 2, padded.shape[2] // 2, 2)
    valid = ~np.isnan(blocks)
    count = valid.sum(axis=(2, 4))
    total = np.where(valid, blocks, 0.0).sum(axis=(2, 4), dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan).astype(np.float32)


def _pyramid(stack: np.ndarray) -> list[np.ndarray]:
    levels = [stack]
    while max(levels[-1].shape[1:]) > PYRAMID_MIN_EDGE:
        levels.append(_halve(levels[-1]))
    return levels


def _omero_channel(label: str, values: np.ndarray, color: str) -> dict[str, Any]:
    """One ``omero`` channel: name, colour and a display window spanning the analysed values."""
    finite = values[~np.isnan(values)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if high <= low:
        high = low + 1.0
    return {"label": label, "color": color, "active": True,
            "window": {"min": low, "max": high, "start": low, "end": high}}


def _write(folder: Path, pyramid: list[np.ndarray], *, mpp: float, name: str, omero: dict[str, Any]) -> None:
    import dask
    import zarr
    from ome_zarr.format import FormatV05

    with warnings.catch_warnings():  # ome_zarr.writer makes a deprecated Scaler() at import (0.18)
        warnings.simplefilter("ignore", DeprecationWarning)
        from ome_zarr.writer import write_multiscale, write_multiscales_metadata

    fmt = FormatV05()
    axes = [dict(axis) for axis in _AXES]
    root = zarr.open_group(str(folder), mode="w", zarr_format=fmt.zarr_format)
    chunks = [{"chunks": (1, min(CHUNK_EDGE, level.shape[1]), min(CHUNK_EDGE, level.shape[2]))}
              for level in pyramid]
    # The synchronous scheduler: the arrays are small, and this may run inside a Dask task.
    with dask.config.set(scheduler="synchronous"):
        write_multiscale(pyramid, root, fmt=fmt, axes=axes, name=name, storage_options=chunks,
                         metadata={"omero": omero})
    # write_multiscale derives each level's scale from the ratio of shapes (5 / 3 for an odd edge
    # of 5) and writes the translations in pixels, not in the axes' units; replace them with the
    # exact ones: level k is a 2**k halving whose first pixel is centred at (2**k - 1) / 2 level-0
    # pixels.
    datasets = []
    for k in range(len(pyramid)):
        factor = 2.0**k
        datasets.append({
            "path": f"s{k}",
            "coordinateTransformations": [
                {"type": "scale", "scale": [1.0, factor * mpp, factor * mpp]},
                {"type": "translation", "translation": [0.0, (factor - 1) / 2 * mpp, (factor - 1) / 2 * mpp]},
            ],
        })
    write_multiscales_metadata(root, datasets=datasets, fmt=fmt, axes=axes, name=name)
