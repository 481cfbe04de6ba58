"""GPU check: every CUDA path of pdegen in one short run (under 5 minutes on one H100), a PASS/FAIL/SKIP per check.

    python tools/gpu_check.py                         # on cuda: the sizes below
    python tools/gpu_check.py --quick                 # tiny sizes: a smoke test of every path
    python tools/gpu_check.py --device cpu --quick --no-compile   # the harness itself, on a CPU machine
    python tools/gpu_check.py --sections solvers generation --json gpu_check.json

Sections (each check is printed as it finishes, with its wall time; an exception inside one check is recorded
as FAIL with its error and the run goes on, so one broken path hides no other; the exit code is 1 when any
check failed):

1. ``solvers``: every PDE family of ``pdegen.pdes.PDES`` solves the same block-seeded inputs on the CPU
   (float64, the family's CPU default: Darcy's banded Cholesky) and on ``--device`` (Darcy's batched PCG, the
   sine-transform solve of Poisson/Helmholtz by dense matmul and by FFT, the ETDRK4 integrators of Burgers,
   KS and Kolmogorov); the largest difference relative to the CPU field's largest value must stay below the
   family's :data:`TOLERANCES`. The chaotic families (KS, Kolmogorov) run a short horizon, before round-off
   has grown (the default trajectories agree only statistically across devices).
2. ``generation``: solve throughput (samples/s) per family on the device at the data configs' settings
   (the family defaults), timed with synchronisation for a few seconds; Kolmogorov's trajectory is shortened
   and its rate also given for the default length (its cost is linear in the stored intervals).
3. ``teacher``: EDM training steps (forward, backward, Adam) of the ``DiffusionTeacher`` with the U-Net of
   ``lightning_configs/teacher/darcy.yaml`` on Darcy 64²: fp32, bf16-mixed (autocast as Lightning's
   ``precision: bf16-mixed``, trainer/bf16.yaml) and compiled (``CompileBackbones``, trainer/compile.yaml,
   with bf16-mixed as the configs combine them): samples/s, the first step's seconds (compilation), the
   second step's loss against fp32's (same weights and draws, dropout off) and every loss finite.
4. ``latency``: a one-step PID student of that teacher and the teacher's own sampler (the config's Heun,
   32 steps) on the same noise, timed by ``LatencyCallback.measure`` (``pdegen.benchmarking.latency_ms``,
   CUDA synchronised around every call): median ms per batch, the speed-up, samples finite.
5. ``ddp``: ``pdegen fit`` of a small quickstart teacher with ``strategy=ddp`` on one device (NCCL on a GPU,
   gloo on the CPU) in this process, validation and the residual callback included; it must finish its steps
   and write a ``last.ckpt`` that loads.

Figures are measurements, never timing assertions: a check fails on an error, a wrong result or a
non-finite loss, not on its speed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pdegen.benchmarking import add_bench_options, best_time, items_per_second, parse_bench_args  # noqa: E402
from pdegen.io import write_text_atomic  # noqa: E402

SECTIONS = ("solvers", "generation", "teacher", "latency", "ddp")
PASS, FAIL, SKIP = "PASS", "FAIL", "SKIP"

TOLERANCES: dict[str, float] = {
    # direct float64 solves on both sides (the DST's matmul or FFT against the CPU's matmul): round-off, ~1e-15
    "poisson": 1e-10,
    "helmholtz": 1e-10,
    # the device's PCG (relative residual cg_tol = 1e-12) against the CPU's banded Cholesky: the error is at
    # most the preconditioned condition number times cg_tol; Darcy's is max(a)/min(a) = 4, the log-normal
    # permeability of darcy_pidm (sigma = 1) spans ~e^8 (measured at 64² on the CPU: 2e-14 and 7e-13)
    "darcy": 1e-8,
    "darcy_pidm": 1e-8,
    # the same ETDRK4 steps on both sides, viscous and non-chaotic: round-off growth bounded, ~1e-13
    "burgers": 1e-9,
    # chaotic, so a short horizon (FULL.check): measured on the CPU, inputs perturbed by 1e-15 (relative) give
    # 1.2e-15 (KS) and 2.3e-15 (Kolmogorov) over the compared stretch, but 4e-10 at the first stored state of
    # the default KS trajectory (burn-in 100) and 3e-9 at its last; a wrong solver exceeds 1e-8 at once
    "ks": 1e-8,
    "kolmogorov": 1e-8,
}
"""Largest ``max |x_device - x_cpu| / max |x_cpu|`` (per channel) a family's device solve may show."""
DEFAULT_TOLERANCE = 1e-8


