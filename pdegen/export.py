"""Deployable copies of a network. The default, ``torch.export`` (``.pt2``: :func:`save_exported`, loaded with
:func:`load_exported`), serves both kinds of deployable network with a dynamic batch dimension: a one-pass
student's :class:`OneStepSampler` (float64 noise ``(n, C, *grid)`` -> samples in physical units) and a PINN's
point-wise net (coords ``(N, d)`` -> values). TorchScript (always) and ONNX Runtime (the optional ``onnx``
extra, point-wise nets) stay as options, and a one-pass student's weights go to safetensors; ``pretrained``
writes the Hugging Face-style folder of :mod:`pdegen.pretrained`:

    python -m pdegen.export runs/quickstart_pid/checkpoints/last.ckpt --out runs/quickstart_pid/export
    python -m pdegen.export runs/kdpinn/kovasznay_student/checkpoints/last.ckpt --out export \
        --format pt2 torchscript onnx
    python -m pdegen.export runs/quickstart_pid/checkpoints/last.ckpt --format pretrained --out hub/darcy_pid

The module class is read from the checkpoint (``--module`` still names it, as before; given without
``--format`` it writes what it always wrote, ``student.pt`` and ``student.safetensors``).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
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
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL  # fuses MatMul + Add
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def run(coords: Tensor) -> Tensor:
        return torch.from_numpy(session.run(None, {"coords": coords.detach().cpu().float().numpy()})[0])

    return run


@contextmanager
def _tracing_lightning() -> Iterator[None]:
    """Tracing and exporting read every attribute of the modules; a LightningModule's ``trainer`` raises when
    it has none unless this flag (the one ``LightningModule.to_torchscript`` sets) is on."""
    flag = L.LightningModule._jit_is_scripting
    L.LightningModule._jit_is_scripting = True
    try:
        yield
    finally:
        L.LightningModule._jit_is_scripting = flag


def to_exported(net: nn.Module, example: Tensor, dynamic_batch: bool = True) -> torch.export.ExportedProgram:
    """``torch.export.export`` of ``net`` in eval mode on ``example``, its first dimension dynamic (any batch
    size or number of points) unless ``dynamic_batch=False``; a network ``torch.export`` cannot capture (e.g.
    control flow that depends on the data) raises a RuntimeError saying so and naming the other formats."""
    dynamic_shapes = ({0: torch.export.Dim("batch")},) if dynamic_batch else None
    net = net.eval()
    try:
        with torch.no_grad(), _tracing_lightning():
            return torch.export.export(net, (example,), dynamic_shapes=dynamic_shapes)
    except Exception as error:
        raise RuntimeError(f"torch.export could not capture {type(net).__name__} ({type(error).__name__}: "
                           f"{str(error).strip().splitlines()[0] if str(error).strip() else error!r}); "
                           "export it as --format torchscript (or onnx for a point-wise net) instead") from error


def save_exported(net: nn.Module, example: Tensor, path: str | os.PathLike, dynamic_batch: bool = True) -> Path:
    """Write :func:`to_exported` of ``net`` to ``path`` (``.pt2``; a temporary name, then renamed); load it
    with :func:`load_exported`."""
    program = to_exported(net, example, dynamic_batch)
    with atomic_path(path) as tmp:
        torch.export.save(program, str(tmp))
    return Path(path)


def save_compiled(net: nn.Module, example: Tensor, path: str | os.PathLike) -> Path:
    """:func:`to_exported` of ``net`` compiled ahead of time by AOTInductor into a ``.pt2`` package (fused C++
    kernels for this machine's CPU; needs a C++ compiler, and takes seconds to minutes); run it with
    :func:`load_compiled`."""
    program = to_exported(net, example)
    if Path(path).suffix != ".pt2":
        raise ValueError(f"an AOTInductor package is named *.pt2, got {os.fspath(path)!r}")
    with atomic_path(path) as tmp:
        torch._inductor.aoti_compile_and_package(program, package_path=str(tmp))
    return Path(path)


def load_compiled(path: str | os.PathLike) -> Callable[[Tensor], Tensor]:
    """The callable of a :func:`save_compiled` package."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"compiled package {os.fspath(path)!r} not found")
    return torch._inductor.aoti_load_package(str(path))


def load_exported(path: str | os.PathLike) -> nn.Module:
    """The module of a :func:`save_exported` file (``torch.export.load(path).module()``), a plain callable."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"exported program {os.fspath(path)!r} not found")
    return torch.export.load(str(path)).module()


def save_student_exported(student: nn.Module, path: str | os.PathLike, example_batch: int = 2) -> Path:
    """The ``torch.export`` of :class:`OneStepSampler` (float64 noise, any batch size) at ``path``."""
    sampler = OneStepSampler(student)
    example = torch.randn(example_batch, *student.pde.sample_shape, dtype=torch.float64,
                          device=next(student.parameters()).device)
    return save_exported(sampler, example, path)


def pointwise_example(module: nn.Module, num_points: int = 64) -> Tensor:
    """``num_points`` points of a PINN's domain in its network's dtype: the example a point-wise export
    traces (any number of points runs afterwards)."""
    if hasattr(module, "latency_points"):
        return module.latency_points(num_points)
    raise TypeError(f"{type(module).__name__} is no PINN: it has no domain to draw example points from")


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
    with _tracing_lightning():
        return save_torchscript(sampler, example, path, optimize=False)


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


FORMATS = ("pt2", "torchscript", "onnx", "safetensors", "pretrained")
SUFFIXES = {"pt2": ".pt2", "torchscript": ".pt", "onnx": ".onnx", "safetensors": ".safetensors"}


def is_pointwise(module: nn.Module) -> bool:
    """A PINN (point-wise network ``coords -> values``) rather than a generator of fields."""
    return getattr(module, "problem", None) is not None and hasattr(module, "net")


def export_module(module: nn.Module, out: str | os.PathLike, formats: Sequence[str] = ("pt2",)) -> dict[str, Path]:
    """Write ``module`` to ``out`` in each of ``formats`` (of :data:`SUFFIXES`): a one-pass student as
    ``student.<suffix>`` (its :class:`OneStepSampler`), a PINN as ``pinn.<suffix>`` (its point-wise net; ``onnx``
    only for these), ``safetensors`` a student's weights (a pretrained folder is
    :func:`pdegen.pretrained.save_pretrained`'s). Returns format -> path."""
    unknown = [f for f in formats if f not in SUFFIXES]
    if unknown:
        raise ValueError(f"unknown format {unknown[0]!r}: use {', '.join(SUFFIXES)}")
    out = Path(out)
    written: dict[str, Path] = {}
    pointwise = is_pointwise(module)
    if not pointwise and formats:
        OneStepSampler(module)  # refuses a module that does not sample in one pass, before anything is written
    for kind in formats:
        path = out / f"{'pinn' if pointwise else 'student'}{SUFFIXES[kind]}"
        if pointwise:
            example = pointwise_example(module)
            if kind == "pt2":
                written[kind] = save_exported(module.net, example, path)
            elif kind == "torchscript":
                written[kind] = save_torchscript(module.net, example, path)
            elif kind == "onnx":
                written[kind] = save_onnx(module.net, example, path)
            else:
                raise ValueError("safetensors export is for one-pass students; save a PINN's weights with "
                                 "--format pretrained (model.safetensors and its config)")
        elif kind == "pt2":
            written[kind] = save_student_exported(module, path)
        elif kind == "torchscript":
            written[kind] = save_student_torchscript(module, path)
        elif kind == "safetensors":
            written[kind] = save_student_safetensors(module, path)
        else:
            raise ValueError("ONNX export is for point-wise networks (PINNs); export a student as pt2 or torchscript")
    return written


def main(argv: Sequence[str] | None = None) -> dict[str, Path]:
    parser = argparse.ArgumentParser(prog="python -m pdegen.export", description="Export a checkpoint's module "
                                     "for deployment: torch.export (.pt2, default), TorchScript, ONNX (PINNs), "
                                     "safetensors (students) or a Hugging Face-style pretrained folder")
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--out", type=Path, required=True, help="the folder written into (for pretrained: the "
                        "pretrained folder itself)")
    parser.add_argument("--format", nargs="+", choices=FORMATS, default=None, dest="formats",
                        help="one or more formats (default pt2)")
    parser.add_argument("--module", default=None, help="the module's class, e.g. pdegen.modules.PIDStudent "
                        "(default: read from the checkpoint); given without --format, writes torchscript and "
                        "safetensors, as before")
    parser.add_argument("--metrics", type=Path, default=None, help="a metrics JSON for the pretrained card "
                        "(default: the run's report/metrics.json)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing pretrained folder")
    args = parser.parse_args(argv)
    formats = args.formats or (["torchscript", "safetensors"] if args.module else ["pt2"])
    if args.module:
        module_name, _, class_name = args.module.rpartition(".")
        cls = getattr(importlib.import_module(module_name), class_name)
        from pdegen.modules.checkpoints import load_module

        module = load_module(cls, args.checkpoint).eval()
    else:
        from pdegen.modules.checkpoints import load

        module = load(args.checkpoint)
    written: dict[str, Path] = {}
    if "pretrained" in formats:  # first: it needs --out absent or empty
        from pdegen.pretrained import save_pretrained

        metrics = None
        if args.metrics is not None:
            given = json.loads(args.metrics.read_text())
            metrics = given.get("metrics", given) if isinstance(given, dict) else None
        written["pretrained"] = save_pretrained(args.checkpoint, args.out, metrics=metrics, overwrite=args.overwrite,
                                                loaded=module)
    written |= export_module(module, args.out, [f for f in formats if f != "pretrained"])
    for kind, path in written.items():
        print(f"{kind}: {path}")
    return written


if __name__ == "__main__":
    main()
