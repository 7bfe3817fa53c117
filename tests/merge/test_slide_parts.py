"""The merged graph's parts run one by one, as the batch workflow runs them: the head alone and the
nuclei one by one must give what the graph gives whole."""

from __future__ import annotations

import numpy as np
import pytest

from slidescope.merge.head import cell_features, peak_counts, peak_positions


def test_peak_positions_are_the_peaks_peak_counts_counts():
    rng = np.random.default_rng(0)
    heat = rng.normal(-3.0, 2.0, (3, 40, 40)).astype(np.float32)
    types = rng.normal(0.0, 1.0, (3, 40, 40, 2)).astype(np.float32)
    image, y, x, kind, score = peak_positions(heat, types, min_distance_px=2.4, threshold=0.3)
    counts = peak_counts(heat, types, min_distance_px=2.4, threshold=0.3)
    assert counts.sum() == len(image) > 0
    assert np.array_equal(np.bincount(image * 2 + kind, minlength=6).reshape(3, 2), counts)
    # each one is the largest logit of its (2r+1)-square (r = 2) and above logit(0.3)
    for i, yy, xx in zip(image, y, x):
        window = heat[i, max(0, yy - 2):yy + 3, max(0, xx - 2):xx + 3]
        assert heat[i, yy, xx] == window.max() and heat[i, yy, xx] >= np.log(0.3 / 0.7) - 1e-6
    assert np.allclose(score, 1 / (1 + np.exp(-heat[image, y, x].astype(np.float64))), atol=1e-6)
    assert np.array_equal(kind, types[image, y, x].argmax(axis=-1))


@pytest.mark.parametrize("min_distance_px", [0.4, 2.4, 5.0])
def test_peak_positions_find_every_local_maximum_scipy_finds(min_distance_px):
    """All of them, at the border and on plateaus too (the filter is OpenCV's; scipy's is the reference)."""
    from scipy.ndimage import maximum_filter

    rng = np.random.default_rng(1)
    heat = np.round(rng.normal(-1.0, 2.0, (4, 37, 53)), 1).astype(np.float32)  # rounded: ties and plateaus
    heat[0, 0, 0] = heat[1, -1, -1] = heat[2, 0, -1] = 20.0  # peaks in corners
    heat[3, 10:14, 20:24] = 20.0  # a plateau: every pixel of it is a maximum of its square
    types = rng.normal(0.0, 1.0, (4, 37, 53, 3)).astype(np.float32)
    radius = max(1, round(min_distance_px))
    local = maximum_filter(heat, size=(1, 2 * radius + 1, 2 * radius + 1), mode="constant", cval=-np.inf)
    expected = np.nonzero((heat == local) & (heat >= np.float32(np.log(0.2 / 0.8))))
    image, y, x, _, _ = peak_positions(heat, types, min_distance_px=min_distance_px, threshold=0.2)
    assert [image.tolist(), y.tolist(), x.tolist()] == [e.tolist() for e in expected]
    assert {(0, 0, 0), (1, 36, 52), (2, 0, 52)} <= set(zip(image.tolist(), y.tolist(), x.tolist()))


def test_no_peak_gives_empty_arrays():
    image, y, x, kind, score = peak_positions(np.full((2, 8, 8), -9.0, np.float32), np.zeros((2, 8, 8, 3), np.float32),
                                              min_distance_px=1, threshold=0.5)
    assert len(image) == len(y) == len(x) == len(kind) == len(score) == 0
    assert peak_counts(np.full((2, 8, 8), -9.0, np.float32), np.zeros((2, 8, 8, 3), np.float32), min_distance_px=1,
                       threshold=0.5).shape == (2, 3)


@pytest.mark.filterwarnings("ignore:.*head is untrained")
@pytest.mark.parametrize("framework", ["torch", "tf"])
def test_parts_then_head_equal_the_whole_graph(parts, framework):
    from slidescope.merge.merging import merge_models

    tissue, cell = parts.need(("tissue", framework), ("cell", framework))
    model, _ = merge_models(tissue["dir"], cell["dir"], target=framework)
    rng = np.random.default_rng(3)
    size = model.card.tissue.input.size
    coarse = rng.integers(0, 256, (3, size, size, 3), dtype=np.uint8)
    fine = rng.integers(0, 256, (5, model.card.cell.input.size, model.card.cell.input.size, 3), dtype=np.uint8)
    parents = np.array([0, 0, 2, 2, 2])
    whole = model.predict(coarse, fine, parents)
    part = model.backend.part_outputs(coarse=coarse, fine=fine)
    gate = part["tissue_probs"][:, model.card.tissue.class_names.index(model.card.tissue.cascade_class)]
    cells = cell_features(part["cell_counts"], parents, len(coarse))
    head = model.backend.head_outputs(part["embedding"], cells, gate)
    assert np.allclose(head["slide_probs"], whole["slide_probs"], atol=1e-6)
    assert np.allclose(head["attention"], whole["attention"], atol=1e-6)
    logits = model.backend.cell_logits(fine)
    card = model.card.cell
    per_px = card.input.mpp * card.scale().read_size / logits["heatmap"].shape[1]
    counts = peak_counts(logits["heatmap"], logits["types"], min_distance_px=card.thresholds["min_distance_um"] / per_px,
                         threshold=card.thresholds["nucleus_score"])
    assert np.array_equal(counts, whole["cell_counts"])