@dataclass(frozen=True)
class Sizes:
    """What every section runs: ``FULL`` for a GPU (under 5 minutes on an H100), ``QUICK`` (``--quick``) tiny
    sizes that run every path in seconds, even on a CPU."""

    check_samples: int
    check: dict[str, dict[str, Any]]
    """Family parameters of the CPU-vs-device comparison (short horizons for the chaotic families)."""
    rate_batch: int
    rate_seconds: float
    rate: dict[str, dict[str, Any]]
    """Family parameters of the throughput (the defaults, which the data configs use, unless named here)."""
    teacher_config: str
    net_overrides: dict[str, Any]
    resolution: int
    batch: int
    steps: int
    warmup: int
    sampler_steps: int | None
    """The teacher's sampler steps in the latency section (None: the config's)."""
    latency_batches: tuple[int, ...]
    latency_repeats: int
    ddp_args: tuple[str, ...] = field(default=())
    ddp_steps: int = 1


FULL = Sizes(
    check_samples=4,
    check={"darcy": {"resolution": 64}, "darcy_pidm": {"resolution": 64}, "poisson": {"resolution": 128},
           "helmholtz": {"resolution": 128}, "burgers": {"num_times": 32},
           "ks": {"burn_in": 10.0, "num_states": 20},
           "kolmogorov": {"sim_resolution": 128, "resolution": 64, "burn_in": 0.0, "num_states": 6}},
    rate_batch=256, rate_seconds=2.0,
    rate={"kolmogorov": {"burn_in": 0.0, "num_states": 9}},
    teacher_config="lightning_configs/teacher/darcy.yaml", net_overrides={"dropout": 0.0},
    resolution=64, batch=64, steps=10, warmup=3, sampler_steps=None,
    latency_batches=(1, 64), latency_repeats=5,
    ddp_args=("--data.init_args.num_samples=128", "--data.init_args.batch_size=32", "--trainer.max_epochs=1",
              "--trainer.limit_train_batches=3", "--trainer.limit_val_batches=1",
              "--trainer.check_val_every_n_epoch=1", "--model.init_args.num_steps=8",
              "--trainer.callbacks.init_args.num_samples=16", "--trainer.callbacks.init_args.every_n_epochs=1"),
    ddp_steps=3,
)
TINY = {"darcy": {"resolution": 16}, "darcy_pidm": {"resolution": 16}, "poisson": {"resolution": 16},
        "helmholtz": {"resolution": 16}, "burgers": {"resolution": 16, "num_times": 8},
        "ks": {"resolution": 32, "ic_modes": 4, "burn_in": 1.0, "num_states": 4},
        "kolmogorov": {"resolution": 16, "sim_resolution": 32, "burn_in": 0.0, "num_states": 3}}
QUICK = Sizes(
    check_samples=2, check=TINY,
    rate_batch=4, rate_seconds=0.0, rate=TINY,
    teacher_config="lightning_configs/quickstart/darcy.yaml",
    net_overrides={"base_channels": 8, "channel_mults": [1, 2], "dropout": 0.0},
    resolution=16, batch=4, steps=2, warmup=1, sampler_steps=4,
    latency_batches=(2,), latency_repeats=2,
    ddp_args=("--data.init_args.pde.init_args.resolution=16", "--data.init_args.num_samples=24",
              "--data.init_args.batch_size=8", "--trainer.max_epochs=1", "--trainer.limit_train_batches=2",
              "--trainer.limit_val_batches=1", "--trainer.check_val_every_n_epoch=1",
              "--model.init_args.net.init_args.base_channels=8", "--model.init_args.num_steps=4",
              "--trainer.callbacks.init_args.num_samples=4", "--trainer.callbacks.init_args.every_n_epochs=1"),
    ddp_steps=2,
)


