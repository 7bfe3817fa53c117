"""``slidescope predict``: one model over one slide, outputs into a folder.

The models package (and with it torch or TensorFlow) is imported inside the handler only.
"""

from __future__ import annotations

import argparse
import sys

from ._options import FRACTION, MPP, POSITIVE_INT, add_method_option, add_overwrite_option, add_slide_argument

__all__ = ["register"]


def _predict(args: argparse.Namespace) -> int:
    from pathlib import Path

    from slidescope.models import load_model
    from slidescope.wsi.errors import OutputError

    from ..outputs import CAM_STORE, HEATMAP_PNG, PREDICTION_TABLE, check_output, check_output_folder, writing_all
    from ..predict import predict_slide
    from ..progress import terminal_bar

    model = load_model(args.model, framework=args.framework, device=args.device)
    folder = Path(args.out)
    if model.directory is not None and folder.exists() and folder.resolve() == Path(model.directory).resolve():
        raise OutputError(f"{folder}: --out names the model directory; refusing to write into it, choose another folder")
    names = ({"tiles.parquet": PREDICTION_TABLE, "heatmap.png": HEATMAP_PNG, "cam.zarr": CAM_STORE}
             if model.task == "tissue" else {"cells.parquet": PREDICTION_TABLE, "tiles.parquet": PREDICTION_TABLE})
    for name, kind in names.items():  # before any work: a refused output costs nothing
        check_output(folder / name, kind, inputs=[args.slide], overwrite=args.overwrite)
    folder = check_output_folder(folder)
    targets = [check_output(folder / name, kind, inputs=[args.slide], overwrite=args.overwrite)
               for name, kind in names.items()]

    def write(paths: list[Path]):  # the outputs' own order: the guard's targets are the same paths
        if [t.path for t in targets] != list(paths):
            raise AssertionError(f"predict wrote {paths}, the guard checked {[t.path for t in targets]}")
        return writing_all(targets)

    with terminal_bar(f"{model.task} model", enabled=sys.stderr.isatty()) as progress:
        result = predict_slide(model, args.slide, folder, batch_size=args.batch_size, workers=args.workers,
                               min_tissue=args.min_tissue, slide_mpp=args.slide_mpp, backend=args.backend,
                               mask_mpp=args.mask_mpp, method=args.method, progress=progress, write=write)
    rate = result.tiles / result.seconds["inference"] if result.seconds.get("inference") else 0.0
    found = f", {result.nuclei} nuclei" if result.nuclei is not None else ""
    print(f"{model.task} model {model.card.name!r} ({model.framework} on {model.device}): {result.tiles} tiles{found} "
          f"in {result.seconds['inference']:.1f} s ({rate:.1f} tiles/s)")
    for path in result.outputs.values():
        print(f"wrote {path}")
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``predict`` to the root parser's subcommands."""
    predict = commands.add_parser("predict", help="run a tissue or cell model over a slide; tables and maps into a folder")
    predict.add_argument("model", help="a model directory (card.json and weights), or 'tissue' / 'cell' for a shipped model")
    add_slide_argument(predict)
    predict.add_argument("--out", required=True, help="output folder (its last level is created)")
    predict.add_argument("--framework", choices=("torch", "tf"), default=None,
                         help="shipped model: which framework (default torch); directory: the framework its card must name")
    predict.add_argument("--batch-size", type=POSITIVE_INT, default=32, help="tiles per task and model call (default 32)")
    predict.add_argument("--workers", type=POSITIVE_INT, default=2,
                         help="tasks in flight at once, as threads: one reads while another infers (default 2)")
    predict.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                         help="auto (default: a GPU when the framework sees one), cpu or cuda")
    predict.add_argument("--slide-mpp", type=MPP, default=None, metavar="MPP",
                         help="µm per pixel of level 0, for files without it (or to override it)")
    predict.add_argument("--min-tissue", type=FRACTION, default=0.25, help="minimum tissue fraction of a tile (default 0.25)")
    predict.add_argument("--mask-mpp", type=MPP, default=8.0, help="µm per pixel of the tissue mask (default 8)")
    predict.add_argument("--backend", default="auto", help="slide backend: auto (default), openslide or tiff")
    add_method_option(predict)
    add_overwrite_option(predict, "existing outputs that are not this command's own (never the slide)")
    predict.set_defaults(run=_predict)
