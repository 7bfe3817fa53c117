"""The tiles a model trains on, their labels, and the split by slide.

Labels come from one of two sources:

- **generated slides** (:func:`slidescope.wsi.synthetic.make_slide`): their exact ground truth.
  Tissue model: every tile of the grid at the card's scale, labelled by the region covering most
  of it (``background``: no tissue, ``stroma``: tissue outside tumour, ``tumour``). Cell model:
  the tissue tiles and every nucleus centre with its type (the generator's ``lymphocyte`` counts
  as ``normal`` when the model has no such type).
- **QuPath GeoJSON** (one ``<slide stem>.geojson`` per slide in an annotations folder): tissue
  model: tissue tiles labelled by the annotated class covering most of them (tiles in no
  annotation are left out unless ``unlabelled_as`` names a class); cell model: points and the
  centroids of detections, over the tiles whose centre lies inside an annotated region (the
  area someone annotated exhaustively) or, when the file has no regions, the tiles holding at
  least one point.

Slides are split into training and validation slides, never tiles: a slide's tiles are all on one
side (a tile and its neighbour share cells and stain, so a tile split would flatter the metrics).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .card import ModelCard
from .errors import ModelError

__all__ = ["TrainingSet", "TrainingDataError", "build_training_set", "split_slides", "GENERATED_REGIONS"]

#: The region classes generated slides label tissue tiles with.
GENERATED_REGIONS = ("background", "stroma", "tumour")


class TrainingDataError(ModelError):
    """Training data that cannot serve: no labelled tile, a class the model lacks, a slide in both splits."""


@dataclass
class TrainingSet:
    """Tiles and labels of every slide, each slide in one split.

    Attributes
    ----------
    task : str
    classes : tuple of str
        The model's classes (tissue) or nucleus types (cell); labels index them.
    tiles : pandas.DataFrame
        ``slide, split, read_x, read_y, read_w, read_h, label`` (see :class:`~slidescope.models.batches.BatchMaker`).
    nuclei : dict
        Cell model: slide -> ``(xy, type)`` arrays in level-0 pixels.
    slide_mpp : dict
        Slides opened with an explicit mpp (``--slide-mpp``).
    """

    task: str
    classes: tuple[str, ...]
    tiles: pd.DataFrame
    nuclei: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    slide_mpp: dict[str, float] = field(default_factory=dict)

    def split(self, name: str) -> pd.DataFrame:
        return self.tiles[self.tiles.split == name].reset_index(drop=True)

    def summary(self) -> dict[str, Any]:
        """What the card records of the data: slides and tiles per split, tiles and nuclei per class."""
        out: dict[str, Any] = {}
        for name in ("train", "val"):
            rows = self.split(name)
            slides = sorted(rows.slide.unique())
            entry: dict[str, Any] = {"slides": [os.path.basename(s) for s in slides], "tiles": len(rows),
                                     "tiles_per_class": {c: int((rows.label == k).sum())
                                                         for k, c in enumerate(self.classes)}}
            if self.task == "cell":
                kinds = np.concatenate([self.nuclei[s][1] for s in slides if s in self.nuclei] or [np.zeros(0, int)])
                entry["nuclei_per_type"] = {c: int((kinds == k).sum()) for k, c in enumerate(self.classes)}
            out[name] = entry
        return out


def split_slides(slides: Sequence[str], val_slides: Sequence[str] | None, seed: int,
                 val_fraction: float = 0.2) -> tuple[list[str], list[str]]:
    """Training and validation slides: ``val_slides`` when given, else a seeded fifth of ``slides``
    (at least one when there are two or more; none for a single slide).

    Raises
    ------
    TrainingDataError
        A slide given both as training and as validation slide.
    """
    train = [os.path.realpath(s) for s in slides]
    if val_slides is not None and len(val_slides):
        val = [os.path.realpath(s) for s in val_slides]
        both = sorted(set(train) & set(val))
        if both:
            raise TrainingDataError(f"{both[0]}: given both as a training and as a validation slide; a slide is "
                                    f"in one split only")
        return train, val
    if len(train) < 2:
        return train, []
    count = max(1, round(val_fraction * len(train)))
    chosen = set(np.random.default_rng([seed, 0x5E1]).choice(len(train), size=count, replace=False).tolist())
    return [s for i, s in enumerate(train) if i not in chosen], [s for i, s in enumerate(train) if i in chosen]


def _mask_fractions(mask: np.ndarray, downsample: int, boxes: np.ndarray) -> np.ndarray:
    """Mean of a boolean ground-truth mask over each level-0 box (integral image: exact, fast)."""
    integral = np.pad(mask.astype(np.int64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    h, w = mask.shape
    x0 = np.clip(boxes[:, 0] // downsample, 0, w)
    y0 = np.clip(boxes[:, 1] // downsample, 0, h)
    x1 = np.clip(-(-(boxes[:, 0] + boxes[:, 2]) // downsample), 0, w)
    y1 = np.clip(-(-(boxes[:, 1] + boxes[:, 3]) // downsample), 0, h)
    area = np.maximum((x1 - x0) * (y1 - y0), 1)
    total = integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]
    return total / area


def _generated_type_map(names: Sequence[str], classes: Sequence[str], slide: str) -> np.ndarray:
    """Generator type code -> the model's type index."""
    mapping = []
    for name in names:
        if name in classes:
            mapping.append(list(classes).index(name))
        elif name == "lymphocyte" and "normal" in classes:
            mapping.append(list(classes).index("normal"))
        else:
            raise TrainingDataError(f"{slide}: the generated nucleus type {name!r} is not a type of the model "
                                    f"({', '.join(classes)}); pass --classes with it")
    return np.asarray(mapping, np.int64)