# ----------------------------------------------------------------------------- the record of checks


class Report:
    """The checks run so far, each a row printed as it finishes: section, check, status, seconds, figures."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.checks: dict[str, dict[str, Any]] = {}
        self.sections: dict[str, dict[str, Any]] = {}

    @contextlib.contextmanager
    def check(self, section: str, name: str) -> Iterator[dict[str, Any]]:
        """One check: yields its row (``figures`` to fill, :func:`fail` / :func:`skip` to mark); an exception in
        the block marks it FAIL with the error and is not raised further."""
        row: dict[str, Any] = {"section": section, "check": name, "status": PASS, "seconds": 0.0, "figures": {},
                               "error": None}
        self.checks[f"{section}/{name}"] = row
        cuda = self.device.type == "cuda" and torch.cuda.is_available()
        if cuda:
            with contextlib.suppress(Exception):  # a broken CUDA context fails the check below, not the harness
                torch.cuda.reset_peak_memory_stats(self.device)
        start = time.perf_counter()
        try:
            yield row
        except Exception as error:  # noqa: BLE001 - recorded: the point is to go on to the next check
            fail(row, f"{type(error).__name__}: {error}")
            row["traceback"] = traceback.format_exc()
        finally:
            row["seconds"] = time.perf_counter() - start
            if cuda:
                with contextlib.suppress(Exception):  # a broken CUDA context must not hide the row
                    row["figures"]["peak_GiB"] = torch.cuda.max_memory_allocated(self.device) / 2**30
            print_row(row)

    def run_section(self, name: str, run: Callable[[], None]) -> None:
        """Run one section; an error outside its checks is one more FAIL row, ``<section>/setup``."""
        start, before = time.perf_counter(), set(self.checks)
        try:
            run()
        except Exception as error:  # noqa: BLE001 - recorded as its own row; the next section runs
            with self.check(name, "setup") as row:
                row["traceback"] = traceback.format_exc()
                fail(row, f"{type(error).__name__}: {error}")
        rows = [r for key, r in self.checks.items() if key not in before]
        statuses = {r["status"] for r in rows}
        status = FAIL if FAIL in statuses else PASS if PASS in statuses else SKIP
        self.sections[name] = {"status": status, "seconds": time.perf_counter() - start, "checks": len(rows)}
        print(f"| {name} | **section** | {status} | {self.sections[name]['seconds']:.1f} | "
              f"{len(rows)} checks, {sum(r['status'] == FAIL for r in rows)} failed |", flush=True)
        if self.device.type == "cuda" and torch.cuda.is_available():
            with contextlib.suppress(Exception):
                torch.cuda.empty_cache()

    @property
    def failed(self) -> list[str]:
        return [key for key, row in self.checks.items() if row["status"] == FAIL]


def fail(row: dict[str, Any], message: str) -> None:
    row["status"] = FAIL
    row["error"] = f"{row['error']}; {message}" if row["error"] else message


def skip(row: dict[str, Any], reason: str) -> None:
    row["status"] = SKIP
    row["error"] = reason


def expect(row: dict[str, Any], condition: bool, message: str) -> None:
    if not condition:
        fail(row, message)


def format_value(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    return f"{value:.3g}" if 1e-3 <= abs(value) < 1e5 else f"{value:.2e}"


def print_row(row: dict[str, Any]) -> None:
    figures = ", ".join(f"{key}={format_value(value)}" for key, value in row["figures"].items())
    if row["error"]:
        figures = f"{figures}; {row['status']}: {row['error']}" if figures else f"{row['status']}: {row['error']}"
    figures = figures.replace("|", "/").replace("\n", " ")
    if len(figures) > 400:
        figures = figures[:397] + "..."
    print(f"| {row['section']} | {row['check']} | {row['status']} | {row['seconds']:.2f} | {figures} |", flush=True)


# ----------------------------------------------------------------------------- helpers


def relative_difference(x: torch.Tensor, reference: torch.Tensor) -> float:
    """``max_c max |x_c - ref_c| / max |ref_c|`` over the channels (axis 1); nan where ``x`` is not finite."""
    x, reference = x.detach().to("cpu", torch.float64), reference.detach().to("cpu", torch.float64)
    if x.shape != reference.shape:
        raise ValueError(f"the device solve has shape {tuple(x.shape)}, the CPU's {tuple(reference.shape)}")
    if not bool(torch.isfinite(x).all()):
        return float("nan")
    dims = [d for d in range(x.ndim) if d != 1]
    scale = reference.abs().amax(dim=dims).clamp_min(torch.finfo(torch.float64).tiny)
    return float(((x - reference).abs().amax(dim=dims) / scale).max())


def on_device(pde):
    """The family as the device solves it: Darcy's ``solver="auto"`` picks the batched PCG for CUDA inputs and
    the banded Cholesky for CPU ones; naming ``torch`` runs the PCG on any device (the CUDA path on a CPU too)."""
    return pde.replace(solver="torch") if "solver" in pde.params() else pde


def stored_intervals(pde) -> int | None:
    """Stored-time intervals a trajectory family integrates (burn-in included): its cost is linear in them."""
    params = pde.params()
    if not {"num_states", "burn_in", "dt"} <= params.keys():
        return None
    return math.ceil(params["burn_in"] / params["dt"] - 1e-9) + params["num_states"] - 1


def bf16_supported(device: torch.device) -> bool:
    return device.type != "cuda" or torch.cuda.is_bf16_supported()


def teacher_settings(sizes: Sizes) -> dict[str, Any]:
    """The teacher config's model settings, its U-Net's with ``sizes.net_overrides``."""
    from pdegen.io import read_config

    model = read_config(ROOT / sizes.teacher_config)["model"]["init_args"]
    return {"net": {**model["net"]["init_args"], **sizes.net_overrides}, "sampler": model.get("sampler", "Heun"),
            "num_steps": int(model.get("num_steps", 18))}


def build_teacher(sizes: Sizes, data: torch.Tensor, pde, device: torch.device, seed: int, num_steps: int | None = None):
    """A fresh DiffusionTeacher with the config's U-Net (weights from ``seed``), its normaliser fitted on ``data``."""
    from pdegen import diffusion
    from pdegen.modules import DiffusionTeacher
    from pdegen.nets import UNet

    settings = teacher_settings(sizes)
    torch.manual_seed(seed)
    teacher = DiffusionTeacher(UNet(**settings["net"]), sampler=getattr(diffusion, settings["sampler"])(),
                               num_steps=num_steps or settings["num_steps"])
    teacher.attach_pde(pde)
    teacher.normalizer.set_stats(*teacher.normalizer.stats_of(data.cpu()))
    return teacher.to(device)


