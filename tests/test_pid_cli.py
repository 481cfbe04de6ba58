"""PIDStudent through the CLI: teacher → student for every family's config, report, reload."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from pdegen.cli import main
from pdegen.modules import PIDStudent

ROOT = Path(__file__).resolve().parents[1]
STUDENT_CONFIGS = sorted((ROOT / "lightning_configs/pid").glob("*.yaml")) + [
    ROOT / "lightning_configs/quickstart/pid_darcy.yaml"]
QUICKSTART = str(ROOT / "lightning_configs/quickstart/darcy.yaml")
QUICKSTART_PID = str(ROOT / "lightning_configs/quickstart/pid_darcy.yaml")

SMALL_DATA = ["--data.init_args.num_samples=12", "--data.init_args.batch_size=4", "--trainer.accelerator=cpu",
              "--trainer.enable_progress_bar=false"]


def teacher_config(student_config: Path) -> Path:
    if student_config.parent.name == "quickstart":
        return ROOT / "lightning_configs/quickstart/darcy.yaml"
    return ROOT / "lightning_configs/teacher" / student_config.name


@pytest.mark.parametrize("config", STUDENT_CONFIGS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_student_config_distils_its_teachers_checkpoint(config, workdir, cheaper_data):
    family = config.stem.removeprefix("pid_")
    cheaper = [*SMALL_DATA, *cheaper_data.get(family, [])]
    # a small teacher backbone (the student copies it): the configs' GPU-sized U-Nets are slow on a CPU
    net = "--model.init_args.net.init_args" + (".net.init_args" if family == "kolmogorov" else "")
    cheaper_teacher = [*cheaper, f"{net}.base_channels=8", f"{net}.num_res_blocks=1"]
    teacher = main(["fit", "--config", str(teacher_config(config)), "--trainer.max_steps=1",
                    "--trainer.limit_val_batches=0", *cheaper_teacher])
    checkpoint = Path(teacher.trainer.checkpoint_callback.last_model_path)
    assert checkpoint.is_file()
    cli = main(["fit", "--config", str(config), "--trainer.fast_dev_run=true", "--model.init_args.num_points=8",
                f"--model.init_args.teacher={checkpoint}", *cheaper])
    assert cli.trainer.state.finished and cli.trainer.global_step == 1
    assert isinstance(cli.model, PIDStudent) and cli.model.nfe == 1
    assert cli.model.pde.describe() == teacher.model.pde.describe()


TINY_TEACHER = [
    "--data.init_args.pde.init_args.resolution=16", "--data.init_args.num_samples=40",
    "--data.init_args.batch_size=8", "--trainer.max_epochs=2", "--trainer.limit_train_batches=2",
    "--trainer.check_val_every_n_epoch=1", "--trainer.enable_progress_bar=false",
    "--model.init_args.net.init_args.base_channels=8", "--model.init_args.num_steps=4",
    "--trainer.callbacks.init_args.num_samples=8",
]
TINY_STUDENT = [
    "--data.init_args.pde.init_args.resolution=16", "--data.init_args.num_samples=40",
    "--data.init_args.batch_size=8", "--trainer.max_epochs=2", "--trainer.limit_train_batches=2",
    "--trainer.check_val_every_n_epoch=1", "--trainer.enable_progress_bar=false",
    "--trainer.callbacks.init_args.num_samples=8", "--trainer.callbacks.init_args.every_n_epochs=1",
    "--model.init_args.num_points=6", "--model.init_args.teacher=runs/quickstart/checkpoints/last.ckpt",
]


def test_teacher_to_student_workflow_report_and_reload(workdir):
    main(["fit", "--config", QUICKSTART, *TINY_TEACHER])
    cli = main(["fit", "--config", QUICKSTART_PID, *TINY_STUDENT])
    logged = cli.trainer.callback_metrics
    assert logged["val/nfe"] == 1 and logged["val/teacher_euler/nfe"] == 5 and logged["val/teacher_heun/nfe"] == 10
    assert logged["val/teacher/nfe"] == 7, "the speed-up's teacher samples with its own 4 Heun steps, not the grid's"
    assert float(logged["val/teacher/speedup"]) == pytest.approx(
        float(logged["val/teacher/seconds_per_sample"] / logged["val/seconds_per_sample"]), rel=1e-4)
    assert "val/teacher_heun/speedup" not in logged, "grid-matched samples give fidelity, never a speed-up"
    assert logged["val/teacher_euler/gap_rmse"] > 0

    last = workdir / "runs/quickstart_pid/checkpoints/last.ckpt"
    loaded = PIDStudent.load_from_checkpoint(last, map_location="cpu")
    assert loaded.num_points == 6 and loaded.pde.describe() == cli.model.pde.describe()
    first = loaded.sample(3, generator=torch.Generator().manual_seed(1))
    in_memory = cli.model.to("cpu").sample(3, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(first, in_memory, atol=1e-5), "last.ckpt holds the (EMA) student the fit ended with"

    main(["test", "--config", QUICKSTART_PID, *TINY_STUDENT, "--ckpt_path", "last"])
    report = workdir / "runs/quickstart_pid/report"
    summary = json.loads((report / "metrics.json").read_text())
    assert summary["module"] == "PIDStudent"
    metrics = summary["metrics"]
    for side in ("gen", "teacher", "teacher_euler", "teacher_heun"):
        assert metrics[f"{side}/residual_interior_rel"] > 0 and f"{side}/mmse/u" in metrics
    text = (report / "report.md").read_text()
    assert ("| teacher (own sampler) | teacher euler (student's grid) | teacher heun (student's grid) | ground truth |"
            in text)
    assert "speed-up (teacher's own sampler time / generator time)" in text
    assert "| W1 `a` (distribution of values, in data stds) |" in text and metrics["gt/w1/a"] < metrics["gen/w1/a"]
    assert (report / "samples.png").stat().st_size > 10_000

    resumed = main(["fit", "--config", QUICKSTART_PID, *TINY_STUDENT, "--trainer.max_epochs=3", "--ckpt_path", "last"])
    assert resumed.trainer.global_step == 3 * 2
