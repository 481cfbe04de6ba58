"""Deployable copies of a network: TorchScript (always) and ONNX Runtime (the optional ``onnx`` extra)
for point-wise networks (both take the batch size as dynamic, so one export serves every query size),
and, for one-pass students, a TorchScript sampler and safetensors weights:

    python -m pdegen.export runs/quickstart_pid/checkpoints/last.ckpt --module pdegen.modules.PIDStudent \
        --out runs/quickstart_pid/export
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import lightning as L
import torch
from torch import Tensor, nn

from pdegen.io import atomic_path

ONNX_HINT = 'ONNX export needs the optional extra: pip install "pdegen[onnx]" (onnx, onnxscript, onnxruntime)'


def to_torchscript(net: nn.Module, example: Tensor, optimize: bool = True) -> torch.jit.ScriptModule:
    """``net`` traced on ``example`` and frozen (weights folded in as constants), in eval mode, then
    ``optimize_for_inference`` (whose graphs do not always load back for conv nets: ``optimize=False``)."""
    with torch.no_grad():
        frozen = torch.jit.freeze(torch.jit.trace(net.eval(), example, check_trace=False))
    return torch.jit.optimize_for_inference(frozen) if optimize else frozen


def save_torchscript(net: nn.Module, example: Tensor, path: str | os.PathLike, optimize: bool = True) -> Path:
    """Write :func:`to_torchscript` of ``net`` to ``path`` (written to a temporary name, then renamed)."""
    with atomic_path(path) as tmp:
        torch.jit.save(to_torchscript(net, example, optimize), str(tmp))
    return Path(path)


def save_onnx(net: nn.Module, example: Tensor, path: str | os.PathLike) -> Path:
    """Export ``net`` (inputs ``coords`` ``(N, d)`` with N dynamic, output ``values``) to one self-contained
    ONNX file (weights included; written to a temporary name, then renamed)."""
    try:
        import onnxscript  # noqa: F401  (the exporter needs it)
    except ImportError:
        raise ImportError(ONNX_HINT) from None
    with atomic_path(path) as tmp:
        torch.onnx.export(net.eval(), (example,), str(tmp), input_names=["coords"], output_names=["values"],
                          dynamic_shapes={"coords": {0: torch.export.Dim("points")}}, dynamo=True, verbose=False,
                          external_data=False)  # one self-contained file (weights inside), renamed whole
    return Path(path)


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


class OneStepSampler(nn.Module):
    """A one-pass student's sampling as a plain module: ``forward(noise) -> samples``, standard-normal
    ``noise`` ``(n, C, *grid)`` (float64) to samples in physical units, exactly what the student's
    ``sample`` computes from that noise (the frozen teacher is not part of it)."""

    def __init__(self, student: nn.Module) -> None:
        super().__init__()
        nfe = getattr(student, "nfe", None)
        if nfe != 1 or getattr(student, "pde", None) is None:
            raise ValueError(f"{type(student).__name__} (NFE {nfe}) does not sample in one network pass with a PDE "
                             "attached: only one-pass students export (PIDStudent without refine_steps, "
                             "PIDDMStudent without noise_steps)")
        self.student = student.eval()

    def forward(self, noise: Tensor) -> Tensor:
        return self.student.normalizer.decode(self.student.generate(noise).double())


def save_student_torchscript(student: nn.Module, path: str | os.PathLike, example_batch: int = 2) -> Path:
    """The frozen TorchScript of :class:`OneStepSampler` (any batch size) at ``path``, written atomically."""
    sampler = OneStepSampler(student)
    example = torch.randn(example_batch, *student.pde.sample_shape, dtype=torch.float64,
                          device=next(student.parameters()).device)
    # tracing reads every attribute of the modules; a LightningModule's `trainer` raises when it has none
    # unless this flag (the one LightningModule.to_torchscript sets) is on
    flag = L.LightningModule._jit_is_scripting
    L.LightningModule._jit_is_scripting = True
    try:
        return save_torchscript(sampler, example, path, optimize=False)
    finally:
        L.LightningModule._jit_is_scripting = flag


def student_weights(student: nn.Module) -> dict[str, Tensor]:
    """The student's own state (network, normaliser, buffers), without its frozen teacher."""
    return {k: v.detach().contiguous() for k, v in student.state_dict().items() if not k.startswith("teacher.")}


def save_student_safetensors(student: nn.Module, path: str | os.PathLike) -> Path:
    """:func:`student_weights` as safetensors at ``path`` (atomic), with the module class, its
    hyperparameters, the PDE and the NFE as JSON metadata."""
    from safetensors.torch import save_file

    metadata = {"module": f"{type(student).__module__}.{type(student).__qualname__}",
                "hparams": json.dumps(dict(getattr(student, "hparams", {})), default=repr),
                "pde": json.dumps(student.pde.describe() if getattr(student, "pde", None) else None),
                "nfe": str(getattr(student, "nfe", ""))}
    with atomic_path(path) as tmp:
        save_file(student_weights(student), str(tmp), metadata=metadata)
    return Path(path)


def load_student_safetensors(student: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Load :func:`save_student_safetensors` weights into ``student`` (built with the same settings);
    every key of its own state must be in the file and nothing else."""
    from safetensors.torch import load_file

    weights = load_file(str(path))
    expected = set(student_weights(student))
    if set(weights) != expected:
        missing, unexpected = sorted(expected - set(weights))[:5], sorted(set(weights) - expected)[:5]
        raise ValueError(f"{path} does not fit {type(student).__name__}: missing {missing}, unexpected {unexpected}")
    student.load_state_dict(weights, strict=False)
    return student


def main(argv: Sequence[str] | None = None) -> dict[str, Path]:
    parser = argparse.ArgumentParser(prog="python -m pdegen.export", description="Export a one-pass student "
                                     "checkpoint: a TorchScript sampler and safetensors weights")
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--module", required=True, help="the student's class, e.g. pdegen.modules.PIDStudent")
    parser.add_argument("--out", type=Path, required=True, help="folder for student.pt and student.safetensors")
    args = parser.parse_args(argv)
    module_name, _, class_name = args.module.rpartition(".")
    cls = getattr(importlib.import_module(module_name), class_name)
    from pdegen.modules.checkpoints import load_module

    student = load_module(cls, args.checkpoint)
    written = {"torchscript": save_student_torchscript(student, args.out / "student.pt"),
               "safetensors": save_student_safetensors(student, args.out / "student.safetensors")}
    for kind, path in written.items():
        print(f"{kind}: {path}")
    return written


if __name__ == "__main__":
    main()
