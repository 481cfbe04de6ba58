"""tools/gpu_check.py on the CPU: the harness runs every section end to end at tiny sizes (CPU against CPU), and a
broken path is reported as FAIL without hiding the others. The figures are checked for sense, never for speed."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from pdegen.pdes import PDES

QUICK_CPU = ["--device", "cpu", "--quick", "--no-compile"]  # compiling the U-Net takes minutes on 2 busy cores


@pytest.fixture(scope="module")
def gpu_check(load_tool):
    return load_tool("gpu_check")


@pytest.fixture(scope="module")
def quick_run(gpu_check, tmp_path_factory):
    """One quick run of every section on the CPU (about 30 s on one thread, most of it the DDP fit)."""
    from pdegen.benchmarking import torch_threads

    out = tmp_path_factory.mktemp("gpu_check")
    with torch_threads(1):
        result = gpu_check.main([*QUICK_CPU, "--out", str(out / "runs"), "--json", str(out / "figures.json")])
    return result, out


def figures(result: dict, key: str) -> dict:
    return result["checks"][key]["figures"]


def test_every_section_passes_on_the_cpu(quick_run, capsys):
    result, out = quick_run
    assert result["failed"] == [] and result["exit_code"] == 0, result["failed"]
    assert list(result["sections"]) == ["solvers", "generation", "teacher", "latency", "ddp"]
    assert all(section["status"] == "PASS" for section in result["sections"].values())
    skipped = {key: row["error"] for key, row in result["checks"].items() if row["status"] == "SKIP"}
    assert skipped == {"teacher/compiled (bf16-mixed)": "--no-compile"}
    saved = json.loads((out / "figures.json").read_text())
    assert saved["exit_code"] == 0 and saved["checks"].keys() == result["checks"].keys()


def test_every_family_solves_the_same_on_the_device_as_on_the_cpu(quick_run):
    result, _ = quick_run
    for name in PDES:
        row = figures(result, f"solvers/{name}")
        diffs = [value for key, value in row.items() if key.startswith("rel_diff")]
        assert diffs and all(0 <= d <= row["tol"] for d in diffs), (name, row)
        assert row["cpu_s"] > 0 and row["device_s"] > 0
    # CPU against CPU: the same code path gives the same bits; Darcy compares the PCG with the banded Cholesky
    # (agreeing to the PCG's tolerance) and Poisson/Helmholtz the FFT sine transform with the matmul one
    assert figures(result, "solvers/poisson")["rel_diff"] == 0 == figures(result, "solvers/burgers")["rel_diff"]
    assert 0 < figures(result, "solvers/darcy")["rel_diff"] < 1e-10
    assert figures(result, "solvers/poisson")["rel_diff_fft"] < 1e-13


def test_generation_rates_teacher_steps_and_latency_are_sensible(quick_run):
    result, _ = quick_run
    for name in PDES:
        row = figures(result, f"generation/{name}")
        assert row["samples_per_s"] > 0 and row["batch"] == 4 and row["calls"] >= 1
    for mode in ("fp32", "bf16-mixed"):
        row = figures(result, f"teacher/{mode}")
        assert row["samples_per_s"] > 0 and row["first_step_s"] > 0
        assert math.isfinite(row["second_loss"]) and math.isfinite(row["last_loss"])
    assert figures(result, "teacher/fp32")["second_loss_vs_fp32"] == 0
    assert figures(result, "teacher/bf16-mixed")["second_loss_vs_fp32"] < 0.1, "bf16 round-off, not another loss"
    latency = figures(result, "latency/batch 2")
    assert latency["student_nfe"] == 1 and latency["teacher_nfe"] > 1 and latency["synchronised"] is False
    assert latency["student_ms"] > 0 and latency["teacher_ms"] > 0 and latency["speedup"] > 0


def test_the_ddp_fit_finishes_and_writes_a_checkpoint(quick_run):
    result, out = quick_run
    row = figures(result, "ddp/fit")
    assert row["strategy"] == "DDPStrategy" and row["backend"] == "gloo" and row["world_size"] == 1
    assert row["global_step"] == 2 and row["reloads"] is True and math.isfinite(row["train_loss"])
    assert Path(row["checkpoint"]) == out / "runs/ddp_run/checkpoints/last.ckpt" and Path(row["checkpoint"]).is_file()
    assert not torch.distributed.is_initialized(), "the check leaves no process group behind"


def test_a_wrong_or_failing_solver_is_a_failed_check_and_the_others_still_run(gpu_check, monkeypatch, capsys):
    from pdegen.pdes import Helmholtz, Poisson

    solve, calls = Poisson.solve, []

    def wrong(self, inputs):  # right on its first call (the CPU reference), 0.1 % off on the device's
        calls.append(1)
        return solve(self, inputs) * (1 if len(calls) == 1 else 1.001)

    def broken(self, inputs):
        raise RuntimeError("no kernel image is available")

    monkeypatch.setattr(Poisson, "solve", wrong)
    monkeypatch.setattr(Helmholtz, "solve", broken)
    monkeypatch.setattr(gpu_check, "check_latency", lambda *args: 1 / 0)  # an error outside any check
    result = gpu_check.main([*QUICK_CPU, "--sections", "solvers", "latency"])
    assert result["exit_code"] == 1
    assert result["failed"] == ["solvers/poisson", "solvers/helmholtz", "latency/setup"]
    poisson = result["checks"]["solvers/poisson"]
    assert "rel_diff" in poisson["error"] and poisson["figures"]["rel_diff"] == pytest.approx(1e-3, rel=1e-6)
    assert "RuntimeError: no kernel image is available" in result["checks"]["solvers/helmholtz"]["error"]
    assert "ZeroDivisionError" in result["checks"]["latency/setup"]["error"]
    assert all(result["checks"][f"solvers/{name}"]["status"] == "PASS" for name in PDES
               if name not in ("poisson", "helmholtz"))
    assert result["sections"]["solvers"]["status"] == result["sections"]["latency"]["status"] == "FAIL"
    printed = capsys.readouterr().out
    assert "| solvers | poisson | FAIL |" in printed and "FAIL solvers/helmholtz: RuntimeError" in printed


def test_cuda_is_refused_where_there_is_none(gpu_check):
    if torch.cuda.is_available():
        pytest.skip("a GPU is here")
    with pytest.raises(SystemExit) as exit_info:
        gpu_check.main(["--sections", "solvers"])
    assert exit_info.value.code != 0