# ----------------------------------------------------------------------------- 1. solvers


def check_solvers(args: argparse.Namespace, report: Report, sizes: Sizes) -> None:
    from pdegen.datagen import draw_inputs
    from pdegen.pdes import PDES, get_pde

    device = report.device
    for name in PDES:
        with report.check("solvers", name) as row:
            figures = row["figures"]
            pde = get_pde(name, **sizes.check.get(name, {}))
            inputs = draw_inputs(pde, args.seed, 0, sizes.check_samples)
            figures["grid"] = "x".join(map(str, pde.sample_shape[1:]))
            figures["cpu_s"], _, reference = best_time(lambda pde=pde, inputs=inputs: pde.solve(inputs))
            if not bool(torch.isfinite(reference).all()):
                raise RuntimeError("the CPU reference solve is not finite")
            tolerance = TOLERANCES.get(name, DEFAULT_TOLERANCE)
            figures["tol"] = tolerance
            variants = {"": on_device(pde)}
            if "transform" in pde.params():  # the sine transform both ways: dense matmul (auto here) and FFT
                variants = {"": pde.replace(transform="matmul"), "_fft": pde.replace(transform="fft")}
            for suffix, solver in variants.items():
                on = inputs.to(device)
                solver.solve(on[:1])  # warm-up: FFT plans, cuBLAS handles, the stepper's coefficients
                seconds, _, result = best_time(lambda solver=solver, on=on: solver.solve(on),
                                               sync=device.type == "cuda")
                figures[f"device_s{suffix}"] = seconds
                expect(row, result.device.type == device.type, f"the solve{suffix} returned {result.device}, "
                                                                  f"not {device.type}")
                expect(row, result.dtype == torch.float64, f"the solve{suffix} returned {result.dtype}")
                difference = relative_difference(result, reference)
                figures[f"rel_diff{suffix}"] = difference
                expect(row, difference <= tolerance, f"rel_diff{suffix} {difference:.3g} > tol {tolerance:g}")


