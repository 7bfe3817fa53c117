"""``slidescope predict``: one model over one slide, outputs into a folder.

The models package (and with it torch or TensorFlow) is imported inside the handler only.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from ._options import (
    FRACTION,
    MPP,
    POSITIVE_INT,
    add_exact_resample_option,
    add_method_option,
    add_overwrite_option,
    add_slide_argument,
)

__all__ = ["register"]


def _check_prediction_folder(folder: Path, slide: str, model: Any, names: tuple[str, ...], overwrite: bool) -> list[str]:
    """Refuse a folder that is a model directory or holds another prediction; returns stale outputs.

    A folder holds another prediction when its manifest names another slide or model: replacing
    some of those outputs and leaving others would mix two runs, so that needs ``--overwrite``, and
    then the old run's outputs that this run does not write are removed too.
    """
    from slidescope.wsi.errors import OutputError, OutputExistsError

    from ..predict import read_manifest

    if (folder / "card.json").exists():
        raise OutputError(f"{folder}: --out is a model directory (it holds card.json); refusing to write into it, "
                          f"choose another folder")
    old = read_manifest(folder)
    if old is None:
        return []
    same_slide = old.get("slide", {}).get("path") == os.path.realpath(slide)
    same_model = old.get("model", {}).get("card_sha256") == model.card.digest()
    if not (same_slide and same_model) and not overwrite:
        raise OutputExistsError(
            f"{folder}: holds the predictions of model {old.get('model', {}).get('name')!r} on "
            f"{old.get('slide', {}).get('path')} (prediction.json); choose another --out for this slide and model, "
            f"or pass --overwrite to replace them"
        )
    return [name for name in old.get("outputs", ()) if isinstance(name, str) and name not in names]


def _remove_stale(folder: Path, stale: list[str]) -> None:
    """Remove a replaced run's outputs that this run did not write (only those of this command's kinds)."""
    import shutil

    from ..outputs import KINDS_BY_NAME

    for name in stale:
        kind, path = KINDS_BY_NAME.get(name), folder / name
        if kind is None or not os.path.lexists(path) or not kind.recognise(path):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


def _predict(args: argparse.Namespace) -> int:
    from slidescope.models import load_model
    from slidescope.wsi.atomic import check_parent

    from ..outputs import KINDS_BY_NAME, check_output, writing_all
    from ..predict import output_names, predict_slide
    from ..progress import terminal_bar

    model = load_model(args.model, framework=args.framework, device=args.device)
    # A file there, or more than the last folder level missing, is refused now; the folder itself is
    # created only when the outputs are written, so a run that fails leaves nothing behind.
    folder = check_parent(Path(args.out) / "prediction.json").parent
    names = output_names(model.task)
    stale = _check_prediction_folder(folder, args.slide, model, names, args.overwrite)
    targets = [check_output(folder / name, KINDS_BY_NAME[name], inputs=[args.slide], overwrite=args.overwrite)
               for name in names]

    def write(paths: list[Path]) -> Any:  # predict_slide stages exactly the outputs checked here, in order
        if [t.path for t in targets] != [Path(p) for p in paths]:
            raise RuntimeError(f"predict wrote {paths}, the guard checked {[t.path for t in targets]}")
        return writing_all(targets)

    with terminal_bar(f"{model.task} model", enabled=sys.stderr.isatty()) as progress:
        result = predict_slide(model, args.slide, folder, batch_size=args.batch_size, workers=args.workers,
                               min_tissue=args.min_tissue, slide_mpp=args.slide_mpp, backend=args.backend,
                               exact_resample=args.exact_resample,
                               mask_mpp=args.mask_mpp, method=args.method, progress=progress, write=write)
    _remove_stale(folder, stale)
    rate = result.tiles / result.seconds["inference"] if result.seconds.get("inference") else 0.0
    found = f", {result.nuclei} nuclei" if result.nuclei is not None else ""
    print(f"{model.task} model {model.card.name!r} ({model.framework} on {model.device}): {result.tiles} tiles{found} "
          f"in {result.seconds['inference']:.1f} s ({rate:.1f} tiles/s)")
    for path in result.outputs.values():
        print(f"wrote {path}")
    if result.tiles == 0:
        print(f"slidescope predict: warning: no tile of {model.card.scale().tile} px at {model.card.input.mpp:g} µm/px "
              f"has tissue fraction >= {args.min_tissue:g}; the tables are empty (lower --min-tissue, or check the "
              f"tissue mask with `slidescope tissue`)", file=sys.stderr)
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
    add_exact_resample_option(predict)
    add_method_option(predict)
    add_overwrite_option(predict, "outputs of another slide or model, or files of other kinds at the output names "
                                  "(never the slide, never a folder that is not a slidescope CAM store)")
    predict.set_defaults(run=_predict)
