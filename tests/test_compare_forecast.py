"""tools/compare_forecast.py: every model, scheme, split and assimilation run at a tiny scale, the table, the
targets' verdicts and reuse."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest
import yaml

TINY = {
    "pde": {"length": 16.0, "resolution": 16, "burn_in": 4.0, "num_states": 20, "ic_modes": 2},
    "data": {"num_samples": 8, "batch_size": 8, "eval_batch_size": 2, "num_workers": 0, "test_num_samples": 2},
    "test_states": 20,
    "net": {"base_channels": 8, "channel_mults": [1], "num_res_blocks": 1},
    "train": {"max_steps": 2, "lr": 1e-3, "ema_decay": 0.9},
    "eval": {"ensemble_size": 2, "num_steps": 2, "guided_steps": 3, "sample_batch_size": 8},
    "student": {"num_pairs": 16, "residual_warmup_steps": 0, "latency_states": 20},
    "splits": [1, 4],
    "rates": [1e-2],
}


@pytest.fixture
def tool(load_tool):
    module = load_tool("compare_forecast")
    module.FAMILIES["ks"] = dataclasses.replace(module.KS, cpu=module.KS.cpu | TINY
                                                | {"assimilation": list(module.KS.assimilation)})
    return module


def test_every_model_scheme_split_and_assimilation_then_reuse(tool, workdir, capsys):
    out = workdir / "compare"
    results = tool.main(["--out", str(out)])
    table = (out / "compare.md").read_text()
    header = next(line for line in table.splitlines() if line.startswith("| | "))
    assert header.split(" | ")[1:-3] == list(tool.KS.forecasts), "one column per model and scheme, in order"
    nfe = next(line for line in table.splitlines() if line.startswith("| network evaluations")).split(" | ")[1:-3]
    # 19 new states: MSE 3 windows of 8 at 1 NFE; guided Heun-3 (5 NFE) and Heun-2 (3 NFE) on 3 windows; AAO on
    # the 12 windows of 20 states; the one-step student 1 NFE a window
    assert nfe == ["3", "15", str(12 * 5), "9", "9", "9", "3"]
    forecast = results["forecast"]
    assert forecast["joint AAO"]["scheme"] == "aao" and forecast["MSE"]["members"] == 1
    assert forecast["universal"]["members"] == 2 and forecast["universal"]["trajectories"] == 2
    assert all(forecast[m]["high_correlation_time"] >= 0 for m in forecast)
    assert re.search(r"\| 5\\\|4 \| \S+ \(\S+\) \| \S+ \(\S+\) \| \S+ \(\S+\) \|", table), "the P|C row of C = 4"
    assert results["splits"][4]["amortised"]["history"] == 4 and results["splits"][4]["universal"]["history"] == 4
    assimilation = results["assimilation"][1e-2]
    assert {runs["observation_probability"] for runs in assimilation.values()} == {1e-2} and len(assimilation) == 4
    student = forecast[tool.STUDENT]
    assert student["speedup"] > 1 and student["latency_states"] == 20  # its latency run, against its teacher
    assert assimilation[tool.STUDENT_DA]["nfe_per_trajectory"] == 3 * (1 + 10)  # 10 ε steps a window
    distilled = yaml.safe_load((out / "configs/models_student.yaml").read_text())
    assert distilled["model"]["init_args"]["teacher"] == str(out / "models/universal/checkpoints/last.ckpt")
    assert "net" not in distilled["model"]["init_args"] and distilled["model"]["init_args"]["num_pairs"] == 16
    assert not any(c["class_path"].endswith("LatencyCallback") for c in yaml.safe_load(
        (out / "configs/assimilation_p0.01_one_step_student_optimised.yaml").read_text())["trainer"]["callbacks"])
    for verdict in ("MSE forecaster's", "AR beats AAO", "universal ≥ amortised", "per sample or per batch",
                    "hybrid beats architecture-only", "one-step student: PDE residual"):
        assert verdict in table, verdict
    assert (out / "compare.png").stat().st_size > 20_000
    assert (out / "forecast/joint_ar/report/forecast.png").is_file()

    configs = out / "configs"
    trained = yaml.safe_load((configs / "models_universal_obs.yaml").read_text())
    assert trained["model"]["init_args"]["observation_training"] is True
    assert trained["trainer"]["max_steps"] == 2 and trained["data"]["init_args"]["cache_dir"] == str(out / "data")
    guided = yaml.safe_load((configs / "forecast_joint_ar.yaml").read_text())["model"]["init_args"]
    assert guided["num_steps"] == 3 and "guided" not in guided
    labels = [*tool.KS.forecasts, *tool.KS.sweep_models, *tool.KS.assimilation]
    assert len({tool.slug(label) for label in set(labels)}) == len(set(labels)), "one run folder per column"
    assert (out / "forecast/universal_c_per_batch/report/forecast_scores.json").is_file()
    architecture = yaml.safe_load((configs / "assimilation_p0.01_architecture_only_observations_as_input.yaml")
                                  .read_text())
    assert architecture["model"]["init_args"]["assimilation"] == "input"
    assert yaml.safe_load((configs / "models_amortised_C4.yaml").read_text())["model"]["init_args"]["history"] == 4
    assert len(list((out / "data").glob("*.h5"))) == 2, "one training and one test file for every run"

    checkpoint = out / "models/joint/checkpoints/last.ckpt"
    stamp = checkpoint.stat().st_mtime_ns
    capsys.readouterr()
    tool.main(["--out", str(out)])
    assert checkpoint.stat().st_mtime_ns == stamp, "finished stages are reused"
    assert "## Targets" in capsys.readouterr().out
    tool.FAMILIES["ks"].cpu["eval"] = TINY["eval"] | {"num_steps": 3}
    rerun = tool.main(["--out", str(out)])
    assert checkpoint.stat().st_mtime_ns == stamp, "a test-time change retrains nothing"
    assert rerun["forecast"]["universal"]["nfe_per_trajectory"] == 3 * 5, "a changed config reruns its test"


def test_kolmogorov_forecasting_and_assimilation(tool, workdir):
    """The 2-D family: MSE, joint AR and universal forecasts, then the hybrid assimilation, no P|C sweep."""
    tiny = TINY | {"pde": {"resolution": 16, "sim_resolution": 64, "burn_in": 0.4, "num_states": 9},
                   "test_states": 9, "splits": [], "rates": [1e-1], "assimilation": ["hybrid (universal + guidance)"],
                   "student": {"num_pairs": 16, "residual_warmup_steps": 0, "latency_states": 9}}
    tool.FAMILIES["kolmogorov"] = dataclasses.replace(tool.KOLMOGOROV, cpu=tool.KOLMOGOROV.cpu | tiny)
    out = workdir / "compare_kolmogorov"
    results = tool.main(["--family", "kolmogorov", "--out", str(out)])
    table = (out / "compare.md").read_text()
    assert table.startswith("# Conditional diffusion on Kolmogorov flow (cpu scale)") and "P|C sweep" not in table
    assert results["forecast"]["MSE"]["members"] == 1 and results["forecast"]["universal"]["members"] == 2
    # 8 new states, 4 a window: MSE 1 NFE a window, guided Heun-3 5 NFE, Heun-2 3 NFE, the student 1
    assert [results["forecast"][m]["nfe_per_trajectory"] for m in tool.KOLMOGOROV.forecasts] == [2, 10, 6, 2]
    assert list(results["assimilation"][1e-1]) == ["hybrid (universal + guidance)"]
    assert "universal reaches the MSE forecaster's" in table and "AR beats AAO" not in table
    mse = yaml.safe_load((out / "configs" / "models_mse.yaml").read_text())["model"]["init_args"]
    assert mse["variant"] == "mse" and mse["net"]["init_args"]["cond_channels"] == 11  # (C + 1)·5 + the forcing
    assert (out / "compare.png").stat().st_size > 10_000


def test_the_targets_verdicts(tool):
    def scores(hct: float, rmsd: float = 1.0) -> dict:
        return {"high_correlation_time": hct, "rmsd": rmsd}

    results = {"forecast": {"MSE": scores(5), "universal": scores(6), "joint AR": scores(4), "joint AAO": scores(2)},
               "splits": {1: {"universal": scores(6), "amortised": scores(5), "universal (C per batch)": scores(5)},
                          3: {"universal": scores(6), "amortised": scores(7), "universal (C per batch)": scores(5)}},
               "assimilation": {0.1: {name: scores(0, 1.0) for name in tool.KS.assimilation},
                                0.01: {name: scores(0, r) for name, r in zip(tool.KS.assimilation, (0.5, 0.6, 0.7))}}}
    lines = "\n".join(tool.targets(results))
    assert "universal reaches the MSE forecaster's high-correlation time: 6 against 5: **met**" in lines
    assert "joint AR reaches the MSE forecaster's high-correlation time: 4 against 5: **missed**" in lines
    assert "AR beats AAO (joint model): 4 against 2: **met**" in lines
    assert "C = 3: 6 against 7: **missed**" in lines, "one split lost is a miss"
    assert "per sample is better" in lines
    assert "p = 0.01: 0.5 against 0.6: **met**" in lines and "p = 0.1" not in lines.split("sparse")[1]
    json.dumps(results)  # the results are what compare.json holds

    student = scores(5.5) | {"residual": 2.0, "spread_skill": 1.3, "speedup": 12.0, "latency_states": 640,
                             "latency_ms": {"model": 1.0, "teacher": 12.0}}
    results["forecast"] |= {tool.STUDENT: student, "universal": scores(6) | {"residual": 5.0, "spread_skill": 1.0}}
    results["assimilation"][0.01] |= {tool.STUDENT_DA: scores(0, 0.55) | {"seconds_per_trajectory": 1.0,
                                                                          "nfe_per_trajectory": 30}}
    results["assimilation"][0.01]["hybrid (universal + guidance)"] |= {"seconds_per_trajectory": 9.0,
                                                                     "nfe_per_trajectory": 300}
    lines = "\n".join(tool.targets(results))
    assert "≥ 90 % of its teacher's: 5.5 against 0.9 × 6: **met**; ≥ the MSE forecaster's: 5.5 against 5: **met**" \
        in lines
    assert "PDE residual ≤ half its teacher's: 2 against 5: **met**" in lines
    assert "spread–skill within 20 % of its teacher's: 1.3 against 1: **missed**" in lines
    assert "per 640-state forecast: 12× (1 ms against 12 ms): **met**" in lines
    assert "RMSD within 1.2× the hybrid's: 0.55 against 0.5: **met**, at 1 s per trajectory against 9 s" in lines
