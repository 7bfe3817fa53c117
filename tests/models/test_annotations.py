"""QuPath GeoJSON annotations: reading every shape QuPath writes, region fractions, tile labels, points.

The GeoJSON texts are written by hand in the shapes QuPath exports ("Export objects as GeoJSON"):
0.4/0.5 (``objectType``, UUID ids, ``classification.color``), 0.3 (``object_type``) and 0.2 (the
object type in ``id``, ``classification.colorRGB``, measurements as a list).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from slidescope.models.annotations import (
    POINT_COLUMNS,
    Annotations,
    Region,
    points_in_box,
    read_geojson,
    region_fractions,
    tile_labels,
)
from slidescope.models.errors import AnnotationError, ModelError
from slidescope.wsi.errors import ParameterError

#: QuPath 0.5, "Export objects as GeoJSON" with "Export as FeatureCollection" ticked, pretty-printed.
FEATURE_COLLECTION = """{
  "type": "FeatureCollection",
  "features": [
    {
      "type": "Feature",
      "id": "6f1c2a9e-3b7d-4c1e-9a52-0d8e4f7b1c23",
      "geometry": {
        "type": "Polygon",
        "coordinates": [[[100, 100], [300, 100], [300, 300], [100, 300], [100, 100]]]
      },
      "properties": {
        "objectType": "annotation",
        "classification": {"name": "Tumor", "color": [200, 0, 0]}
      }
    },
    {
      "type": "Feature",
      "id": "0b3e8d51-7f2c-4a6d-8e19-5c4b2a7d9f10",
      "geometry": {
        "type": "Polygon",
        "coordinates": [[[300, 100], [500, 100], [500, 300], [300, 300], [300, 100]]]
      },
      "properties": {
        "objectType": "annotation",
        "name": "stroma left",
        "classification": {"name": "Stroma", "color": [150, 200, 150]},
        "isLocked": true
      }
    },
    {
      "type": "Feature",
      "id": "a4d7c3e2-1f8b-4b9a-b6c5-2e7f0a1d3c48",
      "geometry": {
        "type": "MultiPolygon",
        "coordinates": [
          [[[1000, 1000], [1400, 1000], [1400, 1400], [1000, 1400], [1000, 1000]],
           [[1100, 1100], [1300, 1100], [1300, 1300], [1100, 1300], [1100, 1100]]],
          [[[2000, 2000], [2100, 2000], [2100, 2100], [2000, 2100], [2000, 2000]]]
        ]
      },
      "properties": {
        "objectType": "annotation",
        "classification": {"name": "Tumor", "color": [200, 0, 0]},
        "measurements": {"Area µm^2": 36000.0, "Perimeter µm": NaN}
      }
    },
    {
      "type": "Feature",
      "id": "c9e1f4a7-5d2b-4e8c-a3f6-7b0d9c2e4a15",
      "geometry": {"type": "Point", "coordinates": [150.5, 160.25]},
      "properties": {
        "objectType": "annotation",
        "classification": {"name": "Lymphocyte", "color": [0, 0, 200]}
      }
    },
    {
      "type": "Feature",
      "id": "e2b5d8f1-9c4a-4d7e-b1f3-6a8c0e2d4b79",
      "geometry": {"type": "MultiPoint", "coordinates": [[200, 200], [250, 260], [310, 120]]},
      "properties": {
        "objectType": "annotation",
        "classification": {"name": "Lymphocyte", "color": [0, 0, 200]}
      }
    },
    {
      "type": "Feature",
      "id": "f7a3c6e9-2d5b-4f1c-8e4a-9b2d7c0f3e61",
      "geometry": {
        "type": "Polygon",
        "coordinates": [[[400, 400], [410, 400], [410, 420], [400, 420], [400, 400]]]
      },
      "properties": {
        "objectType": "detection",
        "classification": {"name": "Tumor", "color": [200, 0, 0]},
        "measurements": {"Nucleus: Area": 200.0}
      }
    },
    {
      "type": "Feature",
      "id": "1d4f7a0c-3e6b-4c9d-a2f5-8b1e4d7a0c36",
      "geometry": {
        "type": "Polygon",
        "coordinates": [[[500, 500], [540, 500], [540, 540], [500, 540], [500, 500]]]
      },
      "nucleusGeometry": {
        "type": "Polygon",
        "coordinates": [[[502, 504], [506, 504], [506, 508], [502, 508], [502, 504]]]
      },
      "properties": {
        "objectType": "cell",
        "classification": {"name": "Lymphocyte", "color": [0, 0, 200]}
      }
    },
    {
      "type": "Feature",
      "id": "8c2e5b9f-6a1d-4e3c-b7f0-4d9a2c5e8b13",
      "geometry": {
        "type": "Polygon",
        "coordinates": [[[600, 600], [700, 600], [700, 700], [600, 700], [600, 600]]]
      },
      "properties": {"objectType": "annotation"}
    }
  ]
}"""

#: QuPath 0.2: a bare list, the object type in "id", colorRGB, measurements as a name/value list.
LEGACY_LIST = """[
  {
    "type": "Feature",
    "id": "PathAnnotationObject",
    "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [64, 0], [64, 64], [0, 64], [0, 0]]]},
    "properties": {
      "classification": {"name": "Tumor", "colorRGB": -3670016},
      "isLocked": false,
      "measurements": []
    }
  },
  {
    "type": "Feature",
    "id": "PathDetectionObject",
    "geometry": {"type": "Polygon", "coordinates": [[[10, 10], [20, 10], [10, 40], [10, 10]]]},
    "properties": {
      "classification": {"name": "Positive", "colorRGB": -377282,
                         "parentClass": {"name": "Tumor", "colorRGB": -3670016}},
      "isLocked": false,
      "measurements": [{"name": "Area", "value": 150.0}]
    }
  }
]"""


def write(tmp_path, text: str, name: str = "slide.geojson") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def feature(geometry: str, properties: str = '"objectType": "annotation", '
            '"classification": {"name": "Tumor", "color": [200, 0, 0]}') -> str:
    return f'{{"type": "Feature", "id": "6f1c2a9e", "geometry": {geometry}, "properties": {{{properties}}}}}'


SQUARE = '{"type": "Polygon", "coordinates": [[[0, 0], [10, 0], [10, 10], [0, 10], [0, 0]]]}'


def collection(*features: str) -> str:
    return '{"type": "FeatureCollection", "features": [' + ", ".join(features) + "]}"


# ----------------------------------------------------------------------------------------------
# read_geojson


def test_feature_collection_regions_points_and_unclassified(tmp_path):
    annotations = read_geojson(write(tmp_path, FEATURE_COLLECTION))
    assert isinstance(annotations, Annotations)
    assert [(r.cls, r.feature, len(r.holes)) for r in annotations.regions] == [
        ("Tumor", 0, 0), ("Stroma", 1, 0), ("Tumor", 2, 1), ("Tumor", 2, 0), (None, 7, 0)]
    first = annotations.regions[0]
    assert first.exterior.dtype == np.float64 and first.exterior.shape == (4, 2)  # stored open
    np.testing.assert_array_equal(first.exterior, [[100, 100], [300, 100], [300, 300], [100, 300]])
    assert first.bounds == (100.0, 100.0, 300.0, 300.0)
    np.testing.assert_array_equal(annotations.regions[2].holes[0],
                                  [[1100, 1100], [1300, 1100], [1300, 1300], [1100, 1300]])
    assert annotations.unclassified == 1
    assert annotations.class_names == ("Tumor", "Stroma", "Lymphocyte")

    points = annotations.points
    assert tuple(points.columns) == POINT_COLUMNS
    assert [str(points[c].dtype) for c in ("x", "y", "feature")] == ["float64", "float64", "int64"]
    expected = pd.DataFrame({
        "x": [150.5, 200.0, 250.0, 310.0, 405.0, 504.0],  # point, multipoint, detection, cell nucleus
        "y": [160.25, 200.0, 260.0, 120.0, 410.0, 506.0],
        "cls": ["Lymphocyte", "Lymphocyte", "Lymphocyte", "Lymphocyte", "Tumor", "Lymphocyte"],
        "feature": [3, 4, 4, 4, 5, 6],
    })
    pd.testing.assert_frame_equal(points, expected, check_dtype=False)
    assert "regions=5" in repr(annotations) and "feature=0" in repr(first)


def test_detection_and_cell_become_points_not_regions(tmp_path):
    cell_without_nucleus = feature(
        '{"type": "Polygon", "coordinates": [[[0, 0], [30, 0], [0, 30], [0, 0]]]}',
        '"objectType": "cell", "classification": {"name": "Tumor", "color": [200, 0, 0]}')
    annotations = read_geojson(write(tmp_path, collection(cell_without_nucleus)))
    assert annotations.regions == ()
    np.testing.assert_allclose(annotations.points[["x", "y"]].to_numpy(), [[10.0, 10.0]])  # triangle centroid


def test_legacy_bare_list(tmp_path):
    annotations = read_geojson(write(tmp_path, LEGACY_LIST))
    assert [(r.cls, r.feature) for r in annotations.regions] == [("Tumor", 0)]
    points = annotations.points
    assert list(points["cls"]) == ["Tumor: Positive"] and list(points["feature"]) == [1]
    np.testing.assert_allclose(points[["x", "y"]].to_numpy(), [[40 / 3, 20.0]])


def test_single_feature_unclosed_ring_and_derived_names(tmp_path):
    text = feature('{"type": "Polygon", "coordinates": [[[0, 0], [10, 0], [10, 10]]]}',
                   '"objectType": "annotation", "classification": {"names": ["Tumor", "Positive"], '
                   '"color": [200, 0, 0]}')
    (region,) = read_geojson(write(tmp_path, text)).regions
    assert region.cls == "Tumor: Positive" and region.exterior.shape == (3, 2)


def test_classes_and_rename(tmp_path):
    path = write(tmp_path, FEATURE_COLLECTION)
    annotations = read_geojson(path, classes=("tumour", "stroma", "lymphocyte"),
                               rename={"Tumor": "tumour", "Stroma": "stroma", "Lymphocyte": "lymphocyte"})
    assert annotations.class_names == ("tumour", "stroma", "lymphocyte")
    dropped = read_geojson(path, classes=["Tumor", "Lymphocyte"], rename={"Stroma": None})
    assert dropped.regions[1].cls is None and dropped.unclassified == 2


def test_unknown_class_names_file_feature_and_known_classes(tmp_path):
    path = write(tmp_path, FEATURE_COLLECTION)
    with pytest.raises(AnnotationError, match=r"slide\.geojson: feature 1: unknown class 'Stroma'; "
                                              r"known classes: Tumor, Lymphocyte"):
        read_geojson(path, classes=["Tumor", "Lymphocyte"])
    with pytest.raises(AnnotationError, match=r"feature 0: unknown class 'Tumor' \(did you mean 'tumor'"):
        read_geojson(path, classes=["tumor"])


def test_child_objects_keep_the_parent_feature_index(tmp_path):
    child = feature('{"type": "Point", "coordinates": [5, 6]}',
                    '"objectType": "detection", "classification": {"name": "Tumor", "color": [200, 0, 0]}')
    parent = feature(SQUARE, f'"objectType": "annotation", "childObjects": [{child}]')
    annotations = read_geojson(write(tmp_path, f"[{feature(SQUARE)}, {parent}]"))
    assert [r.feature for r in annotations.regions] == [0, 1] and annotations.unclassified == 1
    assert list(annotations.points["feature"]) == [1] and list(annotations.points["x"]) == [5.0]


@pytest.mark.parametrize(("geometry", "message"), [
    ('{"type": "LineString", "coordinates": [[0, 0], [10, 10]]}', "a LineString: lines are not labels"),
    ('{"type": "Polygon", "coordinates": [[[0, 0], ["10", 0], [10, 10], [0, 0]]]}', "numbers"),
    ('{"type": "Polygon", "coordinates": [[[0, 0], [NaN, 0], [10, 10], [0, 0]]]}', "finite"),
    ('{"type": "Point", "coordinates": [Infinity, 3]}', "finite"),
    ('{"type": "Point", "coordinates": [4294967296, 3]}', "within"),
    ('{"type": "Point", "coordinates": [1]}', r"\[x, y\] position"),
    ('{"type": "Polygon", "coordinates": [[[0, 0], [10, 0], [0, 0]]]}', "fewer than 3 distinct points"),
    ('{"type": "Polygon", "coordinates": [[[0, 0], [10, 0], [10, 10], [0, 0]], [[1, 1], [2, 2], [1, 1]]]}',
     "hole 0 has fewer than 3"),
    ('{"type": "Polygon", "coordinates": []}', "non-empty list of rings"),
    ('{"type": "Circle", "coordinates": [0, 0]}', "unsupported geometry type 'Circle'"),
    ("null", "a feature without geometry"),
])
def test_bad_geometry_names_file_and_feature(tmp_path, geometry, message):
    path = write(tmp_path, collection(feature(SQUARE), feature(geometry)))
    with pytest.raises(AnnotationError, match=r"slide\.geojson: feature 1: .*" + message):
        read_geojson(path)


def test_negative_coordinates_are_allowed(tmp_path):
    text = feature('{"type": "Polygon", "coordinates": [[[-0.5, -0.25], [10, 0], [10, 10], [-0.5, -0.25]]]}')
    (region,) = read_geojson(write(tmp_path, text)).regions
    assert region.exterior.min() == -0.5


@pytest.mark.parametrize(("text", "message"), [
    ('{"type": "FeatureCollection", "features": [', "not JSON"),
    ("", "not JSON"),
    (SQUARE, "expected a GeoJSON FeatureCollection, a list of features or one Feature.*'Polygon'"),
    ('{"type": "FeatureCollection", "features": {}}', "expected the FeatureCollection's 'features' to be a list"),
    ('[42]', "feature 0: expected a GeoJSON Feature"),
    ('[{"type": "Feature", "geometry": ' + SQUARE + ', "properties": {"classification": 3}}]',
     "feature 0: expected 'classification'"),
])
def test_bad_files(tmp_path, text, message):
    with pytest.raises(AnnotationError, match=r"slide\.geojson: " + message):
        read_geojson(write(tmp_path, text))


def test_missing_file_and_bad_arguments(tmp_path):
    with pytest.raises(AnnotationError, match="missing.geojson: no such file") as caught:
        read_geojson(tmp_path / "missing.geojson")
    assert isinstance(caught.value, ModelError) and isinstance(caught.value, ValueError)
    path = write(tmp_path, FEATURE_COLLECTION)
    for bad in ("Tumor", [], ["Tumor", "Tumor"], [1]):
        with pytest.raises(ParameterError, match="classes"):
            read_geojson(path, classes=bad)
    with pytest.raises(ParameterError, match="rename"):
        read_geojson(path, rename={"Tumor": 3})


# ----------------------------------------------------------------------------------------------
# region_fractions, tile_labels, points_in_box

CLASSES = ("Tumor", "Stroma")


@pytest.fixture()
def annotations(tmp_path):
    return read_geojson(write(tmp_path, FEATURE_COLLECTION), rename={"Lymphocyte": None})


def test_region_fractions_on_rectangles(annotations):
    boxes = [
        [100, 100, 200, 200],    # all tumour
        [200, 100, 200, 200],    # half tumour, half stroma
        [0, 0, 400, 400],        # a quarter tumour, an eighth stroma
        [1000, 1000, 400, 400],  # the MultiPolygon ring: its hole (a quarter) is not tumour
        [1100, 1100, 200, 200],  # inside the hole
        [2000, 2000, 200, 200],  # the second polygon covers a quarter
        [600, 600, 100, 100],    # unclassified: no class
        [5000, 5000, 256, 256],  # nothing
    ]
    fractions = region_fractions(annotations, boxes, CLASSES)
    expected = [[1, 0], [0.5, 0.5], [0.25, 0.125], [0.75, 0], [0, 0], [0.25, 0], [0, 0], [0, 0]]
    np.testing.assert_allclose(fractions, expected, atol=0.02)
    assert fractions.shape == (8, 2) and fractions.dtype == np.float64
    # Pixel borders fall on the rectangles' sides here: the raster is exact.
    np.testing.assert_array_equal(fractions, expected)
    assert region_fractions(annotations, np.zeros((0, 4)), CLASSES).shape == (0, 2)


def test_region_fractions_off_grid_and_slanted():
    slanted = Region("Tumor", [[0, 0], [1000, 0], [0, 1000]])  # half of the box below
    offset = Region("Stroma", [[0, 0], [333.3, 0], [333.3, 1000], [0, 1000]], feature=1)
    fractions = region_fractions(Annotations("x.geojson", (slanted,)), [[0, 0, 1000, 1000]], CLASSES)
    np.testing.assert_allclose(fractions, [[0.5, 0]], atol=0.02)
    fractions = region_fractions(Annotations("x.geojson", (offset,)), [[0, 0, 1000, 1000]], CLASSES)
    np.testing.assert_allclose(fractions, [[0, 0.3333]], atol=0.02)


def test_later_features_win_and_holes_keep_what_is_beneath():
    stroma = Region("Stroma", [[0, 0], [100, 0], [100, 100], [0, 100]], feature=0)
    ring = Region("Tumor", [[0, 0], [100, 0], [100, 100], [0, 100]], ([[25, 25], [75, 25], [75, 75], [25, 75]],), 1)
    fractions = region_fractions(Annotations("x.geojson", (stroma, ring)), [[0, 0, 100, 100]], CLASSES)
    np.testing.assert_allclose(fractions, [[0.75, 0.25]], atol=0.02)
    fractions = region_fractions(Annotations("x.geojson", (ring, Region("Stroma", stroma.exterior))),
                                 [[0, 0, 100, 100]], CLASSES)
    np.testing.assert_array_equal(fractions, [[0, 1]])


def test_region_of_an_unlisted_class_is_an_error(annotations):
    with pytest.raises(AnnotationError, match=r"slide\.geojson: feature 1: class 'Stroma' is not among"):
        region_fractions(annotations, [[0, 0, 10, 10]], ["Tumor"])
    for bad in ([[0, 0, 0, 10]], [[0, 0, 10]], [[0, np.nan, 1, 1]], "boxes"):
        with pytest.raises(ParameterError, match="boxes"):
            region_fractions(annotations, bad, CLASSES)


def test_tile_labels_majority_unannotated_and_unlabelled_as(annotations):
    boxes = [
        [100, 100, 200, 200],  # tumour
        [250, 100, 200, 200],  # a quarter tumour, three quarters stroma: stroma
        [200, 100, 200, 200],  # a tie: the lowest index (tumour)
        [0, 0, 400, 400],      # a quarter tumour: below min_fraction
        [5000, 0, 100, 100],   # nothing annotated
        [600, 600, 100, 100],  # unclassified annotation only
    ]
    np.testing.assert_array_equal(tile_labels(annotations, boxes, CLASSES), [0, 1, 0, -1, -1, -1])
    np.testing.assert_array_equal(tile_labels(annotations, boxes, CLASSES, min_fraction=0), [0, 1, 0, 0, -1, -1])
    labels = tile_labels(annotations, boxes, ("Tumor", "Stroma", "Normal"), unlabelled_as="Normal")
    assert labels.dtype == np.int64
    np.testing.assert_array_equal(labels, [0, 1, 0, 2, 2, 2])
    with pytest.raises(ParameterError, match="unlabelled_as"):
        tile_labels(annotations, boxes, CLASSES, unlabelled_as="Normal")
    with pytest.raises(ParameterError, match="min_fraction"):
        tile_labels(annotations, boxes, CLASSES, min_fraction=1.5)


def test_points_in_box_is_half_open(annotations):
    inside = points_in_box(annotations, (200, 200, 110, 60))  # x in [200, 310), y in [200, 260)
    assert list(zip(inside["x"], inside["y"])) == [(200.0, 200.0)]  # (250, 260) and (310, 120) are out
    assert tuple(inside.columns) == POINT_COLUMNS and list(inside.index) == [0]
    inside = points_in_box(annotations, np.array([150, 120, 161, 141]))
    assert list(inside["x"]) == [150.5, 200.0, 250.0, 310.0]
    assert points_in_box(annotations, (0, 0, 100, 100)).empty
    with pytest.raises(ParameterError, match="box"):
        points_in_box(annotations, (0, 0, -1, 5))
