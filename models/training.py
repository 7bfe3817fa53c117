"""Training a tissue or cell model: ``train(...)`` and what ``slidescope train`` runs.

A run folder holds:

- ``model/``: the best epoch's model directory (by the validation metric: the cascade class's ROC
  AUC for a tissue model, nucleus F1 for a cell model; by training loss without validation
  slides), ready for ``load_model`` and ``slidescope predict``;
- ``last/``: the last epoch's model directory;
- ``state/``: the training state of the last epoch (weights, optimiser slots, step, history) and
  ``state.json`` (the configuration and its hash), what ``resume=True`` continues from;
- ``metrics.csv`` (one row an epoch) and ``curves.png``.

Every epoch rewrites them, each atomically, the state last: a run killed at any moment resumes from
the last complete epoch. With fixed seeds on the CPU, an interrupted run resumed gives the same
weights as an uninterrupted one (batches are a function of ``(seed, epoch, batch)``, the schedule
spans the configured epochs).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from slidescope.wsi.atomic import atomic_path, check_parent
from slidescope.wsi.validation import parse_choice, parse_non_negative_int, parse_positive_float, parse_positive_int

from .augment import Augmentation
from .batches import BatchMaker
from .card import FRAMEWORKS, TASKS, ModelCard
from .errors import ModelError
from .loaders import Loader
from .loading import DEVICES, save_model
from .evaluation import evaluate
from .model import Model
from .registry import backend_class, trainer_class
from .sampling import batches_per_epoch
from .trainer import STATE_SUFFIX, cosine_learning_rate
from .training_data import TrainingSet, build_training_set

__all__ = ["TrainConfig", "TrainResult", "TrainingError", "RunMismatchError", "train"]

_STATE_VERSION = 1


class TrainingError(ModelError):
    """A run that cannot start or continue as asked (a run folder in use, a resume of another configuration)."""


class RunMismatchError(TrainingError):
    """``resume`` asked of a run folder whose run was made with other settings."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides the weights a run produces (``workers`` and the device do not)."""

    task: str
    framework: str
    slides: tuple[str, ...]
    val_slides: tuple[str, ...] = ()
    annotations: str | None = None
    unlabelled_as: str | None = None
    classes: tuple[str, ...] | None = None
    epochs: int = 10
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0
    steps_per_epoch: int | None = None
    min_tissue: float = 0.25
    slide_mpp: float | None = None
    max_val_tiles: int = 512
    crop: int | None = None
    augmentation: Augmentation = field(default_factory=Augmentation)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["augmentation"] = self.augmentation.to_dict()
        return data

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()


@dataclass
class TrainResult:
    """What a run produced: the best model directory and the history of every epoch."""

    out: str
    model_dir: str
    best_epoch: int
    history: list[dict[str, float]]


def _palette(n: int) -> list[str]:
    colours = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#7f7f7f"]
    return [colours[i % len(colours)] for i in range(n)]


def _card(config: TrainConfig, card: ModelCard | None) -> ModelCard:
    if card is not None:
        return card
    classes = None
    if config.classes is not None:
        classes = list(zip(config.classes, _palette(len(config.classes))))
    return ModelCard.new(config.task, config.framework, name=f"{config.task}-{config.framework}", classes=classes)


def _score(task: str, metrics: dict[str, float]) -> tuple[float, float]:
    """Higher is better: the validation metric, then the lower loss breaks ties (an AUC of 1.0 is
    often reached early, by a model whose other outputs are still poor); without validation slides,
    the lower training loss."""
    value = metrics.get("val_auc" if task == "tissue" else "val_f1", float("nan"))
    loss = metrics.get("val_loss", metrics["train_loss"])
    if not math.isfinite(value):
        return (-metrics["train_loss"], 0.0)
    return (value, -loss)


def _write_metrics(path: Path, history: list[dict[str, float]]) -> None:
    columns = list(dict.fromkeys(key for row in history for key in row))
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns)
    writer.writeheader()
    writer.writerows(history)
    with atomic_path(path) as temporary:
        temporary.write_text(text.getvalue(), encoding="utf-8")


