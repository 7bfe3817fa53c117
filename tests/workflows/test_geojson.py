"""QuPath GeoJSON: exact region polygons (pixel edges, holes, NaN), files, and streamed cells."""

from __future__ import annotations

import gzip
import json
import math
import uuid

import numpy as np
import pandas as pd
import pytest

from slidescope.workflows.errors import WorkflowError
from slidescope.workflows.geojson import (
    read_geojson,
    region_features,
    write_cells_geojson_gz,
    write_geojson,
)
from slidescope.wsi.errors import OutputError, ParameterError

CLASSES = {"tumor": (200, 0, 0), "lymphocyte": (0, 0, 200), "stroma": (0, 160, 0)}


def _polygons(feature: dict) -> list[list[list[list[float]]]]:
    geometry = feature["geometry"]
    return [geometry["coordinates"]] if geometry["type"] == "Polygon" else geometry["coordinates"]


def _signed_area(ring) -> float:
    points = np.asarray(ring, dtype=float)
    assert np.array_equal(points[0], points[-1]), "rings are closed"
    x, y = points[:-1, 0], points[:-1, 1]
    return 0.5 * float(np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y))


def _bounds(ring) -> tuple[float, float, float, float]:
    points = np.asarray(ring, dtype=float)
    return points[:, 0].min(), points[:, 0].max(), points[:, 1].min(), points[:, 1].max()


