"""Nucleus post-processing: peaks, types, counts, level-0 mapping and slide-level deduplication."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from slidescope.models import ModelInputError
from slidescope.models.peaks import count_by_type, deduplicate, detect, find_peaks, to_level0

SIGMA = 2.0
MIN_DISTANCE = 4
THRESHOLD = 0.5
SEPARATION = 8.0  # smallest distance between two synthetic nuclei, in pixels
TYPES = ("tumour", "lymphocyte", "stroma")
FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ----------------------------------------------------------------------------- synthetic scenes


def render(height: int, width: int, centres: np.ndarray) -> np.ndarray:
    """Gaussian blobs (sigma 2 px, peak 1.0) at ``(x, y)`` pixel-index centres, combined by maximum."""
    canvas = np.zeros((height, width), np.float32)
    radius = int(np.ceil(5 * SIGMA))
    for cx, cy in centres:
        x0, x1 = max(0, int(cx) - radius), min(width, int(cx) + radius + 2)
        y0, y1 = max(0, int(cy) - radius), min(height, int(cy) + radius + 2)
        yy, xx = np.mgrid[y0:y1, x0:x1]
        blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * SIGMA**2)).astype(np.float32)
        np.maximum(canvas[y0:y1, x0:x1], blob, out=canvas[y0:y1, x0:x1])
    return canvas


def thin(points: list[tuple[float, float]], separation: float = SEPARATION) -> np.ndarray:
    """The points, greedily dropping any closer than ``separation`` to one already kept, as ``(n, 2)``."""
    kept: list[tuple[float, float]] = []
    for x, y in points:
        if all((x - kx) ** 2 + (y - ky) ** 2 >= separation**2 for kx, ky in kept):
            kept.append((x, y))
    return np.array(kept, np.float64).reshape(-1, 2)


def coordinate(limit: float) -> st.SearchStrategy[float]:
    """A pixel-index coordinate in ``[0, limit]``: any float, or a multiple of 0.5 (ties between pixels)."""
    return st.one_of(st.floats(0, limit, allow_nan=False, allow_infinity=False),
                     st.integers(0, int(2 * limit)).map(lambda v: v / 2))


@st.composite
def centre_sets(draw, height: int, width: int, max_size: int = 30) -> np.ndarray:
    points = draw(st.lists(st.tuples(coordinate(width - 1), coordinate(height - 1)), max_size=max_size))
    return thin(points)


def match(found_xy: np.ndarray, known_xy: np.ndarray, tolerance: float) -> None:
    """Every known point found exactly once within ``tolerance``, and nothing else."""
    assert len(found_xy) == len(known_xy), f"found {len(found_xy)} nuclei, expected {len(known_xy)}"
    if not len(known_xy):
        return
    distances = np.hypot(*(found_xy[:, None, :] - known_xy[None, :, :]).transpose(2, 0, 1))
    nearest = distances.argmin(axis=1)
    assert (distances.min(axis=1) <= tolerance).all(), distances.min(axis=1).max()
    np.testing.assert_array_equal(np.bincount(nearest, minlength=len(known_xy)), 1)


# ----------------------------------------------------------------------------- find_peaks


@FAST
@given(st.data())
def test_find_peaks_recovers_every_blob_once(data):
    height, width = data.draw(st.integers(24, 96)), data.draw(st.integers(24, 96))
    centres = data.draw(centre_sets(height, width))
    rows, cols, scores = find_peaks(render(height, width, centres), min_distance_px=MIN_DISTANCE, threshold=THRESHOLD)
    assert rows.dtype == np.int64 and cols.dtype == np.int64 and scores.dtype == np.float32
    assert (np.diff(scores) <= 0).all()
    assert (scores >= THRESHOLD).all()
    match(np.column_stack([cols, rows]).astype(float), centres, 1.0)


def test_a_flat_top_gives_one_peak():
    heatmap = np.zeros((32, 32), np.float32)
    heatmap[10:13, 10:13] = 0.9  # a 3 x 3 plateau: nine equal local maxima
    heatmap[20:22, 25:27] = 0.7  # a 2 x 2 one
    rows, cols, scores = find_peaks(heatmap, min_distance_px=MIN_DISTANCE, threshold=THRESHOLD)
    assert len(rows) == 2
    assert 10 <= rows[0] <= 12 and 10 <= cols[0] <= 12 and scores[0] == np.float32(0.9)
    assert 20 <= rows[1] <= 21 and 25 <= cols[1] <= 26 and scores[1] == np.float32(0.7)


def test_a_wide_plateau_gives_peaks_at_least_min_distance_apart():
    heatmap = np.zeros((40, 40), np.float32)
    heatmap[5:35, 18:21] = 0.8
    rows, cols, _ = find_peaks(heatmap, min_distance_px=6, threshold=THRESHOLD)
    assert len(rows) >= 2
    chebyshev = np.maximum(np.abs(rows[:, None] - rows[None]), np.abs(cols[:, None] - cols[None]))
    assert (chebyshev[~np.eye(len(rows), dtype=bool)] >= 6).all()


def test_threshold_is_inclusive_and_values_below_are_dropped():
    heatmap = np.zeros((20, 40), np.float32)
    heatmap[5, 5], heatmap[5, 20], heatmap[5, 35] = 0.5, np.nextafter(np.float32(0.5), np.float32(0)), 0.75
    rows, cols, scores = find_peaks(heatmap, min_distance_px=3, threshold=0.5)
    assert cols.tolist() == [35, 5] and scores.tolist() == [0.75, 0.5]


def test_min_distance_rounds_and_is_at_least_one():
    heatmap = np.zeros((5, 11), np.float64)
    heatmap[2, [2, 5, 8]] = [0.9, 0.8, 0.7]  # 3 px apart
    assert find_peaks(heatmap, min_distance_px=0.2, threshold=0.5)[1].tolist() == [2, 5, 8]  # 1
    assert find_peaks(heatmap, min_distance_px=2.4, threshold=0.5)[1].tolist() == [2, 5, 8]  # 2
    assert find_peaks(heatmap, min_distance_px=2.6, threshold=0.5)[1].tolist() == [2]  # 3


def test_maps_without_peaks():
    for heatmap in (np.zeros((16, 16)), np.full((16, 16), 0.9), np.zeros((0, 5)), np.full((8, 8), 0.3)):
        rows, cols, scores = find_peaks(heatmap, min_distance_px=MIN_DISTANCE, threshold=THRESHOLD)
        assert len(rows) == len(cols) == len(scores) == 0
        assert rows.dtype == np.int64 and scores.dtype == np.float32


@pytest.mark.parametrize(("kwargs", "words"), [
    ({"heatmap": np.zeros((2, 4, 4))}, "heatmap: expected a 2-D array"),
    ({"heatmap": np.zeros((4, 4), bool)}, "heatmap: expected a 2-D array of real numbers"),
    ({"heatmap": np.full((4, 4), np.nan)}, "heatmap: expected finite values"),
    ({"heatmap": "map"}, "heatmap: expected a 2-D array"),
    ({"min_distance_px": 0}, "min_distance_px: expected a number > 0"),
    ({"min_distance_px": True}, "min_distance_px: expected a number"),
    ({"threshold": 1.5}, "threshold: expected a number >= 0 and <= 1"),
    ({"threshold": float("nan")}, "threshold: expected a finite number"),
])
def test_find_peaks_refuses_bad_input(kwargs, words):
    arguments = {"heatmap": np.zeros((4, 4)), "min_distance_px": 4, "threshold": 0.5} | kwargs
    with pytest.raises(ModelInputError, match=words):
        find_peaks(arguments.pop("heatmap"), **arguments)


# ----------------------------------------------------------------------------- detect, count_by_type


def type_map(height: int, width: int, centres: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Soft type probabilities: background favours the last type, a disk of radius 3 around each centre its own."""
    probabilities = np.full((height, width, len(TYPES)), 0.2, np.float32)
    probabilities[..., -1] = 0.6
    yy, xx = np.mgrid[0:height, 0:width]
    for (cx, cy), code in zip(centres, codes):
        disk = (xx - cx) ** 2 + (yy - cy) ** 2 <= 9
        probabilities[disk] = 0.2
        probabilities[disk, code] = 0.6
    return probabilities


