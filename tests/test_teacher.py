"""DiffusionTeacher through the CLI: every YAML runs, checkpoints reload and resume, errors are clear."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
import yaml

from pdegen.cli import main
from pdegen.modules import DiffusionTeacher

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "lightning_configs").glob("*/*.yaml"))
PIECES = [c for c in CONFIGS if c.parent.name in ("trainer", "logger")]
DATA_PIECES = [c for c in CONFIGS if c.parent.name == "data"]


def needs_teacher(config: Path) -> bool:
    """Student, guided-sampling, PIDM (fine-tuned teacher) and KD-PINN configs: tests/test_pid_cli.py,
    tests/test_piddm_cli.py, tests/test_kdpinn.py and tests/test_forecast_student.py run them."""
    return (config.parent.name in ("pid", "piddm", "kdpinn", "forecast_student")
            or config.stem.startswith(("pid_", "piddm_")))


def is_features(config: Path) -> bool:
    """Feature-extractor configs: tests/test_fid.py runs them."""
    return config.parent.name == "features" or config.stem.startswith("features_")


EXPERIMENTS = [c for c in CONFIGS if c not in PIECES + DATA_PIECES and not needs_teacher(c) and not is_features(c)]
QUICKSTART = str(ROOT / "lightning_configs/quickstart/darcy.yaml")

# a tiny quickstart: 16² Darcy, a small U-Net, 2 epochs of 2 batches
TINY = [
    "--data.init_args.pde.init_args.resolution=16", "--data.init_args.num_samples=40",
    "--data.init_args.batch_size=8", "--trainer.max_epochs=2", "--trainer.limit_train_batches=2",
    "--trainer.check_val_every_n_epoch=1", "--trainer.enable_progress_bar=false",
    "--model.init_args.net.init_args.base_channels=8", "--model.init_args.num_steps=4",
    "--trainer.callbacks.init_args.num_samples=8",
]


@pytest.mark.parametrize("config", EXPERIMENTS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_experiment_config_runs_fast_dev_run(config, workdir, cheaper_data):
    # a narrower U-Net (the configs' 64-128 channels take up to 16 s a step on 2 cores); the rest as written
    unet = "--model.init_args.net.init_args." + ("net.init_args." if config.match("teacher/kolmogorov.yaml") else "")
    smaller_net = [f"{unet}base_channels=16"] if "pdegen.nets.UNet" in config.read_text() else []
    cli = main(["fit", "--config", str(config), "--trainer.fast_dev_run=true", "--trainer.accelerator=cpu",
                "--data.init_args.num_samples=12", "--data.init_args.batch_size=4",
                "--trainer.enable_progress_bar=false", *smaller_net,
                *cheaper_data.get(f"{config.parent.name}/{config.stem}", cheaper_data.get(config.stem, []))])
    assert cli.trainer.state.finished
    assert cli.trainer.global_step == 1


@pytest.mark.parametrize("piece", PIECES, ids=lambda p: p.stem)
def test_every_piece_composes_with_an_experiment(piece, workdir):
    args = ["fit", "--config", QUICKSTART, *TINY, "--trainer.max_epochs=1", "--config", str(piece)]
    if piece.parent.name == "trainer" and piece.stem in ("gpu", "ddp") and not torch.cuda.is_available():
        # the piece parses and composes; without a GPU, run it on one CPU process
        args += ["--trainer.accelerator=cpu", "--trainer.devices=1", "--trainer.strategy=auto"]
    cli = main(args)
    assert cli.trainer.state.finished
    if piece.stem == "wandb":  # offline: no login, the run is written locally for `wandb sync`
        runs = list((workdir / "runs/wandb").glob("offline-run-*/run-*.wandb"))
        assert runs and runs[0].stat().st_size > 0


def test_every_experiment_takes_its_data_from_one_piece_and_every_piece_is_used():
    """Each family's data settings live in one file: no experiment repeats a data block."""
    used = set()
    for config in CONFIGS:
        if config in PIECES + DATA_PIECES:
            continue
        data = yaml.safe_load(config.read_text()).get("data")
        if data is None:
            assert config.parent.name == "kdpinn", f"{config} has no data"  # the PINNs make their own points
            continue
        assert isinstance(data, str), f"{config} writes its data block out: name a piece (data: ../data/<family>.yaml)"
        piece = (config.parent / data).resolve()
        assert piece in DATA_PIECES, f"{config}: {data} is not a piece in lightning_configs/data"
        used.add(piece)
    assert used == set(DATA_PIECES), f"unused data pieces: {sorted(set(DATA_PIECES) - used)}"
    for piece in DATA_PIECES:
        assert yaml.safe_load(piece.read_text())["class_path"] == "datamodules.PDEDataModule"


def test_every_experiment_sets_one_run_folder():
    """Checkpoints, reports and logs follow trainer.default_root_dir: no experiment writes a run path twice."""
    for config in CONFIGS:
        if config in PIECES + DATA_PIECES:
            continue
        text = config.read_text()
        trainer = yaml.safe_load(text)["trainer"]
        assert trainer.get("default_root_dir", "").startswith("runs/"), f"{config} names no run folder"
        for key in ("dirpath:", "output_dir:", "save_dir:"):
            assert key not in text, f"{config} sets {key} (it follows trainer.default_root_dir)"


