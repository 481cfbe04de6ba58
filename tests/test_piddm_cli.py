"""PIDDM through the CLI: every student and baseline config on a tiny teacher, and the whole workflow."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from pdegen.cli import main
from pdegen.io import read_arrays
from pdegen.modules import DiffusionTeacher, GuidedDiffusion, PIDDMStudent
from pdegen.pdes import Darcy
from pdegen.tasks import ObservationTask, relative_error

ROOT = Path(__file__).resolve().parents[1]
PDE = "--data.init_args.pde.init_args"
FAMILIES = {family: [f"{PDE}.resolution=24"] for family in ("darcy", "poisson", "helmholtz")}  # > 500 points
FAMILIES["burgers"] = [f"{PDE}.resolution=32", f"{PDE}.num_times=16"]
QUICKSTART = str(ROOT / "lightning_configs/quickstart/darcy.yaml")
QUICKSTART_PIDDM = str(ROOT / "lightning_configs/quickstart/piddm_darcy.yaml")
SMALL_DATA = ["--data.init_args.num_samples=12", "--data.init_args.batch_size=4", "--trainer.accelerator=cpu",
              "--trainer.enable_progress_bar=false"]
FEW_PAIRS = ["--model.init_args.num_pairs=4", "--model.init_args.num_val_pairs=2", "--model.init_args.teacher_steps=2"]
CHEAP_GUIDANCE = ["--model.init_args.num_steps=3", "--model.init_args.dflow_steps=2",
                  "--model.init_args.dflow_iterations=2"]


def tiny_teacher(family: str) -> Path:
    """A one-step teacher of the family's teacher config with a small backbone and grid; its checkpoint."""
    net = "--model.init_args.net.init_args"
    cli = main(["fit", "--config", str(ROOT / f"lightning_configs/teacher/{family}.yaml"), "--trainer.max_steps=1",
                "--trainer.limit_val_batches=0", *SMALL_DATA, *FAMILIES[family], f"{net}.base_channels=8",
                f"{net}.num_res_blocks=1"])
    return Path(cli.trainer.checkpoint_callback.last_model_path)


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_distils_and_runs_its_baselines(family, workdir, fewer_samples):
    checkpoint = tiny_teacher(family)
    config = str(ROOT / f"lightning_configs/piddm/{family}.yaml")
    cli = main(["fit", "--config", config, "--trainer.fast_dev_run=true", f"--model.init_args.teacher={checkpoint}",
                *FEW_PAIRS, *SMALL_DATA, *FAMILIES[family]])
    assert isinstance(cli.model, PIDDMStudent) and cli.trainer.global_step == 1 and cli.model.nfe == 1
    assert (workdir / f"runs/piddm_{family}/pairs/pairs_rank0_round0.h5").is_file()

    guided = str(ROOT / f"lightning_configs/piddm/{family}_guided.yaml")
    for method in ("diffusionpde", "dflow"):
        test = main(["test", "--config", guided, *fewer_samples(guided), f"--model.init_args.teacher={checkpoint}",
                     f"--model.init_args.method={method}", f"--trainer.default_root_dir=runs/{method}",
                     *CHEAP_GUIDANCE, *SMALL_DATA, *FAMILIES[family], "--data.init_args.num_samples=40"])
        assert isinstance(test.model, GuidedDiffusion)
        for task in ("forward", "inverse", "reconstruction"):
            summary = json.loads((workdir / f"runs/{method}/report/task_{task}.json").read_text())
            assert summary["metrics"]["nfe"] >= 2 and summary["module"] == "GuidedDiffusion"
        metrics = json.loads((workdir / f"runs/{method}/report/metrics.json").read_text())["metrics"]
        assert "gen/residual_interior_rel" in metrics


def test_pidm_teacher_config_fine_tunes_the_teacher_with_the_residual_term(workdir):
    checkpoint = tiny_teacher("darcy")
    trained = DiffusionTeacher.load_from_checkpoint(checkpoint, map_location="cpu").state_dict()
    net = "--model.init_args.net.init_args"
    args = ["--config", str(ROOT / "lightning_configs/piddm/darcy_pidm.yaml"),
            f"--model.init_args.init_from={checkpoint}", *SMALL_DATA, *FAMILIES["darcy"], f"{net}.base_channels=8",
            f"{net}.num_res_blocks=1"]
    start = main(["fit", *args, "--trainer.max_steps=0", "--trainer.limit_val_batches=0"]).model.state_dict()
    assert all(torch.equal(start[k], v) for k, v in trained.items()), "init_from must load every weight"
    cli = main(["fit", *args, "--trainer.fast_dev_run=true"])
    assert cli.model.hparams.residual_weight > 0
    assert {"train/edm_loss", "train/residual_loss"} <= set(cli.trainer.callback_metrics)
    with pytest.raises(ValueError, match="network differs"):
        main(["fit", *args, f"{net}.base_channels=16", "--trainer.fast_dev_run=true"])