def _inside(rings, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Even-odd rule over all rings: the points inside the polygons (no point lies on an edge)."""
    inside = np.zeros(xs.shape, dtype=bool)
    for ring in rings:
        points = np.asarray(ring, dtype=float)
        for (x1, y1), (x2, y2) in zip(points[:-1], points[1:]):
            if y1 == y2:
                continue
            crosses = (ys > min(y1, y2)) & (ys < max(y1, y2))
            x_at = x1 + (ys - y1) * (x2 - x1) / (y2 - y1)
            inside ^= crosses & (xs < x_at)
    return inside


def _rasterise(features: list[dict], shape: tuple[int, int], scale: float) -> np.ndarray:
    """Which map pixels' centres the features' polygons cover."""
    rows, cols = np.mgrid[0:shape[0], 0:shape[1]]
    xs, ys = (cols + 0.5) * scale, (rows + 0.5) * scale
    rings = [ring for feature in features for polygon in _polygons(feature) for ring in polygon]
    return _inside(rings, xs, ys)


# ----------------------------------------------------------------------------------------------
# region_features


def test_one_pixel_gives_the_square_it_covers_at_level_0():
    probability = np.zeros((6, 8))
    probability[2, 3] = 0.9
    (feature,) = region_features(probability, l0_per_px=10)
    assert feature["geometry"]["type"] == "Polygon"
    (exterior,) = feature["geometry"]["coordinates"]
    assert _bounds(exterior) == (30.0, 40.0, 20.0, 30.0)
    assert len(exterior) == 5  # four corners, closed
    assert sorted(map(tuple, exterior[:-1])) == [(30, 20), (30, 30), (40, 20), (40, 30)]
    assert _signed_area(exterior) == 100.0  # counter-clockwise in (x, y) numbers (RFC 7946)
    assert feature["properties"]["measurements"]["area_l0_px2"] == 100.0


def test_regions_are_cut_at_the_slide_edge():
    """A map's last column and row reach past the slide: polygons and areas stop at its edges."""
    probability = np.zeros((4, 5))
    probability[2:, 3:] = 0.9  # the bottom-right 2 x 2 pixels, the last row and column partly outside
    (feature,) = region_features(probability, l0_per_px=10, extent=(46, 33), mpp=0.5)
    (exterior,) = feature["geometry"]["coordinates"]
    assert _bounds(exterior) == (30.0, 46.0, 20.0, 33.0)
    assert feature["properties"]["measurements"]["area_l0_px2"] == 16 * 13 == _signed_area(exterior)
    assert feature["properties"]["measurements"]["area_mm2"] == 16 * 13 * 0.25 / 1e6
    (whole,) = region_features(probability, l0_per_px=10)  # no extent: the map's own
    assert whole["properties"]["measurements"]["area_l0_px2"] == 400.0


def test_qupath_fields():
    probability = np.zeros((4, 4))
    probability[1:3, 1:3] = 0.75
    (feature,) = region_features(probability, l0_per_px=4, name="Tumour", color=(10, 20, 30), mpp=0.5,
                                 measurements={"threshold": 0.5})
    assert feature["type"] == "Feature"
    assert uuid.UUID(feature["id"]).version == 4
    properties = feature["properties"]
    assert properties["objectType"] == "annotation"
    assert properties["classification"] == {"name": "Tumour", "color": [10, 20, 30]}
    measurements = properties["measurements"]
    assert measurements["area_l0_px2"] == 4 * 16
    assert measurements["area_mm2"] == pytest.approx(64 * 0.25 / 1e6)
    assert measurements["mean_probability"] == pytest.approx(0.75)
    assert measurements["threshold"] == 0.5
    assert all(isinstance(v, float) for v in measurements.values())
    json.dumps(feature, allow_nan=False)  # plain JSON


def test_a_ring_of_pixels_is_one_polygon_with_one_hole():
    probability = np.zeros((7, 7))
    probability[1:6, 2:5] = 1.0
    probability[3, 3] = 0.0
    (feature,) = region_features(probability, l0_per_px=2)
    assert feature["geometry"]["type"] == "Polygon"
    exterior, hole = feature["geometry"]["coordinates"]
    assert _bounds(exterior) == (4.0, 10.0, 2.0, 12.0)
    assert _bounds(hole) == (6.0, 8.0, 6.0, 8.0)
    assert _signed_area(exterior) == 60.0 and _signed_area(hole) == -4.0  # holes clockwise
    assert feature["properties"]["measurements"]["area_l0_px2"] == 14 * 4


def test_nan_is_not_selected_and_makes_holes():
    probability = np.full((5, 5), np.nan)
    assert region_features(probability, l0_per_px=1) == []
    probability[1:4, 1:4] = 0.8
    probability[2, 2] = np.nan
    (feature,) = region_features(probability, l0_per_px=1, threshold=0.5)
    assert len(feature["geometry"]["coordinates"]) == 2  # exterior and the NaN hole
    assert feature["properties"]["measurements"]["area_l0_px2"] == 8.0
    assert feature["properties"]["measurements"]["mean_probability"] == pytest.approx(0.8)


def test_threshold_is_inclusive():
    probability = np.array([[0.5, 0.49]])
    (feature,) = region_features(probability, l0_per_px=1, threshold=0.5)
    assert _bounds(feature["geometry"]["coordinates"][0]) == (0.0, 1.0, 0.0, 1.0)


def test_separate_regions_are_separate_features():
    probability = np.zeros((10, 12))
    probability[1:3, 1:3] = 1
    probability[6:9, 7:11] = 1
    features = region_features(probability, l0_per_px=1)
    assert [f["properties"]["measurements"]["area_l0_px2"] for f in features] == [4.0, 12.0]
    assert [_bounds(f["geometry"]["coordinates"][0]) for f in features] == [(1, 3, 1, 3), (7, 11, 6, 9)]
    assert len({f["id"] for f in features}) == 2


def test_parts_touching_at_a_corner_are_one_multipolygon():
    probability = np.eye(3)
    (feature,) = region_features(probability, l0_per_px=10)
    assert feature["geometry"]["type"] == "MultiPolygon"
    squares = [_bounds(polygon[0]) for polygon in feature["geometry"]["coordinates"]]
    assert squares == [(0, 10, 0, 10), (10, 20, 10, 20), (20, 30, 20, 30)]
    assert feature["properties"]["measurements"]["area_l0_px2"] == 300.0


def test_concave_corners_are_kept():
    probability = np.array([[1, 0], [1, 1]], dtype=float)
    (feature,) = region_features(probability, l0_per_px=1)
    (exterior,) = feature["geometry"]["coordinates"]
    assert sorted(map(tuple, exterior[:-1])) == [(0, 0), (0, 2), (1, 0), (1, 1), (2, 1), (2, 2)]


def test_min_area_drops_small_regions():
    probability = np.zeros((10, 10))
    probability[0, 0] = 1
    probability[5:8, 5:8] = 1
    features = region_features(probability, l0_per_px=3, min_area_l0=10)
    assert [f["properties"]["measurements"]["area_l0_px2"] for f in features] == [81.0]


@pytest.mark.parametrize("seed", range(6))
def test_random_maps_are_reproduced_exactly(seed):
    rng = np.random.default_rng(seed)
    probability = rng.random((23, 31)) * (rng.random((23, 31)) < 0.8)
    probability[rng.random((23, 31)) < 0.05] = np.nan
    threshold, scale = 0.4, 2.5
    features = region_features(probability, l0_per_px=scale, threshold=threshold)
    selected = np.nan_to_num(probability, nan=-1) >= threshold
    np.testing.assert_array_equal(_rasterise(features, probability.shape, scale), selected)
    for feature in features:
        area = 0.0
        for polygon in _polygons(feature):
            assert _signed_area(polygon[0]) > 0 and all(_signed_area(hole) < 0 for hole in polygon[1:])
            area += sum(_signed_area(ring) for ring in polygon)
            for ring in polygon:
                assert all(float(v / scale).is_integer() for point in ring for v in point)  # on pixel edges
        assert area == pytest.approx(feature["properties"]["measurements"]["area_l0_px2"])
    assert sum(f["properties"]["measurements"]["area_l0_px2"] for f in features) == pytest.approx(
        selected.sum() * scale**2)


def test_polygons_read_back_with_the_qupath_annotation_reader(tmp_path):
    from slidescope.models.annotations import read_geojson as read_qupath

    probability = np.zeros((7, 9))
    probability[1:6, 1:4] = 1.0
    probability[3, 2] = 0.0
    probability[2:4, 6:8] = 1.0
    path = write_geojson(tmp_path / "tumour.geojson", region_features(probability, l0_per_px=16))
    annotations = read_qupath(path)
    assert [region.cls for region in annotations.regions] == ["Tumor", "Tumor"]
    assert [len(region.holes) for region in annotations.regions] == [1, 0]


@pytest.mark.parametrize(
    ("probability", "kwargs", "words"),
    [
        (np.zeros(4), {}, ["probability", "2-D", "(4,)"]),
        (np.zeros((2, 2, 2)), {}, ["probability", "2-D"]),
        (np.array([[np.inf]]), {}, ["probability", "infinity"]),
        ("map", {}, ["probability"]),
        (np.zeros((2, 2)), {"l0_per_px": 0}, ["l0_per_px"]),
        (np.zeros((2, 2)), {"l0_per_px": float("nan")}, ["l0_per_px"]),
        (np.zeros((2, 2)), {"threshold": float("nan")}, ["threshold"]),
        (np.zeros((2, 2)), {"color": (1, 2)}, ["color"]),
        (np.zeros((2, 2)), {"color": (1, 2, 256)}, ["color"]),
        (np.zeros((2, 2)), {"name": ""}, ["name"]),
        (np.zeros((2, 2)), {"min_area_l0": -1}, ["min_area_l0"]),
        (np.zeros((2, 2)), {"mpp": 0}, ["mpp"]),
        (np.zeros((2, 2)), {"measurements": {"x": float("nan")}}, ["measurements['x']"]),
    ],
)
def test_region_bad_input(probability, kwargs, words):
    kwargs = {"l0_per_px": 1, **kwargs}
    with pytest.raises(ParameterError) as info:
        region_features(probability, **kwargs)
    for word in words:
        assert word in str(info.value)


# ----------------------------------------------------------------------------------------------
# write_geojson / read_geojson


def test_write_geojson_is_a_feature_collection_plain_or_gzipped(tmp_path):
    probability = np.zeros((3, 3))
    probability[1, 1] = 1
    features = region_features(probability, l0_per_px=1)
    for name in ("regions.geojson", "regions.geojson.gz"):
        path = write_geojson(tmp_path / name, features)
        raw = path.read_bytes()
        assert raw[:2] == b"\x1f\x8b" if name.endswith(".gz") else raw.startswith(b"{")
        document = read_geojson(path)
        assert document == {"type": "FeatureCollection", "features": features}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["regions.geojson", "regions.geojson.gz"]


def test_write_geojson_refuses_nan_and_keeps_the_previous_file(tmp_path):
    path = write_geojson(tmp_path / "r.geojson", [])
    before = path.read_bytes()
    bad = {"type": "Feature", "geometry": None, "properties": {"measurements": {"x": float("nan")}}}
    with pytest.raises(ParameterError, match="finite"):
        write_geojson(path, [bad])
    with pytest.raises(ParameterError, match=r"features\[0\]"):
        write_geojson(path, [{"type": "Polygon"}])
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["r.geojson"]


def test_write_geojson_missing_folder_is_an_output_error(tmp_path):
    with pytest.raises(OutputError, match="does not exist"):
        write_geojson(tmp_path / "a" / "b" / "r.geojson", [])


def test_read_geojson_errors(tmp_path):
    with pytest.raises(WorkflowError, match="no such file"):
        read_geojson(tmp_path / "missing.geojson")
    (tmp_path / "bad.geojson").write_text("{not json")
    with pytest.raises(WorkflowError, match="not GeoJSON"):
        read_geojson(tmp_path / "bad.geojson")
    (tmp_path / "bad.geojson.gz").write_bytes(b"\x1f\x8b" + b"garbage")
    with pytest.raises(WorkflowError, match="not GeoJSON"):
        read_geojson(tmp_path / "bad.geojson.gz")


# ----------------------------------------------------------------------------------------------
# write_cells_geojson_gz


def _cells(count: int, seed: int = 0, x_range=(0.0, 50_000.0)) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "l0_x": rng.uniform(*x_range, count),
        "l0_y": rng.uniform(0, 40_000, count),
        "type": rng.choice(list(CLASSES), count),
        "score": rng.random(count).astype(np.float32),
    })


