"""Deployable copies of a network: TorchScript (always) and ONNX Runtime (the optional ``onnx`` extra).

Both take the batch size as dynamic, so one export serves every query size.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

ONNX_HINT = 'ONNX export needs the optional extra: pip install "pdegen[onnx]" (onnx, onnxscript, onnxruntime)'


def to_torchscript(net: nn.Module, example: Tensor) -> torch.jit.ScriptModule:
    """``net`` traced on ``example`` and frozen (weights folded in as constants), in eval mode."""
    with torch.no_grad():
        traced = torch.jit.trace(net.eval(), example, check_trace=False)
    return torch.jit.optimize_for_inference(torch.jit.freeze(traced))


def save_torchscript(net: nn.Module, example: Tensor, path: str | os.PathLike) -> Path:
    """Write :func:`to_torchscript` of ``net`` to ``path`` (written to a temporary name, then renamed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as tmp:
        torch.jit.save(to_torchscript(net, example), tmp.name)
    os.replace(tmp.name, path)
    return path


def save_onnx(net: nn.Module, example: Tensor, path: str | os.PathLike) -> Path:
    """Export ``net`` (inputs ``coords`` ``(N, d)`` with N dynamic, output ``values``) to one self-contained
    ONNX file (weights included; written to a temporary name, then renamed)."""
    try:
        import onnxscript  # noqa: F401  (the exporter needs it)
    except ImportError:
        raise ImportError(ONNX_HINT) from None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.onnx")
    torch.onnx.export(net.eval(), (example,), str(tmp), input_names=["coords"], output_names=["values"],
                      dynamic_shapes={"coords": {0: torch.export.Dim("points")}}, dynamo=True, verbose=False,
                      external_data=False)  # one self-contained file (weights inside), renamed whole
    os.replace(tmp, path)
    return path


def onnx_runner(path: str | os.PathLike, threads: int = 0) -> Callable[[Tensor], Tensor]:
    """A CPU ONNX Runtime session of ``path`` as a function of a float32 tensor; ``threads`` intra-op
    threads (0: ONNX Runtime's default, all cores)."""
    try:
        import onnxruntime
    except ImportError:
        raise ImportError(ONNX_HINT) from None
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def run(coords: Tensor) -> Tensor:
        return torch.from_numpy(session.run(None, {"coords": coords.detach().cpu().float().numpy()})[0])

    return run