@FAST
@given(st.data())
def test_detect_takes_the_type_at_the_peak_and_counts(data):
    n, height, width = data.draw(st.integers(1, 4)), data.draw(st.integers(24, 64)), data.draw(st.integers(24, 64))
    heatmaps = np.zeros((n, height, width), np.float32)
    types = np.zeros((n, height, width, len(TYPES)), np.float32)
    scenes = []
    for i in range(n):
        centres = data.draw(centre_sets(height, width, max_size=12))
        codes = np.array(data.draw(st.lists(st.integers(0, len(TYPES) - 1), min_size=len(centres),
                                            max_size=len(centres))), np.int64)
        heatmaps[i], types[i] = render(height, width, centres), type_map(height, width, centres, codes)
        scenes.append((centres, codes))

    found = detect(heatmaps, types, min_distance_px=MIN_DISTANCE, threshold=THRESHOLD, type_names=TYPES)
    assert list(found.columns) == ["image", "x", "y", "type", "score"]
    assert [str(t) for t in found.dtypes] == ["int64", "int64", "int64", "str", "float32"]
    assert found.index.equals(pd.RangeIndex(len(found)))
    assert (np.diff(found["image"]) >= 0).all()
    for i, (centres, codes) in enumerate(scenes):
        mine = found[found["image"] == i]
        assert (np.diff(mine["score"]) <= 0).all()
        match(mine[["x", "y"]].to_numpy(float), centres, 1.0)
        if len(centres):
            nearest = np.hypot(mine["x"].to_numpy()[:, None] - centres[:, 0],
                               mine["y"].to_numpy()[:, None] - centres[:, 1]).argmin(axis=1)
            assert mine["type"].tolist() == [TYPES[c] for c in codes[nearest]]
        expected_scores = heatmaps[i, mine["y"], mine["x"]]
        np.testing.assert_array_equal(mine["score"].to_numpy(), expected_scores)

    counts = count_by_type(found, n, TYPES)
    assert counts.shape == (n, len(TYPES)) and counts.dtype == np.int64
    expected = np.array([np.bincount(codes, minlength=len(TYPES)) for _, codes in scenes], np.int64)
    np.testing.assert_array_equal(counts, expected)


