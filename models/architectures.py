"""The two architectures, described once and framework-free: layer names, order, kinds and shapes.

The torch and Keras definitions (private adapters) both build their layers from
:func:`layer_specs`, so one set of weights fits both once its layout is converted, and both agree
on every name. What differs between frameworks is written down here too:

- weight names and layouts (:func:`weight_shapes`): torch ``conv.weight`` is ``(O, I, kH, kW)``,
  Keras ``conv/kernel`` is ``(kH, kW, I, O)``; a dense ``weight`` is ``(K, C)`` in torch and its
  ``kernel`` ``(C, K)`` in Keras; BatchNorm ``weight/bias/running_mean/running_var`` are Keras'
  ``gamma/beta/moving_mean/moving_variance``;
- padding (:func:`conv_padding`): ``"tf_same"`` pads as TensorFlow's ``padding="same"`` does, which
  for a stride-2 convolution of an even input puts the extra pixel after (bottom/right) only;
  ``"symmetric"`` pads ``kernel // 2`` on every side, as ``nn.Conv2d(padding=1)`` does. Each
  framework implements both, so a checkpoint keeps the convention it was trained with;
- BatchNorm epsilon: Keras' default is 1e-3, torch's 1e-5; the architecture carries it.

Tissue model (``"tissue_fcn"``): blocks ``block{i}`` of ``depth`` convolutions (the first of stride
2, the others stride 1), each followed by BatchNorm and ReLU; global average pooling; one dense
``classifier``. Its feature stride is ``2 ** len(widths)``.

Cell model (``"cell_unet"``): encoder blocks ``enc{i}`` (``depth`` stride-1 convolutions with
BatchNorm and ReLU, then 2x2 max pooling), a ``bottleneck`` block, decoder blocks ``dec{i}``
(2x nearest upsampling, concatenation ``[upsampled, skip]`` on the channel axis, ``depth``
convolutions), and two 1x1 heads: ``heatmap_head`` (one channel, nucleus-centre logit) and
``type_head`` (one logit per nucleus type). Its embedding is the pooled bottleneck. Inputs must be
a multiple of ``2 ** (len(widths) - 1)`` on each side.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ARCHITECTURES",
    "PADDINGS",
    "WEIGHT_NAMING",
    "BATCHNORM_NAMES",
    "Architecture",
    "LayerSpec",
    "layer_specs",
    "weight_shapes",
    "conv_padding",
    "feature_stride",
    "feature_size",
    "size_multiple",
    "initial_bias",
    "HEATMAP_PRIOR",
    "default_architecture",
]

#: Architecture names, by task.
ARCHITECTURES = {"tissue": "tissue_fcn", "cell": "cell_unet"}
#: Per framework: the separator between layer and tensor names, and the name of a conv or dense kernel.
WEIGHT_NAMING = {"torch": (".", "weight"), "tf": ("/", "kernel")}
#: Per framework: BatchNorm's tensors in the same order (scale, offset, running mean, running variance).
BATCHNORM_NAMES = {"torch": ("weight", "bias", "running_mean", "running_var"),
                   "tf": ("gamma", "beta", "moving_mean", "moving_variance")}
#: Padding conventions every framework implements.
PADDINGS = ("tf_same", "symmetric")
#: The probability the untrained heatmap head gives every pixel. Nucleus centres are about 1 % of
#: the pixels; starting at 0.5 (a zero bias) makes the first steps' focal loss, summed over every
#: background pixel, swamp the gradients (CenterNet starts its heatmaps at 0.1 for the same reason).
HEATMAP_PRIOR = 0.1


@dataclass(frozen=True)
class Architecture:
    """An architecture and its configuration (the card's ``architecture`` section).

    Attributes
    ----------
    name : str
        ``"tissue_fcn"`` or ``"cell_unet"``.
    widths : tuple of int
        Channels of each block (tissue: per stride-2 block; cell: per U-Net level, the last
        being the bottleneck).
    depth : int
        Convolutions per block.
    kernel : int
        Edge of the convolution kernels (odd).
    batchnorm_epsilon : float
        Added to the variance in BatchNorm (Keras' default 1e-3, torch's 1e-5).
    batchnorm_momentum : float
        torch's convention: the weight of the new batch in the running statistics (Keras'
        ``momentum`` is ``1 - this``).
    padding : str
        ``"tf_same"`` or ``"symmetric"`` (see the module docstring).
    """

    name: str
    widths: tuple[int, ...]
    depth: int = 2
    kernel: int = 3
    batchnorm_epsilon: float = 1e-3
    batchnorm_momentum: float = 0.01
    padding: str = "tf_same"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "widths": list(self.widths), "depth": self.depth, "kernel": self.kernel,
                "batchnorm_epsilon": self.batchnorm_epsilon, "batchnorm_momentum": self.batchnorm_momentum,
                "padding": self.padding}


@dataclass(frozen=True)
class LayerSpec:
    """One layer with weights, in the order the network applies it.

    ``kind`` is ``"conv"``, ``"batchnorm"`` or ``"dense"``; a conv ``bias`` is False when a
    BatchNorm follows it.
    """

    name: str
    kind: str
    in_channels: int
    out_channels: int
    kernel: int = 1
    stride: int = 1
    bias: bool = True


def default_architecture(task: str, framework: str) -> Architecture:
    """The default configuration of ``task``'s model, with ``framework``'s own BatchNorm epsilon and
    padding convention (a model created in torch looks like a torch model, and a Keras one like Keras)."""
    epsilon, padding = (1e-5, "symmetric") if framework == "torch" else (1e-3, "tf_same")
    if task == "tissue":
        return Architecture("tissue_fcn", (16, 32, 64, 128), 2, 3, epsilon, 0.1, padding)
    return Architecture("cell_unet", (8, 16, 32), 2, 3, epsilon, 0.1, padding)


def _conv_block(prefix: str, in_channels: int, width: int, arch: Architecture, first_stride: int) -> list[LayerSpec]:
    layers = []
    for j in range(1, arch.depth + 1):
        stride = first_stride if j == 1 else 1
        layers.append(LayerSpec(f"{prefix}_conv{j}", "conv", in_channels, width, arch.kernel, stride, bias=False))
        layers.append(LayerSpec(f"{prefix}_bn{j}", "batchnorm", width, width))
        in_channels = width
    return layers


def layer_specs(arch: Architecture, outputs: int) -> list[LayerSpec]:
    """Every layer with weights, in order; ``outputs`` is the class count (tissue) or type count (cell)."""
    layers: list[LayerSpec] = []
    if arch.name == "tissue_fcn":
        channels = 3
        for i, width in enumerate(arch.widths, 1):
            layers += _conv_block(f"block{i}", channels, width, arch, first_stride=2)
            channels = width
        layers.append(LayerSpec("classifier", "dense", channels, outputs))
        return layers
    if arch.name == "cell_unet":
        channels = 3
        for i, width in enumerate(arch.widths[:-1], 1):
            layers += _conv_block(f"enc{i}", channels, width, arch, first_stride=1)
            channels = width
        layers += _conv_block("bottleneck", channels, arch.widths[-1], arch, first_stride=1)
        channels = arch.widths[-1]
        for i in range(len(arch.widths) - 1, 0, -1):
            skip = arch.widths[i - 1]
            layers += _conv_block(f"dec{i}", channels + skip, skip, arch, first_stride=1)
            channels = skip
        layers.append(LayerSpec("heatmap_head", "conv", channels, 1))
        layers.append(LayerSpec("type_head", "conv", channels, outputs))
        return layers
    raise ValueError(f"unknown architecture {arch.name!r}; expected one of {sorted(ARCHITECTURES.values())}")


def weight_shapes(arch: Architecture, outputs: int, framework: str) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every stored tensor, in ``framework``'s names and layouts, in layer order.

    torch names are ``layer.weight`` (BatchNorm buffers and ``num_batches_tracked`` included);
    Keras names are ``layer/kernel``, ``layer/gamma``...
    """
    separator, kernel_name = WEIGHT_NAMING[framework]
    shapes: dict[str, tuple[int, ...]] = {}
    for layer in layer_specs(arch, outputs):
        i, o, k = layer.in_channels, layer.out_channels, layer.kernel
        prefix = f"{layer.name}{separator}"
        if layer.kind == "batchnorm":
            shapes.update({prefix + suffix: (o,) for suffix in BATCHNORM_NAMES[framework]})
            if framework == "torch":
                shapes[prefix + "num_batches_tracked"] = ()
            continue
        channels_first = framework == "torch"
        if layer.kind == "conv":
            shapes[prefix + kernel_name] = (o, i, k, k) if channels_first else (k, k, i, o)
        else:
            shapes[prefix + kernel_name] = (o, i) if channels_first else (i, o)
        if layer.bias:
            shapes[prefix + "bias"] = (o,)
    return shapes


