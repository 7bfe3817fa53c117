"""The slide head and the merged graph, described once and framework-free: names, shapes, arithmetic.

The merged graph (``SlideGraph`` in torch and in Keras) takes one slide's tiles and returns its
slide-level prediction:

1. the **tissue** part (a tissue model) classifies the coarse tiles: ``tissue_probs`` ``(Nc, K)``
   and the pooled last features, the tile's ``embedding`` ``(Nc, C)``;
2. the **cell** part (a cell model) finds the nuclei of the fine tiles: their counts by type
   ``(Nf, T)`` (heatmap peaks, as :func:`peak_counts`); each fine tile names its coarse parent,
   and a coarse tile's cell features are ``log1p`` of its children's summed counts ``(Nc, T)``;
3. the **head** joins them: ``h = relu(project([embedding, cell features]))``, attention scores
   ``w . tanh(V h) + log(max(p_gate, 1e-6))`` gated by the tissue model's probability of the
   cascade class (tumour), attention ``a = softmax`` over the slide's tiles, and the slide's class
   probabilities ``softmax(classifier(sum a h))``.

Names: ``tissue/...``, ``cell/...``, ``head/...`` (``tissue.``, ``cell.``, ``head.`` in torch); the
head's layers are ``project``, ``attention_v``, ``attention_w`` and ``classifier`` (dense).
:func:`head_forward` is the numpy reference both frameworks are tested against.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from slidescope.wsi.errors import ParameterError

__all__ = ["HeadSpec", "HEAD_LAYERS", "GATE_FLOOR", "head_shapes", "head_forward", "peak_counts", "peak_positions", "cell_features",
           "PARTS", "member_scopes"]

#: The parts of the merged graph, in order.
PARTS = ("tissue", "cell", "head")
def member_scopes(role: str, count: int) -> list[str]:
    """The scopes of a part's members: ``[role]`` for one model, ``role_0, role_1...`` for an ensemble,
    whose members' tissue probabilities, logits and embeddings (cell: heatmap and type logits) the
    graph averages."""
    return [role] if count == 1 else [f"{role}_{i}" for i in range(count)]


#: The smallest gate probability (its log keeps a tile the tissue model rules out from weighing in).
GATE_FLOOR = 1e-6


@dataclass(frozen=True)
class HeadSpec:
    """The slide head's configuration (the merged card's ``head`` section).

    Attributes
    ----------
    embedding : int
        Width of the tissue model's embedding (its last block's channels).
    cell_types : int
        Number of nucleus types of the cell model.
    classes : tuple of str
        The slide classes (``("normal", "tumour")`` by default).
    hidden, attention : int
        Widths of the projected tile features and of the attention layer.
    """

    embedding: int
    cell_types: int
    classes: tuple[str, ...] = ("normal", "tumour")
    hidden: int = 32
    attention: int = 16

    def __post_init__(self) -> None:
        for key in ("embedding", "cell_types", "hidden", "attention"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ParameterError(f"head {key}: expected a positive integer, got {value!r}")
        if len(self.classes) < 2 or len(set(self.classes)) != len(self.classes):
            raise ParameterError(f"head classes: expected at least two distinct names, got {list(self.classes)}")

    @property
    def inputs(self) -> int:
        return self.embedding + self.cell_types

    def to_dict(self) -> dict[str, Any]:
        return {"embedding": self.embedding, "cell_types": self.cell_types, "classes": list(self.classes),
                "hidden": self.hidden, "attention": self.attention}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "HeadSpec":
        try:
            return cls(int(data["embedding"]), int(data["cell_types"]), tuple(str(c) for c in data["classes"]),
                       int(data["hidden"]), int(data["attention"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ParameterError(f"head: expected embedding, cell_types, classes, hidden and attention, got {data!r} "
                                 f"({exc})") from None


#: The head's dense layers: name -> (input width, output width) as functions of the spec.
HEAD_LAYERS = {
    "project": lambda s: (s.inputs, s.hidden),
    "attention_v": lambda s: (s.hidden, s.attention),
    "attention_w": lambda s: (s.attention, 1),
    "classifier": lambda s: (s.hidden, len(s.classes)),
}


def head_shapes(spec: HeadSpec, framework: str) -> dict[str, tuple[int, ...]]:
    """The head's tensors in ``framework``'s names and layouts (without the ``head`` scope)."""
    shapes: dict[str, tuple[int, ...]] = {}
    for name, widths in HEAD_LAYERS.items():
        n_in, n_out = widths(spec)
        if framework == "torch":
            shapes[f"{name}.weight"], shapes[f"{name}.bias"] = (n_out, n_in), (n_out,)
        else:
            shapes[f"{name}/kernel"], shapes[f"{name}/bias"] = (n_in, n_out), (n_out,)
    return shapes


def _softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    shifted = x - x.max(axis=axis, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=axis, keepdims=True)


def head_forward(weights: dict[str, np.ndarray], embedding: np.ndarray, cells: np.ndarray,
                 gate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The head in numpy (torch names and layouts): slide probabilities ``(K,)`` and attention ``(N,)``."""
    x = np.concatenate([embedding, cells], axis=1).astype(np.float64)

    def dense(name: str, v: np.ndarray) -> np.ndarray:
        return v @ weights[f"{name}.weight"].astype(np.float64).T + weights[f"{name}.bias"]

    h = np.maximum(dense("project", x), 0.0)
    scores = dense("attention_w", np.tanh(dense("attention_v", h)))[:, 0] + np.log(np.maximum(gate, GATE_FLOOR))
    attention = _softmax(scores)
    pooled = (attention[:, None] * h).sum(axis=0)
    return _softmax(dense("classifier", pooled[None])[0]), attention


