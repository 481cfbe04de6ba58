"""KD-PINN: latency and accuracy of each teacher PINN against its distilled student, in one process.

    python tools/bench_latency.py                          # every problem with both checkpoints under runs/kdpinn
    python tools/bench_latency.py --problems burgers --backends eager torchscript onnx --repeats 200

Train them first (per problem): ``pdegen fit --config lightning_configs/kdpinn/<problem>_teacher.yaml`` then
``..._student.yaml``. For every problem, backend (eager PyTorch, frozen TorchScript, ONNX Runtime with the
``onnx`` extra and its graph optimisations, ``torch.compile`` with Inductor's fused C++ kernels, or the
AOTInductor-compiled ``torch.export`` package ``aoti``), thread count (1, and 0 = all cores) and batch size
(points per query), teacher and student are timed on the same points, in float32: ``warmup`` untimed calls,
then ``repeats`` timed ones, median and p90 ms. Speed-up = teacher median / student median. Accuracy: relative
L2 and RMSE against the problem's reference on the teacher's evaluation grid. Exported networks are checked
against eager on 1,000 points. The summary gives, per problem, the student's fastest backend at each size.
Writes ``latency.md`` and ``latency.json`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pdegen.benchmarking import latency_ms, torch_threads  # noqa: E402
from pdegen.export import load_compiled, onnx_runner, save_compiled, save_onnx, to_torchscript  # noqa: E402
from pdegen.io import write_text_atomic  # noqa: E402
from pdegen.modules import PINN  # noqa: E402
from pdegen.modules.kdpinn import load_pinn  # noqa: E402
from pdegen.modules.pinn import reference_errors  # noqa: E402
from pdegen.pdes.pointwise import PROBLEMS  # noqa: E402

BACKENDS = ("eager", "torchscript", "onnx", "compile", "aoti")


def checkpoints(runs: Path, problem: str) -> tuple[Path, Path]:
    return (runs / f"{problem}_teacher/checkpoints/last.ckpt", runs / f"{problem}_student/checkpoints/last.ckpt")


def export(net: torch.nn.Module, backend: str, example: torch.Tensor, out: Path):
    """``net`` as ``backend`` runs it: itself (eager), its frozen TorchScript, ``torch.compile`` of it (dynamic
    shapes, compiled on first call), or the path of its ONNX file or AOTInductor package."""
    if backend == "eager":
        return net
    if backend == "compile":
        return torch.compile(net, dynamic=True)
    if backend == "aoti":
        return save_compiled(net, example, out.with_suffix(".pt2"))
    return to_torchscript(net, example) if backend == "torchscript" else save_onnx(net, example, out)


def runner(exported, backend: str, threads: int):
    """A function coords -> values of an :func:`export` (an ONNX Runtime session needs its thread count)."""
    if backend == "onnx":
        return onnx_runner(exported, threads)
    return load_compiled(exported) if backend == "aoti" else exported


def accuracy(teacher: PINN, student: PINN) -> dict[str, dict[str, float]]:
    coords, reference = teacher.evaluation_points()
    return {role: {k: float(v) for k, v in reference_errors(teacher.problem, coords, module.predict_points(coords),
                                                              reference).items()}
            | {"parameters": sum(p.numel() for p in module.net.parameters())}
            for role, module in (("teacher", teacher), ("student", student))}


def bench_problem(problem: str, args: argparse.Namespace) -> dict:
    teacher_path, student_path = checkpoints(args.runs, problem)
    teacher = load_pinn(teacher_path)
    # the student's teacher is the one beside it (its saved path may be relative to another directory)
    student = load_pinn(student_path, teacher=teacher_path)
    result = {"problem": problem, "params": teacher.problem.params, "accuracy": accuracy(teacher, student),
              "rows": [], "export_max_abs_diff": {}}
    nets = {"teacher": teacher.net.eval(), "student": student.net.eval()}
    check = teacher.latency_points(1000)
    for backend in args.backends:
        with torch.inference_mode():
            exported = {role: export(net, backend, check, args.out / f"{problem}_{role}.onnx")
                        for role, net in nets.items()}
            if backend != "eager":
                for role, net in nets.items():
                    diff = runner(exported[role], backend, 0)(check) - net(check)
                    result["export_max_abs_diff"][f"{backend}/{role}"] = float(diff.abs().max())
        for threads in args.threads:
            with torch_threads(threads) as used, torch.inference_mode():
                run = {role: runner(exported[role], backend, threads) for role in nets}
                for batch in args.batch_sizes:
                    points = teacher.latency_points(batch)
                    times = {role: latency_ms(lambda f=f, x=points: f(x), args.warmup, args.repeats)
                             for role, f in run.items()}
                    result["rows"].append({"backend": backend, "threads": threads, "threads_used": used,
                                           "batch_size": batch, **{f"{role}_{k}": v for role, t in times.items()
                                                                   for k, v in t.items()},
                                           "speedup": times["teacher"]["median_ms"] / times["student"]["median_ms"]})
                    print(f"{problem:14s} {backend:11s} threads {threads or 'all':>3} batch {batch:6d}: "
                          f"teacher {times['teacher']['median_ms']:8.3f} ms, student "
                          f"{times['student']['median_ms']:8.3f} ms, speed-up {result['rows'][-1]['speedup']:.1f}×",
                          flush=True)
    return result


def summary(result: dict) -> dict:
    """The issue's headline figures for one problem, at one thread: the eager speed-up at the largest batch,
    and the student's fastest backend (median ms) at the largest batch and at the smallest."""
    rows = [r for r in result["rows"] if r["threads"] == 1]
    if not rows:
        return {}
    large, small = max(r["batch_size"] for r in rows), min(r["batch_size"] for r in rows)
    fastest = {n: min((r for r in rows if r["batch_size"] == n), key=lambda r: r["student_median_ms"])
               for n in (large, small)}
    eager = [r["speedup"] for r in rows if r["backend"] == "eager" and r["batch_size"] == large]
    return {"points": large, "eager_speedup": eager[0] if eager else None,
            "best_backend": fastest[large]["backend"], "best_ms": fastest[large]["student_median_ms"],
            "best_p90_ms": fastest[large]["student_p90_ms"], "small_points": small,
            "small_backend": fastest[small]["backend"], "small_ms": fastest[small]["student_median_ms"],
            "small_p90_ms": fastest[small]["student_p90_ms"]}


