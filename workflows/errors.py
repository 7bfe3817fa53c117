"""Errors of the workflows package, under the one hierarchy (:class:`~slidescope.wsi.errors.SlideError`).

- :class:`InputError`: an INPUT of ``slidescope run`` that names no slide (a missing path, an empty
  folder, a manifest CSV with a bad row, two slides with one id).
- :class:`ConfigurationError`: options of a batch that cannot work together (an output folder that
  holds another run, a model that is not a merged slide model).
- :class:`SlideFailure`: what one slide of a batch failed with, carried into its ``predictions.csv`` row.
- :class:`UnsuitableSlideError`: a slide the slide model cannot analyse (no mpp, dark-field, too small),
  with what a batch or a notebook user can do about it.

The whole hierarchy of wsi/, tiling/ and models/ is re-exported by ``slidescope.workflows``.
"""

from __future__ import annotations

from slidescope.wsi.errors import ParameterError, SlideError

__all__ = ["WorkflowError", "InputError", "ConfigurationError", "SlideFailure", "UnsuitableSlideError"]


class WorkflowError(SlideError):
    """Base of the errors the workflows package raises itself."""


class InputError(WorkflowError, ParameterError):
    """An INPUT that names no slide, or a manifest CSV row that cannot be used (file, line and field named)."""


class ConfigurationError(WorkflowError):
    """Options of a batch that cannot be used together, or an output folder that belongs to another run."""


class SlideFailure(WorkflowError):
    """One slide failed: the message is what its ``predictions.csv`` row records as ``error``."""


class UnsuitableSlideError(WorkflowError):
    """A slide the slide model cannot analyse: no mpp, a dark-field (fluorescence) image, a slide too small."""