# ----------------------------------------------------------------------------- 2. generation rate


def check_generation(args: argparse.Namespace, report: Report, sizes: Sizes) -> None:
    from pdegen.datagen import draw_inputs
    from pdegen.pdes import PDES, get_pde

    device = report.device
    for name in PDES:
        with report.check("generation", name) as row:
            figures = row["figures"]
            pde = on_device(get_pde(name, **sizes.rate.get(name, {})))
            figures["grid"] = "x".join(map(str, pde.sample_shape[1:]))
            pde.solve(draw_inputs(pde, args.seed, 0, 1).to(device))  # warm-up
            inputs = draw_inputs(pde, args.seed, 0, sizes.rate_batch).to(device)
            calls, elapsed, out = 0, 0.0, None
            while calls == 0 or (elapsed < sizes.rate_seconds and calls < 50):
                seconds, _, out = best_time(lambda pde=pde, inputs=inputs: pde.solve(inputs),
                                            sync=device.type == "cuda")
                calls, elapsed = calls + 1, elapsed + seconds
            figures.update(batch=sizes.rate_batch, calls=calls, seconds=elapsed,
                           samples_per_s=calls * sizes.rate_batch / elapsed)
            default = on_device(get_pde(name))
            used, full = stored_intervals(pde), stored_intervals(default)
            if used is not None and used != full and pde.replace(
                    **{k: default.params()[k] for k in ("num_states", "burn_in")}).params() == default.params():
                # only the trajectory's length differs from the default: its cost is linear in the intervals
                figures["intervals"] = used
                figures["samples_per_s_default_length"] = figures["samples_per_s"] * used / full
            expect(row, out.device.type == device.type, f"the solve returned {out.device}, not {device.type}")
            expect(row, bool(torch.isfinite(out).all()), "non-finite samples")


# ----------------------------------------------------------------------------- 3. teacher training step


def check_teacher(args: argparse.Namespace, report: Report, sizes: Sizes) -> None:
    from pdegen.callbacks import CompileBackbones
    from pdegen.pdes import Darcy

    device = report.device
    pde = Darcy(resolution=sizes.resolution)
    data = pde.generate(sizes.batch, generator=torch.Generator().manual_seed(args.seed)).float()
    batch = data.to(device)
    second_losses: dict[str, float] = {}
    modes = {"fp32": (False, False), "bf16-mixed": (True, False), "compiled (bf16-mixed)": (True, True)}
    for mode, (bf16, compiled) in modes.items():
        with report.check("teacher", mode) as row:
            figures = row["figures"]
            if bf16 and not bf16_supported(device):
                skip(row, f"{torch.cuda.get_device_name(device)} has no bf16")
                continue
            if compiled and args.no_compile:
                skip(row, "--no-compile")
                continue
            teacher = build_teacher(sizes, data, pde, device, args.seed)
            teacher.train()
            if compiled:
                compiler = CompileBackbones()  # what trainer/compile.yaml adds, applied as at the start of a fit
                compiler.setup(None, teacher, "fit")
                figures["compiled_modules"] = len(compiler.compiled)
                expect(row, bool(compiler.compiled), "CompileBackbones compiled no backbone")
            optimizer = torch.optim.Adam(teacher.parameters(), lr=1e-4)
            losses: list[torch.Tensor] = []

            def step(generator: torch.Generator | None = None, teacher=teacher, optimizer=optimizer,
                     bf16=bf16, losses=losses) -> None:
                optimizer.zero_grad(set_to_none=True)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                    loss = teacher.loss(batch, generator=generator)
                loss.backward()  # outside autocast, as Lightning's bf16-mixed
                optimizer.step()
                losses.append(loss.detach())

            figures["first_step_s"] = best_time(  # the same draws in every mode
                lambda step=step: step(torch.Generator(device=device).manual_seed(args.seed)),
                sync=device.type == "cuda")[0]
            # the U-Net's output layer starts at zero, so the first loss is the same in every precision; the
            # second (after one Adam step, ~lr · sign(gradient), from the same draws) compares them
            step(torch.Generator(device=device).manual_seed(args.seed + 1))
            second_losses[mode] = float(losses[1])
            figures["batch"] = sizes.batch
            figures["samples_per_s"] = items_per_second(step, sizes.batch, sizes.steps, sizes.warmup,
                                                        cuda=device.type == "cuda")
            figures["second_loss"] = second_losses[mode]
            if "fp32" in second_losses:
                figures["second_loss_vs_fp32"] = abs(second_losses[mode] / second_losses["fp32"] - 1)
            figures["last_loss"] = float(losses[-1])
            expect(row, all(bool(torch.isfinite(loss)) for loss in losses), "non-finite training loss")


