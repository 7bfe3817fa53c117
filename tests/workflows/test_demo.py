"""The built-in demo job runs end to end on small generated slides and writes its outputs."""

from __future__ import annotations

import io

import cv2

from slidescope.tiling import TilePlan
from slidescope.workflows.demo import run_demo


def test_demo_runs_end_to_end(tmp_path):
    stream = io.StringIO()
    figures = run_demo(tmp_path, slides=1, width=6000, height=4500, tiles=64, stream=stream)
    text = stream.getvalue()
    assert "aperio" in text and "IoU with the ground truth" in text and "tiles/s" in text
    assert figures["aligned"] > 0 and figures["openslide_loop"] > 0
    outputs = tmp_path / "demo-0"
    assert cv2.imread(str(outputs / "tissue.png"), cv2.IMREAD_GRAYSCALE).any()
    assert cv2.imread(str(outputs / "haematoxylin-heatmap.png")).shape[2] == 3
    plan = TilePlan.load(outputs / "plan.parquet")
    assert len(plan.tiles("cell")) > len(plan.tiles("tissue")) > 0
    iou = float(text.split("IoU with the ground truth ")[1].split()[0])
    # A sanity bound: the 0.95 bar is tested in tests/tiling/test_tissue.py on larger slides; on
    # a 6000 px slide the detector's one-pixel outward rim and filled lumens weigh more.
    assert iou >= 0.9
