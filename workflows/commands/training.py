"""``slidescope train``: train a tissue or cell model on generated or QuPath-annotated slides.

The models package (and with it torch or TensorFlow) is imported inside the handler only.
"""

from __future__ import annotations

import argparse
import sys
from slidescope.wsi.validation import parse_non_negative_float, parse_positive_float

from ._options import FRACTION, MPP, NON_NEGATIVE_INT, POSITIVE_INT, SEED, option_type

__all__ = ["register"]


#: A learning rate: a number > 0, at most 10.
LEARNING_RATE = option_type(parse_positive_float, "learning rate", maximum=10.0)


def _train(args: argparse.Namespace) -> int:
    from slidescope.models.training import train

    from ..progress import training_bar

    with training_bar(enabled=sys.stderr.isatty()) as progress:
        result = train(args.task, args.framework, args.slides, args.out, val_slides=args.val_slides or (),
                       annotations=args.annotations, unlabelled_as=args.unlabelled_as, classes=args.classes,
                       epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
                       workers=args.workers, device=args.device, seed=args.seed, resume=args.resume,
                       steps_per_epoch=args.steps_per_epoch, min_tissue=args.min_tissue, slide_mpp=args.slide_mpp,
                       crop=args.crop, progress=progress)
    for row in result.history:
        figures = ", ".join(f"{k} {v:.4g}" for k, v in row.items() if k not in ("epoch", "lr", "seconds"))
        print(f"epoch {int(row['epoch'])}: {figures}")
    print(f"best epoch {result.best_epoch}: model in {result.model_dir}; metrics.csv and curves.png in {result.out}")
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``train`` to the root parser's subcommands."""
    parser = commands.add_parser("train", help="train a tissue or cell model (torch or Keras) on slides with labels")
    parser.add_argument("task", choices=("tissue", "cell"), help="which model")
    parser.add_argument("--framework", choices=("torch", "tf"), default="torch", help="torch (default) or tf (Keras 3)")
    parser.add_argument("--slides", nargs="+", required=True, metavar="SLIDE",
                        help="training slides: generated ones (with their .truth.npz) or ones annotated in --annotations")
    parser.add_argument("--out", required=True, help="the run folder (new or empty; or the run to --resume)")
    parser.add_argument("--annotations", default=None, metavar="DIR",
                        help="QuPath GeoJSON exports, one <slide stem>.geojson per slide")
    parser.add_argument("--val-slides", nargs="+", default=None, metavar="SLIDE",
                        help="validation slides (default: a fifth of --slides, at least one when there are two)")
    parser.add_argument("--unlabelled-as", default=None, metavar="CLASS",
                        help="tissue model with annotations: label tissue outside every annotation as this class")
    parser.add_argument("--classes", nargs="+", default=None, metavar="NAME",
                        help="class names (tissue) or nucleus types (cell), as named in the annotations")
    parser.add_argument("--epochs", type=POSITIVE_INT, default=10, help="epochs (default 10)")
    parser.add_argument("--batch-size", type=POSITIVE_INT, default=16, help="tiles per step (default 16)")
    parser.add_argument("--lr", type=LEARNING_RATE, default=1e-3, help="peak learning rate of the cosine schedule (default 1e-3)")
    parser.add_argument("--weight-decay", type=option_type(parse_non_negative_float, "weight decay", maximum=10.0),
                        default=1e-4, help="AdamW weight decay (default 1e-4)")
    parser.add_argument("--steps-per-epoch", type=POSITIVE_INT, default=None, help="steps per epoch (default: tiles / batch size)")
    parser.add_argument("--crop", type=POSITIVE_INT, default=None, metavar="PX",
                        help="train on random PX windows of the tiles (faster steps; validation sees whole tiles)")
    parser.add_argument("--workers", type=NON_NEGATIVE_INT, default=2, help="loader worker processes (default 2; 0: none)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="auto (default), cpu or cuda")
    parser.add_argument("--seed", type=SEED, default=0, help="seed of weights, sampling and augmentation (default 0)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its last complete epoch")
    parser.add_argument("--min-tissue", type=FRACTION, default=0.25, help="minimum tissue fraction of a tile (default 0.25)")
    parser.add_argument("--slide-mpp", type=MPP, default=None, metavar="MPP", help="µm per pixel of level 0, for files without it")
    parser.set_defaults(run=_train)
