"""Numeric options go through ``slidescope.wsi.validation``: ``nan``, ``inf``, ``1e400``, negative
and fractional counts are argparse errors that name the option (``type=float`` let them through)."""

from __future__ import annotations

import pytest

from slidescope.workflows.cli import main

SLIDE = "slide.svs"  # never opened: argparse refuses the value first

CASES = [
    (["tissue", SLIDE, "--out", "m.png", "--mpp"], "--mpp", ["nan", "inf", "-inf", "1e400", "0", "-8", "2e6", "x"]),
    (["info", SLIDE, "--slide-mpp"], "--slide-mpp", ["nan", "inf", "0", "-0.25", "1e400", "1" + "0" * 400]),
    (["tile", SLIDE, "--out", "p.parquet", "--mpp"], "--mpp", ["nan", "inf", "0"]),
    (["tile", SLIDE, "--out", "p.parquet", "--mpp", "1", "--tile"], "--tile", ["0", "-256", "1.5", "nan", "1e9"]),
    (["tile", SLIDE, "--out", "p.parquet", "--mpp", "1", "--overlap"], "--overlap", ["-1", "0.5", "inf"]),
    (["tile", SLIDE, "--out", "p.parquet", "--mpp", "1", "--context"], "--context", ["-1", "nan"]),
    (["tile", SLIDE, "--out", "p.parquet", "--mpp", "1", "--min-tissue"], "--min-tissue", ["nan", "-0.1", "1.5"]),
    (["tile", SLIDE, "--out", "p.parquet", "--mpp", "1", "--mask-mpp"], "--mask-mpp", ["nan", "0", "inf"]),
    (["synth", "s.svs", "--height", "512", "--width"], "--width", ["0", "1.5", "nan", "-1"]),
    (["synth", "s.svs", "--width", "512", "--height", "512", "--seed"], "--seed", ["-1", "0.5", "1e30"]),
    (["synth", "s.svs", "--width", "512", "--height", "512", "--mpp"], "--mpp", ["nan", "0", "inf"]),
    (["demo", "--workers"], "--workers", ["0", "nan", "2.5"]),
    (["run", SLIDE, "--out", "o", "--workers"], "--workers", ["0", "nan", "1.5"]),
    (["run", SLIDE, "--out", "o", "--threads-per-worker"], "--threads-per-worker", ["0", "inf"]),
    (["run", SLIDE, "--out", "o", "--batch-size"], "--batch-size", ["0", "nan", "-2"]),
    (["run", SLIDE, "--out", "o", "--min-tissue"], "--min-tissue", ["1.5", "nan"]),
    (["run", SLIDE, "--out", "o", "--mask-mpp"], "--mask-mpp", ["0", "inf"]),
    (["predict", "M", SLIDE, "--out", "o", "--batch-size"], "--batch-size", ["0", "nan", "1.5", "-2"]),
    (["predict", "M", SLIDE, "--out", "o", "--workers"], "--workers", ["0", "inf"]),
    (["predict", "M", SLIDE, "--out", "o", "--slide-mpp"], "--slide-mpp", ["nan", "0"]),
    (["predict", "M", SLIDE, "--out", "o", "--min-tissue"], "--min-tissue", ["1.5", "nan"]),
    (["train", "cell", "--slides", SLIDE, "--out", "o", "--epochs"], "--epochs", ["0", "nan", "1.5"]),
    (["train", "cell", "--slides", SLIDE, "--out", "o", "--lr"], "--lr", ["0", "nan", "-1", "100"]),
    (["train", "cell", "--slides", SLIDE, "--out", "o", "--crop"], "--crop", ["0", "inf"]),
    (["synth", "s.svs", "--width", "512", "--height", "512", "--stain-shift"], "--stain-shift", ["nan", "1.5"]),
]


@pytest.mark.parametrize("argv, option, value",
                         [(argv, option, value) for argv, option, values in CASES for value in values])
def test_bad_numeric_option_is_an_argparse_error_naming_it(argv, option, value, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, value])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}: expected" in err, err
    assert "Traceback" not in err and list(tmp_path.iterdir()) == []


def test_good_numbers_are_parsed_as_numbers():
    from slidescope.workflows.cli import build_parser

    args = build_parser().parse_args(["tile", SLIDE, "--out", "p.parquet", "--mpp", "0.5", "--tile", "224",
                                      "--overlap", "16.0", "--min-tissue", "1", "--slide-mpp", "0.2527"])
    assert (args.mpp, args.tile, args.overlap, args.min_tissue, args.slide_mpp) == (0.5, 224, 16, 1.0, 0.2527)
    assert type(args.tile) is int and type(args.overlap) is int and type(args.mpp) is float


@pytest.mark.parametrize("line", [
    "info S --json --slide-mpp 0.25 --backend tiff",
    "synth OUT.svs --width 20000 --height 15000 --seed 0 --no-tumour --pen-marks --mpp 0.5 --overwrite",
    "tissue S --out mask.png --mpp 8 --method ihc --backend auto --slide-mpp 0.25 --overwrite",
    "tile S --mpp 0.5 --tile 256 --overlap 32 --context 0 --out plan.parquet --min-tissue 0.5 --mask-mpp 8 "
    "--no-mask --method otsu --backend openslide --slide-mpp 0.25 --overwrite",
    "tile S --scale 2:256 --scale 0.5:256:32 --out plan.parquet",
    "demo --out demo-output --width 6000 --height 4500 --workers 2",
    "run slides/ S cohort.csv --out DIR --model DIR --workers 2 --threads-per-worker 1 --scheduler tcp://h:8786 "
    "--device cuda --no-resume --overwrite --dry-run --cell-everywhere --quiet --batch-size 32 --min-tissue 0.25 "
    "--mask-mpp 8 --method otsu",
    "predict tissue S --out DIR --framework tf --batch-size 32 --workers 2 --device cpu --slide-mpp 0.25 "
    "--min-tissue 0.5 --mask-mpp 8 --method otsu --backend auto --overwrite",
    "predict models/cell-model S --out DIR",
    "synth OUT.svs --width 20000 --height 15000 --stain-shift 0.6 --nucleus-scale 1.25 --nucleus-density 1.3",
    "train tissue --slides a.svs b.svs --out DIR --framework tf --annotations qupath --val-slides c.svs "
    "--classes Other Tumor --unlabelled-as Other --epochs 10 --batch-size 16 --lr 1e-3 --weight-decay 1e-4 "
    "--steps-per-epoch 40 --crop 128 --workers 2 --device cpu --seed 0 --resume --min-tissue 0.25 --slide-mpp 0.25",
])
def test_every_documented_command_and_option_still_parses(line):
    from slidescope.workflows.cli import build_parser

    args = build_parser().parse_args(line.split())
    assert args.command == line.split()[0] and callable(args.run)
