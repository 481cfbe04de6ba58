"""KD-PINN student sizes: distil one teacher into students of every depth × width × activation, score each
for accuracy and latency, and write the accuracy–latency Pareto front (table and plot).

    python tools/kdpinn_sweep.py --problem burgers --teacher runs/kdpinn/burgers_teacher/checkpoints/last.ckpt
    python tools/kdpinn_sweep.py --problem allen_cahn --teacher ... --depths 2 3 --widths 16 24 --activations tanh sin

Every student is ``lightning_configs/kdpinn/<problem>_student.yaml`` with its net's depth, width and activation
overridden and ``--teacher`` as its teacher (extra ``pdegen fit`` arguments after ``--``), trained in a
subprocess on ``--threads`` threads, ``--jobs`` at a time; a finished one (its ``done`` file) is reused. Then, in
this process: the relative L2 error against the problem's reference on the teacher's evaluation grid, and the
median and p90 latency on one thread at ``--points`` points and at one point for each ``--backends`` (the
teacher timed the same way before and after the students, the faster run kept, for the speed-up). A student
is on the front when no other is both at least as accurate and at least as fast (best backend at ``--points``),
and better in one. Writes ``sweep.md``, ``sweep.json`` and ``sweep.png`` under ``--out``.
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tools")]

import bench_latency  # noqa: E402
import kdpinn_benchmark  # noqa: E402

from pdegen.benchmarking import latency_ms, torch_threads  # noqa: E402
from pdegen.io import write_text_atomic  # noqa: E402
from pdegen.modules.kdpinn import load_pinn  # noqa: E402
from pdegen.nets.coordinate_mlp import ACTIVATIONS  # noqa: E402
from pdegen.pdes.pointwise import PROBLEMS  # noqa: E402


def name(depth: int, width: int, activation: str) -> str:
    return f"d{depth}_w{width}_{activation}"


def train(size: tuple[int, int, str], args: argparse.Namespace) -> str:
    """Fit the student of ``size`` (reused when done); a status line."""
    folder = args.out / name(*size)
    depth, width, activation = size
    net = "--model.init_args.net.init_args"
    arguments = [f"--model.init_args.distillation.teacher={args.teacher}", f"{net}.depth={depth}",
                 f"{net}.width={width}", f"{net}.activation={activation}", f"--trainer.default_root_dir={folder}",
                 *args.extra]
    code = kdpinn_benchmark.fit(kdpinn_benchmark.CONFIGS / f"{args.problem}_student.yaml", arguments,
                                folder / "fit.log", folder / "done", args.out, args.threads)
    if code is None:
        return f"{folder.name}: reused"
    if code:
        return f"{folder.name}: failed (exit {code}), see {folder / 'fit.log'}"
    return f"{folder.name}: trained"


def timings(net: torch.nn.Module, example: torch.Tensor, points: dict[int, torch.Tensor], args: argparse.Namespace,
            out: Path) -> dict[str, dict[int, dict[str, float]]]:
    """Median and p90 ms of ``net`` on one thread for every backend and point count."""
    result = {}
    for backend in args.backends:
        with torch.inference_mode():
            exported = bench_latency.export(net.eval(), backend, example, out.with_suffix(".onnx"))
        with torch_threads(1), torch.inference_mode():
            run = bench_latency.runner(exported, backend, 1)
            result[backend] = {n: latency_ms(lambda f=run, x=x: f(x), args.warmup, args.repeats)
                               for n, x in points.items()}
    return result


def pareto_front(rows: list[dict], error: str = "rel_l2", cost: str = "best_ms") -> list[dict]:
    """The rows no other row dominates (at most its error and its cost, and below in one), by cost."""
    def dominated(r: dict) -> bool:
        return any(o[error] <= r[error] and o[cost] <= r[cost] and (o[error] < r[error] or o[cost] < r[cost])
                   for o in rows)
    return sorted((r for r in rows if not dominated(r)), key=lambda r: r[cost])


def score(sizes: list[tuple[int, int, str]], args: argparse.Namespace) -> dict:
    teacher = load_pinn(args.teacher)
    points = {n: teacher.latency_points(n) for n in sorted({1, args.points})}
    example = teacher.latency_points(1000)
    teacher_errors = {k: float(v) for k, v in teacher.reference_errors().items()}
    first = timings(teacher.net, example, points, args, args.out / "teacher")
    rows = []
    for size in sizes:
        student = load_pinn(args.out / name(*size) / "checkpoints/last.ckpt", teacher=args.teacher)
        times = timings(student.net, example, points, args, args.out / name(*size) / "student")
        best = min(args.backends, key=lambda b: times[b][args.points]["median_ms"])
        eager = times.get("eager", {}).get(args.points)
        rows.append({"depth": size[0], "width": size[1], "activation": size[2],
                     "parameters": sum(p.numel() for p in student.net.parameters()),
                     "rel_l2": float(student.reference_errors()["rel_l2"]), "best_backend": best,
                     "best_ms": times[best][args.points]["median_ms"],
                     "best_p90_ms": times[best][args.points]["p90_ms"],
                     "one_point_ms": min(times[b][1]["median_ms"] for b in args.backends),
                     "eager_ms": eager["median_ms"] if eager else None,
                     "times": {b: {str(n): t for n, t in v.items()} for b, v in times.items()}})
        print(f"{name(*size):16s} rel L2 {rows[-1]['rel_l2']:.3e}  {best} {rows[-1]['best_ms']:.3f} ms", flush=True)
    # the teacher again, after the students: a process's first timings ran up to 1.5× slow here (24 against
    # 16 ms), which would flatter every student; the faster of the two runs counts
    last = timings(teacher.net, example, points, args, args.out / "teacher")
    teacher_times = {b: {n: min(first[b][n], last[b][n], key=lambda t: t["median_ms"]) for n in first[b]}
                     for b in first}
    for row in rows:
        eager = row.pop("eager_ms")
        row["eager_speedup"] = teacher_times["eager"][args.points]["median_ms"] / eager if eager else None
    front = pareto_front(rows)
    for row in rows:
        row["on_front"] = row in front
    return {"problem": args.problem, "teacher": str(args.teacher), "points": args.points,
            "teacher_errors": teacher_errors, "teacher_parameters": sum(p.numel() for p in teacher.net.parameters()),
            "teacher_times": {b: {str(n): t for n, t in v.items()} for b, v in teacher_times.items()},
            "rows": rows, "front": [name(r["depth"], r["width"], r["activation"]) for r in front]}


def markdown(result: dict) -> str:
    t = result["teacher_errors"]["rel_l2"]
    n = result["points"]
    lines = [f"# KD-PINN student sizes: {result['problem']} (teacher rel. L2 {t:.3g}, "
             f"{result['teacher_parameters']} parameters; latency on 1 thread)", "",
             f"| student | parameters | rel. L2 | / teacher | eager speed-up at {n} | fastest backend at {n}: "
             "median (p90) ms | 1 point, fastest: ms | on the front |", "|---|---|---|---|---|---|---|---|"]
    for r in sorted(result["rows"], key=lambda r: r["best_ms"]):
        speedup = f"{r['eager_speedup']:.1f}×" if r["eager_speedup"] else "–"
        lines.append(f"| {name(r['depth'], r['width'], r['activation'])} | {r['parameters']} | {r['rel_l2']:.3g} "
                     f"| {r['rel_l2'] / t:.2f} | {speedup} | {r['best_ms']:.3f} ({r['best_p90_ms']:.3f}) "
                     f"{r['best_backend']} | {r['one_point_ms']:.4f} | {'yes' if r['on_front'] else ''} |")
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pdegen.plotting import save_figure

    rows = result["rows"]
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for activation in sorted({r["activation"] for r in rows}):
        mine = [r for r in rows if r["activation"] == activation]
        ax.scatter([r["best_ms"] for r in mine], [r["rel_l2"] for r in mine], label=activation)
        for r in mine:
            ax.annotate(f"{r['depth']}×{r['width']}", (r["best_ms"], r["rel_l2"]), fontsize=7)
    front = [r for r in rows if r["on_front"]]
    front.sort(key=lambda r: r["best_ms"])
    ax.plot([r["best_ms"] for r in front], [r["rel_l2"] for r in front], "k--", lw=1, label="Pareto front")
    teacher = result["teacher_errors"]["rel_l2"]
    ax.axhline(teacher, color="C3", lw=1, label="teacher")
    ax.axhline(1.1 * teacher, color="C3", lw=1, ls=":", label="1.1 × teacher")
    ax.set(xscale="log", yscale="log", xlabel=f"student median ms at {result['points']} points (fastest backend, "
           "1 thread)", ylabel="relative L2 error", title=f"KD-PINN students: {result['problem']}")
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--problem", choices=sorted(PROBLEMS), required=True)
    parser.add_argument("--teacher", type=Path, required=True, help="the trained teacher's checkpoint")
    parser.add_argument("--depths", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--widths", nargs="+", type=int, default=[8, 16, 24, 32])
    parser.add_argument("--activations", nargs="+", choices=sorted(ACTIVATIONS), default=["tanh", "sin"])
    parser.add_argument("--backends", nargs="+", choices=bench_latency.BACKENDS,
                        default=["eager"] + (["onnx"] if importlib.util.find_spec("onnxruntime") else []))
    parser.add_argument("--points", type=int, default=10000, help="the latency's large batch (and 1 point)")
    parser.add_argument("--out", type=Path, default=None, help="default: runs/kdpinn_sweep/<problem>")
    parser.add_argument("--jobs", type=int, default=2, help="students trained at once")
    parser.add_argument("--threads", type=int, default=1, help="threads per training process")
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=10)
    args = parser.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    if not args.teacher.is_file():
        parser.error(f"teacher checkpoint {args.teacher} not found: pdegen fit --config "
                     f"lightning_configs/kdpinn/{args.problem}_teacher.yaml first")
    if min(args.depths + args.widths) < 1 or min(args.jobs, args.threads, args.points) < 1:
        parser.error("depths, widths, --jobs, --threads and --points must be >= 1")
    args.extra, args.teacher = extra, args.teacher.resolve()
    args.out = (args.out or Path("runs/kdpinn_sweep") / args.problem).resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    sizes = list(itertools.product(args.depths, args.widths, args.activations))
    with ThreadPoolExecutor(args.jobs) as pool:
        statuses = list(pool.map(lambda size: train(size, args), sizes))
    print("\n".join(statuses), flush=True)
    failed = [s for s in statuses if "failed" in s]
    if failed:
        raise SystemExit("some students failed: " + "; ".join(failed))
    result = score(sizes, args)
    write_text_atomic(args.out / "sweep.json", json.dumps(result, indent=2))
    table = markdown(result)
    write_text_atomic(args.out / "sweep.md", table)
    plot(result, args.out / "sweep.png")
    print("\n" + table)
    return result


if __name__ == "__main__":
    main()
