"""The shipped slide model: the shipped tissue and cell models merged, with a head trained on generated slides.

``make models`` runs :func:`make_shipped_slide_model` after training the parts (``python -m
slidescope.merge.shipped``). It is what ``slidescope run`` uses when no ``--model`` is given and what
``load_model("slide")`` loads. Recipe (seeded, about a minute on 2 cores):

- head slides: 8 training and 2 validation slides of 8192 x 6144 px at 0.25 µm/px, seeds
  :data:`HEAD_SLIDES`, even seeds with tumour regions and odd seeds without (labels from their
  ground truth: ``tumour`` / ``normal``);
- the shipped torch tissue and cell models merged into a torch graph, the head trained with
  :func:`~slidescope.merge.head_training.train_head` (:data:`HEAD_RECIPE`), the best epoch by
  validation loss;
- written with its ONNX export into ``models/shipped/slide-torch``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["HEAD_SLIDES", "HEAD_RECIPE", "make_head_slides", "make_shipped_slide_model"]

#: role -> (seeds, width, height) of the generated slides the shipped head is trained on.
HEAD_SLIDES = {"train": (range(400, 408), 8192, 6144), "val": (range(410, 412), 8192, 6144)}
#: The head's training settings.
HEAD_RECIPE = {"epochs": 10, "lr": 3e-3, "weight_decay": 1e-4, "seed": 0, "min_tissue": 0.25}


def make_head_slides(folder: Path) -> dict[str, list[str]]:
    """The head slides in ``folder`` (made once, kept for the next run): even seeds with tumour."""
    from slidescope.wsi.synthetic import make_slide

    folder.mkdir(parents=True, exist_ok=True)
    made: dict[str, list[str]] = {}
    for role, (seeds, width, height) in HEAD_SLIDES.items():
        for seed in seeds:
            path = folder / f"head-{seed}.svs"
            if not path.exists():
                make_slide(path, width, height, seed=seed, tumour=seed % 2 == 0)
            made.setdefault(role, []).append(str(path))
    return made


def make_shipped_slide_model(work: Path, *, framework: str = "torch", ship: bool = True,
                             stream: Any = sys.stdout) -> dict[str, Any]:
    """Merge the shipped parts, train the head and (``ship``) install the slide model; returns the record."""
    from slidescope.models.loading import SHIPPED_DIR

    from .export import write_merged
    from .head_training import train_head
    from .merging import merge_models

    started = time.perf_counter()
    slides = make_head_slides(work / "head-slides")
    model, _ = merge_models(SHIPPED_DIR / f"tissue-{framework}", SHIPPED_DIR / f"cell-{framework}", target=framework,
                            name=f"slidescope-slide-{framework}")
    record = train_head(model, slides["train"], val_slides=slides["val"],
                        progress=lambda line: print(f"slide-{framework}: {line}", file=stream, flush=True),
                        **HEAD_RECIPE)
    training = {**model.card.training, "recipe": HEAD_RECIPE,
                "slides": {role: [Path(p).name for p in paths] for role, paths in slides.items()}}
    model.card = model.card.replace(training=training)
    out = work / f"slide-{framework}"
    write_merged(model, out, exports=("onnx",), overwrite=True)
    if ship:
        write_merged(model, SHIPPED_DIR / f"slide-{framework}", exports=("onnx",), overwrite=True)
    print(f"slide-{framework}: best epoch {record['best_epoch']} in {time.perf_counter() - started:.0f} s"
          f"{'; shipped' if ship else ''}", file=stream, flush=True)
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m slidescope.merge.shipped", description=__doc__.split("\n")[0])
    parser.add_argument("--work", default="build/models", help="slides and the merged model (default build/models)")
    parser.add_argument("--frameworks", nargs="+", default=["torch"], choices=("torch", "tf"))
    parser.add_argument("--no-ship", action="store_true", help="train and write into --work only")
    args = parser.parse_args(argv)
    for framework in args.frameworks:
        make_shipped_slide_model(Path(args.work), framework=framework, ship=not args.no_ship)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
