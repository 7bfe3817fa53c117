"""Framework-free arithmetic on raw model outputs: softmax, sigmoid, class activation maps.

Class activation maps ("classify first, then show where"): the tissue model ends with global
average pooling and one dense layer, so its logit for class ``k`` is
``mean_{i,j}(features[i, j] @ W[k]) + b[k]``. The map ``cam[i, j, k] = features[i, j] @ W[k]`` is
therefore exact, not an approximation: its mean plus the class bias is the class logit.
"""

from __future__ import annotations

import numpy as np

__all__ = ["softmax", "sigmoid", "class_activation_maps", "logits_from_cams"]


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax along ``axis``, float32."""
    shifted = logits - np.max(logits, axis=axis, keepdims=True)
    np.exp(shifted, out=shifted)
    shifted /= np.sum(shifted, axis=axis, keepdims=True)
    return shifted.astype(np.float32, copy=False)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Logistic function, float32, without overflow warnings for large negative logits."""
    values = np.asarray(logits, dtype=np.float32)
    return (0.5 * (1.0 + np.tanh(0.5 * values))).astype(np.float32, copy=False)


def class_activation_maps(features: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``(N, h, w, K)`` maps from ``(N, h, w, C)`` last-block features and ``(K, C)`` classifier weights.

    Computed in float64 and returned as float32, so the identity of :func:`logits_from_cams`
    holds to float32 precision.
    """
    return np.einsum("nhwc,kc->nhwk", features.astype(np.float64), weights.astype(np.float64)).astype(np.float32)


def logits_from_cams(cams: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """The logits the maps stand for: their spatial mean plus the class bias, ``(N, K)``."""
    return (cams.astype(np.float64).mean(axis=(1, 2)) + bias.astype(np.float64)).astype(np.float32)
