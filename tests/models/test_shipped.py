"""The shipped models: each card matches its weights' sha256, and each model runs once."""

from __future__ import annotations

import numpy as np
import pytest

from slidescope.models import SHIPPED_DIR, load_model
from slidescope.models.card import CARD_FILE, ModelCard

SHIPPED = [(task, framework) for task in ("tissue", "cell") for framework in ("torch", "tf")]


@pytest.mark.parametrize("task, framework", SHIPPED)
def test_shipped_model_matches_its_card_and_runs(task, framework):
    directory = SHIPPED_DIR / f"{task}-{framework}"
    if not (directory / CARD_FILE).is_file():
        pytest.skip(f"{directory}: not built in this checkout (make models)")
    pytest.importorskip("torch" if framework == "torch" else "keras")
    card = ModelCard.load(directory)
    card.check_weights(directory)  # sha256 of the weights is the card's
    assert card.task == task and card.framework == framework
    assert (directory / card.weights.file).stat().st_size < 8 * 2**20  # a few MB at most
    model = load_model(task, framework=framework, device="cpu")  # found by name from the package
    assert model.card == card
    size = card.input.size
    tile = np.full((1, size, size, 3), 230, np.uint8)
    out = model.predict(tile, mpp=card.input.mpp)
    assert all(np.isfinite(value).all() for value in out.values())
    for key in ("test_auc", "shifted_auc") if task == "tissue" else ("test_f1", "shifted_f1"):
        assert key in card.metrics, f"{directory}: the card records no {key}"
