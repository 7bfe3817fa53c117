"""Models: the tissue and cell models (PyTorch and Keras 3 on TensorFlow), their cards, one inference path.

Framework-free here: the card (:class:`ModelCard`), the inference path (:class:`Model`), class
activation maps and nucleus peak finding. The torch and Keras networks are private adapters that
:mod:`slidescope.models.registry` imports on first use, so ``import slidescope.models`` loads neither
framework.

>>> from slidescope.models import load_model                       # doctest: +SKIP
>>> model = load_model("path/to/tissue-model")                      # doctest: +SKIP
>>> out = model.predict(tiles)        # uint8 (N, 256, 256, 3) at model.card.input.mpp   # doctest: +SKIP
>>> out["probs"].shape, out["cam"].shape                            # doctest: +SKIP
((N, 3), (N, 16, 16, 3))
"""

from slidescope.wsi.errors import OutputError, OutputExistsError, ParameterError, SlideError

from .activations import class_activation_maps, logits_from_cams, sigmoid, softmax
from .architectures import Architecture, LayerSpec, default_architecture, layer_specs, weight_shapes
from .card import CARD_FILE, FRAMEWORKS, TASK_OUTPUTS, TASKS, ClassSpec, InputSpec, ModelCard, WeightsSpec
from .errors import (
    FrameworkError,
    ModelCardError,
    ModelError,
    ModelInputError,
    ModelNotFoundError,
    ModelWeightsError,
)
from .loading import DEVICES, SHIPPED_DIR, clear_model_cache, create_model, load_model, save_model
from .model import Model

__all__ = [
    "SlideError", "ParameterError", "OutputError", "OutputExistsError",
    "ModelError", "ModelCardError", "ModelNotFoundError", "ModelInputError", "FrameworkError", "ModelWeightsError",
    "ModelCard", "ClassSpec", "InputSpec", "WeightsSpec", "CARD_FILE", "TASKS", "FRAMEWORKS", "TASK_OUTPUTS",
    "Architecture", "LayerSpec", "default_architecture", "layer_specs", "weight_shapes",
    "Model", "load_model", "save_model", "create_model", "clear_model_cache", "DEVICES", "SHIPPED_DIR",
    "softmax", "sigmoid", "class_activation_maps", "logits_from_cams",
]