def conv_padding(size: int, kernel: int, stride: int, padding: str) -> tuple[int, int]:
    """Pixels to pad ``(before, after)`` one axis of ``size`` pixels for a convolution.

    ``"tf_same"`` reproduces TensorFlow: the output has ``ceil(size / stride)`` pixels and the
    total padding ``max((out - 1) * stride + kernel - size, 0)`` is split with the extra pixel
    after. ``"symmetric"`` pads ``kernel // 2`` on both sides.
    """
    if padding == "symmetric":
        return kernel // 2, kernel // 2
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def feature_stride(arch: Architecture) -> int:
    """Input pixels per feature-map pixel of the tissue model (its CAM resolution)."""
    return 2 ** len(arch.widths) if arch.name == "tissue_fcn" else 1


def feature_size(arch: Architecture, size: int) -> int:
    """Edge of the tissue model's feature map (its CAM) for ``size`` px inputs: each stride-2 block
    makes ``ceil(n / 2)`` of ``n`` (both padding conventions); the input itself for the cell model."""
    if arch.name != "tissue_fcn":
        return size
    for _ in arch.widths:
        size = -(-size // 2)
    return size


def initial_bias(name: str) -> float:
    """The initial bias of layer ``name`` in both frameworks: the logit of :data:`HEATMAP_PRIOR` for the
    cell model's ``heatmap_head``, zero for every other layer."""
    return math.log(HEATMAP_PRIOR / (1.0 - HEATMAP_PRIOR)) if name == "heatmap_head" else 0.0


def size_multiple(arch: Architecture) -> int:
    """Input edges must be a multiple of this (the cell U-Net pools ``len(widths) - 1`` times)."""
    return 2 ** (len(arch.widths) - 1) if arch.name == "cell_unet" else 1
