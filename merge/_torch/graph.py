"""The merged slide graph in PyTorch: ``tissue``, ``cell`` and ``head`` in one ``nn.Module``.

The parts are the models package's own networks (its torch adapter's ``network``), built from
their cards' architectures (padding convention and BatchNorm epsilon included), so a part loaded here
computes exactly what the separately loaded model computes. The arithmetic of the head, the peak
counting and the pooling is that of :mod:`slidescope.merge.head`.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from slidescope.models.registry import backend_class

from ..head import GATE_FLOOR, HEAD_LAYERS, HeadSpec, _logit, member_scopes

__all__ = ["SlideHead", "SlideGraph", "TorchSlideBackend", "OUTPUTS"]

#: The graph's outputs, in order (the exported artifacts return this tuple).
OUTPUTS = ("slide_probs", "attention", "tissue_probs", "tissue_logits", "cell_counts", "cell_features")


class SlideHead(nn.Module):
    """Gated attention pooling over the coarse tiles (see :mod:`slidescope.merge.head`)."""

    def __init__(self, spec: HeadSpec, seed: int = 0) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        for name, widths in HEAD_LAYERS.items():
            n_in, n_out = widths(spec)
            layer = nn.Linear(n_in, n_out)
            with torch.no_grad():
                bound = (6.0 / (n_in + n_out)) ** 0.5  # Glorot uniform, as Keras starts its dense layers
                layer.weight.uniform_(-bound, bound, generator=generator)
                layer.bias.zero_()
            setattr(self, name, layer)

    def forward(self, embedding: torch.Tensor, cells: torch.Tensor,
                gate: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = F.relu(self.project(torch.cat([embedding, cells], dim=1)))
        scores = self.attention_w(torch.tanh(self.attention_v(h)))[:, 0] + torch.log(gate.clamp(min=GATE_FLOOR))
        attention = torch.softmax(scores, dim=0)
        pooled = (attention[:, None] * h).sum(dim=0, keepdim=True)
        return torch.softmax(self.classifier(pooled), dim=1)[0], attention


class SlideGraph(nn.Module):
    """One slide's tiles in, its prediction out.

    ``forward(coarse, fine, parents, valid)``: uint8 ``(Nc, S, S, 3)`` coarse tiles at the tissue
    model's mpp, uint8 ``(Nf, s, s, 3)`` fine tiles at the cell model's, int64 ``(Nf,)`` each fine
    tile's coarse parent (row in ``coarse``), float32 ``(Nf,)`` 1 for a real fine tile and 0 for
    padding (a slide without fine tiles passes one blank tile with weight 0). Returns
    :data:`OUTPUTS`: ``(K,)``, ``(Nc,)``, ``(Nc, Kt)`` twice (probabilities, logits), ``(Nf, T)``, ``(Nc, T)``.
    """

    def __init__(self, tissue_card: Any, cell_card: Any, head: HeadSpec, seed: int = 0,
                 members: dict[str, int] | None = None) -> None:
        super().__init__()
        adapter = backend_class("torch")  # the models package's own networks, built from the cards
        self.members = {"tissue": 1, "cell": 1, **(members or {})}
        for role, card in (("tissue", tissue_card), ("cell", cell_card)):
            for scope in member_scopes(role, self.members[role]):
                setattr(self, scope, adapter(card, "cpu", seed).network)
        self.head = SlideHead(head, seed=seed)
        for part, card in (("tissue", tissue_card), ("cell", cell_card)):
            self.register_buffer(f"{part}_mean", torch.tensor(card.input.mean, dtype=torch.float32).view(1, 3, 1, 1),
                                 persistent=False)
            self.register_buffer(f"{part}_std", torch.tensor(card.input.std, dtype=torch.float32).view(1, 3, 1, 1),
                                 persistent=False)
        self.gate_index = tissue_card.class_names.index(tissue_card.cascade_class)
        self.peak_radius = max(1, int(round(cell_card.thresholds["min_distance_um"] / cell_card.input.mpp)))
        self.peak_floor = _logit(float(cell_card.thresholds["nucleus_score"]))
        self.cell_types = len(cell_card.classes)
        self.tissue_input, self.cell_input = tissue_card.input.size, cell_card.input.size

    def tissue_part(self, coarse: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Logits, probabilities and embeddings of uint8 coarse tiles (an ensemble's averaged)."""
        x = (coarse.permute(0, 3, 1, 2).float() - self.tissue_mean) / self.tissue_std
        tissue = [getattr(self, scope)(x) for scope in member_scopes("tissue", self.members["tissue"])]
        if len(tissue) == 1:
            features, logits = tissue[0]
            return logits, torch.softmax(logits, dim=1), features.mean(dim=(2, 3))
        # an ensemble: probabilities, logits and embeddings averaged over its members
        logits = torch.stack([out[1] for out in tissue]).mean(dim=0)
        probs = torch.stack([torch.softmax(out[1], dim=1) for out in tissue]).mean(dim=0)
        embedding = torch.stack([out[0].mean(dim=(2, 3)) for out in tissue]).mean(dim=0)
        return logits, probs, embedding

    def cell_logits(self, fine: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Heatmap ``(Nf, H, W)`` and type ``(Nf, T, H, W)`` logits of uint8 fine tiles (an ensemble's averaged)."""
        y = (fine.permute(0, 3, 1, 2).float() - self.cell_mean) / self.cell_std
        cell = [getattr(self, scope)(y) for scope in member_scopes("cell", self.members["cell"])]
        if len(cell) == 1:
            return cell[0][0], cell[0][1]
        return torch.stack([out[0] for out in cell]).mean(dim=0), torch.stack([out[1] for out in cell]).mean(dim=0)

    def cell_part(self, fine: torch.Tensor) -> torch.Tensor:
        """Nuclei counts by type ``(Nf, T)`` of uint8 fine tiles (an ensemble: peaks of its mean logits)."""
        heat, types = self.cell_logits(fine)
        local = F.max_pool2d(heat[:, None], 2 * self.peak_radius + 1, stride=1, padding=self.peak_radius)[:, 0]
        peaks = ((heat == local) & (heat >= self.peak_floor)).float()
        kinds = F.one_hot(types.argmax(dim=1), self.cell_types).float()
        return (peaks[..., None] * kinds).sum(dim=(1, 2))

    def forward(self, coarse: torch.Tensor, fine: torch.Tensor, parents: torch.Tensor,
                valid: torch.Tensor) -> tuple[torch.Tensor, ...]:
        logits, tissue_probs, embedding = self.tissue_part(coarse)
        counts = self.cell_part(fine)
        pooled = torch.zeros(coarse.shape[0], self.cell_types, dtype=counts.dtype, device=counts.device)
        pooled = pooled.index_add(0, parents, counts * valid[:, None])
        cells = torch.log1p(pooled)
        slide_probs, attention = self.head(embedding, cells, tissue_probs[:, self.gate_index])
        return slide_probs, attention, tissue_probs, logits, counts, cells


class TorchSlideBackend:
    """The merged graph in torch: weights in and out, a run, exports; on the CPU unless :meth:`to_device`.

    Parameters
    ----------
    tissue_card, cell_card : ModelCard
        The parts' cards (architectures, classes, inputs, thresholds).
    head : HeadSpec
    seed : int
        Seed of the head's initial weights (an untrained head).
    """

    framework = "torch"
    weights_suffix = ".safetensors"

    def __init__(self, tissue_card: Any, cell_card: Any, head: HeadSpec, seed: int = 0,
                 members: dict[str, int] | None = None) -> None:
        self.graph = SlideGraph(tissue_card, cell_card, head, seed=seed, members=members).eval()
        self.device = "cpu"

    def to_device(self, device: str) -> str:
        """Move the graph to ``device`` (``auto``: a GPU when torch sees one); returns the device used.
        Inputs go to it and outputs come back as numpy; exports are made on the CPU.

        Raises
        ------
        FrameworkError
            ``cuda`` without a GPU.
        """
        from slidescope.models.registry import backend_class

        self.device = backend_class("torch").resolve_device(device)
        self.graph.to(self.device)
        return self.device

    def _tensor(self, array: np.ndarray, dtype: Any = None) -> torch.Tensor:
        array = np.ascontiguousarray(array if dtype is None else np.asarray(array, dtype))
        return torch.from_numpy(array).to(self.device, non_blocking=True)

    # -- weights ------------------------------------------------------------------------------------

    def target_infos(self) -> list[Any]:
        """Every tensor the graph holds: name (``tissue.block1_conv1.weight``...), shape, dtype, kind."""
        from ..checkpoint import TensorInfo, kind_of_name

        return [TensorInfo(name, tuple(value.shape), str(value.dtype).removeprefix("torch."), kind_of_name(name))
                for name, value in self.graph.state_dict().items()]

    def load_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        """Set the tensors named in ``arrays`` (names as :meth:`target_infos`). The others keep their
        initial values: a missing BatchNorm batch count is zero (inference never reads it); anything
        else is missing only where the caller's plan allowed it (``allow_missing``, ``lenient``)."""
        state = self.graph.state_dict()
        tensors = {}
        for name, value in state.items():
            if name in arrays:
                tensors[name] = torch.as_tensor(np.array(arrays[name], dtype=value.detach().cpu().numpy().dtype))
            elif name.endswith(".num_batches_tracked"):
                tensors[name] = torch.zeros_like(value)
            else:
                tensors[name] = value
        self.graph.load_state_dict(tensors, strict=True)

    def get_arrays(self) -> dict[str, np.ndarray]:
        return {name: value.detach().cpu().numpy().copy() for name, value in self.graph.state_dict().items()}

    def save_weights(self, path: str) -> None:
        from safetensors.torch import save_file

        save_file({k: v.detach().cpu().contiguous() for k, v in self.graph.state_dict().items()}, path,
                  metadata={"framework": "torch", "kind": "slidescope-merged-model"})

    def load_weights(self, path: str) -> None:
        from safetensors.torch import load_file

        from ..errors import CheckpointError

        try:
            tensors = load_file(path, device=self.device)
            self.graph.load_state_dict(tensors, strict=True)
        except Exception as exc:  # safetensors and torch raise several types; one error naming the file
            raise CheckpointError(f"{path}: the merged weights do not load into the graph: {exc}") from None

    # -- running ------------------------------------------------------------------------------------

    def run(self, coarse: np.ndarray, fine: np.ndarray, parents: np.ndarray, valid: np.ndarray) -> dict[str, np.ndarray]:
        with torch.inference_mode():
            outputs = self.graph(self._tensor(coarse), self._tensor(fine), self._tensor(parents, np.int64),
                                 self._tensor(valid, np.float32))
        return {name: value.cpu().numpy() for name, value in zip(OUTPUTS, outputs)}

    def part_outputs(self, coarse: np.ndarray | None = None, fine: np.ndarray | None = None,
                     chunk: int = 32) -> dict[str, np.ndarray]:
        """The parts alone, in chunks of ``chunk`` tiles: ``tissue_logits``, ``tissue_probs`` and
        ``embedding`` of ``coarse``; ``cell_counts`` of ``fine``."""
        out: dict[str, list[np.ndarray]] = {}
        with torch.inference_mode():
            for start in range(0, 0 if coarse is None else len(coarse), chunk):
                logits, probs, embedding = self.graph.tissue_part(self._tensor(coarse[start:start + chunk]))
                for key, value in (("tissue_logits", logits), ("tissue_probs", probs), ("embedding", embedding)):
                    out.setdefault(key, []).append(value.cpu().numpy())
            for start in range(0, 0 if fine is None else len(fine), chunk):
                counts = self.graph.cell_part(self._tensor(fine[start:start + chunk]))
                out.setdefault("cell_counts", []).append(counts.cpu().numpy())
        return {key: np.concatenate(values) for key, values in out.items()}

    def head_outputs(self, embedding: np.ndarray, cells: np.ndarray, gate: np.ndarray) -> dict[str, np.ndarray]:
        """The head alone over one slide's coarse tiles: ``slide_probs`` ``(K,)`` and ``attention`` ``(Nc,)``
        from the tiles' embeddings, cell features and gate (what :meth:`part_outputs` and
        :func:`~slidescope.merge.head.cell_features` give)."""
        with torch.inference_mode():
            probs, attention = self.graph.head(self._tensor(embedding, np.float32), self._tensor(cells, np.float32),
                                               self._tensor(gate, np.float32))
        return {"slide_probs": probs.cpu().numpy(), "attention": attention.cpu().numpy()}

    def cell_logits(self, fine: np.ndarray) -> dict[str, np.ndarray]:
        """The cell part's ``heatmap`` ``(Nf, H, W)`` and ``types`` ``(Nf, H, W, T)`` logits (channels last)."""
        with torch.inference_mode():
            heat, types = self.graph.cell_logits(self._tensor(fine))
        return {"heatmap": heat.cpu().numpy(), "types": types.permute(0, 2, 3, 1).contiguous().cpu().numpy()}

    def set_head(self, arrays: dict[str, np.ndarray]) -> None:
        """Replace the head's tensors (torch names without the ``head.`` scope)."""
        self.load_arrays({f"head.{name}": value for name, value in arrays.items()})

    def example_inputs(self, coarse_tiles: int = 2, fine_tiles: int = 3) -> tuple[torch.Tensor, ...]:
        generator = torch.Generator().manual_seed(0)
        tissue, cell = self.graph.tissue_input, self.graph.cell_input
        coarse = torch.randint(0, 256, (coarse_tiles, tissue, tissue, 3), dtype=torch.uint8, generator=generator)
        fine = torch.randint(0, 256, (fine_tiles, cell, cell, 3), dtype=torch.uint8, generator=generator)
        parents = torch.arange(fine_tiles, dtype=torch.int64) % coarse_tiles
        return coarse, fine, parents, torch.ones(fine_tiles)

    # -- exports ------------------------------------------------------------------------------------

    def export_pt2(self, path: str) -> None:
        """``torch.export`` with dynamic tile counts, saved as ``.pt2``."""
        coarse_tiles = torch.export.Dim("coarse_tiles", min=1, max=1_000_000)
        fine_tiles = torch.export.Dim("fine_tiles", min=1, max=10_000_000)
        shapes = {"coarse": {0: coarse_tiles}, "fine": {0: fine_tiles}, "parents": {0: fine_tiles},
                  "valid": {0: fine_tiles}}
        program = torch.export.export(self.graph, self.example_inputs(), dynamic_shapes=shapes)
        torch.export.save(program, path)

    def export_onnx(self, path: str) -> None:
        """ONNX through the dynamo exporter, weights inside the file (no external data)."""
        shapes = {"coarse": {0: "coarse_tiles"}, "fine": {0: "fine_tiles"}, "parents": {0: "fine_tiles"},
                  "valid": {0: "fine_tiles"}}
        # The exporter logs its optional torchvision ops and warns about its own deprecations on
        # stderr; none of it concerns this graph, and the export is checked by running it.
        quiet = logging.getLogger("torch.onnx")
        level = quiet.level
        quiet.setLevel(logging.ERROR)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                program = torch.onnx.export(self.graph, self.example_inputs(), dynamo=True, external_data=False,
                                            dynamic_shapes=shapes, input_names=["coarse", "fine", "parents", "valid"],
                                            output_names=list(OUTPUTS), verbose=False)
                program.save(path, external_data=False)
        finally:
            quiet.setLevel(level)

    @staticmethod
    def run_pt2(path: str, inputs: tuple[np.ndarray, ...]) -> dict[str, np.ndarray]:
        program = torch.export.load(path)
        with torch.inference_mode():
            outputs = program.module()(*(torch.from_numpy(np.ascontiguousarray(x)) for x in inputs))
        return {name: value.cpu().numpy() for name, value in zip(OUTPUTS, outputs)}

    def export(self, name: str, path: str, inputs: tuple[np.ndarray, ...]) -> dict[str, np.ndarray]:
        """Write the ``name`` export (``"pt2"`` or ``"onnx"``) at ``path``, load it back and return its
        outputs on ``inputs``."""
        if name == "pt2":
            self.export_pt2(path)
            return self.run_pt2(path, inputs)
        if name == "onnx":
            from ..onnx_files import run_onnx

            self.export_onnx(path)
            return run_onnx(path, inputs, OUTPUTS)
        raise ValueError(f"unknown torch export {name!r}")
