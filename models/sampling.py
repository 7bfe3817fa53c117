"""Which tiles each training batch holds: class-balanced, seeded by ``(seed, epoch)``.

A batch plan is a pure function of the labels, the batch size, the seed and the epoch, so the
loader's worker processes compute it themselves from a small key ``(epoch, batch)``, and a resumed
run draws exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

__all__ = ["epoch_batches", "batches_per_epoch", "validation_batches", "class_weights"]


def class_weights(labels: np.ndarray) -> np.ndarray:
    """Per-tile sampling probabilities that give every class present the same share."""
    labels = np.asarray(labels)
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    weights = 1.0 / (len(classes) * counts[inverse].astype(np.float64))
    return weights / weights.sum()


def batches_per_epoch(count: int, batch_size: int, steps: int | None = None) -> int:
    """Full batches an epoch of ``count`` tiles makes (at least one), or ``steps`` when given."""
    return steps if steps is not None else max(1, count // batch_size)


def epoch_batches(labels: np.ndarray, batch_size: int, epoch: int, seed: int, *, balanced: bool = True,
                  steps: int | None = None) -> np.ndarray:
    """``(batches, batch_size)`` tile indices of one epoch.

    Balanced: each batch is drawn with replacement so that every class has the same expected
    share (rare classes repeat, common ones are subsampled); otherwise a shuffle without
    replacement (cycled when ``steps`` asks for more). Only full batches, so the framework sees one
    batch shape.
    """
    return _cached_batches(np.asarray(labels).tobytes(), str(np.asarray(labels).dtype), batch_size, epoch, seed,
                           balanced, steps).copy()


@lru_cache(maxsize=8)
def _cached_batches(labels_bytes: bytes, dtype: str, batch_size: int, epoch: int, seed: int, balanced: bool,
                    steps: int | None) -> np.ndarray:
    labels = np.frombuffer(labels_bytes, dtype=dtype)
    count = batches_per_epoch(len(labels), batch_size, steps)
    rng = np.random.default_rng([seed, epoch, 0x5A11])
    if balanced:
        order = rng.choice(len(labels), size=count * batch_size, replace=True, p=class_weights(labels))
    else:
        repeats = -(-count * batch_size // len(labels))
        order = np.concatenate([rng.permutation(len(labels)) for _ in range(repeats)])[: count * batch_size]
    return order.reshape(count, batch_size)


def validation_batches(count: int, batch_size: int) -> list[np.ndarray]:
    """Every validation tile once, in order, in batches (the last may be short)."""
    return [np.arange(start, min(count, start + batch_size)) for start in range(0, count, batch_size)]
