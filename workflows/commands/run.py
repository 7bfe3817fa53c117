"""``slidescope run``: the merged slide model over a batch of slides on Dask (:func:`~slidescope.workflows.batch.run_batch`).

Exit status 0 when every slide is ok, 1 when any failed (the last line says how many); 2 for an
error before any slide ran (inputs, model, output folder).
"""

from __future__ import annotations

import argparse

from ._options import FRACTION, MPP, POSITIVE_INT, add_exact_resample_option, add_method_option

__all__ = ["register", "EXIT_SLIDES_FAILED"]

#: Exit status of a batch in which at least one slide failed.
EXIT_SLIDES_FAILED = 1


def _dry_run(args: argparse.Namespace, settings: object) -> int:
    from ..dry_run import dry_run

    frame = dry_run(args.inputs, model=args.model, settings=settings, cores=args.workers)
    for row in frame.itertuples(index=False):
        if row.status != "ok":
            print(f"error    {row.slide_id}: {row.error}")
            continue
        cascade = "" if args.cell_everywhere else " (at most: the cascade reads those under flagged tiles)"
        # int(): a failed slide's row makes the count columns float (NaN)
        print(f"{row.slide_id}: tissue {row.tissue_area_mm2:.1f} mm², {int(row.coarse_tiles)} coarse tiles, "
              f"{int(row.fine_tiles)} fine tiles{cascade}; estimated {row.estimated_seconds_min:.0f}-"
              f"{row.estimated_seconds_max:.0f} s on {args.workers or 'all'} cores")
    ok = frame[frame.status == "ok"]
    print(f"{len(frame)} slides: {int(ok.coarse_tiles.sum()) if len(ok) else 0} coarse tiles, "
          f"{int(ok.fine_tiles.sum()) if len(ok) else 0} fine tiles at most; estimated "
          f"{ok.estimated_seconds_min.sum() / 60:.1f}-{ok.estimated_seconds_max.sum() / 60:.1f} min; "
          f"{int((frame.status != 'ok').sum())} cannot be planned")
    return 0 if (frame.status == "ok").all() else EXIT_SLIDES_FAILED


def _run(args: argparse.Namespace) -> int:
    from ..batch import run_batch
    from ..pipeline import Settings
    from ..run_display import BatchDisplay

    settings = Settings(min_tissue=args.min_tissue, mask_mpp=args.mask_mpp, method=args.method,
                        cascade=not args.cell_everywhere, batch_size=args.batch_size,
                        exact_resample=args.exact_resample)
    if args.dry_run:
        return _dry_run(args, settings)
    display = BatchDisplay(quiet=args.quiet)
    with display.running():
        frame = run_batch(args.inputs, args.out, model=args.model, settings=settings, workers=args.workers,
                          threads_per_worker=args.threads_per_worker, scheduler=args.scheduler, device=args.device,
                          resume=not args.no_resume, overwrite=args.overwrite, events=display.events())
    display.summary(frame, args.out)
    return EXIT_SLIDES_FAILED if (frame.status != "ok").any() else 0


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``run`` to the root parser's subcommands."""
    run = commands.add_parser(
        "run", help="the slide model over a batch of slides on Dask: predictions, maps, QuPath files, a report",
        description="Run the merged slide model (tissue + cell + head) over every slide of INPUT on a Dask cluster "
                    "(a local one by default, its dashboard printed) and write per slide prediction.json, tiles and "
                    "cells tables (Parquet), OME-Zarr maps, QuPath GeoJSON and an overlay, and per batch "
                    "predictions.csv, run.json and report.html. A slide that fails is an error row; the batch goes "
                    "on; exit status 1 when any slide failed. Running again resumes.")
    run.add_argument("inputs", nargs="+", metavar="INPUT",
                     help="slide files, folders (searched for slides) or manifest CSVs (path[,slide_id,label,mpp])")
    run.add_argument("--out", required=True, help="output folder (created when its parent exists; a run there resumes)")
    run.add_argument("--model", default=None,
                     help="a merged slide model directory (slidescope merge / train head); default: the shipped one")
    run.add_argument("--workers", type=POSITIVE_INT, default=None, help="local Dask worker processes (default: one per core)")
    run.add_argument("--threads-per-worker", type=POSITIVE_INT, default=1, help="threads of each worker (default 1)")
    run.add_argument("--scheduler", default=None, metavar="ADDRESS",
                     help="run on an existing Dask cluster (tcp://host:8786) instead of a local one")
    run.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                     help="where the model runs; cuda: model tasks take the worker resource GPU=1")
    add_exact_resample_option(run)
    run.add_argument("--no-resume", action="store_true", help="run every slide again, even those done with this configuration")
    run.add_argument("--overwrite", action="store_true",
                     help="write into a folder holding other files, or a run of another configuration (its slides are redone)")
    run.add_argument("--dry-run", action="store_true", help="print the plan (tissue area, tiles per scale, time estimate); no model")
    run.add_argument("--cell-everywhere", action="store_true",
                     help="run the cell model under every coarse tile (default: only under tiles the tissue model flags)")
    run.add_argument("--quiet", action="store_true", help="print only the summary")
    run.add_argument("--batch-size", type=POSITIVE_INT, default=32, help="tiles per task (default 32)")
    run.add_argument("--min-tissue", type=FRACTION, default=0.25, help="minimum tissue fraction of a tile (default 0.25)")
    run.add_argument("--mask-mpp", type=MPP, default=8.0, help="µm per pixel of the tissue mask (default 8)")
    add_method_option(run)
    run.set_defaults(run=_run)