def test_detect_type_ties_and_type_names_order():
    heatmaps = np.zeros((1, 9, 9), np.float32)
    heatmaps[0, 4, 4] = 0.9
    types = np.zeros((1, 9, 9, 2), np.float32)
    types[0, 4, 4] = [0.5, 0.5]
    assert detect(heatmaps, types, min_distance_px=2, threshold=0.5, type_names=["a", "b"])["type"].tolist() == ["a"]
    types[0, 4, 4] = [0.1, 0.9]
    assert detect(heatmaps, types, min_distance_px=2, threshold=0.5, type_names=("a", "b"))["type"].tolist() == ["b"]


@pytest.mark.parametrize("shape", [(0, 1, 1), (0, 32, 32), (3, 16, 16)])
def test_no_peaks_give_an_empty_frame_with_the_columns_and_dtypes(shape):
    found = detect(np.zeros(shape, np.float32), np.zeros(shape + (len(TYPES),), np.float32),
                   min_distance_px=MIN_DISTANCE, threshold=THRESHOLD, type_names=TYPES)
    assert found.empty and list(found.columns) == ["image", "x", "y", "type", "score"]
    assert [str(t) for t in found.dtypes] == ["int64", "int64", "int64", "str", "float32"]
    np.testing.assert_array_equal(count_by_type(found, shape[0], TYPES), np.zeros((shape[0], len(TYPES)), np.int64))
    mapped = to_level0(found, np.zeros((shape[0], 4), np.int64) + 1, 16)
    assert mapped.empty and mapped["l0_x"].dtype == np.float64