def test_cells_stream_into_a_gzip_feature_collection(tmp_path):
    cells = _cells(2500)
    chunks = (cells.iloc[i:i + 1000] for i in range(0, len(cells), 1000))  # a generator: streamed
    path = tmp_path / "cells.geojson.gz"
    assert write_cells_geojson_gz(path, chunks, classes=CLASSES, radius_l0=12.0, mpp=0.25) == 2500

    with gzip.open(path, "rt", encoding="utf-8") as stream:
        document = json.load(stream)
    assert document == read_geojson(path)
    assert document["type"] == "FeatureCollection"
    features = document["features"]
    assert len(features) == 2500
    assert len({f["id"] for f in features}) == 2500
    for feature, cell in zip(features[:300], cells.itertuples()):
        assert feature["type"] == "Feature"
        assert uuid.UUID(feature["id"]).version == 4
        assert feature["properties"]["objectType"] == "detection"
        assert feature["properties"]["classification"] == {"name": cell.type, "color": list(CLASSES[cell.type])}
        assert feature["properties"]["measurements"] == {"score": pytest.approx(cell.score, abs=5e-5)}
        assert feature["geometry"]["type"] == "Polygon"
        (ring,) = feature["geometry"]["coordinates"]
        assert len(ring) == 9 and ring[0] == ring[-1]
        vertices = np.asarray(ring[:-1])
        np.testing.assert_allclose(vertices.mean(axis=0), [cell.l0_x, cell.l0_y], atol=0.05)
        np.testing.assert_allclose(np.hypot(*(vertices - [cell.l0_x, cell.l0_y]).T), 12.0, atol=0.08)
        assert _signed_area(ring) > 0
    assert document["slidescope"] == {"mpp": 0.25, "radius_l0": 12.0}