TINY = ["--data.init_args.pde.init_args.resolution=24", "--data.init_args.num_samples=40",
        "--data.init_args.batch_size=8", "--trainer.max_epochs=2", "--trainer.limit_train_batches=2",
        "--trainer.check_val_every_n_epoch=1", "--trainer.enable_progress_bar=false"]
TINY_TEACHER = [*TINY, "--model.init_args.net.init_args.base_channels=8", "--model.init_args.num_steps=4",
                "--trainer.callbacks.init_args.num_samples=8"]
TINY_STUDENT = [*TINY, "--model.init_args.teacher=runs/quickstart/checkpoints/last.ckpt",
                "--model.init_args.num_pairs=16", "--model.init_args.num_val_pairs=4",
                "--model.init_args.teacher_steps=3", "--model.init_args.task_steps=3"]


def test_teacher_to_piddm_student_workflow_tasks_report_and_reload(workdir, fewer_samples):
    main(["fit", "--config", QUICKSTART, *TINY_TEACHER])
    student = [*TINY_STUDENT, *fewer_samples(QUICKSTART_PIDDM), "--seed_everything=7"]  # the seed travels too
    cli = main(["fit", "--config", QUICKSTART_PIDDM, *student])
    assert {"train/data_loss", "train/residual_loss", "val/data_loss"} <= set(cli.trainer.callback_metrics)

    last = workdir / "runs/quickstart_piddm/checkpoints/last.ckpt"
    loaded = PIDDMStudent.load_from_checkpoint(last, map_location="cpu")
    first = loaded.sample(3, generator=torch.Generator().manual_seed(1))
    in_memory = cli.model.to("cpu").sample(3, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(first, in_memory, atol=1e-5), "last.ckpt holds the (EMA) student the fit ended with"
    teacher = torch.load(workdir / "runs/quickstart/checkpoints/last.ckpt", weights_only=True)["state_dict"]
    held = torch.load(last, weights_only=True)["state_dict"]
    for name, value in teacher.items():  # the EMA leaves the frozen teacher exactly as it was loaded
        assert torch.equal(held[f"teacher.{name}"], value), f"the student's teacher drifted: {name}"
    pairs = [workdir / f"runs/quickstart_piddm/pairs/{name}_rank0_round0.h5" for name in ("pairs", "val_pairs")]
    made = [path.stat().st_mtime_ns for path in pairs]

    main(["test", "--config", QUICKSTART_PIDDM, *student, "--ckpt_path", "last"])
    assert [path.stat().st_mtime_ns for path in pairs] == made, "the test run reads the pairs its fit cached"
    report = workdir / "runs/quickstart_piddm/report"
    metrics = json.loads((report / "metrics.json").read_text())["metrics"]
    assert metrics["nfe"] == 1 and metrics["teacher_heun/nfe"] == 5 and metrics["teacher_euler/nfe"] == 3
    assert metrics["teacher/nfe"] == 7, "the speed-up's teacher: its own 4 Heun steps"
    for task, channel in (("forward", "u"), ("inverse", "a"), ("reconstruction", "u")):
        task_metrics = json.loads((report / f"task_{task}.json").read_text())["metrics"]
        arrays, _ = read_arrays(report / f"task_{task}.h5")
        sought = ObservationTask(task).target(Darcy(resolution=24), len(arrays["truth"]))
        sought[:, ("a", "u").index(channel) - 1] = False  # the other channel
        error = relative_error(arrays["solution"], arrays["truth"], sought).mean()
        assert task_metrics["nfe"] == 4 and task_metrics[f"rel_l2/{channel}"] == pytest.approx(float(error))
        assert (report / f"task_{task}.png").stat().st_size > 10_000
    assert "rel_l2/a" not in json.loads((report / "task_forward.json").read_text())["metrics"], "a is observed"

    for path in report.glob("task_*.h5"):  # written by the test run; pdegen predict writes them again
        path.unlink()
    main(["predict", "--config", QUICKSTART_PIDDM, *student, "--ckpt_path", "last"])
    arrays, meta = read_arrays(report / "task_inverse.h5")
    assert arrays["solution"].shape == arrays["truth"].shape == (meta["num_samples"], 2, 24, 24)
    assert meta["metrics"]["nfe"] == 4 and meta["task"]["name"] == "inverse"
    mask = arrays["mask"]
    assert mask[:, 1].all() and not mask[:, 0].any(), "inverse: u observed, a sought"
    assert torch.equal(arrays["observed"][mask], arrays["truth"][mask]) and not arrays["observed"][~mask].any()

    # the same checkpoint tested with other settings into another run folder (its checkpoints/ linked there)
    (workdir / "runs/refined").mkdir()
    (workdir / "runs/refined/checkpoints").symlink_to(workdir / "runs/quickstart_piddm/checkpoints")
    refined = main(["test", "--config", QUICKSTART_PIDDM, *student, "--ckpt_path", "last",
                    "--model.init_args.noise_steps=2", "--trainer.default_root_dir=runs/refined"])
    assert refined.model.nfe == 3