@pytest.mark.parametrize(("heatmaps", "types", "names", "words"), [
    (np.zeros((2, 8, 8)), np.zeros((3, 8, 8, 3)), TYPES, r"types: expected \(images, height, width\) = \(2, 8, 8\)"),
    (np.zeros((2, 8, 8)), np.zeros((2, 8, 9, 3)), TYPES, r"types: expected \(images, height, width\)"),
    (np.zeros((2, 8, 8)), np.zeros((2, 8, 8, 2)), TYPES, "types: expected 3 types"),
    (np.zeros((8, 8)), np.zeros((1, 8, 8, 3)), TYPES, "heatmaps: expected a 3-D array"),
    (np.zeros((1, 8, 8)), np.zeros((1, 8, 8)), TYPES, "types: expected a 4-D array"),
    (np.zeros((1, 8, 8)), np.zeros((1, 8, 8, 3)), "abc", "type_names: expected a sequence"),
    (np.zeros((1, 8, 8)), np.zeros((1, 8, 8, 2)), ("a", "a"), "type_names: expected distinct names"),
    (np.zeros((1, 8, 8)), np.zeros((1, 8, 8, 0)), (), "type_names: expected one or more"),
])
def test_detect_refuses_bad_shapes(heatmaps, types, names, words):
    with pytest.raises(ModelInputError, match=words):
        detect(heatmaps, types, min_distance_px=MIN_DISTANCE, threshold=THRESHOLD, type_names=names)


def test_count_by_type_refuses_unknown_types_and_images():
    frame = pd.DataFrame({"image": [0, 1], "type": ["tumour", "virus"]})
    with pytest.raises(ModelInputError, match="detections.type: expected one of .*got virus"):
        count_by_type(frame, 2, TYPES)
    with pytest.raises(ModelInputError, match=r"detections.image: expected integers in \[0, 1\)"):
        count_by_type(frame.assign(type="tumour"), 1, TYPES)
    with pytest.raises(ModelInputError, match="detections: expected columns image, type; got no type"):
        count_by_type(frame.drop(columns="type"), 2, TYPES)
    counts = count_by_type(frame.assign(type="stroma"), 3, TYPES)
    np.testing.assert_array_equal(counts, [[0, 0, 1], [0, 0, 1], [0, 0, 0]])


# ----------------------------------------------------------------------------- to_level0


def test_to_level0_maps_pixel_centres_through_each_box():
    found = pd.DataFrame({"image": np.array([0, 1, 1], np.int64), "x": np.array([0, 255, 10], np.int64),
                          "y": np.array([0, 3, 100], np.int64), "type": ["a", "b", "a"],
                          "score": np.array([0.9, 0.8, 0.7], np.float32)})
    boxes = np.array([[1000, 2000, 512, 512], [0, 64, 256, 128]])
    mapped = to_level0(found, boxes, 256)
    assert list(mapped.columns) == ["image", "x", "y", "type", "score", "l0_x", "l0_y"]
    assert mapped["l0_x"].dtype == np.float64 and mapped["l0_y"].dtype == np.float64
    np.testing.assert_allclose(mapped["l0_x"], [1001.0, 255.5, 10.5])
    np.testing.assert_allclose(mapped["l0_y"], [2001.0, 64 + 3.5 * 0.5, 64 + 100.5 * 0.5])
    assert "l0_x" not in found.columns  # a copy


@pytest.mark.parametrize(("boxes", "read_size", "words"), [
    (np.zeros((2, 3), np.int64), 16, r"boxes: expected shape \(N, 4\)"),
    (np.array([[0, 0, 16, 16]]), 16, r"detections.image: expected integers in \[0, 1\)"),
    (np.array([[0, 0, 0, 16], [0, 0, 16, 16]]), 16, "boxes: expected positive widths and heights"),
    (np.array([[0, 0, 16, 16], [0.5, 0, 16, 16]]), 16, "boxes: expected integer"),
    (np.array([[0, 0, 16, 16], [0, 0, 16, 16]]), 0, "read_size: expected an integer >= 1"),
])
def test_to_level0_refuses_bad_boxes(boxes, read_size, words):
    found = pd.DataFrame({"image": np.array([0, 1], np.int64), "x": [1, 2], "y": [3, 4]})
    with pytest.raises(ModelInputError, match=words):
        to_level0(found, boxes, read_size)


# ----------------------------------------------------------------------------- deduplicate: the tiled canvas


