"""KD-PINN's two experiments beyond the benchmark: the distillation-weight ablation and out-of-distribution
extrapolation.

    python tools/kdpinn_experiments.py ablation --problem burgers \
        --teacher runs/kdpinn/burgers_teacher/checkpoints/last.ckpt
    python tools/kdpinn_experiments.py ood --runs runs/kdpinn_benchmark/runs/kdpinn --problems burgers kovasznay

``ablation``: two students from ``lightning_configs/kdpinn/<problem>_student.yaml`` and ``--teacher``, identical
but for the distillation: w_KD = 0 (``distill_weights [0, 0]``, physics weight 1 throughout: a plain PINN of the
student's size) against the config's schedule (w_KD > 0). Every step's physics loss (the PDE and condition
terms, unweighted by the schedule) and every validation's error against the reference are read from the runs'
CSV logs. Oscillation = the mean |Δ log₁₀ L| between consecutive Adam steps of the physics loss L (a smooth
decrease of three decades over 3,000 steps gives 0.001); rises = the share of Adam steps where L grew by more
than 10 %. Writes ``ablation.md``, ``ablation.json`` and ``ablation.png`` (loss and error curves).

``ood``: the trained teacher and student of each problem evaluated beyond their training box, in a slab that
extends the time's upper bound (for a steady problem, x's: Kovasznay's streamwise direction; its y is periodic
in the solution and in a student with harmonics, so y would test nothing) by ``--mild`` and ``--hard`` times its
range; relative L2 against the problem's reference in that slab only (and in the box, for comparison). A
reference solved over the time interval (Allen–Cahn's, ``final_time``) is solved further for it
(``PointwiseProblem.covering``). Writes
``ood.md``, ``ood.json`` and ``ood.png``.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tools")]

import kdpinn_benchmark  # noqa: E402

from pdegen.io import write_text_atomic  # noqa: E402
from pdegen.modules.kdpinn import load_pinn  # noqa: E402
from pdegen.modules.pinn import reference_errors  # noqa: E402
from pdegen.pdes.pointwise import PROBLEMS  # noqa: E402

VARIANTS = {"w_kd_0": ["--model.init_args.distillation.distill_weights=[0.0, 0.0]",
                       "--model.init_args.distillation.physics_weights=[1.0, 1.0]"],
            "w_kd_schedule": []}


# ---------------------------------------------------------------------------------------------------- ablation
def read_log(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """Every metric of a run's CSV log (``<folder>/logs/version_*/metrics.csv``) as (step, value) pairs."""
    (path,) = sorted(folder.glob("logs/version_*/metrics.csv"))[-1:]
    series: dict[str, list[tuple[int, float]]] = {}
    with open(path) as stream:
        for row in csv.DictReader(stream):
            for key, value in row.items():
                if key not in ("step", "epoch") and value not in ("", None):
                    series.setdefault(key, []).append((int(row["step"]), float(value)))
    return series


def physics_loss(series: dict[str, list[tuple[int, float]]], terms: list[str],
                 weights: dict[str, float]) -> list[tuple[int, float]]:
    """Σ_terms λ · (logged term) at each step where every term was logged (λ: the problem's condition weights,
    1 for ``pde``; not the schedule's scaling)."""
    logged = [dict(series.get(f"train/{term}", [])) for term in terms]
    steps = sorted(set.intersection(*(set(values) for values in logged)))
    return [(s, sum(weights.get(t, 1.0) * v[s] for t, v in zip(terms, logged))) for s in steps]


def oscillation(curve: list[tuple[int, float]]) -> dict[str, float]:
    """Mean |Δ log₁₀ L| between consecutive steps and the share of steps where L rose by more than 10 %."""
    values = [v for _, v in curve if v > 0]
    changes = [math.log10(b / a) for a, b in zip(values, values[1:])]
    if not changes:
        return {"mean_abs_dlog10": float("nan"), "rises": float("nan")}
    return {"mean_abs_dlog10": sum(abs(c) for c in changes) / len(changes),
            "rises": sum(c > math.log10(1.1) for c in changes) / len(changes)}