def markdown(results: list[dict], args: argparse.Namespace) -> str:
    lines = ["# KD-PINN: the headline (1 thread)", "",
             "| problem | teacher rel. L2 | student rel. L2 | student / teacher | eager speed-up | student, fastest "
             "backend: median (p90) ms | student at the fewest points: median (p90) ms |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        t, s, h = r["accuracy"]["teacher"], r["accuracy"]["student"], r["summary"]
        if h:
            speedup = f"{h['eager_speedup']:.1f}× at {h['points']}" if h["eager_speedup"] else "–"
            lines.append(f"| {r['problem']} | {t['rel_l2']:.3g} | {s['rel_l2']:.3g} | {s['rel_l2'] / t['rel_l2']:.2f} "
                         f"| {speedup} | {h['best_ms']:.3f} ({h['best_p90_ms']:.3f}), {h['best_backend']} at "
                         f"{h['points']} | {h['small_ms']:.4f} ({h['small_p90_ms']:.4f}), {h['small_backend']} at "
                         f"{h['small_points']} |")
    lines += ["", f"# KD-PINN latency and accuracy ({args.repeats} timed runs after {args.warmup} warm-up; median, "
              "p90 ms)", "", "| problem | teacher rel. L2 | student rel. L2 | ratio | teacher RMSE | student RMSE "
             "| teacher params | student params |", "|---|---|---|---|---|---|---|---|"]
    for r in results:
        t, s = r["accuracy"]["teacher"], r["accuracy"]["student"]
        lines.append(f"| {r['problem']} | {t['rel_l2']:.3g} | {s['rel_l2']:.3g} | {s['rel_l2'] / t['rel_l2']:.2f} "
                     f"| {t['rmse']:.3g} | {s['rmse']:.3g} | {t['parameters']} | {s['parameters']} |")
    lines += ["", "| problem | backend | threads | points | teacher median (p90) | student median (p90) | speed-up |",
              "|---|---|---|---|---|---|---|"]
    for r in results:
        for row in r["rows"]:
            lines.append(f"| {r['problem']} | {row['backend']} | {row['threads'] or 'all'} | {row['batch_size']} "
                         f"| {row['teacher_median_ms']:.3f} ({row['teacher_p90_ms']:.3f}) "
                         f"| {row['student_median_ms']:.4f} ({row['student_p90_ms']:.4f}) | {row['speedup']:.1f}× |")
    diffs = {f"{r['problem']}/{k}": v for r in results for k, v in r["export_max_abs_diff"].items()}
    if diffs:
        lines += ["", "Exported against eager, max |difference| on 1,000 points: "
                  + ", ".join(f"{k} {v:.1e}" for k, v in diffs.items())]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--problems", nargs="+", choices=sorted(PROBLEMS), default=None,
                        help="default: every problem whose teacher and student checkpoints exist")
    parser.add_argument("--runs", type=Path, default=Path("runs/kdpinn"), help="where the configs wrote the runs")
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=["eager", "torchscript"])
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 0], help="thread counts (0: all cores)")
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 1000, 10000])
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--out", type=Path, default=Path("runs/kdpinn/latency"))
    args = parser.parse_args(argv)
    problems = args.problems or [p for p in sorted(PROBLEMS) if all(c.is_file() for c in checkpoints(args.runs, p))]
    missing = [p for p in problems if not all(c.is_file() for c in checkpoints(args.runs, p))]
    if not problems or missing:
        parser.error(f"no trained teacher and student for {missing or 'any problem'} under {args.runs}: run "
                     "pdegen fit --config lightning_configs/kdpinn/<problem>_teacher.yaml, then _student.yaml")
    results = [bench_problem(problem, args) for problem in problems]
    for result in results:
        result["summary"] = summary(result)
    table = markdown(results, args)
    write_text_atomic(args.out / "latency.md", table)
    write_text_atomic(args.out / "latency.json", json.dumps(results, indent=2))
    print("\n" + table)
    return results


if __name__ == "__main__":
    main()