def test_fit_test_reload_and_resume(workdir):
    cli = main(["fit", "--config", QUICKSTART, *TINY])
    model = cli.model
    last = workdir / "runs/quickstart/checkpoints/last.ckpt"
    assert last.exists()
    assert (workdir / "runs/quickstart/logs/version_0/metrics.csv").is_file(), "no logger named: CSV in the run folder"

    # the checkpoint alone rebuilds the teacher, its PDE and its normaliser, and reproduces samples
    loaded = DiffusionTeacher.load_from_checkpoint(last, map_location="cpu")
    assert loaded.pde.describe() == model.pde.describe()
    assert torch.equal(loaded.normalizer.mean, model.normalizer.mean)
    assert loaded.normalizer.fitted
    first = loaded.sample(3, generator=torch.Generator().manual_seed(7))
    again = DiffusionTeacher.load_from_checkpoint(last, map_location="cpu").sample(
        3, generator=torch.Generator().manual_seed(7))
    assert torch.equal(first, again)
    in_memory = model.to("cpu").sample(3, generator=torch.Generator().manual_seed(7))
    assert torch.allclose(first, in_memory, atol=1e-5), "last.ckpt must hold the (EMA) weights the fit ended with"
    assert first.shape == (3, 2, 16, 16) and first.dtype == torch.float64
    assert loaded.nfe == 2 * 4 - 1

    # the test run evaluates the checkpoint and writes the report
    main(["test", "--config", QUICKSTART, *TINY, "--ckpt_path", "last"])
    report = workdir / "runs/quickstart/report"
    summary = json.loads((report / "metrics.json").read_text())
    metrics, run = summary["metrics"], summary["run"]
    steps = cli.trainer.global_step
    assert run["checkpoint"] == str(last.resolve()) and run["global_step"] == steps, "what was evaluated, how long"
    assert re.fullmatch("[0-9a-f]{64}", run["config_sha256"]) and run["trained_config_sha256"] == run["config_sha256"]
    assert f"Checkpoint `{last.resolve()}` after {steps} training steps; config SHA-256 `{run['config_sha256']}`" in (
        report / "report.md").read_text()
    assert metrics["gt/residual_interior_rel"] < 1e-9 < metrics["gen/residual_interior_rel"]
    assert {f"{side}/{m}/{c}" for side in ("gen", "gt") for m in ("mmse", "smse") for c in "au"} <= set(metrics)
    assert metrics["gt/mmse/a"] > 0, "two independent ground-truth sets differ by sampling noise"
    assert (report / "samples.png").stat().st_size > 10_000
    assert "| PDE residual, interior" in (report / "report.md").read_text()
    main(["test", "--config", QUICKSTART, *TINY, "--ckpt_path", "last", "--seed_everything=1"])
    other = json.loads((report / "metrics.json").read_text())["run"]
    assert other["config_sha256"] != run["config_sha256"] == other["trained_config_sha256"]

    # resuming continues the same run from the last checkpoint
    resumed = main(["fit", "--config", QUICKSTART, *TINY, "--trainer.max_epochs=3", "--ckpt_path", "last"])
    assert resumed.trainer.current_epoch == 3
    assert resumed.trainer.global_step == 3 * 2


def test_wrong_channel_count_is_a_clear_error(workdir):
    with pytest.raises(ValueError, match="wrong channel count"):
        main(["fit", "--config", QUICKSTART, *TINY, "--model.init_args.net.init_args.channels=3",
              "--trainer.fast_dev_run=true"])


def test_untrained_teacher_samples_the_data_moments():
    """A freshly built U-Net outputs zero (zero-initialised last layer), so D(x, σ) = c_skip(σ) x is the exact
    denoiser of N(0, σ_data² I) data: the whole pipeline (noise, preconditioning, Heun, decoding) must then
    return samples whose per-channel mean and std are the normaliser's statistics (to the Heun
    discretisation error, about 0.6 % in std at 48 steps, and the sampling error)."""
    from pdegen.nets import UNet
    from pdegen.pdes import Darcy

    torch.manual_seed(0)
    teacher = DiffusionTeacher(UNet(channels=2, base_channels=8, channel_mults=[1, 2]), num_steps=48)
    teacher.attach_pde(Darcy(resolution=8))
    mean, std = torch.tensor([7.5, 0.02], dtype=torch.float64), torch.tensor([4.5, 0.01], dtype=torch.float64)
    teacher.normalizer.set_stats(mean, std)
    x = teacher.sample(512, generator=torch.Generator().manual_seed(1), batch_size=512)
    flat = x.transpose(0, 1).reshape(2, -1)
    n = flat.shape[1]
    assert torch.allclose(flat.mean(dim=1), mean, atol=float(5 * std.max() / n**0.5))
    assert torch.allclose(flat.std(dim=1) / std, torch.ones(2, dtype=torch.float64), atol=0.015)