def ablation(args: argparse.Namespace) -> dict:
    out = args.out / "ablation" / args.problem
    teacher = load_pinn(args.teacher)
    problem, weights = teacher.problem, dict(teacher.condition_weights)
    terms = ["pde", *problem.conditions]
    result = {"problem": args.problem, "teacher": str(args.teacher),
              "teacher_rel_l2": float(teacher.reference_errors()["rel_l2"]), "variants": {}}
    for variant, overrides in VARIANTS.items():
        folder = out / variant
        arguments = [f"--model.init_args.distillation.teacher={args.teacher}", f"--trainer.default_root_dir={folder}",
                     "--trainer.log_every_n_steps=1", *overrides, *args.extra]
        code = kdpinn_benchmark.fit(kdpinn_benchmark.CONFIGS / f"{args.problem}_student.yaml", arguments,
                                    folder / "fit.log", folder / "done", args.out, args.threads)
        if code:
            raise SystemExit(f"{variant} failed (exit {code}), see {folder / 'fit.log'}")
        student = load_pinn(folder / "checkpoints/last.ckpt", teacher=args.teacher)
        series = read_log(folder)
        curve = physics_loss(series, terms, weights)
        lbfgs = dict(series.get("train/lbfgs", []))
        adam = [(s, v) for s, v in curve if not lbfgs.get(s, 0.0)]
        result["variants"][variant] = {
            "rel_l2": float(student.reference_errors()["rel_l2"]), "final_physics_loss": curve[-1][1],
            "oscillation_adam": oscillation(adam), "physics_loss": curve,
            "val_rel_l2": series.get("val/rel_l2", [])}
    write_text_atomic(out / "ablation.json", json.dumps(result, indent=2))
    table = ablation_markdown(result)
    write_text_atomic(out / "ablation.md", table)
    ablation_plot(result, out / "ablation.png")
    print(table)
    return result


def ablation_markdown(result: dict) -> str:
    lines = [f"# KD-PINN distillation-weight ablation: {result['problem']} (teacher rel. L2 "
             f"{result['teacher_rel_l2']:.3g})", "",
             "| student | rel. L2 | final physics loss | Adam: mean abs Δlog₁₀ loss per step "
             "| Adam: steps rising > 10 % |",
             "|---|---|---|---|---|"]
    for variant, r in result["variants"].items():
        o = r["oscillation_adam"]
        lines.append(f"| {variant} | {r['rel_l2']:.3g} | {r['final_physics_loss']:.3g} | {o['mean_abs_dlog10']:.4f} "
                     f"| {100 * o['rises']:.1f} % |")
    return "\n".join(lines) + "\n"


