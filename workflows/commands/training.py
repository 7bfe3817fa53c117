"""``slidescope train``: train a tissue or cell model on generated or QuPath-annotated slides, or the
slide head of a merged model (``train head``: the tissue and cell parts frozen, slide labels).

The models and merge packages (and with them torch or TensorFlow) are imported inside the handlers only.
"""

from __future__ import annotations

import argparse
import sys
from slidescope.wsi.validation import parse_non_negative_float, parse_positive_float

from ._options import FRACTION, MPP, NON_NEGATIVE_INT, POSITIVE_INT, SEED, option_type

__all__ = ["register"]


#: A learning rate: a number > 0, at most 10.
LEARNING_RATE = option_type(parse_positive_float, "learning rate", maximum=10.0)


#: Options of ``train tissue|cell`` that ``train head`` does not take, and the other way round.
_MODEL_ONLY = ("annotations", "unlabelled_as", "classes", "batch_size", "steps_per_epoch", "crop", "workers", "resume",
               "device")
_HEAD_ONLY = ("tissue", "cell", "labels")


def _train_head(args: argparse.Namespace) -> int:
    import os
    import time

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from slidescope.merge.export import check_merged_out, write_merged
    from slidescope.merge.head_training import check_head_slides, read_labels, train_head
    from slidescope.merge.merging import MergeOptions, merge_models

    # What can be refused without the work is refused first: the output, the slides, the labels.
    check_merged_out(args.out, sources=[*args.tissue, *args.cell])
    check_head_slides(args.slides, args.val_slides or ())
    if args.labels is not None:
        read_labels(args.labels, MergeOptions().head_classes)
    started = time.perf_counter()
    model, reports = merge_models(args.tissue, args.cell, target=args.framework)
    for report in reports.values():
        print(report.summary())
    record = train_head(model, args.slides, val_slides=args.val_slides or (), labels=args.labels,
                        epochs=args.epochs, lr=args.lr, weight_decay=args.weight_decay, seed=args.seed,
                        min_tissue=args.min_tissue, progress=print)
    for row in record["history"]:
        print(f"epoch {row['epoch']}: " + ", ".join(f"{k} {v:.4g}" for k, v in row.items() if k != "epoch"))
    write_merged(model, args.out, exports=())
    print(f"best epoch {record['best_epoch']}: merged model with its trained head in {args.out} "
          f"({time.perf_counter() - started:.0f} s); slidescope merge --head {args.out} puts it into any merge")
    return 0


def _train(args: argparse.Namespace) -> int:
    from slidescope.models.training import train
    from slidescope.wsi.errors import ParameterError

    defaults = {action.dest: action.default for action in args.parser_actions}
    wrong = [name for name in (_MODEL_ONLY if args.task == "head" else _HEAD_ONLY)
             if getattr(args, name) != defaults.get(name)]
    if wrong:
        flags = ", ".join("--" + name.replace("_", "-") for name in wrong)
        raise ParameterError(f"train {args.task}: {flags} {'does' if len(wrong) == 1 else 'do'} not apply here")
    if args.task == "head":
        if not args.tissue or not args.cell:
            raise ParameterError("train head: --tissue and --cell are required (the frozen parts)")
        return _train_head(args)

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
    parser = commands.add_parser("train", help="train a tissue or cell model (torch or Keras) on slides with labels, "
                                               "or the slide head of a merged model")
    parser.add_argument("task", choices=("tissue", "cell", "head"),
                        help="which model; head: the slide head on slide labels, the --tissue and --cell parts frozen")
    parser.add_argument("--framework", choices=("torch", "tf"), default="torch",
                        help="torch (default) or tf (Keras 3); head: the merged graph's framework")
    parser.add_argument("--tissue", nargs="+", default=None, metavar="M", help="head: the tissue model(s) to merge")
    parser.add_argument("--cell", nargs="+", default=None, metavar="M", help="head: the cell model(s) to merge")
    parser.add_argument("--labels", default=None, metavar="CSV",
                        help="head: slide,label rows (default: generated slides' ground truth, tumour or normal)")
    parser.add_argument("--slides", nargs="+", required=True, metavar="SLIDE",
                        help="training slides: generated ones (with their .truth.npz) or ones annotated in --annotations")
    parser.add_argument("--out", required=True, help="the run folder (new or empty; or the run to --resume)")
    parser.add_argument("--annotations", default=None, metavar="DIR",
                        help="QuPath GeoJSON exports, one <slide stem>.geojson per slide")
    parser.add_argument("--val-slides", nargs="+", default=None, metavar="SLIDE",
                        help="validation slides (tissue, cell: default a fifth of --slides, at least one when there are "
                             "two; head: none unless given, and the best epoch is then the one that fits best)")
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
    parser.set_defaults(run=_train, parser_actions=tuple(parser._actions))