def _slide_tiles(slide: Any, card: ModelCard, plan_with_mask: bool, min_tissue: float) -> pd.DataFrame:
    from slidescope.tiling import plan_tiles, tissue_mask

    mask = tissue_mask(slide) if plan_with_mask else None
    plan = plan_tiles(slide, mask, [card.scale()], min_tissue=min_tissue)
    rows = plan.tiles(card.task).reset_index(drop=True)
    read = plan.read_boxes(rows, card.task)
    frame = rows[["tile_id", "l0_x", "l0_y", "l0_width", "l0_height", "tissue_fraction"]].copy()
    frame[["read_x", "read_y", "read_w", "read_h"]] = read
    return frame


def _generated_labels(path: str, slide: Any, card: ModelCard, min_tissue: float
                      ) -> tuple[pd.DataFrame, tuple[np.ndarray, np.ndarray] | None]:
    from slidescope.wsi.synthetic import load_truth

    truth = load_truth(path)
    if card.task == "tissue":
        if tuple(card.class_names) != GENERATED_REGIONS:
            raise TrainingDataError(f"{path}: generated slides label tiles {', '.join(GENERATED_REGIONS)}; the model's "
                                    f"classes are {', '.join(card.class_names)}; use annotations for other classes")
        tiles = _slide_tiles(slide, card, plan_with_mask=False, min_tissue=0.0)
        boxes = tiles[["l0_x", "l0_y", "l0_width", "l0_height"]].to_numpy(np.int64)
        tissue = _mask_fractions(truth.tissue_mask & ~truth.pen_mask, truth.mask_downsample, boxes)
        tumour = _mask_fractions(truth.tumour_mask & ~truth.pen_mask, truth.mask_downsample, boxes)
        cover = np.column_stack([1.0 - tissue, tissue - tumour, tumour])
        tiles["label"] = cover.argmax(axis=1).astype(np.int64)
        return tiles, None
    tiles = _slide_tiles(slide, card, plan_with_mask=True, min_tissue=min_tissue)
    boxes = tiles[["l0_x", "l0_y", "l0_width", "l0_height"]].to_numpy(np.int64)
    tumour = _mask_fractions(truth.tumour_mask, truth.mask_downsample, boxes)
    tiles["label"] = (tumour >= 0.5).astype(np.int64)  # balance tumour and other tissue tiles
    kinds = _generated_type_map(truth.type_names, card.class_names, path)[truth.nuclei_type.astype(np.int64)]
    return tiles, (truth.nuclei_xy.astype(np.float64), kinds)


def _inside_regions(regions: Sequence[Any], points: np.ndarray) -> np.ndarray:
    """Whether each point lies inside some region (classified or not), holes excluded."""
    from matplotlib.path import Path as Polygon  # a well-kept point-in-polygon test

    inside = np.zeros(len(points), bool)
    for region in regions:
        here = Polygon(region.exterior).contains_points(points)
        for hole in region.holes:
            here &= ~Polygon(hole).contains_points(points)
        inside |= here
    return inside