def axis_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Tile origins along one axis as a plan lays them: stride ``tile - overlap``, plus a last flush tile."""
    starts = list(range(0, size - tile + 1, tile - overlap))
    if starts[-1] + tile < size:
        starts.append(size - tile)
    return starts


def tile_table(width: int, height: int, tile_w: int, tile_h: int, overlap: int) -> pd.DataFrame:
    xs, ys = axis_starts(width, tile_w, overlap), axis_starts(height, tile_h, overlap)
    origins = [(x, y) for y in ys for x in xs]
    return pd.DataFrame({"tile_id": np.arange(len(origins), dtype=np.int64) * 10 + 7,  # ids are not positions
                         "l0_x": [x for x, _ in origins], "l0_y": [y for _, y in origins],
                         "l0_width": tile_w, "l0_height": tile_h})


def tiled_cells(canvas: np.ndarray, tiles: pd.DataFrame) -> pd.DataFrame:
    """Detections of every tile crop (no context), in level-0 (canvas) coordinates, with their ``tile_id``."""
    tile_w, tile_h = int(tiles["l0_width"].iloc[0]), int(tiles["l0_height"].iloc[0])
    crops = np.stack([canvas[y:y + tile_h, x:x + tile_w] for x, y in zip(tiles["l0_x"], tiles["l0_y"])])
    types = np.broadcast_to(np.float32(1.0), crops.shape + (1,))
    found = detect(crops, types, min_distance_px=MIN_DISTANCE, threshold=THRESHOLD, type_names=["nucleus"])
    boxes = tiles[["l0_x", "l0_y", "l0_width", "l0_height"]].to_numpy()
    if tile_w == tile_h:
        found = to_level0(found, boxes, tile_w)
    else:  # to_level0 takes square reads; crops of a non-square tile are at level 0, unscaled
        found = found.assign(l0_x=boxes[found["image"], 0] + found["x"] + 0.5,
                             l0_y=boxes[found["image"], 1] + found["y"] + 0.5)
    return found.assign(tile_id=tiles["tile_id"].to_numpy()[found["image"]])


@st.composite
def tiled_scenes(draw, square: bool):
    tile_w = draw(st.sampled_from([48, 64, 96]))
    tile_h = tile_w if square else draw(st.sampled_from([40, 64, 80]))
    overlap = draw(st.integers(0, min(tile_w, tile_h) // 3))
    width, height = draw(st.integers(tile_w, 300)), draw(st.integers(tile_h, 300))
    tiles = tile_table(width, height, tile_w, tile_h, overlap)
    # Borders and ownership midlines, where nuclei are seen by two tiles or cut by a crop's edge.
    # (a tile's start, its end, and the midline between its centre and the next one's)
    lines_x = sorted({float(v) for x in tiles["l0_x"] for v in (x, x + tile_w, x + tile_w - overlap / 2)})
    lines_y = sorted({float(v) for y in tiles["l0_y"] for v in (y, y + tile_h, y + tile_h - overlap / 2)})

    def near(lines: list[float], limit: int) -> st.SearchStrategy[float]:
        offsets = st.integers(-8, 8).map(lambda v: v / 4)
        return st.builds(lambda line, delta: min(max(line - 0.5 + delta, 0.0), limit - 1.0),
                         st.sampled_from(lines), offsets)

    xs = st.one_of(coordinate(width - 1), near(lines_x, width))
    ys = st.one_of(coordinate(height - 1), near(lines_y, height))
    centres = thin(draw(st.lists(st.tuples(xs, ys), max_size=60)))
    return render(height, width, centres), tiles, centres


@pytest.mark.parametrize("square", [True, False])
@FAST
@given(data=st.data())
def test_every_nucleus_of_overlapping_tiles_is_kept_exactly_once(square, data):
    canvas, tiles, centres = data.draw(tiled_scenes(square))
    cells = tiled_cells(canvas, tiles)
    kept = deduplicate(cells, tiles, min_distance_l0=MIN_DISTANCE)
    assert list(kept.columns) == list(cells.columns)
    assert kept.index.equals(pd.RangeIndex(len(kept)))
    match(kept[["l0_x", "l0_y"]].to_numpy(), centres + 0.5, 1.5)  # pixel i's centre is at i + 0.5
    # sorted by tile id, then descending score
    order = np.lexsort((-kept["score"].to_numpy(), kept["tile_id"].to_numpy()))
    np.testing.assert_array_equal(order, np.arange(len(kept)))
    # every kept nucleus is one its tile saw, unchanged
    merged = kept.merge(cells, how="left", indicator=True)
    assert (merged["_merge"] == "both").all()


# ----------------------------------------------------------------------------- deduplicate: the two rules by hand


TWO_TILES = pd.DataFrame({"tile_id": ["a", "b"], "l0_x": [0, 80], "l0_y": [0, 0], "l0_width": 100, "l0_height": 100})


def cells_of(rows: list[tuple[str, float, float, float]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["tile_id", "l0_x", "l0_y", "score"]).assign(note=lambda f: f.index)


def test_a_point_in_the_overlap_is_kept_by_the_tile_whose_centre_is_nearer():
    # Centres at x = 50 and 130: x = 88 is nearer a's, x = 95 nearer b's; both tiles see both points.
    cells = cells_of([("a", 88.0, 50.0, 0.9), ("a", 95.0, 50.0, 0.8), ("b", 88.0, 50.0, 0.9), ("b", 95.0, 50.0, 0.8)])
    kept = deduplicate(cells, TWO_TILES, min_distance_l0=0.0)
    assert kept[["tile_id", "l0_x"]].values.tolist() == [["a", 88.0], ["b", 95.0]]
    # a tile that sees a point it does not own drops it, even when the owner missed it
    assert deduplicate(cells.iloc[[1]], TWO_TILES, min_distance_l0=4.0).empty


def test_ownership_is_normalised_by_width_and_height():
    # Wide tiles (200 x 100) with centres 1: (100, 50), 2: (250, 50), 3: (100, 140).
    tiles = pd.DataFrame({"tile_id": [1, 2, 3], "l0_x": [0, 150, 0], "l0_y": [0, 0, 90],
                          "l0_width": 200, "l0_height": 100})
    # (185, 60): 1 -> max(85/200, 10/100) = .425, 2 -> max(65/200, .1) = .325: tile 2
    # (120, 92): 1 -> max(20/200, 42/100) = .42, 3 -> max(.1, 48/100) = .48: tile 1
    # (120, 96): 1 -> .46, 3 -> .44: tile 3
    cells = cells_of([(1, 185.0, 60.0, 0.9), (2, 185.0, 60.0, 0.9),
                      (1, 120.0, 92.0, 0.8), (3, 120.0, 92.0, 0.8),
                      (1, 120.0, 96.0, 0.7), (3, 120.0, 96.0, 0.7)])
    kept = deduplicate(cells, tiles, min_distance_l0=0.0)
    assert kept[["tile_id", "l0_x", "l0_y"]].values.tolist() == [[1, 120.0, 92.0], [2, 185.0, 60.0], [3, 120.0, 96.0]]
    # Diagonal neighbours of 400 x 100 tiles, centres (200, 50) and (500, 110). The point (340, 95) lies
    # in both; plain pixels would give it to tile 1 (max(140, 45) < max(160, 15)), the normalised
    # distance to tile 2 (max(.35, .45) = .45 > max(.4, .15) = .4), the one whose core holds it.
    diagonal = pd.DataFrame({"tile_id": [1, 2], "l0_x": [0, 300], "l0_y": [0, 60], "l0_width": 400, "l0_height": 100})
    kept = deduplicate(cells_of([(1, 340.0, 95.0, 0.9), (2, 340.0, 95.0, 0.9)]), diagonal, min_distance_l0=0.0)
    assert kept["tile_id"].tolist() == [2]


def test_rule_two_removes_a_nucleus_seen_on_both_sides_of_an_ownership_border():
    # The ownership border of a and b is x = 90. Each tile reports the same nucleus half a pixel on
    # its own side (as tiles with different resampling may): both pass rule 1, 1 px apart.
    cells = cells_of([("a", 89.6, 50.0, 0.80), ("b", 90.6, 50.0, 0.81)])
    kept = deduplicate(cells, TWO_TILES, min_distance_l0=MIN_DISTANCE)
    assert kept[["tile_id", "l0_x"]].values.tolist() == [["b", 90.6]]
    assert len(deduplicate(cells, TWO_TILES, min_distance_l0=0.5)) == 2  # beyond the radius: both kept


def test_rule_two_never_suppresses_within_one_tile_and_is_greedy():
    cells = cells_of([("a", 50.0, 50.0, 0.9), ("a", 51.0, 50.0, 0.8),  # one tile: the peak finder's business
                      ("a", 87.0, 20.0, 0.9), ("b", 90.5, 20.0, 0.8), ("a", 86.0, 23.0, 0.7)])
    kept = deduplicate(cells, TWO_TILES, min_distance_l0=MIN_DISTANCE)
    # b's (90.5, 20) is within 4 of a's (87, 20) and suppressed; a's (86, 23) is 4.74 from b's anyway
    assert sorted(kept["note"]) == [0, 1, 2, 4]
    # greedy: a chain c1 > c2 > c3 across alternating tiles, each within the radius of the next only:
    # c2 is suppressed by c1, so c3 survives
    chain = cells_of([("a", 88.0, 70.0, 0.9), ("b", 91.0, 70.0, 0.8), ("a", 88.0, 73.5, 0.7)])
    chain.loc[2, "l0_x"] = 89.5
    kept = deduplicate(chain, TWO_TILES, min_distance_l0=3.2)
    assert sorted(kept["note"]) == [0, 2]


def test_an_exact_tie_in_ownership_keeps_one():
    # x = 90 is exactly between the centres; both tiles report it at the same place and score.
    cells = cells_of([("b", 90.0, 50.0, 0.9), ("a", 90.0, 50.0, 0.9)])
    for radius in (0.0, 4.0):
        assert len(deduplicate(cells, TWO_TILES, min_distance_l0=radius)) == 1
    # Rounding puts each tile's copy an ulp on the other's side: both stay owned, rule 2 keeps one.
    cells = cells_of([("a", np.nextafter(90.0, 91.0), 50.0, 0.9), ("b", np.nextafter(90.0, 89.0), 50.0, 0.9)])
    assert len(deduplicate(cells, TWO_TILES, min_distance_l0=1.0)) == 1


def test_deduplicate_keeps_columns_and_handles_empty_input():
    empty = cells_of([])
    kept = deduplicate(empty, TWO_TILES, min_distance_l0=4.0)
    assert kept.empty and list(kept.columns) == list(empty.columns)


@pytest.mark.parametrize(("cells", "tiles", "words"), [
    (cells_of([("a", 1.0, 1.0, 0.9)]).drop(columns=["score", "l0_y"]), TWO_TILES,
     "cells: expected columns l0_x, l0_y, score, tile_id; got no l0_y, score"),
    (cells_of([("a", 1.0, 1.0, 0.9)]), TWO_TILES.drop(columns="l0_height"),
     "tiles: expected columns .* got no l0_height"),
    (cells_of([("c", 1.0, 1.0, 0.9)]), TWO_TILES, "cells.tile_id: expected ids of tiles, got 1 not in tiles"),
    (cells_of([("a", 1.0, 1.0, 0.9)]), TWO_TILES.assign(tile_id="a"), "tiles.tile_id: expected distinct tile ids"),
    (cells_of([("a", 1.0, 1.0, 0.9)]), TWO_TILES.assign(l0_width=[100, 90]), "tiles: expected tiles of one size"),
    (cells_of([("a", float("nan"), 1.0, 0.9)]), TWO_TILES, "cells.l0_x: expected finite values"),
    (cells_of([("a", 1.0, 1.0, 0.9)]), [1, 2], "tiles: expected a pandas DataFrame"),
])
def test_deduplicate_refuses_bad_tables(cells, tiles, words):
    with pytest.raises(ModelInputError, match=words):
        deduplicate(cells, tiles, min_distance_l0=4.0)


def test_deduplicate_refuses_a_bad_radius():
    with pytest.raises(ModelInputError, match="min_distance_l0: expected a number >= 0"):
        deduplicate(cells_of([]), TWO_TILES, min_distance_l0=-1)