def _write_curves(path: Path, history: list[dict[str, float]], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)  # no screen here; a notebook's backend is left alone when set
    from matplotlib.figure import Figure

    figure = Figure(figsize=(9, 3.5))
    losses, metrics = figure.add_subplot(1, 2, 1), figure.add_subplot(1, 2, 2)
    epochs = [row["epoch"] for row in history]
    for key in ("train_loss", "val_loss", "heatmap_loss", "type_loss"):
        if any(key in row for row in history):
            losses.plot(epochs, [row.get(key, float("nan")) for row in history], marker="o", label=key)
    for key in ("val_auc", "val_accuracy", "val_f1", "val_type_accuracy"):
        if any(key in row for row in history):
            metrics.plot(epochs, [row.get(key, float("nan")) for row in history], marker="o", label=key)
    for axes, label in ((losses, "loss"), (metrics, "validation")):
        axes.set_xlabel("epoch")
        axes.set_ylabel(label)
        axes.grid(alpha=0.3)
        if axes.lines:
            axes.legend(fontsize=8)
    figure.suptitle(title)
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=100)


def _check_run_folder(out: Path, resume: bool) -> dict[str, Any] | None:
    """The saved state of a run to resume, or None for a new run; refuse what would be lost."""
    state_file = out / "state" / "state.json"
    if resume:
        try:
            state = json.loads(state_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise TrainingError(f"{out}: --resume: no training state here ({state_file} is missing); start a new "
                                f"run without --resume") from None
        except (OSError, ValueError) as exc:
            raise TrainingError(f"{state_file}: cannot read the training state: {exc}") from None
        return state
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise TrainingError(f"{out}: --out exists and is not empty; pass --resume to continue the run there, or "
                            f"choose a new folder")
    return None


def train(task: str, framework: str, slides: Sequence[Any], out: Any, *, val_slides: Sequence[Any] = (),
          annotations: Any = None, unlabelled_as: str | None = None, classes: Sequence[str] | None = None,
          epochs: int = 10, batch_size: int = 16, lr: float = 1e-3, weight_decay: float = 1e-4, workers: int = 2,
          device: str = "auto", seed: int = 0, resume: bool = False, steps_per_epoch: int | None = None,
          min_tissue: float = 0.25, slide_mpp: float | None = None, augmentation: Augmentation | None = None,
          max_val_tiles: int = 512, crop: int | None = None,
          card: ModelCard | None = None, until_epoch: int | None = None,
          progress: Callable[[dict[str, Any]], None] | None = None) -> TrainResult:
    """Train a tissue or cell model and write the run folder ``out`` (see the module docstring).

    Parameters
    ----------
    task, framework : str
        ``"tissue"`` or ``"cell"``; ``"torch"`` or ``"tf"``.
    slides : sequence of paths
        Training slides (generated slides with their ``.truth.npz``, or slides annotated in
        ``annotations``). A fifth of them (at least one) validate unless ``val_slides`` is given.
    annotations : path, optional
        A folder of QuPath GeoJSON files, ``<slide stem>.geojson`` each.
    epochs, batch_size, lr, weight_decay, seed, steps_per_epoch
        The schedule spans ``epochs`` (cosine from ``lr``); batches are class-balanced and seeded.
    workers : int
        Loader worker processes (0: in this process).
    crop : int, optional
        Train on random ``crop`` px windows of the tiles (cheaper steps; validation sees whole tiles).
    max_val_tiles : int
        Validate on at most this many tiles of the validation slides (a seeded, fixed subset).
    resume : bool
        Continue the run in ``out`` from its last complete epoch (same configuration required).
    until_epoch : int, optional
        Stop after this many epochs (the schedule still spans ``epochs``); resume continues.
    progress : callable, optional
        Called after every step with ``{"epoch", "step", "steps", "loss", "tiles_per_second"}``.

    Raises
    ------
    TrainingError, TrainingDataError, AnnotationError, ModelCardError, FrameworkError, SlideError
    """
    task = parse_choice(task, "task", TASKS)
    framework = parse_choice(framework, "framework", FRAMEWORKS)
    device = parse_choice(device, "device", DEVICES)
    out_path = Path(check_parent(Path(os.fspath(out)) / "state").parent)
    config = TrainConfig(
        task=task, framework=framework, slides=tuple(os.path.realpath(os.fspath(s)) for s in slides),
        val_slides=tuple(os.path.realpath(os.fspath(s)) for s in val_slides),
        annotations=None if annotations is None else os.path.realpath(os.fspath(annotations)),
        unlabelled_as=unlabelled_as, classes=None if classes is None else tuple(classes),
        epochs=parse_positive_int(epochs, "epochs", maximum=10_000),
        batch_size=parse_positive_int(batch_size, "batch_size", maximum=4096),
        lr=parse_positive_float(lr, "lr", maximum=10.0),
        weight_decay=parse_positive_float(weight_decay, "weight_decay", maximum=10.0) if weight_decay else 0.0,
        seed=parse_non_negative_int(seed, "seed", maximum=2**31 - 1),
        steps_per_epoch=None if steps_per_epoch is None else parse_positive_int(steps_per_epoch, "steps_per_epoch"),
        min_tissue=min_tissue, slide_mpp=slide_mpp, augmentation=augmentation or Augmentation(),
        max_val_tiles=parse_positive_int(max_val_tiles, "max_val_tiles"),
        crop=None if crop is None else parse_positive_int(crop, "crop", maximum=8192))
    workers = parse_non_negative_int(workers, "workers", maximum=64)
    if config.crop is not None and framework == "tf":
        raise TrainingError("--crop: Keras models are built for the card's input size, so they train on whole tiles; "
                            "crop windows are for torch models (leave --crop out with --framework tf)")
    if not config.slides:
        raise TrainingError("slides: expected at least one training slide, got none")
    saved = _check_run_folder(out_path, resume)
    if saved is not None and saved.get("config_sha256") != config.digest():
        differs = [k for k, v in config.to_dict().items() if saved.get("config", {}).get(k) != (list(v) if isinstance(v, tuple) else v)]
        raise RunMismatchError(f"{out_path}: --resume: the run there was made with other settings ({', '.join(differs) or 'its card'}); "
                            f"resume with the same settings, or start a new run in another folder")
    model_card = _card(config, card)
    data = build_training_set(model_card, config.slides, val_slides=config.val_slides, annotations=config.annotations,
                              unlabelled_as=config.unlabelled_as, slide_mpp=config.slide_mpp,
                              min_tissue=config.min_tissue, seed=config.seed)
    return _run(config, model_card, data, out_path, saved, workers, device, until_epoch, progress)


def _makers(config: TrainConfig, card: ModelCard, data: TrainingSet) -> tuple[BatchMaker, BatchMaker | None]:
    common = {"task": config.task, "mpp": card.input.mpp, "size": card.input.size, "batch_size": config.batch_size,
              "seed": config.seed, "nuclei": data.nuclei, "slide_mpp": data.slide_mpp,
              "sigma": 1.0 / card.input.mpp, "radius": 3.0 / card.input.mpp}  # 1 µm blobs, types within 3 µm
    columns = ["slide", "read_x", "read_y", "read_w", "read_h", "label"]
    train_maker = BatchMaker(tiles=data.split("train")[columns], augmentation=config.augmentation,
                             steps=config.steps_per_epoch, crop=config.crop, **common)
    val_tiles = data.split("val")[columns]
    if len(val_tiles) > config.max_val_tiles:  # validation every epoch stays bounded: a seeded, fixed subset
        chosen = np.random.default_rng([config.seed, 0x7A1]).choice(len(val_tiles), config.max_val_tiles, replace=False)
        val_tiles = val_tiles.iloc[np.sort(chosen)].reset_index(drop=True)
    return train_maker, (BatchMaker(tiles=val_tiles, **common) if len(val_tiles) else None)


def _run(config: TrainConfig, card: ModelCard, data: TrainingSet, out: Path, saved: dict[str, Any] | None,
         workers: int, device: str, until_epoch: int | None,
         progress: Callable[[dict[str, Any]], None] | None) -> TrainResult:
    adapter = backend_class(config.framework)
    resolved = adapter.resolve_device(device)
    backend = adapter(card, resolved, config.seed)
    train_maker, val_maker = _makers(config, card, data)
    steps = batches_per_epoch(len(train_maker.tiles), config.batch_size, config.steps_per_epoch)
    trainer = trainer_class(config.framework)(backend, lr=config.lr, weight_decay=config.weight_decay,
                                              total_steps=config.epochs * steps)
    history: list[dict[str, float]] = []
    best_epoch, best_score, start = 0, (-math.inf, -math.inf), 0
    state_name = "trainer" + STATE_SUFFIX[config.framework]
    if saved is not None:
        trainer.load_state(str(out / "state" / state_name))
        history, start = saved["history"], int(saved["epochs_done"])
        best_epoch, best_score = int(saved["best_epoch"]), tuple(saved["best_score"])
    summary = data.summary()
    last = config.epochs if until_epoch is None else min(config.epochs, parse_positive_int(until_epoch, "until_epoch"))
    pin = resolved == "cuda" and config.framework == "torch"
    with Loader(train_maker, config.framework, workers, pin_memory=pin) as loader, \
            Loader(val_maker or train_maker, config.framework, min(workers, 1)) as val_loader:
        for epoch in range(start, last):
            started, losses, tiles = time.perf_counter(), [], 0
            for batch in loader.batches(train_maker.train_keys(epoch)):
                losses.append(trainer.train_step(batch))
                tiles += len(batch["images"])
                if progress is not None:
                    progress({"epoch": epoch + 1, "epochs": config.epochs, "step": len(losses), "steps": steps,
                              "loss": losses[-1]["loss"], "tiles_per_second": tiles / (time.perf_counter() - started)})
            seconds = time.perf_counter() - started
            lr_now = cosine_learning_rate(config.lr, trainer.step, trainer.total_steps)
            row: dict[str, float] = {"epoch": epoch + 1, "lr": lr_now, "seconds": round(seconds, 3),
                                     "tiles_per_second": tiles / seconds if seconds else 0.0}
            for key in losses[0]:
                row["train_loss" if key == "loss" else key] = float(np.mean([entry[key] for entry in losses]))
            model = Model(card, backend, requested_device=device)
            if val_maker is not None:
                row.update(evaluate(model, val_maker, val_loader, choose_threshold=True))
            history.append(row)
            score = _score(config.task, row)
            improved = score > best_score
            if improved:
                best_epoch, best_score = epoch + 1, score
            _write_epoch(out, config, card, backend, history, best_epoch, best_score, summary, improved, trainer,
                         state_name, device)
    return TrainResult(str(out), str(out / "model"), best_epoch, history)


def _write_epoch(out: Path, config: TrainConfig, card: ModelCard, backend: Any, history: list[dict[str, float]],
                 best_epoch: int, best_score: tuple[float, float], summary: dict[str, Any], improved: bool, trainer: Any,
                 state_name: str, device: str) -> None:
    """The epoch's model directories, tables, plot, and last the state (each atomically)."""
    out.mkdir(exist_ok=True)
    row = history[-1]
    training = {"data": summary, "config": config.to_dict(), "epoch": row["epoch"], "best_epoch": best_epoch}
    thresholds = dict(card.thresholds)
    if "val_nucleus_score" in row:  # the score validation chose for this epoch's weights
        thresholds["nucleus_score"] = float(row["val_nucleus_score"])
    epoch_card = card.replace(metrics={k: v for k, v in row.items() if isinstance(v, (int, float)) and math.isfinite(v)},
                              training=training, thresholds=thresholds)
    save_model(Model(epoch_card, backend, requested_device=device), out / "last")
    if improved:
        save_model(Model(epoch_card, backend, requested_device=device), out / "model")
    _write_metrics(out / "metrics.csv", history)
    _write_curves(out / "curves.png", history, f"{card.task} model ({card.framework})")
    with atomic_path(out / "state") as temporary:
        temporary.mkdir()
        trainer.save_state(str(temporary / state_name))
        state = {"version": _STATE_VERSION, "config": config.to_dict(), "config_sha256": config.digest(),
                 "epochs_done": int(row["epoch"]), "best_epoch": best_epoch, "best_score": list(best_score),
                 "history": history}
        (temporary / "state.json").write_text(json.dumps(state, indent=2), encoding="utf-8")
