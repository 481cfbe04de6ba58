"""PID ablation: the grid size N and the first- (upwind) vs second-order (central) scheme.

    python tools/pid_ablation.py --out runs/pid_ablation                    # Gaussian mixture only
    python tools/pid_ablation.py --darcy-teacher runs/quickstart/checkpoints/last.ckpt --out runs/pid_ablation

Gaussian mixture (2-D, 4 modes on a ring, exact denoiser): a student MLP per (scheme, N) is trained
for ``--mixture-steps`` steps; its one-step map x_θ(z, σ_min) is compared with the exact noise→data
map (DOP853 at 1e-10) and, as context, with the teacher's own N-point Euler and Heun solves.
Darcy: students of the given teacher checkpoint (initialised from its weights) trained for
``--darcy-steps`` steps, compared with the teacher's fine Heun solve (``--reference-points``) from
the same noise; the relative PDE residual of their samples is reported too. Every student trains
through the same Lightning loop as ``pdegen fit`` (RAdam, EMA of the weights with a decay suited
to the run's length), with the same seed.
Errors are RMS over all elements in normalised units. Writes ablation.md, ablation.json and
ablation.png to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from functools import partial
from pathlib import Path

import lightning as L
import matplotlib.pyplot as plt
import torch
from torch.utils.data import DataLoader, TensorDataset

from pdegen.callbacks import EMAWeightAveraging
from pdegen.diffusion import Euler, GaussianMixtureDenoiser, Heun, pid_grid
from pdegen.io import write_text_atomic
from pdegen.metrics import PDEResidualNorm
from pdegen.modules import FrozenTeacher, PIDStudent
from pdegen.nets import NoiseConditionedMLP


def rmse(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).square().mean().sqrt())


def ring_mixture(modes: int = 4, radius: float = 1.5, std: float = 0.3) -> GaussianMixtureDenoiser:
    angles = torch.arange(modes, dtype=torch.float64) * 2 * math.pi / modes
    return GaussianMixtureDenoiser(radius * torch.stack([angles.cos(), angles.sin()], dim=1), std)


def train(student: PIDStudent, steps: int, batch_shape: tuple[int, ...], ema_decay: float | None) -> float:
    """Fit ``student`` for ``steps`` steps on batches of ``batch_shape`` (their content is unused); seconds."""
    L.seed_everything(0, verbose=False)
    decay = max(0.0, 1 - 10 / steps) if ema_decay is None else ema_decay  # runs under 10 steps: the last weights
    trainer = L.Trainer(max_steps=steps, accelerator="auto", devices=1, logger=False, enable_checkpointing=False,
                        enable_model_summary=False, limit_val_batches=0, enable_progress_bar=False,
                        callbacks=[EMAWeightAveraging(decay=decay)])
    loader = DataLoader(TensorDataset(torch.zeros(batch_shape)), batch_size=batch_shape[0],
                        collate_fn=lambda items: torch.stack([item[0] for item in items]))
    start = time.perf_counter()
    trainer.fit(student, loader)
    return time.perf_counter() - start


def mixture_rows(args: argparse.Namespace) -> list[dict]:
    gmm = ring_mixture()
    eps = torch.randn(args.eval_samples, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    z = 80.0 * eps
    exact = gmm.flow(z, 80.0, 0.002)
    rows = []
    for n in args.mixture_points:
        grid = pid_grid(n)
        euler, heun = (s(gmm, z, grid) for s in (Euler(), Heun()))
        for scheme in args.schemes:
            torch.manual_seed(0)
            student = PIDStudent(gmm, net=NoiseConditionedMLP(2, width=128, depth=3), num_points=n, scheme=scheme,
                                 optimizer=partial(torch.optim.RAdam, lr=args.mixture_lr))
            seconds = train(student, args.mixture_steps, (args.mixture_batch, 2), args.ema_decay)
            with torch.no_grad():
                one_step = student.eval().generate(eps)
            rows.append({"problem": "mixture", "scheme": scheme, "N": n, "student_error": rmse(one_step, exact),
                         "euler_error": rmse(euler, exact), "heun_error": rmse(heun, exact),
                         "student_vs_euler": rmse(one_step, euler), "train_seconds": seconds})
            print(rows[-1], flush=True)
    return rows


def darcy_rows(args: argparse.Namespace) -> list[dict]:
    teacher = FrozenTeacher.load(args.darcy_teacher)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    teacher.to(device)
    pde = teacher.pde
    eps = torch.randn(args.eval_samples_darcy, *pde.sample_shape, dtype=torch.float64,
                      generator=torch.Generator().manual_seed(1)).to(device)
    with torch.no_grad():
        reference = Heun()(teacher.denoiser, 80.0 * eps, pid_grid(args.reference_points))
    rows = []
    for n in args.darcy_points:
        euler = None
        for scheme in args.schemes:
            student = PIDStudent(args.darcy_teacher, num_points=n, scheme=scheme,
                                 optimizer=partial(torch.optim.RAdam, lr=args.darcy_lr))
            seconds = train(student, args.darcy_steps, (args.darcy_batch, *pde.sample_shape), args.ema_decay)
            student.to(device).eval()
            with torch.no_grad():
                one_step = student.generate(eps)
                if euler is None:
                    euler = student.grid_teacher_generate(eps, Euler())
            residual = PDEResidualNorm(pde).to(device)
            residual.update(student.normalizer.decode(one_step))
            rows.append({"problem": "darcy", "scheme": scheme, "N": n, "student_error": rmse(one_step, reference),
                         "euler_error": rmse(euler, reference), "student_vs_euler": rmse(one_step, euler),
                         "residual_rel": float(residual.compute()["interior_rel"]), "train_seconds": seconds})
            print(rows[-1], flush=True)
    return rows


def markdown(rows: list[dict], args: argparse.Namespace) -> str:
    lines = ["# PID ablation: grid size N and scheme", ""]
    mixture = [r for r in rows if r["problem"] == "mixture"]
    if mixture:
        lines += [f"Gaussian mixture (4 modes on a ring of radius 1.5, std 0.3), {args.mixture_steps} steps of batch "
                  f"{args.mixture_batch} per student, {args.eval_samples} evaluation noises; RMS error of the "
                  "one-step map against the exact PF-ODE map (DOP853).", "",
                  "| scheme | N | student vs exact | N-point Euler vs exact | N-point Heun vs exact "
                  "| student vs N-point Euler | train s |", "|---|---|---|---|---|---|---|"]
        lines += [f"| {r['scheme']} | {r['N']} | {r['student_error']:.4f} | {r['euler_error']:.4f} | "
                  f"{r['heun_error']:.2e} | {r['student_vs_euler']:.4f} | {r['train_seconds']:.0f} |" for r in mixture]
        lines.append("")
    darcy = [r for r in rows if r["problem"] == "darcy"]
    if darcy:
        lines += [f"Darcy, teacher `{args.darcy_teacher}`, {args.darcy_steps} steps of batch {args.darcy_batch} per "
                  f"student, {args.eval_samples_darcy} evaluation noises; RMS error (normalised units) against the "
                  f"teacher's {args.reference_points}-point Heun solve from the same noise.", "",
                  "| scheme | N | student vs teacher | N-point Euler vs teacher | student vs N-point Euler "
                  "| student residual (rel.) | train s |", "|---|---|---|---|---|---|---|"]
        lines += [f"| {r['scheme']} | {r['N']} | {r['student_error']:.4f} | {r['euler_error']:.4f} | "
                  f"{r['student_vs_euler']:.4f} | {r['residual_rel']:.3g} | {r['train_seconds']:.0f} |" for r in darcy]
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path) -> None:
    problems = [p for p in ("mixture", "darcy") if any(r["problem"] == p for r in rows)]
    fig, axes = plt.subplots(1, len(problems), figsize=(5.5 * len(problems), 4), squeeze=False)
    for ax, problem in zip(axes[0], problems):
        mine = [r for r in rows if r["problem"] == problem]
        for scheme, marker in (("upwind", "o"), ("central", "s")):
            points = [(r["N"], r["student_error"]) for r in mine if r["scheme"] == scheme]
            if points:
                ax.plot(*zip(*points), marker=marker, label=f"student, {scheme}")
        for key, label in (("euler_error", "teacher, N-point Euler"), ("heun_error", "teacher, N-point Heun")):
            points = sorted({(r["N"], r[key]) for r in mine if key in r})
            if points:
                ax.plot(*zip(*points), linestyle="--", color="grey" if "euler" in key else "black", label=label)
        ax.set(xscale="log", yscale="log", xlabel="grid points N", title=problem,
               ylabel="RMS error vs exact map" if problem == "mixture" else "RMS error vs fine teacher solve")
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/pid_ablation"))
    parser.add_argument("--mixture-points", type=int, nargs="+", default=[4, 8, 16, 35, 80, 250, 1000],
                        help="grid sizes N for the mixture (small N: discretisation error dominates)")
    parser.add_argument("--darcy-points", type=int, nargs="+", default=[8, 35, 250, 1000])
    parser.add_argument("--schemes", nargs="+", default=["upwind", "central"], choices=["upwind", "central"])
    parser.add_argument("--ema-decay", type=float, default=None,
                        help="EMA decay of the student's weights (default max(0, 1 − 10/steps): the initial weights "
                             "keep a weight of e^−10 at the end of a short run)")
    parser.add_argument("--skip-mixture", action="store_true")
    parser.add_argument("--mixture-steps", type=int, default=4000)
    parser.add_argument("--mixture-batch", type=int, default=512)
    parser.add_argument("--mixture-lr", type=float, default=2e-3)
    parser.add_argument("--eval-samples", type=int, default=2048)
    parser.add_argument("--darcy-teacher", type=str, default=None, help="DiffusionTeacher checkpoint (Darcy)")
    parser.add_argument("--darcy-steps", type=int, default=300)
    parser.add_argument("--darcy-batch", type=int, default=16)
    parser.add_argument("--darcy-lr", type=float, default=5e-4)
    parser.add_argument("--eval-samples-darcy", type=int, default=32)
    parser.add_argument("--reference-points", type=int, default=512, help="grid of the teacher's reference solve")
    args = parser.parse_args(argv)
    rows = [] if args.skip_mixture else mixture_rows(args)
    if args.darcy_teacher:
        rows += darcy_rows(args)
    if not rows:
        parser.error("nothing to run: drop --skip-mixture or give --darcy-teacher")
    write_text_atomic(args.out / "ablation.json", json.dumps(rows, indent=2))
    write_text_atomic(args.out / "ablation.md", markdown(rows, args))
    plot(rows, args.out / "ablation.png")
    print(markdown(rows, args))
    print(f"wrote {args.out}/ablation.md, ablation.json, ablation.png")


if __name__ == "__main__":
    main()
