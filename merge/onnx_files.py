"""Running an ONNX file (onnxruntime on the CPU): how exports are checked after they are written."""

from __future__ import annotations

import numpy as np

__all__ = ["run_onnx"]


def run_onnx(path: str, inputs: tuple[np.ndarray, ...], names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The outputs of the ONNX file ``path`` on ``inputs`` (onnxruntime on the CPU)."""
    import onnxruntime

    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    feeds = {spec.name: value for spec, value in zip(session.get_inputs(), inputs)}
    return dict(zip(names, session.run(None, feeds)))