def test_cells_coordinates_are_exact_to_the_rounding_also_when_negative(tmp_path):
    cells = _cells(400, seed=5, x_range=(-30.0, 3_000_000.0))
    cells.loc[0, ["l0_x", "l0_y"]] = [3.0, 0.04]  # vertices at x -9 and y -11.96
    cells["score"] = np.linspace(-2.0, 1e6, len(cells))
    write_cells_geojson_gz(tmp_path / "c.geojson.gz", [cells], classes=CLASSES, radius_l0=12.0)
    features = read_geojson(tmp_path / "c.geojson.gz")["features"]
    angles = np.arange(8) * math.pi / 4
    for feature, cell in zip(features, cells.itertuples()):
        expected = np.stack([cell.l0_x + 12 * np.cos(angles), cell.l0_y + 12 * np.sin(angles)], axis=1)
        np.testing.assert_allclose(feature["geometry"]["coordinates"][0][:-1], expected, atol=0.05 + 1e-6)
        assert feature["properties"]["measurements"]["score"] == pytest.approx(cell.score, abs=5e-5 + 1e-9)


def test_cells_read_back_with_the_qupath_annotation_reader(tmp_path):
    from slidescope.models.annotations import read_geojson as read_qupath

    cells = _cells(50, seed=2)
    write_cells_geojson_gz(tmp_path / "c.geojson.gz", [cells], classes=CLASSES, radius_l0=8.0)
    plain = tmp_path / "c.geojson"
    plain.write_bytes(gzip.decompress((tmp_path / "c.geojson.gz").read_bytes()))
    points = read_qupath(plain).points
    assert list(points["cls"]) == list(cells["type"])
    np.testing.assert_allclose(points[["x", "y"]].to_numpy(), cells[["l0_x", "l0_y"]].to_numpy(), atol=0.05)