def peak_counts(heatmap_logits: np.ndarray, type_logits: np.ndarray, *, min_distance_px: float,
                threshold: float) -> np.ndarray:
    """Nuclei per image by type, as the merged graph counts them: ``(N, T)`` int64.

    A nucleus is a pixel whose heatmap logit is the largest of the ``(2r + 1)``-square around it
    (``r = max(1, round(min_distance_px))``, the Chebyshev neighbourhood of
    :func:`slidescope.models.peaks.find_peaks`) and at least ``logit(threshold)``; its type is the
    largest type logit there. Logits, not probabilities, are compared: a saturated sigmoid would
    turn a sharp peak into a plateau of 1.0.
    """
    image, _, _, kind, _ = peak_positions(heatmap_logits, type_logits, min_distance_px=min_distance_px,
                                          threshold=threshold)
    types = np.asarray(type_logits).shape[-1]
    flat = np.bincount(image * types + kind, minlength=len(heatmap_logits) * types)
    return flat.reshape(len(heatmap_logits), types).astype(np.int64)


def peak_positions(heatmap_logits: np.ndarray, type_logits: np.ndarray, *, min_distance_px: float,
                   threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The nuclei :func:`peak_counts` counts, one by one: ``(image, y, x, type, score)`` arrays.

    ``image``, ``y``, ``x`` and ``type`` are int64 (pixel row and column in the image, the type's
    index), ``score`` float32 is the heatmap probability there (the sigmoid of the logit). Rows are
    in image order, then row-major within an image.
    """
    import cv2

    radius = max(1, int(round(min_distance_px)))
    logits = np.ascontiguousarray(heatmap_logits, np.float32)
    types = np.asarray(type_logits, np.float32)
    floor = _logit(threshold)
    # the maximum of each (2r + 1)-square, nothing outside the image (dilate's default border): the same
    # as scipy's maximum_filter with cval=-inf, about 8x faster (a test compares them)
    square = np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)
    local = np.empty_like(logits)
    for index, image_logits in enumerate(logits):
        cv2.dilate(image_logits, square, dst=local[index])
    image, y, x = np.nonzero((logits == local) & (logits >= floor))
    kind = types[image, y, x].argmax(axis=-1).astype(np.int64)
    score = (1.0 / (1.0 + np.exp(-logits[image, y, x].astype(np.float64)))).astype(np.float32)
    return image.astype(np.int64), y.astype(np.int64), x.astype(np.int64), kind, score


def _logit(p: float) -> float:
    if p <= 0.0:
        return -math.inf
    if p >= 1.0:
        return math.inf
    return float(np.float32(math.log(p / (1.0 - p))))


def cell_features(counts: np.ndarray, parents: np.ndarray, coarse_tiles: int,
                  valid: Sequence[float] | np.ndarray | None = None) -> np.ndarray:
    """``log1p`` of the nuclei counts of each coarse tile's fine children: ``(coarse_tiles, T)`` float32."""
    counts = np.asarray(counts, np.float64)
    if valid is not None:
        counts = counts * np.asarray(valid, np.float64)[:, None]
    pooled = np.zeros((coarse_tiles, counts.shape[1]), np.float64)
    np.add.at(pooled, np.asarray(parents, np.int64), counts)
    return np.log1p(pooled).astype(np.float32)
