"""The tissue and cell networks as Keras 3 functional models, built from :func:`layer_specs`.

Every layer with weights takes its spec's name, so ``f"{layer.name}/{variable.name}"`` over
``model.weights`` is exactly :func:`~slidescope.models.architectures.weight_shapes` (``"tf"``).
The ``keras`` module is passed in (imported by the adapter once the backend is checked), so
importing this module loads no framework.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..architectures import Architecture, LayerSpec, initial_bias, layer_specs

__all__ = ["tissue_model", "cell_model"]


class _Builder:
    """Applies the specs in order, one layer per spec, with deterministic per-layer seeds."""

    def __init__(self, keras: Any, arch: Architecture, outputs: int, seed: int) -> None:
        self.keras = keras
        self.arch = arch
        self.specs: Iterator[LayerSpec] = iter(layer_specs(arch, outputs))
        self.seed = seed
        self.count = 0

    def next(self, kind: str, prefix: str | None = None) -> LayerSpec:
        spec = next(self.specs)
        if spec.kind != kind or (prefix is not None and not spec.name.startswith(prefix)):
            raise AssertionError(f"layer spec {spec.name} ({spec.kind}) out of order; expected a {kind}")
        self.count += 1
        return spec

    def initializer(self) -> Any:
        """Keras' default kernel initialiser (Glorot uniform), seeded from the seed and the layer's index."""
        return self.keras.initializers.GlorotUniform(seed=self.seed * 1009 + self.count)

    def conv(self, x: Any, prefix: str | None = None) -> Any:
        layers, spec = self.keras.layers, self.next("conv", prefix)
        padding = "same"
        if self.arch.padding == "symmetric" and spec.kernel > 1:
            x = layers.ZeroPadding2D(spec.kernel // 2, name=f"{spec.name}_pad")(x)
            padding = "valid"
        elif self.arch.padding not in ("tf_same", "symmetric"):
            raise ValueError(f"unknown padding {self.arch.padding!r}")
        return layers.Conv2D(spec.out_channels, spec.kernel, strides=spec.stride, padding=padding,
                             use_bias=spec.bias, kernel_initializer=self.initializer(),
                             bias_initializer=self.keras.initializers.Constant(initial_bias(spec.name)),
                             name=spec.name)(x)

    def block(self, x: Any, prefix: str) -> Any:
        """``depth`` x (conv -> BatchNorm -> ReLU); the specs give each conv's stride."""
        layers = self.keras.layers
        for j in range(1, self.arch.depth + 1):
            x = self.conv(x, f"{prefix}_conv")
            spec = self.next("batchnorm", f"{prefix}_bn")
            x = layers.BatchNormalization(epsilon=self.arch.batchnorm_epsilon,
                                          momentum=1.0 - self.arch.batchnorm_momentum, name=spec.name)(x)
            x = layers.ReLU(name=f"{prefix}_relu{j}")(x)
        return x

    def done(self) -> None:
        left = [spec.name for spec in self.specs]
        if left:
            raise AssertionError(f"layer specs not built: {left}")


def tissue_model(keras: Any, arch: Architecture, n_classes: int, input_size: int, seed: int = 0) -> Any:
    """The tissue FCN: stride-2 blocks, global average pooling, a dense ``classifier``.

    Takes normalised float32 ``(N, S, S, 3)``; returns ``{"features": (N, h, w, C), "logits": (N, K)}``.
    """
    layers, build = keras.layers, _Builder(keras, arch, n_classes, seed)
    inputs = keras.Input((input_size, input_size, 3), dtype="float32", name="image")
    x = inputs
    for i in range(1, len(arch.widths) + 1):
        x = build.block(x, f"block{i}")
    pooled = layers.GlobalAveragePooling2D(name="pool")(x)
    spec = build.next("dense", "classifier")
    logits = layers.Dense(spec.out_channels, kernel_initializer=build.initializer(), name=spec.name)(pooled)
    build.done()
    return keras.Model(inputs, {"features": x, "logits": logits}, name=arch.name)


def cell_model(keras: Any, arch: Architecture, n_types: int, input_size: int, seed: int = 0) -> Any:
    """The cell U-Net: encoder, bottleneck, decoder with ``[upsampled, skip]`` concatenation, 1x1 heads.

    Takes normalised float32 ``(N, S, S, 3)``; returns ``{"heatmap": (N, S, S), "types": (N, S, S, T),
    "embedding": (N, C)}`` (logits, and the average-pooled bottleneck).
    """
    layers, build = keras.layers, _Builder(keras, arch, n_types, seed)
    inputs = keras.Input((input_size, input_size, 3), dtype="float32", name="image")
    x, skips = inputs, {}
    levels = len(arch.widths) - 1
    for i in range(1, levels + 1):
        skips[i] = build.block(x, f"enc{i}")
        x = layers.MaxPooling2D(2, name=f"enc{i}_pool")(skips[i])
    x = build.block(x, "bottleneck")
    embedding = layers.GlobalAveragePooling2D(name="embedding_pool")(x)
    for i in range(levels, 0, -1):
        up = layers.UpSampling2D(2, interpolation="nearest", name=f"dec{i}_up")(x)
        x = layers.Concatenate(axis=-1, name=f"dec{i}_concat")([up, skips[i]])
        x = build.block(x, f"dec{i}")
    heatmap = build.conv(x, "heatmap_head")
    types = build.conv(x, "type_head")
    build.done()
    heatmap = layers.Reshape((input_size, input_size), name="heatmap_squeeze")(heatmap)
    return keras.Model(inputs, {"heatmap": heatmap, "types": types, "embedding": embedding}, name=arch.name)