def _annotated_labels(path: str, geojson: Path, slide: Any, card: ModelCard, min_tissue: float,
                      unlabelled_as: str | None) -> tuple[pd.DataFrame, tuple[np.ndarray, np.ndarray] | None]:
    from .annotations import read_geojson, tile_labels

    from .errors import AnnotationError

    # Region classes are checked by the tile labelling (tissue model), point classes below (cell
    # model): a file may also hold objects of the other kind, with classes this model never sees.
    annotations = read_geojson(geojson)
    tiles = _slide_tiles(slide, card, plan_with_mask=True, min_tissue=min_tissue)
    boxes = tiles[["l0_x", "l0_y", "l0_width", "l0_height"]].to_numpy(np.int64)
    if card.task == "tissue":
        tiles["label"] = tile_labels(annotations, boxes, card.class_names, unlabelled_as=unlabelled_as)
        return tiles[tiles.label >= 0].reset_index(drop=True), None
    points = annotations.points[annotations.points.cls.notna()]  # unclassified points label nothing
    unknown = points[~points.cls.isin(card.class_names)]
    if len(unknown):
        raise AnnotationError(f"{geojson}: feature {int(unknown.feature.iloc[0])}: unknown nucleus class "
                              f"{unknown.cls.iloc[0]!r}; the cell model's types are {', '.join(card.class_names)} "
                              f"(pass --classes with the names used in QuPath)")
    xy = points[["x", "y"]].to_numpy(np.float64)
    kinds = np.array([card.class_names.index(c) for c in points.cls], np.int64)
    centres = boxes[:, :2] + boxes[:, 2:] / 2
    if annotations.regions:
        keep = _inside_regions(annotations.regions, centres)
    else:
        keep = np.array([((xy[:, 0] >= x) & (xy[:, 0] < x + w) & (xy[:, 1] >= y) & (xy[:, 1] < y + h)).any()
                         for x, y, w, h in boxes], bool)
    tiles = tiles[keep].reset_index(drop=True)
    tiles["label"] = 0
    return tiles, (xy, kinds)


def build_training_set(card: ModelCard, slides: Sequence[str], *, val_slides: Sequence[str] | None = None,
                       annotations: str | os.PathLike[str] | None = None, unlabelled_as: str | None = None,
                       slide_mpp: float | None = None, min_tissue: float = 0.25, seed: int = 0,
                       allow_no_training: bool = False) -> TrainingSet:
    """Tiles and labels of ``slides`` (and ``val_slides``) for ``card``'s task and scale.

    Raises
    ------
    TrainingDataError
        A slide in both splits, a generated slide's classes the model lacks, no labelled tile.
    AnnotationError
        A GeoJSON file that is missing or malformed (naming the file and the feature).
    SlideError
        A slide that cannot be opened.
    """
    from slidescope.wsi import open_slide

    if unlabelled_as is not None and unlabelled_as not in card.class_names:
        raise TrainingDataError(f"--unlabelled-as: expected one of the classes {', '.join(card.class_names)}, got "
                                f"{unlabelled_as!r}")
    train, val = split_slides(slides, val_slides, seed)
    frames, nuclei, mpps = [], {}, {}
    for split, paths in (("train", train), ("val", val)):
        for path in paths:
            with open_slide(path, mpp=slide_mpp) as slide:
                if annotations is not None:
                    geojson = Path(os.fspath(annotations)) / f"{Path(path).stem}.geojson"
                    tiles, points = _annotated_labels(path, geojson, slide, card, min_tissue, unlabelled_as)
                else:
                    tiles, points = _generated_labels(path, slide, card, min_tissue)
            tiles.insert(0, "split", split)
            tiles.insert(0, "slide", path)
            frames.append(tiles)
            if points is not None:
                nuclei[path] = points
            if slide_mpp is not None:
                mpps[path] = slide_mpp
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if not len(table) or not (allow_no_training or (table.split == "train").any()):
        raise TrainingDataError(f"no labelled training tile in {len(train)} slide(s) ({', '.join(map(os.path.basename, train))})"
                                f"; check the annotations, the classes and --min-tissue")
    return TrainingSet(card.task, card.class_names, table, nuclei, mpps)