def ablation_plot(result: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pdegen.plotting import save_figure

    fig, (loss_ax, error_ax) = plt.subplots(1, 2, figsize=(10, 4))
    for variant, r in result["variants"].items():
        steps, values = zip(*r["physics_loss"])
        loss_ax.plot(steps, values, lw=0.7, label=variant)
        if r["val_rel_l2"]:
            steps, values = zip(*r["val_rel_l2"])
            error_ax.plot(steps, values, marker=".", label=variant)
    error_ax.axhline(result["teacher_rel_l2"], color="k", lw=1, ls=":", label="teacher")
    loss_ax.set(yscale="log", xlabel="optimizer step", ylabel="physics loss (PDE + conditions)",
                title=f"{result['problem']}: training loss")
    error_ax.set(yscale="log", xlabel="optimizer step", ylabel="relative L2 vs reference", title="validation error")
    loss_ax.legend(fontsize=8)
    error_ax.legend(fontsize=8)
    return save_figure(fig, path)


# ---------------------------------------------------------------------------------------------------- ood
def extended_axis(problem) -> int:
    """The coordinate the slabs extend: the time, or the first (x) for a steady problem."""
    return problem.inputs.index("t") if "t" in problem.inputs else 0


def slab(problem, fraction: float, points_per_axis: int = 100) -> torch.Tensor:
    """Grid points beyond the box: the :func:`extended_axis` from its upper bound to ``fraction`` × its range
    above, the other coordinates over the box."""
    lower, upper, axis = list(problem.lower), list(problem.upper), extended_axis(problem)
    span = upper[axis] - lower[axis]
    lower[axis], upper[axis] = upper[axis], upper[axis] + fraction * span
    return problem.grid(points_per_axis, tuple(lower), tuple(upper))


def ood(args: argparse.Namespace) -> list[dict]:
    results = []
    for problem_name in args.problems:
        teacher_path, student_path = (args.runs / f"{problem_name}_{role}/checkpoints/last.ckpt"
                                      for role in ("teacher", "student"))
        teacher, student = load_pinn(teacher_path), load_pinn(student_path, teacher=teacher_path)
        problem = teacher.problem
        row = {"problem": problem_name, "extended": problem.inputs[extended_axis(problem)],
               "in_box": {role: float(m.reference_errors()["rel_l2"]) for role, m in
                          (("teacher", teacher), ("student", student))}}
        for label, fraction in (("mild", args.mild), ("hard", args.hard)):
            coords = slab(problem, fraction)
            reference = problem.covering(tuple(coords.max(0).values.tolist())).reference(coords)
            row[label] = {role: float(reference_errors(problem, coords, m.predict_points(coords), reference)["rel_l2"])
                          for role, m in (("teacher", teacher), ("student", student))}
        results.append(row)
    out = args.out / "ood"
    write_text_atomic(out / "ood.json", json.dumps(results, indent=2))
    table = ood_markdown(results, args)
    write_text_atomic(out / "ood.md", table)
    ood_plot(results, out / "ood.png", args)
    print(table)
    return results


def ood_markdown(results: list[dict], args: argparse.Namespace) -> str:
    lines = [f"# KD-PINN out-of-distribution extrapolation (relative L2 in the slab beyond the box: mild = "
             f"+{args.mild:.0%}, hard = +{args.hard:.0%} of the extended coordinate's range)", "",
             "| problem | extended | teacher, box | student, box | teacher, mild | student, mild | teacher, hard "
             "| student, hard |", "|---|---|---|---|---|---|---|---|"]
    for r in results:
        cells = [f"{r['in_box']['teacher']:.3g}", f"{r['in_box']['student']:.3g}"]
        for label in ("mild", "hard"):
            cells += [f"{r[label]['teacher']:.3g}", f"{r[label]['student']:.3g}"]
        lines.append(f"| {r['problem']} | {r['extended']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def ood_plot(results: list[dict], path: Path, args: argparse.Namespace) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pdegen.plotting import save_figure

    fig, ax = plt.subplots(figsize=(7, 4))
    labels = ["box", f"mild (+{args.mild:.0%})", f"hard (+{args.hard:.0%})"]
    for i, r in enumerate(results):
        for role, style in (("teacher", "-o"), ("student", "--s")):
            values = [r["in_box"][role]] + [r[k][role] for k in ("mild", "hard")]
            ax.plot(labels, values, style, color=f"C{i}", label=f"{r['problem']} {role}")
    ax.set(yscale="log", ylabel="relative L2 vs reference", title="KD-PINN beyond the training box")
    ax.legend(fontsize=7, ncol=2)
    return save_figure(fig, path)


def main(argv: list[str] | None = None):
    argv = sys.argv[1:] if argv is None else argv
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    first = commands.add_parser("ablation", help="w_KD = 0 against w_KD > 0")
    first.add_argument("--problem", choices=sorted(PROBLEMS), required=True)
    first.add_argument("--teacher", type=Path, required=True, help="the trained teacher's checkpoint")
    first.add_argument("--threads", type=int, default=1)
    second = commands.add_parser("ood", help="teacher and student beyond the training box")
    second.add_argument("--runs", type=Path, default=Path("runs/kdpinn"), help="where <problem>_teacher/ etc. are")
    second.add_argument("--problems", nargs="+", choices=sorted(PROBLEMS), required=True)
    second.add_argument("--mild", type=float, default=0.1)
    second.add_argument("--hard", type=float, default=0.5)
    for command in (first, second):
        command.add_argument("--out", type=Path, default=Path("runs/kdpinn_experiments"))
    args = parser.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    args.extra, args.out = extra, args.out.resolve()
    if args.command == "ablation":
        if not args.teacher.is_file():
            parser.error(f"teacher checkpoint {args.teacher} not found: pdegen fit --config "
                         f"lightning_configs/kdpinn/{args.problem}_teacher.yaml first")
        args.teacher = args.teacher.resolve()
        return ablation(args)
    if not 0 < args.mild < args.hard:
        parser.error(f"need 0 < --mild < --hard, got {args.mild} and {args.hard}")
    return ood(args)


if __name__ == "__main__":
    main()
