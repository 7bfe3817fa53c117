"""``Model``: one trained network behind the framework-free inference path.

The path is the same for both frameworks: check the images against the card (dtype, channels,
tile size and, when the caller says, the mpp), apply the card's stain normaliser if it has one,
cut the batch into chunks, hand each uint8 chunk to the framework adapter (which moves it to the
device and normalises it there), and turn the raw outputs into probabilities, class activation
maps and nuclei. Adapters implement only "run this batch" (:class:`~slidescope.models.backend.ModelBackend`).

A model pickles as its card and weights path (plus the device asked for) and loads once per
process through :mod:`slidescope.models.loading`'s cache, so a Dask worker loads it once however
many tasks carry it. A model that was never saved pickles with its weights as numpy arrays.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from slidescope.wsi.validation import parse_positive_float, parse_positive_int

from . import peaks
from .activations import class_activation_maps, sigmoid, softmax
from .architectures import feature_size
from .card import ModelCard
from .errors import ModelError, ModelInputError

if TYPE_CHECKING:
    from .backend import ModelBackend

__all__ = ["Model", "DEFAULT_PREDICT_BATCH", "MPP_TOLERANCE"]

#: Images per framework call when the caller gives no ``batch_size``.
DEFAULT_PREDICT_BATCH = 32
#: Relative difference between the caller's mpp and the card's that is still accepted.
MPP_TOLERANCE = 0.1


class Model:
    """A tissue or cell model ready to predict.

    Build one with :func:`~slidescope.models.load_model`, :func:`~slidescope.models.create_model`;
    write it with :func:`~slidescope.models.save_model`.

    Attributes
    ----------
    card : ModelCard
        The model's contract.
    directory : str or None
        Where it was loaded from or saved to; None for a model only in memory.
    device : str
        The device it runs on (``"cpu"``, ``"cuda"``).
    """

    def __init__(self, card: ModelCard, backend: "ModelBackend", *, directory: str | None = None,
                 requested_device: str = "auto", reload: Callable[..., "Model"] | None = None,
                 rebuild: Callable[..., "Model"] | None = None) -> None:
        # The loader passes the functions that rebuild a model after unpickling (from its directory
        # through the process cache, or from its weights), so this module never imports the loader.
        self._reload, self._rebuild = reload, rebuild
        self.card = card
        self.backend = backend
        self.directory = directory
        self.requested_device = requested_device
        self._stain = None
        if card.input.stain is not None:
            from slidescope.tiling import normalizer_from_dict

            self._stain = normalizer_from_dict(dict(card.input.stain))

    # -- identity --------------------------------------------------------------------------

    @property
    def task(self) -> str:
        return self.card.task

    @property
    def framework(self) -> str:
        return self.card.framework

    @property
    def device(self) -> str:
        return self.backend.device

    def __repr__(self) -> str:
        where = self.directory or "in memory"
        return f"<Model {self.card.name!r} ({self.task}, {self.framework} on {self.device}, {where})>"

    def __reduce__(self) -> tuple[Any, ...]:
        if self.directory is not None and self._reload is not None:
            return (self._reload, (self.directory, self.framework, self.requested_device))
        if self._rebuild is None:
            raise ModelError(f"{self!r}: cannot be pickled (built without a loader); use load_model or create_model")
        return (self._rebuild, (self.card.to_dict(), self.backend.get_weights(), self.requested_device))

    # -- the shared inference path -----------------------------------------------------------

    def check_images(self, images: Any, mpp: Any = None) -> np.ndarray:
        """``images`` as a C-contiguous uint8 ``(N, S, S, 3)`` array, or a :class:`ModelInputError`.

        ``S`` is the card's tile plus twice its context. ``mpp``, when given, must be within
        :data:`MPP_TOLERANCE` of the card's.
        """
        size = self.card.input.size
        expected = f"uint8 RGB images (N, {size}, {size}, 3)"
        if not isinstance(images, np.ndarray):
            raise ModelInputError(f"images: expected a numpy array of {expected}, got {type(images).__name__}")
        if images.dtype != np.uint8:
            raise ModelInputError(f"images: expected dtype uint8 ({expected}), got {images.dtype}")
        if images.ndim != 4:
            hint = " (one image? pass images[None])" if images.ndim == 3 else ""
            raise ModelInputError(f"images: expected 4 dimensions: {expected}, got shape {images.shape}{hint}")
        if images.shape[3] != 3:
            raise ModelInputError(f"images: expected 3 channels (RGB) in {expected}, got {images.shape[3]} "
                                  f"(shape {images.shape})")
        if images.shape[1:3] != (size, size):
            raise ModelInputError(
                f"images: expected tiles of {size} x {size} px (card {self.card.name!r}: tile {self.card.input.tile}"
                f" + 2 x context {self.card.input.context}), got width {images.shape[2]} x height {images.shape[1]} "
                f"(shape {images.shape})"
            )
        if mpp is not None:
            value = parse_positive_float(mpp, "mpp", error=ModelInputError)
            if abs(value - self.card.input.mpp) > MPP_TOLERANCE * self.card.input.mpp:
                raise ModelInputError(
                    f"mpp: expected {self.card.input.mpp:g} µm/px (card {self.card.name!r}, ±{MPP_TOLERANCE:.0%}), "
                    f"got {value:g}"
                )
        return np.ascontiguousarray(images)

    def _chunks(self, images: np.ndarray, batch_size: Any) -> Iterator[dict[str, np.ndarray]]:
        """Raw outputs of consecutive chunks of at most ``batch_size`` images."""
        size = DEFAULT_PREDICT_BATCH if batch_size is None else parse_positive_int(batch_size, "batch_size",
                                                                                   maximum=2**16)
        for start in range(0, len(images), size):
            chunk = images[start:start + size]
            if self._stain is not None:
                chunk = np.ascontiguousarray(self._stain.transform(chunk))
            yield self.backend.run(chunk)

    def predict(self, images: Any, *, mpp: Any = None, batch_size: Any = None) -> dict[str, np.ndarray]:
        """Outputs of the model for a batch of tiles.

        Parameters
        ----------
        images : ndarray
            uint8 ``(N, S, S, 3)`` RGB, ``S`` the card's input size.
        mpp : float, optional
            The images' resolution, checked against the card's.
        batch_size : int, optional
            Images per framework call (default :data:`DEFAULT_PREDICT_BATCH`).

        Returns
        -------
        dict of ndarray
            tissue: ``probs`` ``(N, K)``, ``cam`` ``(N, h, w, K)`` (at the feature stride: exactly,
            a class's mean CAM plus its bias is its logit), ``logits`` ``(N, K)``, ``embedding``
            ``(N, C)``. cell: ``heatmap`` ``(N, S, S)`` nucleus-centre probability, ``types``
            ``(N, S, S, T)`` type probabilities (softmax of the type logits), ``counts`` ``(N, T)``
            nuclei found in each image by type, ``embedding`` ``(N, C)``.

        Raises
        ------
        ModelInputError
            Images of the wrong type, dtype, shape or mpp.
        """
        images = self.check_images(images, mpp)
        parts: list[dict[str, np.ndarray]] = []
        if self.task == "tissue":
            weights, _ = self.backend.classifier()
            for raw in self._chunks(images, batch_size):
                parts.append({"probs": softmax(raw["logits"]), "cam": class_activation_maps(raw["features"], weights),
                              "logits": raw["logits"].astype(np.float32),
                              "embedding": raw["features"].mean(axis=(1, 2), dtype=np.float64).astype(np.float32)})
        else:
            for raw in self._chunks(images, batch_size):
                heatmap, types = sigmoid(raw["heatmap"]), softmax(raw["types"])
                found = self._peaks(heatmap, types)
                parts.append({"heatmap": heatmap, "types": types, "embedding": raw["embedding"].astype(np.float32),
                              "counts": peaks.count_by_type(found, len(heatmap), self.card.class_names)})
        if not parts:
            return self._empty_outputs()
        return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}

    def detect(self, images: Any, *, mpp: Any = None, batch_size: Any = None) -> pd.DataFrame:
        """Nuclei in a batch of tiles (cell models): columns ``image, x, y, type, score``.

        ``x`` and ``y`` are the column and row of the nucleus centre in input pixels, ``type`` the
        name of the most probable type at the centre, ``score`` the heatmap's probability there.
        Peaks are at least the card's ``thresholds.min_distance_um`` apart and score at least its
        ``thresholds.nucleus_score``. Only the heatmap and type map of one chunk are held at a time.

        Raises
        ------
        ModelError
            The model is not a cell model.
        ModelInputError
            Images of the wrong type, dtype, shape or mpp.
        """
        if self.task != "cell":
            raise ModelError(f"detect: expected a cell model, got the {self.task} model {self.card.name!r}")
        images = self.check_images(images, mpp)
        frames = []
        offset = 0
        for raw in self._chunks(images, batch_size):
            found = self._peaks(sigmoid(raw["heatmap"]), softmax(raw["types"]))
            found["image"] += offset
            offset += len(raw["heatmap"])
            frames.append(found)
        if not frames:
            return self._peaks(np.zeros((0, 1, 1), np.float32), np.zeros((0, 1, 1, len(self.card.classes)), np.float32))
        return pd.concat(frames, ignore_index=True)

    def _peaks(self, heatmap: np.ndarray, types: np.ndarray) -> pd.DataFrame:
        thresholds = self.card.thresholds
        return peaks.detect(heatmap, types, min_distance_px=thresholds["min_distance_um"] / self.card.input.mpp,
                            threshold=thresholds["nucleus_score"], type_names=self.card.class_names)

    def _empty_outputs(self) -> dict[str, np.ndarray]:
        """What :meth:`predict` returns for no images: every output with zero rows and its own shape."""
        arch, size, k = self.card.architecture, self.card.input.size, len(self.card.classes)
        width = arch.widths[-1]
        if self.task == "tissue":
            side = feature_size(arch, size)
            return {"probs": np.zeros((0, k), np.float32), "cam": np.zeros((0, side, side, k), np.float32),
                    "logits": np.zeros((0, k), np.float32), "embedding": np.zeros((0, width), np.float32)}
        return {"heatmap": np.zeros((0, size, size), np.float32), "types": np.zeros((0, size, size, k), np.float32),
                "counts": np.zeros((0, k), np.int64), "embedding": np.zeros((0, width), np.float32)}