@pytest.mark.parametrize("chunks", [[], [pd.DataFrame(columns=["l0_x", "l0_y", "type", "score"])]])
def test_no_cells_is_a_valid_empty_feature_collection(tmp_path, chunks):
    path = tmp_path / "none.geojson.gz"
    assert write_cells_geojson_gz(path, iter(chunks), classes=CLASSES, radius_l0=5) == 0
    document = read_geojson(path)
    assert document["type"] == "FeatureCollection" and document["features"] == []


def test_empty_chunks_between_full_ones_are_skipped(tmp_path):
    empty = _cells(0)
    chunks = [empty, _cells(3, seed=1), empty, empty, _cells(2, seed=2), empty]
    assert write_cells_geojson_gz(tmp_path / "c.geojson.gz", chunks, classes=CLASSES, radius_l0=5) == 5
    assert len(read_geojson(tmp_path / "c.geojson.gz")["features"]) == 5


def test_unknown_cell_type_names_it_and_keeps_the_previous_file(tmp_path):
    path = tmp_path / "c.geojson.gz"
    write_cells_geojson_gz(path, [_cells(10)], classes=CLASSES, radius_l0=5)
    before = path.read_bytes()
    bad = _cells(10, seed=1)
    bad.loc[4, "type"] = "macrophage"
    with pytest.raises(ParameterError) as info:
        write_cells_geojson_gz(path, [_cells(5), bad], classes=CLASSES, radius_l0=5)
    assert "chunks[1]" in str(info.value) and "'macrophage'" in str(info.value)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["c.geojson.gz"]


@pytest.mark.parametrize(
    ("mutate", "words"),
    [
        (lambda c: c.drop(columns=["score"]), ["chunks[0]", "missing ['score']"]),
        (lambda c: c.assign(l0_x=np.where(c.index == 3, np.nan, c.l0_x)), ["'l0_x'", "finite", "row 3"]),
        (lambda c: c.assign(score=np.inf), ["'score'", "finite"]),
        (lambda c: c.assign(type=np.nan), ["unknown cell type", "nan"]),
        (lambda c: c.to_dict(), ["chunks[0]", "DataFrame"]),
    ],
)
def test_bad_cells_are_parameter_errors(tmp_path, mutate, words):
    with pytest.raises(ParameterError) as info:
        write_cells_geojson_gz(tmp_path / "c.geojson.gz", [mutate(_cells(6))], classes=CLASSES, radius_l0=5)
    for word in words:
        assert word in str(info.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"classes": {}}, ["classes"]),
        ({"classes": {"tumor": (1, 2)}}, ["classes['tumor']"]),
        ({"radius_l0": 0}, ["radius_l0"]),
        ({"radius_l0": float("nan")}, ["radius_l0"]),
        ({"mpp": -0.25}, ["mpp"]),
    ],
)
def test_bad_cell_options_are_parameter_errors(tmp_path, kwargs, words):
    kwargs = {"classes": CLASSES, "radius_l0": 5, **kwargs}
    with pytest.raises(ParameterError) as info:
        write_cells_geojson_gz(tmp_path / "c.geojson.gz", [_cells(3)], **kwargs)
    for word in words:
        assert word in str(info.value)
