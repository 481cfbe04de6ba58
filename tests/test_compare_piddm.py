"""tools/compare_piddm.py: every method trained and tested on one family at a tiny scale, the table and reuse."""

from __future__ import annotations

import json
import re

import pytest
import yaml

TINY = {
    "pde": {"darcy": {"resolution": 24}},  # 576 points: room for 500 reconstruction points
    "data": {"num_samples": 40, "batch_size": 8, "num_workers": 0},
    "net": {"base_channels": 8, "channel_mults": [1, 2], "num_res_blocks": 1, "dropout": 0.0},
    "teacher": {"max_epochs": 1, "lr": 2e-3, "ema_decay": 0.9},
    "finetune": {"max_epochs": 1, "lr": 2e-4, "ema_decay": 0.9},
    "student": {"max_epochs": 1, "lr": 3e-4, "ema_decay": 0.9, "num_pairs": 8, "num_val_pairs": 4,
                "teacher_steps": 3, "task_steps": 2},
    "noise_steps": 2,
    "dflow": {"dflow_iterations": 2, "dflow_steps": 2},
    "eval": {"num_samples": 4, "task_samples": 2, "sample_batch_size": 4},
    "tune": {"num_samples": 2, "observation_weights": [0.0, 10.0], "pde_weights": [0.0]},
}


@pytest.fixture
def tool(monkeypatch, load_tool):
    module = load_tool("compare_piddm")
    monkeypatch.setattr(module, "CPU_SCALE", module.CPU_SCALE | TINY)
    return module


def test_every_method_on_one_family_then_reuse(tool, workdir, capsys):
    out = workdir / "compare"
    tool.main(["--families", "darcy", "--out", str(out)])
    table = (out / "compare.md").read_text()
    header = next(line for line in table.splitlines() if line.startswith("| | "))
    assert header.split(" | ")[1:-1] == tool.DEFAULT_METHODS, "one column per method, in order"
    assert "PIDM (scratch)" not in tool.DEFAULT_METHODS and "R fine-tune (Heun)" in tool.DEFAULT_METHODS
    nfe = next(line for line in table.splitlines() if line.startswith("| network evaluations"))
    cells = nfe.split(" | ")[1:-1]
    assert cells[:2] + cells[3:] == ["63", "63", "63", "1", "3"], "Heun with 32 steps; PIDDM-ref 1 + 2 refinements"
    assert float(cells[2]) >= 4, "D-Flow: at least one L-BFGS evaluation of the 2-step Euler solve, and its gradient"
    forward = r"\| forward: relative L2 `u` \| – \| \S+ \| \S+ \| – \| \S+ \| \S+ \|"
    assert re.search(forward, table), "no tasks for the plain Heun samplers"
    assert re.search(r"\| W1 of values / data std `a` \| (\S+ \| ){5}\S+ \| \S+ \|", table), "W1 per channel"
    assert "residual ratio" in table and "speed-up" in table, "the Darcy targets are checked"
    assert "teacher's own sampler (63 NFE)" in table, "the speed-up divides the teacher's own Heun-32 time"
    assert re.search(r"residual target: \*\*(met|missed|not counted)", table)

    tuned = json.loads((out / "darcy/tune/tune.json").read_text())
    assert tuned["split"] == "validation" and len(tuned["rows"]) == 2
    assert tuned["best"] == min(tuned["rows"], key=lambda row: row["mean"])
    guided = yaml.safe_load((out / "darcy/configs/eval_diffusionpde.yaml").read_text())["model"]["init_args"]
    assert guided["observation_weight"] == tuned["best"]["observation_weight"], "DiffusionPDE runs at the tuned ζ"
    assert (out / "compare.png").stat().st_size > 20_000
    results = json.loads((out / "compare.json").read_text())["darcy"]
    assert results["PIDDM-ref"]["sample"]["metrics"]["nfe"] == 3, "the test-time noise_steps reached the student"

    config = yaml.safe_load((out / "darcy/configs/piddm.yaml").read_text())
    assert config["model"]["init_args"]["num_pairs"] == 8 and config["trainer"]["accelerator"] == "cpu"
    assert config["data"]["init_args"]["pde"]["init_args"]["resolution"] == 24
    assert config["trainer"]["default_root_dir"] == str(out / "darcy/piddm"), "outputs retargeted under --out"
    finetune = yaml.safe_load((out / "darcy/configs/finetune.yaml").read_text())["model"]["init_args"]
    assert finetune["init_from"] == str(out / "darcy/teacher/checkpoints/last.ckpt"), "it fine-tunes the teacher"

    checkpoint = out / "darcy/teacher/checkpoints/last.ckpt"
    stamp = checkpoint.stat().st_mtime_ns
    capsys.readouterr()
    tool.main(["--families", "darcy", "--out", str(out), "--methods", "PIDDM-1"])
    assert checkpoint.stat().st_mtime_ns == stamp, "a finished stage is reused, not retrained"
    assert "| PIDDM-1 | ground truth |" in capsys.readouterr().out


def test_a_residual_won_by_leaving_the_datas_support_is_not_counted(tool):
    """The quickstart case: PIDDM's residual 0.147 against the teacher's 1.131, but its `a` is smooth between 3 and 12
    where the data are two-valued: SMSE(a) 100× and W1(a) 10× the teacher's. The verdict must not call it met."""
    def metrics(smse_a: float, w1_a: float) -> dict:
        m = {"gen/residual_interior_rel": 0.147, "teacher/residual_interior_rel": 1.131, "teacher/nfe": 63.0,
             "teacher/speedup": 80.0}
        for side in ("gen", "teacher"):
            m |= {f"{side}/mmse/a": 1.7, f"{side}/mmse/u": 2e-7, f"{side}/smse/u": 1e-7, f"{side}/w1/u": 0.05}
        m |= {"teacher/smse/a": 0.0054, "teacher/w1/a": 0.02, "gen/smse/a": smse_a, "gen/w1/a": w1_a}
        return {"PIDDM-1": {"sample": {"metrics": m, "pde": {"channels": ["a", "u"]}}}}

    off_support = "\n".join(tool.targets(metrics(smse_a=0.54, w1_a=0.2)))
    assert "residual target: **not counted: SMSE `a`, W1 `a`" in off_support
    assert "W1 `a`: 10.00× the teacher's" in off_support
    only_w1 = "\n".join(tool.targets(metrics(smse_a=0.0054, w1_a=0.2)))
    assert "not counted: W1 `a`" in only_w1, "W1 alone catches values off the data's support"
    on_support = "\n".join(tool.targets(metrics(smse_a=0.0054, w1_a=0.02)))
    assert "residual target: **met, with MMSE, SMSE and W1 within bounds**" in on_support
