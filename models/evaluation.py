"""How good a model is on slides: tile-level ROC AUC and accuracy (tissue), nucleus F1 and type accuracy (cell).

The same arithmetic validates every training epoch (:func:`evaluate`) and measures shipped models
on slides never seen in training (:func:`evaluate_slides`). Nuclei count as found when a detection
lies within 3 µm of a true centre, matched one to one (:func:`~slidescope.models.metrics.match_points`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .batches import BatchMaker
from .loaders import Loader
from .metrics import DetectionCounts, roc_auc
from .model import Model

__all__ = ["evaluate", "evaluate_slides", "MATCH_RADIUS_UM", "SCORE_GRID"]

#: A detection within this distance of a true nucleus centre finds it.
MATCH_RADIUS_UM = 3.0
#: The nucleus scores tried when validation chooses a cell model's threshold.
SCORE_GRID = tuple(round(0.05 * k, 2) for k in range(2, 19))


def evaluate(model: Model, maker: BatchMaker, loader: Loader, *, choose_threshold: bool = False) -> dict[str, float]:
    """Metrics of ``model`` on every tile of ``maker`` (unaugmented, whole tiles).

    Tissue: ``val_loss`` (cross-entropy), ``val_accuracy``, ``val_auc`` (the cascade class against
    the rest, over every tile); cell: ``val_f1``, ``val_precision``, ``val_recall``,
    ``val_type_accuracy`` (among found nuclei) at the card's ``nucleus_score``, or, with
    ``choose_threshold``, at the score of :data:`SCORE_GRID` with the best F1 (the lower on a tie),
    returned as ``val_nucleus_score``.
    """
    card = model.card
    if card.task == "tissue":
        probs, labels = [], []
        for batch in loader.batches(maker.validation_keys()):
            probs.append(model.predict(batch["images"])["probs"])
            labels.append(batch["labels"])
        p, y = np.concatenate(probs), np.concatenate(labels)
        cascade = card.class_names.index(card.cascade_class)
        loss = float(-np.mean(np.log(np.clip(p[np.arange(len(y)), y], 1e-7, 1.0))))
        return {"val_loss": loss, "val_accuracy": float((p.argmax(axis=1) == y).mean()),
                "val_auc": roc_auc(p[:, cascade], y == cascade)}
    scores = SCORE_GRID if choose_threshold else (float(card.thresholds["nucleus_score"]),)
    if choose_threshold:  # peaks at the lowest score, then each threshold keeps those at or above it
        model = Model(card.replace(thresholds={**card.thresholds, "nucleus_score": min(scores)}), model.backend)
    counts = {score: DetectionCounts() for score in scores}
    radius = MATCH_RADIUS_UM / card.input.mpp
    names = {name: k for k, name in enumerate(card.class_names)}
    offset = 0
    for batch in loader.batches(maker.validation_keys()):
        found = model.detect(batch["images"])
        for i in range(len(batch["images"])):
            truth, kinds = maker.tile_points(maker.tiles.iloc[offset + i])
            inside = (truth >= -0.5).all(axis=1) & (truth < maker.size - 0.5).all(axis=1)
            mine = found[found.image == i]
            for score, tally in counts.items():
                kept = mine[mine.score >= score]
                tally.add(kept[["x", "y"]].to_numpy(np.float64), kept.type.map(names).to_numpy(),
                          truth[inside], kinds[inside], radius)
        offset += len(batch["images"])
    best = max(scores, key=lambda score: (np.nan_to_num(counts[score].f1, nan=-1.0), -score))
    chosen = counts[best]
    metrics = {"val_f1": chosen.f1, "val_precision": chosen.precision, "val_recall": chosen.recall,
               "val_type_accuracy": chosen.type_accuracy}
    return {**metrics, "val_nucleus_score": best} if choose_threshold else metrics


def evaluate_slides(model: Model, slides: Sequence[str], *, max_tiles: int = 400, seed: int = 0,
                    tissue_only: bool = True, workers: int = 0) -> dict[str, Any]:
    """Metrics of ``model`` on generated ``slides`` (their ground truth), at most ``max_tiles`` tiles.

    A tissue model is judged on tissue tiles (stroma against tumour) when ``tissue_only``: glass is
    trivially "not tumour" and would flatter the AUC. Returns the metrics (without the ``val_``
    prefix) and the tile count.
    """
    from .training_data import build_training_set

    data = build_training_set(model.card, [], val_slides=list(slides), seed=seed, allow_no_training=True)
    tiles = data.split("val")[["slide", "read_x", "read_y", "read_w", "read_h", "label"]]
    if model.task == "tissue" and tissue_only:
        tiles = tiles[tiles.label != model.card.class_names.index("background")] \
            if "background" in model.card.class_names else tiles
    if len(tiles) > max_tiles:
        chosen = np.random.default_rng([seed, 0xE7A1]).choice(len(tiles), max_tiles, replace=False)
        tiles = tiles.iloc[np.sort(chosen)]
    card = model.card
    maker = BatchMaker(model.task, tiles.reset_index(drop=True), card.input.mpp, card.input.size, 16, seed,
                       nuclei=data.nuclei, sigma=1.0 / card.input.mpp, radius=3.0 / card.input.mpp)
    with Loader(maker, model.framework, workers) as loader:
        metrics = evaluate(model, maker, loader)
    return {"tiles": len(tiles), **{key.removeprefix("val_"): value for key, value in metrics.items()}}
