"""Validation metrics, framework-free: ROC AUC, accuracy, nucleus detection F1 with one-to-one matching."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.stats import rankdata

__all__ = ["roc_auc", "DetectionCounts", "match_points"]


def roc_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve (the Mann-Whitney U statistic, ties counted half); NaN without both classes."""
    scores, positive = np.asarray(scores, np.float64), np.asarray(positive, bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def match_points(predicted: np.ndarray, truth: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one matches within ``radius`` that maximise their number, then minimise total distance.

    Returns the matched indices ``(into predicted, into truth)``. The assignment is the Hungarian
    algorithm on the distance matrix, with pairs farther than ``radius`` made prohibitively costly.
    """
    if len(predicted) == 0 or len(truth) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    distance = np.hypot(predicted[:, None, 0] - truth[None, :, 0], predicted[:, None, 1] - truth[None, :, 1])
    cost = np.where(distance <= radius, distance, 1e6 + distance)
    rows, cols = linear_sum_assignment(cost)
    keep = distance[rows, cols] <= radius
    return rows[keep].astype(np.int64), cols[keep].astype(np.int64)


@dataclass
class DetectionCounts:
    """Running totals of nucleus detection: matches, misses and false alarms, and types right among matches."""

    true_positives: int = 0
    false_positives: int = 0
    false_negatives: int = 0
    types_correct: int = 0

    def add(self, predicted: np.ndarray, predicted_types: np.ndarray, truth: np.ndarray, truth_types: np.ndarray,
            radius: float) -> None:
        rows, cols = match_points(predicted, truth, radius)
        self.true_positives += len(rows)
        self.false_positives += len(predicted) - len(rows)
        self.false_negatives += len(truth) - len(cols)
        self.types_correct += int((np.asarray(predicted_types)[rows] == np.asarray(truth_types)[cols]).sum())

    @property
    def precision(self) -> float:
        found = self.true_positives + self.false_positives
        return self.true_positives / found if found else float("nan")

    @property
    def recall(self) -> float:
        real = self.true_positives + self.false_negatives
        return self.true_positives / real if real else float("nan")

    @property
    def f1(self) -> float:
        total = 2 * self.true_positives + self.false_positives + self.false_negatives
        return 2 * self.true_positives / total if total else float("nan")

    @property
    def type_accuracy(self) -> float:
        return self.types_correct / self.true_positives if self.true_positives else float("nan")