# ----------------------------------------------------------------------------- 4. student latency


def check_latency(args: argparse.Namespace, report: Report, sizes: Sizes) -> None:
    from pdegen.callbacks.latency import LatencyCallback
    from pdegen.modules import PIDStudent
    from pdegen.pdes import Darcy

    device = report.device
    pde = Darcy(resolution=sizes.resolution)
    data = pde.generate(max(sizes.batch, 2), generator=torch.Generator().manual_seed(args.seed)).float()
    teacher = build_teacher(sizes, data, pde, device, args.seed, num_steps=sizes.sampler_steps)
    student = PIDStudent(teacher).to(device)  # a one-step student, its backbone a copy of the teacher's
    for batch in sizes.latency_batches:
        with report.check("latency", f"batch {batch}") as row:
            figures = row["figures"]
            timer = LatencyCallback(batch_sizes=[batch], threads=[0], warmup=1, repeats=sizes.latency_repeats)
            rows = {r["target"]: r for r in timer.measure(student)}
            nfe = student.latency_nfe()
            figures.update(synchronised=device.type == "cuda", student_nfe=nfe["model"], teacher_nfe=nfe["teacher"],
                           student_ms=rows["model"]["median_ms"], student_p90_ms=rows["model"]["p90_ms"],
                           teacher_ms=rows["teacher"]["median_ms"],
                           speedup=rows["teacher"]["median_ms"] / rows["model"]["median_ms"],
                           student_samples_per_s=rows["model"]["samples_per_s"])
            with torch.inference_mode():
                targets = student.latency_targets(batch)
                samples = {name: run() for name, run in targets.items()}
            shapes = {tuple(x.shape) for x in samples.values()}
            expect(row, shapes == {(batch, *pde.sample_shape)}, f"sample shapes {shapes}")
            expect(row, all(x.device.type == device.type for x in samples.values()), "samples left the device")
            expect(row, all(bool(torch.isfinite(x).all()) for x in samples.values()), "non-finite samples")


# ----------------------------------------------------------------------------- 5. DDP fit


@contextlib.contextmanager
def restored_environment() -> Iterator[None]:
    """Put ``os.environ`` back as it was (Lightning's DDP sets MASTER_PORT, WORLD_SIZE, ... in it)."""
    saved = dict(os.environ)
    try:
        yield
    finally:
        for key in [k for k in os.environ if k not in saved]:
            del os.environ[key]
        os.environ.update(saved)


