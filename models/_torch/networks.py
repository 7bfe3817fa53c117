"""The tissue FCN and the cell U-Net as ``nn.Module``, built from :func:`~slidescope.models.architectures.layer_specs`.

Every layer with weights is a direct attribute named as its spec (``block1_conv1``, ``enc1_bn2``,
``classifier``...), so ``state_dict()`` keys, order and shapes are exactly
``weight_shapes(arch, outputs, "torch")``. The topology is the one documented in
:mod:`slidescope.models.architectures`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..architectures import Architecture, LayerSpec, conv_padding, initial_bias, layer_specs

__all__ = ["TissueNet", "CellNet"]

#: One block: its (conv, batchnorm) spec pairs, in order.
_Block = list[tuple[LayerSpec, LayerSpec]]


class _SpecNet(nn.Module):
    """Creates the layers of ``layer_specs(arch, outputs)`` as attributes and initialises them from ``seed``.

    The layers are created on the meta device and then materialised, so building a network draws
    nothing from torch's global random generator.
    """

    def __init__(self, arch: Architecture, outputs: int, seed: int) -> None:
        super().__init__()
        self.arch = arch
        self.specs = layer_specs(arch, outputs)
        self._pad_in_forward: set[str] = set()
        for spec in self.specs:
            setattr(self, spec.name, self._make(spec))
        self.to_empty(device="cpu")
        self._initialise(torch.Generator().manual_seed(seed))

    def _make(self, spec: LayerSpec) -> nn.Module:
        if spec.kind == "dense":
            return nn.Linear(spec.in_channels, spec.out_channels, bias=spec.bias, device="meta")
        if spec.kind == "batchnorm":
            return nn.BatchNorm2d(spec.out_channels, eps=self.arch.batchnorm_epsilon,
                                  momentum=self.arch.batchnorm_momentum, device="meta")
        # "tf_same" padding depends on the input size unless the conv is stride 1 with an odd kernel,
        # where it is kernel // 2 on every side (as "symmetric" is): only the others pad in forward.
        if self.arch.padding == "symmetric" or (spec.stride == 1 and spec.kernel % 2 == 1):
            padding = spec.kernel // 2
        else:
            padding = 0
            self._pad_in_forward.add(spec.name)
        return nn.Conv2d(spec.in_channels, spec.out_channels, spec.kernel, stride=spec.stride, padding=padding,
                         bias=spec.bias, device="meta")

    def _initialise(self, generator: torch.Generator) -> None:
        with torch.no_grad():
            for spec in self.specs:
                layer = getattr(self, spec.name)
                if spec.kind == "batchnorm":
                    layer.reset_running_stats()
                    nn.init.ones_(layer.weight)
                    nn.init.zeros_(layer.bias)
                    continue
                if spec.kind == "conv":
                    nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu", generator=generator)
                else:
                    nn.init.normal_(layer.weight, std=0.01, generator=generator)
                if layer.bias is not None:
                    nn.init.constant_(layer.bias, initial_bias(spec.name))

    def _blocks(self, prefix: str) -> list[tuple[str, _Block]]:
        """The conv/BN blocks whose names start with ``prefix``, in spec order, as ``(name, pairs)``."""
        blocks: dict[str, _Block] = {}
        convs = [s for s in self.specs if s.kind == "conv" and s.name.startswith(prefix)]
        bns = [s for s in self.specs if s.kind == "batchnorm" and s.name.startswith(prefix)]
        for conv, bn in zip(convs, bns):
            blocks.setdefault(conv.name.rsplit("_", 1)[0], []).append((conv, bn))
        return list(blocks.items())

    def _conv(self, spec: LayerSpec, x: torch.Tensor) -> torch.Tensor:
        if spec.name in self._pad_in_forward:
            top, bottom = conv_padding(x.shape[-2], spec.kernel, spec.stride, "tf_same")
            left, right = conv_padding(x.shape[-1], spec.kernel, spec.stride, "tf_same")
            x = F.pad(x, (left, right, top, bottom))
        return getattr(self, spec.name)(x)

    def _block(self, block: _Block, x: torch.Tensor) -> torch.Tensor:
        for conv, bn in block:
            x = F.relu(getattr(self, bn.name)(self._conv(conv, x)))
        return x


class TissueNet(_SpecNet):
    """Stride-2 conv blocks, global average pooling, a dense classifier.

    ``forward`` returns ``(features, logits)``: the last block after its ReLU ``(N, C, h, w)``
    and the classifier of its average ``(N, K)``.
    """

    def __init__(self, arch: Architecture, n_classes: int, seed: int = 0) -> None:
        super().__init__(arch, n_classes, seed)
        self.blocks = [block for _, block in self._blocks("block")]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        for block in self.blocks:
            x = self._block(block, x)
        return x, self.classifier(x.mean(dim=(2, 3)))


class CellNet(_SpecNet):
    """A U-Net with a nucleus-centre heatmap head and a nucleus-type head.

    ``forward`` returns ``(heatmap, types, embedding)``: logits ``(N, H, W)`` and ``(N, T, H, W)``,
    and the average-pooled bottleneck ``(N, C)``.
    """

    def __init__(self, arch: Architecture, n_types: int, seed: int = 0) -> None:
        super().__init__(arch, n_types, seed)
        self.encoders = [block for _, block in self._blocks("enc")]
        self.bottleneck = self._blocks("bottleneck")[0][1]
        self.decoders = [block for _, block in self._blocks("dec")]  # dec{L-1} first, as in the specs

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        skips = []
        for block in self.encoders:
            x = self._block(block, x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self._block(self.bottleneck, x)
        embedding = x.mean(dim=(2, 3))
        for block in self.decoders:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
            x = self._block(block, torch.cat([x, skips.pop()], dim=1))
        return self.heatmap_head(x)[:, 0], self.type_head(x), embedding
