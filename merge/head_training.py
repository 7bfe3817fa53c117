"""``train_head``: the slide head trained on slide labels, the tissue and cell parts frozen.

For each slide: its tissue mask, a two-scale plan (the tissue part's coarse tiles, the cell part's
fine tiles nested in them), the tissue part over every coarse tile, and the cell part over the fine
tiles of the coarse tiles the tissue part flags (its card's cascade class at or above its
``cascade_probability``: the cascade the batch workflow runs), giving per coarse tile its
embedding, its cell features (``log1p`` of its children's nuclei counts) and its gate. These are
computed once; the head (a few thousand weights) then trains on them with AdamW, one slide a step,
cross-entropy on the slide label. The head is trained in torch whatever the graph's framework
(torch is a dependency of ``make install``) and copied into the graph; the best epoch by validation
loss is kept.

Labels come from generated slides (``tumour`` when the ground truth has a tumour region, else
``normal``) or from a CSV of ``slide,label`` rows.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from slidescope.wsi.errors import ParameterError

from .head import cell_features
from .merged import SlideModel

__all__ = ["SlideFeatures", "slide_features", "read_labels", "check_head_slides", "train_head", "HeadTrainingError"]


class HeadTrainingError(ParameterError):
    """Labels that are missing, unknown or of one class only; slides without tissue."""


@dataclass
class SlideFeatures:
    """What the frozen parts give one slide: per coarse tile, its embedding, cell features and gate."""

    path: str
    embedding: np.ndarray
    cells: np.ndarray
    gate: np.ndarray
    fine_tiles: int


def slide_features(model: SlideModel, path: Any, *, min_tissue: float = 0.25, mask_mpp: float = 8.0,
                   slide_mpp: float | None = None, cascade: bool = True) -> SlideFeatures:
    """The frozen parts over one slide (see the module docstring).

    Raises
    ------
    HeadTrainingError
        No tile with tissue.
    SlideError
        A slide that cannot be opened or read.
    """
    from slidescope.tiling import plan_tiles, tissue_mask
    from slidescope.wsi import open_slide

    card = model.card
    tissue_scale, cell_scale = card.tissue.scale(), card.cell.scale()
    with open_slide(path, mpp=slide_mpp) as slide:
        plan = plan_tiles(slide, tissue_mask(slide, mpp=mask_mpp), [tissue_scale, cell_scale], min_tissue=min_tissue)
        coarse_rows = plan.tiles("tissue")
        if not len(coarse_rows):
            raise HeadTrainingError(f"{path}: no tile has tissue (min_tissue {min_tissue}); the slide cannot be "
                                    f"labelled by its tiles")
        size = tissue_scale.read_size
        coarse = slide.read_tiles(plan.read_boxes(coarse_rows, "tissue")[:, :2], (size, size), mpp=tissue_scale.mpp)
        tissue = model.backend.part_outputs(coarse=coarse)
        gate_index = card.tissue.class_names.index(card.tissue.cascade_class)
        gate = tissue["tissue_probs"][:, gate_index]
        ids = coarse_rows.tile_id.to_numpy()
        flagged = ids[gate >= float(card.tissue.thresholds["cascade_probability"])] if cascade else ids
        fine_rows = plan.children(flagged)
        fine_rows = fine_rows[fine_rows.scale == plan.scale_index("cell")]
        counts = np.zeros((0, len(card.cell.classes)), np.float32)
        if len(fine_rows):
            size = cell_scale.read_size
            fine = slide.read_tiles(plan.read_boxes(fine_rows, "cell")[:, :2], (size, size), mpp=cell_scale.mpp)
            counts = model.backend.part_outputs(fine=fine)["cell_counts"]
        row_of = {int(tile): row for row, tile in enumerate(ids)}
        parents = np.array([row_of[int(p)] for p in fine_rows.parent_id], np.int64)
        return SlideFeatures(str(path), tissue["embedding"], cell_features(counts, parents, len(ids)), gate,
                             len(fine_rows))


def check_head_slides(slides: Sequence[Any], val_slides: Sequence[Any]) -> None:
    """Refuse fewer than two training slides, and a slide that is both a training and a validation slide."""
    if len(slides) < 2:
        raise HeadTrainingError(f"slides: expected at least two training slides, got {len(slides)}")
    train = {os.path.realpath(os.fspath(p)) for p in slides}
    both = sorted(os.fspath(p) for p in val_slides if os.path.realpath(os.fspath(p)) in train)
    if both:
        raise HeadTrainingError(f"val_slides: {', '.join(both)} {'is' if len(both) == 1 else 'are'} also a training "
                                f"slide; validation slides must be slides the head never trains on")


def read_labels(path: Any, classes: Sequence[str]) -> dict[str, str]:
    """``slide -> label`` from a CSV with the columns ``slide,label``; a slide is named by its path,
    its file name (``s1.svs``) or its stem (``s1``).

    Raises
    ------
    HeadTrainingError
        A missing column, an empty slide field, a label not among ``classes``, a slide twice.
    """
    labels: dict[str, str] = {}
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            if reader.fieldnames is None:
                raise HeadTrainingError(f"{path}: an empty file; expected a CSV with the columns slide,label")
            if not {"slide", "label"} <= set(reader.fieldnames):
                raise HeadTrainingError(f"{path}: expected the columns slide,label; got {reader.fieldnames}")
            for line, row in enumerate(reader, start=2):
                slide, label = (row.get("slide") or "").strip(), (row.get("label") or "").strip()
                if not slide:
                    raise HeadTrainingError(f"{path}: line {line}: the slide field is empty")
                if label not in classes:
                    raise HeadTrainingError(f"{path}: line {line}: label {label!r} is not a slide class; expected one "
                                            f"of {', '.join(classes)}")
                if slide in labels:
                    raise HeadTrainingError(f"{path}: line {line}: slide {slide!r} is labelled twice")
                labels[slide] = label
    except OSError as exc:
        raise HeadTrainingError(f"{path}: cannot read the labels: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise HeadTrainingError(f"{path}: not a UTF-8 text file; expected a CSV of slide,label") from None
    return labels


def _label_of(path: str, labels: dict[str, str] | None, classes: Sequence[str], source: Any = None) -> int:
    if labels is not None:
        name = os.path.basename(path)
        for key in (path, os.path.realpath(path), name, os.path.splitext(name)[0]):
            if key in labels:
                return classes.index(labels[key])
        raise HeadTrainingError(f"{source}: no label for the slide {path} (a row names it by its path, its file name "
                                f"{name!r} or its stem {os.path.splitext(name)[0]!r})")
    from slidescope.wsi.synthetic import load_truth

    truth = load_truth(path)  # a generated slide: tumour when its ground truth has a tumour region
    name = "tumour" if truth.tumour_mask.any() else "normal"
    if name not in classes:
        raise HeadTrainingError(f"{path}: a generated slide is labelled {name!r}, which is not a slide class "
                                f"({', '.join(classes)}); give --labels")
    return classes.index(name)


def train_head(model: SlideModel, slides: Sequence[Any], *, val_slides: Sequence[Any] = (), labels: Any = None,
               epochs: int = 60, lr: float = 3e-3, weight_decay: float = 1e-4, seed: int = 0,
               min_tissue: float = 0.25, progress: Any = None) -> dict[str, Any]:
    """Train ``model``'s head in place (see the module docstring); returns the training record.

    Raises
    ------
    HeadTrainingError
        Fewer than two training slides, one class only, missing or unknown labels.
    """
    import torch

    from ._torch.graph import SlideHead

    classes = list(model.card.head.classes)
    table = read_labels(labels, classes) if labels is not None else None
    check_head_slides(slides, val_slides)
    wanted = {role: [(path, _label_of(os.fspath(path), table, classes, labels)) for path in paths]
              for role, paths in (("train", slides), ("val", val_slides))}  # every label before any slide is read
    data = {}
    for role, labelled in wanted.items():
        data[role] = []
        for path, label in labelled:
            features = slide_features(model, path, min_tissue=min_tissue)
            data[role].append((features, label))
            if progress is not None:
                progress(f"{role} slide {os.path.basename(os.fspath(path))}: {len(features.gate)} coarse tiles, "
                         f"{features.fine_tiles} fine tiles, label {classes[label]}")
    warnings = []
    if not any(features.fine_tiles for features, _ in data["train"]):
        warnings.append("no coarse tile of any training slide was flagged by the tissue part, so the cell part "
                        "read no fine tile: the head trained without cell features")
        if progress is not None:
            progress(f"warning: {warnings[-1]}")
    present = {label for _, label in data["train"]}
    if len(present) < 2:
        raise HeadTrainingError(f"slides: every training slide is {classes[present.pop()]!r}; the head needs slides "
                                f"of at least two classes")
    torch.manual_seed(seed)
    head = SlideHead(model.card.head, seed=seed)
    optimizer = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)

    def loss_of(features: SlideFeatures, label: int) -> torch.Tensor:
        probs, _ = head(torch.from_numpy(features.embedding), torch.from_numpy(features.cells),
                        torch.from_numpy(features.gate))
        return -torch.log(probs[label].clamp(min=1e-7))

    rng = np.random.default_rng(seed)
    history, best, best_state = [], (math.inf, -1), None
    for epoch in range(1, epochs + 1):
        head.train()
        losses = []
        for index in rng.permutation(len(data["train"])):
            optimizer.zero_grad()
            loss = loss_of(*data["train"][index])
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
        head.eval()
        row = {"epoch": epoch, "train_loss": float(np.mean(losses))}
        with torch.no_grad():
            judged = data["val"] or data["train"]
            scores = [float(loss_of(f, y)) for f, y in judged]
            right = [int(head(torch.from_numpy(f.embedding), torch.from_numpy(f.cells),
                              torch.from_numpy(f.gate))[0].argmax()) == y for f, y in judged]
        row["val_loss" if data["val"] else "fit_loss"] = float(np.mean(scores))
        row["val_accuracy" if data["val"] else "fit_accuracy"] = float(np.mean(right))
        history.append(row)
        if float(np.mean(scores)) < best[0]:
            best = (float(np.mean(scores)), epoch)
            best_state = {k: v.detach().clone().numpy() for k, v in head.state_dict().items()}
    model.backend.set_head(best_state)
    record = {"slides": [os.path.realpath(os.fspath(p)) for p in slides],
              "val_slides": [os.path.realpath(os.fspath(p)) for p in val_slides],
              "labels": os.path.realpath(os.fspath(labels)) if labels is not None else "generated slides' ground truth",
              "epochs": epochs, "lr": lr, "weight_decay": weight_decay, "seed": seed, "best_epoch": best[1],
              "history": history, "warnings": warnings}
    model.card = model.card.replace(head_trained=True, training={**model.card.training, "head": record})
    return record
