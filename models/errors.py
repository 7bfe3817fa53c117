"""The errors of slidescope.models: leaves of the one hierarchy of :mod:`slidescope.wsi.errors`.

Every class derives from :class:`~slidescope.wsi.errors.SlideError` (a ``ValueError``), so the
command line reports each as one line, and a leaf also subclasses the builtin a caller would catch.

- :class:`ModelCardError`: a ``card.json`` that is missing, malformed or does not match its weights
  (the message names the file and the key).
- :class:`ModelNotFoundError`: no model directory or shipped model of that name.
- :class:`ModelInputError`: images that do not match the card (tile size, dtype, channels, mpp);
  the message says what was expected and what came.
- :class:`FrameworkError`: the framework a card needs is not installed, or is configured in a way
  the model cannot run on (Keras on another backend, CUDA asked for where there is none).
- :class:`ModelWeightsError`: a weights file that cannot be read or does not fit the architecture.
- :class:`AnnotationError`: a training-annotation file (QuPath GeoJSON) that is missing, is not
  JSON, or holds a feature that cannot be a label (the message names the file and the feature index).
"""

from __future__ import annotations

from slidescope.wsi.errors import SlideError

__all__ = ["ModelError", "ModelCardError", "ModelNotFoundError", "ModelInputError", "FrameworkError",
           "ModelWeightsError", "AnnotationError"]


class ModelError(SlideError):
    """Base of the errors of :mod:`slidescope.models`."""


class ModelCardError(ModelError):
    """A model card that is missing, malformed, or disagrees with its weights file."""


class ModelNotFoundError(ModelError, FileNotFoundError):
    """No model at that path, and no shipped model of that name."""


class ModelInputError(ModelError):
    """Images that do not match the model's input contract."""


class FrameworkError(ModelError, RuntimeError):
    """The framework (or device) a model needs is missing or unusable in this process."""


class ModelWeightsError(ModelError, OSError):
    """A weights file that cannot be read, or whose tensors do not fit the architecture."""


class AnnotationError(ModelError):
    """An annotation file (QuPath GeoJSON) that cannot be read, or a feature in it that cannot be a label.

    The message names the file and, for a bad feature, its index in the file
    (``slide.geojson: feature 3: ...``).
    """
