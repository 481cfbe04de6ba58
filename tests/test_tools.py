"""The scripts in tools/: every one imports, the cheap ones run on a tiny setting, the shell scripts parse.

Tools run by other tests: compare_piddm (test_compare_piddm.py, and tune_guidance through it), jensen_gap
(test_jensen_gap.py), bench_latency and kdpinn_benchmark (test_kdpinn.py); the slurm templates are checked by
test_evaluation_scale.py.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ROOT / "tools"
SCRIPTS = sorted(TOOLS.glob("*.py"))

RUN_ELSEWHERE = {"compare_piddm": "test_compare_piddm.py", "jensen_gap": "test_jensen_gap.py",
                 "bench_latency": "test_kdpinn.py", "kdpinn_benchmark": "test_kdpinn.py",
                 "compare_forecast": "test_compare_forecast.py", "bench_loading": "test_streaming.py",
                 "gpu_check": "test_gpu_check.py", "kdpinn_sweep": "test_kdpinn.py",
                 "kdpinn_experiments": "test_kdpinn.py"}
RUN_BY_TOOL = {"tune_guidance": "compare_piddm"}  # imported and run by that tool, itself run by a test
# benchmarks whose tiny setting costs well under a few seconds on one CPU thread: they run here
SMOKE_ARGS = {
    "bench_darcy": ["--resolutions", "16", "--num-samples", "2"],
    "bench_darcy_pidm": ["--resolutions", "16", "--num-samples", "2"],
    "bench_ks": ["--num-samples", "2", "--reference-samples", "1", "--num-states", "3", "--burn-in", "0.4"],
    "bench_pid": ["--resolution", "16", "--batch-size", "2", "--steps", "1", "--num-points", "4"],
    "bench_poisson": ["--resolution", "16", "--num-samples", "4", "--baseline-samples", "2", "--batch-sizes", "2"],
    "bench_teacher": ["--resolution", "16", "--batch-size", "2", "--steps", "1", "--backbones", "unet-quickstart"],
}
IMPORT_ONLY = {  # the PDE's size is fixed in these tools: even one sample takes seconds
    "bench_burgers": "Burgers at its default 128 x 128 space-time grid: ~6 s for 1 + 2 samples",
    "bench_kolmogorov": "the numpy RK4 reference at the default simulation grid: ~10 s for one 2-interval run",
}


def table_rows(text: str) -> list[list[str]]:
    """The cells of every markdown table row in ``text`` (separator rows left out)."""
    return [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in text.splitlines()
            if line.startswith("|") and not re.fullmatch(r"[|\-: ]+", line.strip())]


@pytest.fixture
def one_thread():
    """The tools on one torch thread: with other processes on the 2 cores, more threads run many times slower."""
    from pdegen.benchmarking import torch_threads

    with torch_threads(1):
        yield


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_every_tool_imports(script, load_tool):
    module = load_tool(script.stem)
    assert callable(module.main), "every tool has a main()"
    assert 'if __name__ == "__main__":' in script.read_text(), "importing a tool runs nothing"


def test_every_tool_is_run_by_a_test_or_says_why_not():
    """A new tool goes into one of the lists above (or gets its own test like pid_ablation's)."""
    assert {p.stem for p in SCRIPTS} == {*RUN_ELSEWHERE, *RUN_BY_TOOL, *SMOKE_ARGS, *IMPORT_ONLY, "pid_ablation",
                                         "bench_startup"}
    for name, test in RUN_ELSEWHERE.items():
        assert f'load_tool("{name}")' in (ROOT / "tests" / test).read_text(), f"{test} no longer loads tools/{name}.py"
    for name, runner in RUN_BY_TOOL.items():
        assert runner in RUN_ELSEWHERE and f"from {name} import" in (TOOLS / f"{runner}.py").read_text()


@pytest.mark.parametrize("name", sorted(SMOKE_ARGS))
def test_benchmark_tool_smoke(name, monkeypatch, capsys, one_thread, load_tool):
    tool = load_tool(name)
    if name == "bench_teacher":  # its main() reads sys.argv
        monkeypatch.setattr(sys, "argv", [f"{name}.py", *SMOKE_ARGS[name]])
        tool.main()
    else:
        tool.main(SMOKE_ARGS[name])
    rows = table_rows(capsys.readouterr().out)
    assert len(rows) >= 2, "a header and at least one result row"
    assert all(len(row) == len(rows[0]) for row in rows), "every row fills the header's columns"
    assert not any(cell.lower() in {"nan", "inf"} for row in rows for cell in row)


def test_command_line_tools_start_without_heavy_imports_beyond_the_one_they_need(monkeypatch, capsys, load_tool):
    """``pdegen --help`` imports nothing heavy beyond lightning, ``pdegen-data --help`` nothing beyond torch
    (torchmetrics, neuraloperator, wandb and scipy's solvers came with them: 16 s and 6 s on a busy machine)."""
    tool = load_tool("bench_startup")
    assert tool.heavy_imports_beyond("lightning", "pdegen.cli") == set()
    (row,) = tool.main(["--repeats", "1", "--tools", "pdegen-data"])
    assert row["heavy_beyond_floor"] == [] and row["seconds"] > 0 < row["floor_seconds"]
    assert len(table_rows(capsys.readouterr().out)) == 2


@pytest.fixture
def teacher_checkpoint(workdir, one_thread) -> Path:
    """A Darcy 16² quickstart teacher after one training step."""
    from pdegen.cli import main

    cli = main(["fit", "--config", str(ROOT / "lightning_configs/quickstart/darcy.yaml"), "--trainer.max_steps=1",
                "--trainer.limit_val_batches=0", "--trainer.logger=false", "--trainer.enable_progress_bar=false",
                "--data.init_args.pde.init_args.resolution=16", "--data.init_args.num_samples=12",
                "--data.init_args.batch_size=4", "--model.init_args.net.init_args.base_channels=8"])
    return Path(cli.trainer.checkpoint_callback.last_model_path)


def test_bench_pid_times_each_backbones_teacher_with_its_own_configs_sampler(monkeypatch, load_tool):
    """The speed-up's teacher samples with the steps of the config that trains that backbone."""
    bench = load_tool("bench_pid")
    configs = {"unet-quickstart": "quickstart/darcy.yaml", "unet-gpu-config": "teacher/darcy.yaml",
               "fno-gpu-config": "teacher/darcy_fno.yaml"}
    assert configs.keys() == bench.TEACHER_STEPS.keys()
    for backbone, config in configs.items():
        model = yaml.safe_load((ROOT / "lightning_configs" / config).read_text())["model"]["init_args"]
        assert (model["sampler"], model["num_steps"]) == ("Heun", bench.TEACHER_STEPS[backbone]), backbone


def test_pid_ablation_writes_one_row_per_problem_scheme_and_grid(teacher_checkpoint, workdir, monkeypatch, load_tool,
                                                                   one_thread):
    tool = load_tool("pid_ablation")
    out = workdir / "ablation"
    tool.main(["--out", str(out), "--mixture-points", "4", "16", "--mixture-steps", "3", "--mixture-batch", "8",
               "--eval-samples", "64", "--darcy-teacher", str(teacher_checkpoint), "--darcy-points", "4",
               "--darcy-steps", "2", "--darcy-batch", "2", "--eval-samples-darcy", "2", "--reference-points", "6"])
    rows = json.loads((out / "ablation.json").read_text())
    settings = [(r["problem"], r["scheme"], r["N"]) for r in rows]
    assert settings == [("mixture", "upwind", 4), ("mixture", "central", 4), ("mixture", "upwind", 16),
                        ("mixture", "central", 16), ("darcy", "upwind", 4), ("darcy", "central", 4)]
    assert all(math.isfinite(v) and v >= 0 for r in rows for k, v in r.items() if k not in ("problem", "scheme"))
    for r in rows:  # RMS is a norm: the student, the N-point Euler solve and the reference form a triangle
        assert abs(r["student_error"] - r["euler_error"]) <= r["student_vs_euler"] + 1e-9
        assert r["student_vs_euler"] <= r["student_error"] + r["euler_error"] + 1e-9
    mixture = {(r["scheme"], r["N"]): r for r in rows if r["problem"] == "mixture"}
    for n in (4, 16):  # the teacher's solves do not depend on the student's scheme
        assert mixture["upwind", n]["euler_error"] == mixture["central", n]["euler_error"]
        assert mixture["upwind", n]["heun_error"] == mixture["central", n]["heun_error"]
    assert mixture["upwind", 16]["euler_error"] < mixture["upwind", 4]["euler_error"], "Euler converges in N"
    assert mixture["upwind", 16]["heun_error"] < mixture["upwind", 16]["euler_error"], "Heun: second order"
    assert all(0 < r["residual_rel"] for r in rows if r["problem"] == "darcy")

    table = table_rows((out / "ablation.md").read_text())
    assert [row[:2] for row in table if row[0] != "scheme"] == [[s, str(n)] for _, s, n in settings]
    assert (out / "ablation.png").stat().st_size > 10_000


@pytest.mark.parametrize("script", sorted(TOOLS.rglob("*.sh")), ids=lambda p: str(p.relative_to(TOOLS)))
def test_shell_scripts_parse_and_name_existing_configs(script):
    subprocess.run(["bash", "-n", str(script)], check=True)
    configs = re.findall(r"lightning_configs/[\w./-]+\.yaml", script.read_text())
    assert configs, "the script runs pdegen configs"
    assert all((ROOT / config).is_file() for config in configs), configs
