"""KD-PINN end to end: train every teacher PINN and its student through the CLI, then time and score them.

    python tools/kdpinn_benchmark.py --scale cpu --jobs 2        # all five problems on 2 CPU cores
    python tools/kdpinn_benchmark.py --scale full --problems burgers

For each problem, ``pdegen fit`` runs ``lightning_configs/kdpinn/<problem>_teacher.yaml`` and then
``<problem>_student.yaml`` (which loads the teacher's ``last.ckpt``), in ``--out`` as working directory so
the configs' relative ``runs/kdpinn/...`` paths land under it; each stage's output goes to
``<out>/logs/<problem>_<role>.log``. Problems run ``--jobs`` at a time, each process on one thread
(``--threads``). A stage that finished (``<out>/logs/<problem>_<role>.done``) is reused, so an interrupted
run continues. Then ``tools/bench_latency.py`` times teacher against student in one process and writes
``<out>/latency/latency.{md,json}``: errors against the reference, latencies and speed-ups.

``--scale full`` runs the configs as committed. ``--scale cpu`` shortens them (:data:`CPU_SCALE`: 4,096
collocation points, 3,000 Adam steps, then 100 L-BFGS steps for a teacher and 400 for a student, whose
schedule runs over 1,500 steps) so the five problems finish in about an hour and a half on two cores.
Extra ``pdegen fit`` arguments after ``--`` go to every stage.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tools")]

import bench_latency  # noqa: E402

from pdegen.pdes.pointwise import PROBLEMS  # noqa: E402

CONFIGS = ROOT / "lightning_configs/kdpinn"
CPU_SCALE = {
    "both": ["--model.init_args.collocation.num_interior=4096", "--model.init_args.stages.adam_steps=3000",
             "--trainer.max_steps=3100", "--trainer.enable_progress_bar=false"],
    "student": ["--model.init_args.distillation.schedule_steps=1500", "--trainer.max_steps=3400"],
}
PROBLEM_CPU_SCALE = {  # Allen–Cahn's teacher needs its Adam stage and a long L-BFGS (its config's comments)
    ("allen_cahn", "teacher"): ["--model.init_args.stages.adam_steps=5000", "--trainer.max_steps=5400"],
}
SLOWEST_FIRST = ("taylor_green", "kovasznay", "burgers", "allen_cahn", "black_scholes")


def stage_arguments(problem: str, role: str, scale: str, extra: list[str]) -> list[str]:
    """The ``pdegen fit`` overrides of a teacher or student stage at ``scale``."""
    if scale != "cpu":
        return extra
    return (CPU_SCALE["both"] + (CPU_SCALE["student"] if role == "student" else [])
            + PROBLEM_CPU_SCALE.get((problem, role), []) + extra)


def fit(config: Path, arguments: list[str], log: Path, done: Path, cwd: Path, threads: int) -> int | None:
    """One ``pdegen fit --config config --overwrite=true *arguments`` in a subprocess in ``cwd`` on ``threads``
    threads, its output in ``log``, unless its ``done`` marker says it finished (None: reused); the exit code
    otherwise, the marker written (with the arguments) on success. A run not done is redone from the start."""
    if done.is_file():
        return None
    env = os.environ | {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    command = [sys.executable, "-m", "pdegen.cli", "fit", "--config", str(config), "--overwrite=true", *arguments]
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as stream:
        code = subprocess.run(command, cwd=cwd, env=env, stdout=stream, stderr=subprocess.STDOUT).returncode
    if not code:
        done.write_text(" ".join(arguments) + "\n")
    return code


def train(problem: str, args: argparse.Namespace) -> str:
    """Fit the teacher, then the student, of ``problem`` (finished stages skipped); returns a status line."""
    logs = args.out / "logs"
    for role in args.roles:
        log = logs / f"{problem}_{role}.log"
        code = fit(CONFIGS / f"{problem}_{role}.yaml", stage_arguments(problem, role, args.scale, args.extra), log,
                   logs / f"{problem}_{role}.done", args.out, args.threads)
        if code:
            return f"{problem}: {role} failed (exit {code}), see {log}"
    return f"{problem}: {' and '.join(args.roles)} trained"


def main(argv: list[str] | None = None) -> list[dict]:
    argv = sys.argv[1:] if argv is None else argv
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--problems", nargs="+", choices=sorted(PROBLEMS), default=sorted(PROBLEMS))
    parser.add_argument("--scale", choices=("cpu", "full"), default="cpu")
    parser.add_argument("--out", type=Path, default=Path("runs/kdpinn_benchmark"))
    parser.add_argument("--jobs", type=int, default=2, help="problems trained at once")
    parser.add_argument("--threads", type=int, default=1, help="threads per training process")
    parser.add_argument("--roles", nargs="+", choices=("teacher", "student"), default=["teacher", "student"],
                        help="the stages to train (teachers alone first, e.g.); the latency bench runs after both")
    parser.add_argument("--backends", nargs="+", choices=bench_latency.BACKENDS,
                        default=[b for b in bench_latency.BACKENDS
                                 if b != "onnx" or importlib.util.find_spec("onnxruntime")],
                        help="latency backends (default: all, ONNX Runtime when installed)")
    parser.add_argument("--repeats", type=int, default=100, help="timed runs per latency figure")
    parser.add_argument("--warmup", type=int, default=10, help="untimed runs before them")
    args = parser.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    if args.jobs < 1 or args.threads < 1:
        parser.error(f"--jobs and --threads must be >= 1, got {args.jobs} and {args.threads}")
    args.extra, args.out = extra, args.out.resolve()
    (args.out / "logs").mkdir(parents=True, exist_ok=True)
    order = sorted(args.problems, key=SLOWEST_FIRST.index)
    with ThreadPoolExecutor(args.jobs) as pool:
        statuses = list(pool.map(lambda p: train(p, args), order))
    print("\n".join(statuses), flush=True)
    trained = [p for p, status in zip(order, statuses) if status.endswith("trained")]
    if len(trained) < len(order):
        raise SystemExit("some stages failed: " + "; ".join(s for s in statuses if not s.endswith("trained")))
    if "student" not in args.roles:
        return []
    return bench_latency.main(["--problems", *sorted(trained), "--runs", str(args.out / "runs/kdpinn"),
                               "--backends", *args.backends, "--repeats", str(args.repeats),
                               "--warmup", str(args.warmup), "--out", str(args.out / "latency")])


if __name__ == "__main__":
    main()