def check_ddp(args: argparse.Namespace, report: Report, sizes: Sizes, out: Path) -> None:
    import torch.distributed as dist
    from lightning.pytorch.strategies import DDPStrategy

    from pdegen.cli import main as cli_main
    from pdegen.modules import DiffusionTeacher
    from pdegen.modules.checkpoints import load_module

    device = report.device
    with report.check("ddp", "fit") as row:
        figures = row["figures"]
        if args.no_ddp:
            skip(row, "--no-ddp")
            return
        accelerator = "gpu" if device.type == "cuda" else "cpu"
        devices = f"[{device.index}]" if device.type == "cuda" and device.index is not None else "1"
        run = out / "ddp_run"
        argv = ["fit", "--config", str(ROOT / "lightning_configs/quickstart/darcy.yaml"), *sizes.ddp_args,
                f"--trainer.default_root_dir={run}", f"--data.init_args.cache_dir={out / 'data'}",
                f"--trainer.accelerator={accelerator}", f"--trainer.devices={devices}", "--trainer.strategy=ddp",
                "--trainer.logger=false", "--trainer.enable_progress_bar=false",
                "--trainer.enable_model_summary=false", "--overwrite=true"]
        already = dist.is_available() and dist.is_initialized()
        with restored_environment(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*args parameter is intended to run from within Python")
            try:
                trainer = cli_main(argv).trainer
                if dist.is_available() and dist.is_initialized():
                    figures["backend"] = dist.get_backend()
                    figures["world_size"] = dist.get_world_size()
            finally:
                if not already and dist.is_available() and dist.is_initialized():
                    dist.destroy_process_group()
        figures["strategy"] = type(trainer.strategy).__name__
        figures["global_step"] = trainer.global_step
        loss = trainer.callback_metrics.get("train/loss")
        if loss is not None:
            figures["train_loss"] = float(loss)
        expect(row, isinstance(trainer.strategy, DDPStrategy), f"strategy {type(trainer.strategy).__name__}")
        expect(row, trainer.global_step == sizes.ddp_steps, f"{trainer.global_step} of {sizes.ddp_steps} steps")
        checkpoint = Path(trainer.checkpoint_callback.last_model_path or run / "checkpoints/last.ckpt")
        figures["checkpoint"] = str(checkpoint)
        expect(row, checkpoint.is_file(), f"no checkpoint at {checkpoint}")
        if checkpoint.is_file():
            figures["checkpoint_MB"] = checkpoint.stat().st_size / 2**20
            load_module(DiffusionTeacher, checkpoint)  # it loads
            figures["reloads"] = True
        if loss is not None:
            expect(row, math.isfinite(float(loss)), "non-finite training loss")


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="the device checked against the CPU (cuda, cuda:1, cpu)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: every path in seconds (also on a CPU)")
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--no-compile", action="store_true", help="skip the compiled teacher step (slow to compile)")
    parser.add_argument("--no-ddp", action="store_true", help="skip the DDP fit")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for the DDP run and its data (default: a temporary folder, removed at the end)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    add_bench_options(parser, repeats=False)
    args = parse_bench_args(parser, argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("CUDA is not available here: run it on a GPU machine, or --device cpu to check the harness")
    if device.type == "cuda" and device.index is not None:
        torch.cuda.set_device(device)
    sizes = QUICK if args.quick else FULL

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(f"gpu_check on {device} ({name}), torch {torch.__version__}, {torch.get_num_threads()} CPU threads, "
          f"{'quick' if args.quick else 'full'} sizes\n")
    print("| section | check | status | seconds | figures |")
    print("|---|---|---|---:|---|", flush=True)
    report = Report(device)
    start = time.perf_counter()
    with contextlib.ExitStack() as stack:
        out = args.out or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="gpu_check_")))
        out.mkdir(parents=True, exist_ok=True)
        runs: dict[str, Callable[[], None]] = {
            "solvers": lambda: check_solvers(args, report, sizes),
            "generation": lambda: check_generation(args, report, sizes),
            "teacher": lambda: check_teacher(args, report, sizes),
            "latency": lambda: check_latency(args, report, sizes),
            "ddp": lambda: check_ddp(args, report, sizes, out),
        }
        for section in SECTIONS:
            if section in args.sections:
                report.run_section(section, runs[section])
    failed = report.failed
    result = {"device": str(device), "device_name": name, "torch": torch.__version__, "quick": args.quick,
              "seconds": time.perf_counter() - start, "sections": report.sections, "checks": report.checks,
              "failed": failed, "exit_code": 1 if failed else 0}
    counts = {status: sum(r["status"] == status for r in report.checks.values()) for status in (PASS, FAIL, SKIP)}
    print(f"\n{len(report.checks)} checks in {result['seconds']:.1f} s: {counts[PASS]} passed, {counts[FAIL]} failed, "
          f"{counts[SKIP]} skipped")
    for key in failed:
        print(f"FAIL {key}: {report.checks[key]['error']}")
    if args.json is not None:
        write_text_atomic(args.json, json.dumps(result, indent=2, default=str))
    return result


if __name__ == "__main__":
    sys.exit(main()["exit_code"])
