"""Merge: read checkpoints of any framework, remap their names into one graph, prove nothing was lost.

Framework-free here: :func:`read_checkpoint` (torch, safetensors, TensorFlow, Keras files as one
ordered mapping ``name -> numpy array``), :class:`Remap` rules and :func:`plan`, whose
:class:`RemapReport` lists every mapped, ignored, missing, unexpected, mismatched and colliding
name at once. torch and TensorFlow are imported only by the readers that need them, on use.

>>> from slidescope.merge import read_checkpoint                          # doctest: +SKIP
>>> checkpoint = read_checkpoint("tissue/weights.safetensors")           # doctest: +SKIP
>>> checkpoint.format, checkpoint.framework, len(checkpoint)             # doctest: +SKIP
('safetensors', 'torch', 42)
"""

from slidescope.wsi.errors import ParameterError, SlideError

from .checkpoint import FORMATS, KINDS, Checkpoint, TensorInfo, kind_of_name
from .errors import CheckpointError, CheckpointNotFoundError, RemapError
from .merged import MergedCard, SlideModel, load_merged
from .reading import READ_FORMATS, detect_format, read_checkpoint

__all__ = [
    "SlideError", "ParameterError", "CheckpointError", "CheckpointNotFoundError", "RemapError",
    "Checkpoint", "TensorInfo", "KINDS", "FORMATS", "READ_FORMATS", "kind_of_name", "read_checkpoint", "detect_format",
    "MergedCard", "SlideModel", "load_merged",
]
