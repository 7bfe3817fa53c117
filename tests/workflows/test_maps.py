"""Slide maps as OME-Zarr: read back through ome-zarr's own Reader, the pyramid, bad input, atomicity."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from slidescope.workflows.errors import WorkflowError
from slidescope.workflows.maps import (
    CHUNK_EDGE,
    NGFF_VERSION,
    PYRAMID_MIN_EDGE,
    read_ome_zarr_maps,
    write_ome_zarr_maps,
)
from slidescope.wsi.errors import OutputError, ParameterError


def _maps(height: int = 600, width: int = 301, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    tumour = rng.random((height, width)).astype(np.float32)
    tumour[:7, :9] = np.nan  # not analysed
    density = np.arange(height * width, dtype=np.float64).reshape(height, width)
    return {"tumour": tumour, "cells_per_mm2": density}


def _node(path):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    location = parse_url(str(path))
    assert location is not None
    return next(iter(Reader(location)()))


def _attributes(path) -> dict:
    return json.loads((path / "zarr.json").read_text())["attributes"]


def test_ome_zarr_reader_reads_level0_names_and_micrometre_scale(tmp_path):
    from ome_zarr.reader import Multiscales

    maps = _maps()
    out = write_ome_zarr_maps(tmp_path / "S1.maps.zarr", maps, mpp=2.5, name="S1 maps")
    assert out == tmp_path / "S1.maps.zarr"

    node = _node(out)
    assert node.first(Multiscales) is not None
    assert [a["name"] for a in node.metadata["axes"]] == ["c", "y", "x"]
    assert [a.get("unit") for a in node.metadata["axes"]] == [None, "micrometer", "micrometer"]
    assert node.metadata["name"] == "S1 maps"
    assert node.metadata["channel_names"] == ["tumour", "cells_per_mm2"]
    level0 = np.asarray(node.data[0])
    assert level0.dtype == np.float32 and level0.shape == (2, 600, 301)
    np.testing.assert_array_equal(level0[0], maps["tumour"])  # NaN compares equal here
    assert np.isnan(level0[0, :7, :9]).all()
    np.testing.assert_array_equal(level0[1], maps["cells_per_mm2"].astype(np.float32))
    scale0 = node.metadata["coordinateTransformations"][0][0]
    assert scale0 == {"type": "scale", "scale": [1.0, 2.5, 2.5]}
    assert _attributes(out)["ome"]["version"] == NGFF_VERSION == "0.5"


def test_read_ome_zarr_maps_round_trip(tmp_path):
    maps = _maps(seed=3)
    write_ome_zarr_maps(tmp_path / "m.zarr", maps, mpp=16.0)
    read, mpp = read_ome_zarr_maps(tmp_path / "m.zarr")
    assert mpp == 16.0
    assert list(read) == ["tumour", "cells_per_mm2"]
    for name, values in maps.items():
        assert read[name].dtype == np.float32
        np.testing.assert_array_equal(read[name], values.astype(np.float32))


def test_pyramid_halves_down_to_the_minimum_edge_with_exact_scales(tmp_path):
    height, width = 2 * PYRAMID_MIN_EDGE + 2, 5  # 514 -> 257 -> 129: three levels
    write_ome_zarr_maps(tmp_path / "p.zarr", _maps(height, width), mpp=0.5)
    node = _node(tmp_path / "p.zarr")
    shapes = [tuple(level.shape) for level in node.data]
    assert shapes == [(2, 514, 5), (2, 257, 3), (2, 129, 2)]
    for k, transforms in enumerate(node.metadata["coordinateTransformations"]):
        factor = 2**k
        assert transforms[0] == {"type": "scale", "scale": [1.0, factor * 0.5, factor * 0.5]}
        shift = (factor - 1) / 2 * 0.5  # the centre of the first pixel, µm
        assert transforms[1] == {"type": "translation", "translation": [0.0, shift, shift]}


def test_pyramid_levels_are_nan_aware_means(tmp_path):
    values = np.zeros((PYRAMID_MIN_EDGE + 2, 3), np.float32)
    values[0:2, 0:2] = [[1.0, np.nan], [3.0, 5.0]]  # mean of the analysed three
    values[2:4, 0:2] = np.nan  # none analysed
    values[0:2, 2] = [2.0, 4.0]  # the odd last column: a half block
    write_ome_zarr_maps(tmp_path / "p.zarr", {"v": values}, mpp=1.0)
    level1 = np.asarray(_node(tmp_path / "p.zarr").data[1])[0]
    assert level1.shape == (129, 2)
    assert level1[0, 0] == pytest.approx(3.0)
    assert np.isnan(level1[1, 0])
    assert level1[0, 1] == pytest.approx(3.0)
    assert level1[2, 0] == 0.0


@pytest.mark.parametrize(("shape", "levels"), [((100, 80), 1), ((256, 256), 1), ((257, 10), 2), ((1100, 300), 4)])
def test_number_of_levels(tmp_path, shape, levels):
    write_ome_zarr_maps(tmp_path / "n.zarr", {"v": np.ones(shape, np.float32)}, mpp=1.0)
    node = _node(tmp_path / "n.zarr")
    assert len(node.data) == levels == len(node.metadata["coordinateTransformations"])
    assert max(node.data[-1].shape[1:]) <= PYRAMID_MIN_EDGE
    assert levels == 1 or max(node.data[-2].shape[1:]) > PYRAMID_MIN_EDGE


def test_chunks_are_one_channel_and_at_most_the_chunk_edge(tmp_path):
    import zarr

    write_ome_zarr_maps(tmp_path / "c.zarr", {"a": np.ones((2100, 40)), "b": np.zeros((2100, 40))}, mpp=1.0)
    group = zarr.open_group(str(tmp_path / "c.zarr"), mode="r")
    assert group["s0"].chunks == (1, CHUNK_EDGE, 40)
    assert group["s0"].dtype == np.float32
    assert group["s1"].chunks == (1, CHUNK_EDGE, 20)
    assert group["s3"].chunks == (1, 263, 5)


def test_channel_colours_and_windows_in_omero_metadata(tmp_path):
    maps = {"tumour": np.array([[0.2, np.nan], [0.9, 0.5]]), "density": np.full((2, 2), np.nan), "x": np.ones((2, 2))}
    write_ome_zarr_maps(tmp_path / "o.zarr", maps, mpp=1.0, colors={"tumour": (255, 0, 0), "x": "#00ff00"})
    channels = _attributes(tmp_path / "o.zarr")["ome"]["omero"]["channels"]
    assert [c["label"] for c in channels] == ["tumour", "density", "x"]
    assert channels[0]["color"] == "FF0000" and channels[2]["color"] == "00FF00"
    assert len(channels[1]["color"]) == 6
    window = channels[0]["window"]
    assert window["start"] == pytest.approx(0.2) and window["end"] == pytest.approx(0.9)
    assert channels[1]["window"]["start"] < channels[1]["window"]["end"]  # all NaN: a default window
    assert all(math.isfinite(v) for c in channels for v in c["window"].values())


@pytest.mark.parametrize(
    ("channels", "kwargs", "words"),
    [
        ({}, {}, ["channels", "empty"]),
        ([np.ones((3, 3))], {}, ["mapping"]),
        ({"a": np.ones((3, 3)), "b": np.ones((3, 4))}, {}, ["'b'", "(3, 3)", "(3, 4)"]),
        ({"a": np.ones((2, 3, 3))}, {}, ["'a'", "2-D", "(2, 3, 3)"]),
        ({"a": np.ones(5)}, {}, ["'a'", "2-D", "(5,)"]),
        ({"a": np.ones((0, 4))}, {}, ["'a'", "non-empty"]),
        ({"a": np.array([[1.0, np.inf]])}, {}, ["'a'", "infinity"]),
        ({"a": np.array([["x"]])}, {}, ["'a'", "real"]),
        ({"": np.ones((2, 2))}, {}, ["names"]),
        ({"a": np.ones((2, 2))}, {"mpp": 0.0}, ["mpp", "> 0"]),
        ({"a": np.ones((2, 2))}, {"mpp": -1.0}, ["mpp"]),
        ({"a": np.ones((2, 2))}, {"mpp": float("nan")}, ["mpp", "finite"]),
        ({"a": np.ones((2, 2))}, {"mpp": float("inf")}, ["mpp", "finite"]),
        ({"a": np.ones((2, 2))}, {"mpp": "0.5"}, ["mpp", "number"]),
        ({"a": np.ones((2, 2))}, {"name": ""}, ["name"]),
        ({"a": np.ones((2, 2))}, {"colors": {"b": (1, 2, 3)}}, ["colors", "'b'"]),
        ({"a": np.ones((2, 2))}, {"colors": {"a": (1, 2, 300)}}, ["colors['a']"]),
    ],
)
def test_bad_input_is_a_parameter_error_and_writes_nothing(tmp_path, channels, kwargs, words):
    kwargs = {"mpp": 1.0, **kwargs}
    with pytest.raises(ParameterError) as info:
        write_ome_zarr_maps(tmp_path / "bad.zarr", channels, **kwargs)
    for word in words:
        assert word in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_a_failed_write_keeps_the_previous_output_and_leaves_no_partial_folder(tmp_path, monkeypatch):
    import ome_zarr.writer

    target = tmp_path / "m.zarr"
    first = {"v": np.full((4, 4), 7.0, np.float32)}
    write_ome_zarr_maps(target, first, mpp=1.0)

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ome_zarr.writer, "write_multiscales_metadata", broken)
    with pytest.raises(OutputError, match="No space left"):
        write_ome_zarr_maps(target, {"v": np.zeros((4, 4))}, mpp=2.0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.zarr"]
    maps, mpp = read_ome_zarr_maps(target)
    np.testing.assert_array_equal(maps["v"], first["v"])
    assert mpp == 1.0


def test_a_new_write_replaces_the_previous_output(tmp_path):
    target = tmp_path / "m.zarr"
    write_ome_zarr_maps(target, {"old": np.ones((600, 20))}, mpp=1.0)
    write_ome_zarr_maps(target, {"new": np.zeros((10, 10))}, mpp=4.0)
    maps, mpp = read_ome_zarr_maps(target)
    assert list(maps) == ["new"] and mpp == 4.0
    assert not (target / "s1").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.zarr"]


def test_the_caller_arrays_are_not_changed(tmp_path):
    values = np.array([[1.0, np.nan], [3.0, 4.0]])
    before = values.copy()
    write_ome_zarr_maps(tmp_path / "m.zarr", {"v": values}, mpp=1.0)
    np.testing.assert_array_equal(values, before)
    assert values.dtype == np.float64


def test_read_errors_name_the_path(tmp_path):
    with pytest.raises(WorkflowError, match="no such"):
        read_ome_zarr_maps(tmp_path / "missing.zarr")
    (tmp_path / "folder").mkdir()
    with pytest.raises(WorkflowError, match="not a zarr store"):
        read_ome_zarr_maps(tmp_path / "folder")
    import zarr

    zarr.open_group(str(tmp_path / "plain.zarr"), mode="w", zarr_format=3)
    with pytest.raises(WorkflowError, match="plain.zarr: expected an OME-Zarr multiscale image"):
        read_ome_zarr_maps(tmp_path / "plain.zarr")
