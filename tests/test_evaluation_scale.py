"""Evaluation and scale: latency of generators, NaN stops, W&B offline runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch

from pdegen.callbacks import LatencyCallback, NonFiniteLossError, SampleFigures, StopOnNonFiniteLoss, TaskCallback
from pdegen.diffusion import Heun
from pdegen.modules import DiffusionTeacher, PIDDMStudent, PIDStudent
from pdegen.nets import UNet
from pdegen.pdes import Darcy

ROOT = Path(__file__).resolve().parents[1]


def tiny_teacher(num_steps: int = 6) -> DiffusionTeacher:
    torch.manual_seed(0)
    pde = Darcy(resolution=8)
    teacher = DiffusionTeacher(UNet(channels=2, base_channels=8, channel_mults=[1, 2]), num_steps=num_steps)
    teacher.attach_pde(pde)
    return teacher


class _OneBatch(L.LightningDataModule):
    def test_dataloader(self):
        return torch.utils.data.DataLoader(torch.zeros(2, 2, 8, 8), batch_size=2)

    train_dataloader = test_dataloader


def test_generator_latency_times_the_teacher_with_its_own_sampler_and_steps(tmp_path):
    """The speed-up divides the teacher's time with *its own* sampler (Heun, 3 steps: 5 NFE), not Heun on the
    student's 6-point distillation grid (10 NFE): the timed teacher call returns the teacher's own samples."""
    teacher = tiny_teacher(num_steps=3)
    student = PIDStudent(teacher, num_points=6)
    assert student.grid_teacher_nfe(Heun()) == 10 and teacher.nfe == 5, "the two teacher samplers differ"
    targets = student.latency_targets(4)
    own = teacher.sample(4, generator=torch.Generator().manual_seed(0), batch_size=4)
    torch.testing.assert_close(targets["teacher"](), own, rtol=0, atol=0)
    torch.testing.assert_close(targets["model"](), student.sample(4, torch.Generator().manual_seed(0)), rtol=0, atol=0)

    callback = LatencyCallback(batch_sizes=[1, 4], threads=[1], warmup=1, repeats=3, output_dir=str(tmp_path))
    rows = callback.measure(student)
    assert {(r["target"], r["batch_size"]) for r in rows} == {(t, b) for t in ("model", "teacher") for b in (1, 4)}
    for row in rows:
        assert row["median_ms_per_sample"] == pytest.approx(row["median_ms"] / row["batch_size"])
        assert row["samples_per_s"] == pytest.approx(1e3 * row["batch_size"] / row["median_ms"])
    assert student.latency_nfe() == {"model": 1, "teacher": 5}

    trainer = L.Trainer(accelerator="cpu", logger=False, callbacks=[callback], enable_progress_bar=False)
    trainer.test(student, datamodule=_OneBatch())
    metrics = trainer.callback_metrics
    assert metrics["test/latency/model/nfe"] == 1 and metrics["test/latency/teacher/nfe"] == 5
    saved = json.loads((tmp_path / "latency.json").read_text())
    medians = {(r["target"], r["batch_size"]): r["median_ms"] for r in saved["rows"]}
    assert metrics["test/latency/speedup/b4_t1"] == pytest.approx(medians["teacher", 4] / medians["model", 4])
    assert saved["nfe"] == {"model": 1, "teacher": 5} and len(saved["rows"]) == 4
    assert tiny_teacher(num_steps=4).latency_nfe() == {"model": 7}
    plain = PIDStudent(teacher.denoiser, net=UNet(channels=2, base_channels=8, channel_mults=[1, 2]), num_points=6)
    plain.attach_pde(teacher.pde)
    assert set(plain.latency_targets(2)) == {"model", "teacher"}, "a bare denoiser gets the adapter's sampler"
    assert plain.latency_nfe() == {"model": 1, "teacher": 35}, "Heun-18 of the FrozenTeacher adapter"


class _BlowsUp(L.LightningModule):
    """A linear fit whose loss becomes NaN at its ``nan_at``-th optimizer step."""

    def __init__(self, nan_at: int) -> None:
        super().__init__()
        self.layer, self.nan_at = torch.nn.Linear(2, 1), nan_at

    def training_step(self, batch, batch_idx):
        loss = self.layer(batch).square().mean()
        return loss * float("nan") if self.global_step + 1 == self.nan_at else loss

    def train_dataloader(self):
        return torch.utils.data.DataLoader(torch.randn(64, 2), batch_size=4)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


class Bar:
    """Records what pdegen.progress shows in place of a tqdm bar."""

    made: list[Bar] = []

    def __init__(self, total, desc, unit, **kwargs) -> None:
        self.total, self.desc, self.unit, self.n, self.notes = total, desc, unit, 0, []
        Bar.made.append(self)

    def __enter__(self):
        return self

    def __exit__(self, *args) -> None:
        pass

    def update(self, count: int) -> None:
        self.n += count

    def set_postfix_str(self, text: str, refresh: bool = True) -> None:
        self.notes.append(text)


def test_evaluation_sampling_task_solving_and_latency_timing_show_progress(tmp_path, monkeypatch):
    """Long evaluation work inside one Lightning batch moves a bar: one tick per sample with the sampler's
    steps beside it, one per latency measurement (the sampling it times moves no bar of its own); none when
    the trainer hides its bar."""
    from pdegen import progress
    from pdegen.callbacks import PDEResidualCallback, TaskCallback

    monkeypatch.setattr(progress, "tqdm", Bar)
    teacher = tiny_teacher(num_steps=3)
    callbacks = [PDEResidualCallback(num_samples=5, output_dir=str(tmp_path), teacher=False),
                 LatencyCallback(batch_sizes=[1, 2], threads=[1], warmup=0, repeats=2, output_dir=str(tmp_path))]
    trainer = L.Trainer(accelerator="cpu", logger=False, callbacks=callbacks, enable_model_summary=False)
    teacher.sample_batch_size = 2
    trainer.test(teacher, datamodule=_OneBatch())
    samples, latency = Bar.made
    assert (samples.desc, samples.total, samples.unit, samples.n) == ("test: generated samples", 5, "sample", 5)
    assert samples.notes[-1] == "step 3/3" and len(samples.notes) == 3 * 3, "3 chunks of 3 steps"
    assert (latency.desc, latency.total, latency.n) == ("test: latency", 2, 2)
    assert latency.notes == ["model, batch 1, 1 threads", "model, batch 2, 1 threads"]

    Bar.made.clear()
    trainer = L.Trainer(accelerator="cpu", logger=False, callbacks=callbacks[:1], enable_progress_bar=False)
    trainer.test(teacher, datamodule=_OneBatch())
    assert Bar.made == []
    student = PIDDMStudent(teacher, task_steps=4)
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_model_summary=False,
                        callbacks=[TaskCallback("forward", num_samples=2, output_dir=str(tmp_path))])
    trainer.test(student, datamodule=_OneBatch())
    (task,) = Bar.made
    assert (task.desc, task.n) == ("test: forward task", 2) and task.notes[-1] == "noise optimisation, evaluation 4/4"


def test_nan_loss_stops_the_fit_naming_the_step_and_the_last_good_checkpoint(tmp_path):
    checkpoints = L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=2, save_last=True)
    trainer = L.Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_progress_bar=False,
                        callbacks=[checkpoints, StopOnNonFiniteLoss()])
    with pytest.raises(NonFiniteLossError, match=r"\(nan\) in optimizer step 7 \(epoch 0, batch 6\); the last good "
                                                 rf"checkpoint is {tmp_path / 'last.ckpt'}"):
        trainer.fit(_BlowsUp(nan_at=7))
    saved = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert saved["global_step"] == 6 and all(torch.isfinite(w).all() for w in saved["state_dict"].values())

    trainer = L.Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_progress_bar=False,
                        enable_checkpointing=False, callbacks=[StopOnNonFiniteLoss(check_every_n_steps=3)])
    with pytest.raises(NonFiniteLossError, match="no checkpoint was written before it"):
        trainer.fit(_BlowsUp(nan_at=3))
    with pytest.raises(ValueError, match="check_every_n_steps must be >= 1"):
        StopOnNonFiniteLoss(0)


def test_every_pdegen_fit_carries_the_nan_guard(workdir):
    from pdegen.cli import main

    config = ROOT / "lightning_configs/kdpinn/burgers_teacher.yaml"
    cli = main(["--config", str(config), "--nan_guard.check_every_n_steps=5"], run=False)
    (guard,) = [c for c in cli.trainer.callbacks if isinstance(c, StopOnNonFiniteLoss)]
    assert guard.check_every_n_steps == 5


TINY_TEACHER = [
    "--data.init_args.pde.init_args.resolution=16", "--data.init_args.num_samples=24",
    "--data.init_args.batch_size=8", "--trainer.max_epochs=1", "--trainer.limit_train_batches=2",
    "--trainer.check_val_every_n_epoch=1", "--trainer.enable_progress_bar=false",
    "--model.init_args.net.init_args.base_channels=8", "--model.init_args.num_steps=4",
    "--trainer.callbacks.init_args.num_samples=8", "--trainer.callbacks.init_args.every_n_epochs=1",
]


def test_wandb_offline_run_holds_the_config_metrics_images_and_final_table(workdir):
    configs = ["--config", str(ROOT / "lightning_configs/quickstart/darcy.yaml"),
               "--config", str(ROOT / "lightning_configs/logger/wandb.yaml")]
    for command in (["fit"], ["test", "--ckpt_path", "runs/quickstart/checkpoints/last.ckpt"]):
        # one process per command, as on a compute node (a W&B run is finished when its process ends)
        subprocess.run([sys.executable, "-m", "pdegen.cli", command[0], *configs, *TINY_TEACHER, *command[1:]],
                       cwd=workdir, check=True, capture_output=True,
                       env={k: v for k, v in os.environ.items() if k != "WANDB_MODE"})  # no login, no server
    runs = sorted((workdir / "runs/wandb").glob("offline-run-*"))
    assert len(runs) == 2, "fit and test each leave one offline run to `wandb sync`"
    # an offline run's records (config, history, summary) are protobuf in run-<id>.wandb: their keys are in it
    fit_run, test_run = ((run, next(run.glob("run-*.wandb")).read_bytes()) for run in runs)
    for _, records in (fit_run, test_run):
        assert b"cli" in records and b"DiffusionTeacher" in records and b"base_channels" in records, "the CLI config"
    assert b"val/gen/residual_interior_rel" in fit_run[1], "the residual callback's metrics"
    assert list((fit_run[0] / "files/media/images/val").glob("samples_*.png")), "the sample figure as an image"
    assert b"test/gen/mmse/u" in test_run[1] and b"test/metrics" in test_run[1]
    (table,) = (test_run[0] / "files/media/table/test").glob("metrics_*.table.json")
    rows = dict(json.loads(table.read_text())["data"])
    assert rows["gen/residual_interior_rel"] > 0 and "gt/mmse/u" in rows, "the final metric table"


KILLER = """
import os, signal
import lightning as L

class KillAtStep(L.Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)  # no clean-up, no last checkpoint: a node failure
"""


def test_a_killed_fit_resumed_from_last_ends_where_the_uninterrupted_fit_ends(tmp_path, monkeypatch):
    from pdegen.cli import main

    config = ["--config", str(ROOT / "lightning_configs/quickstart/darcy.yaml"), *TINY_TEACHER,
              "--trainer.limit_train_batches=3", "--trainer.callbacks.init_args.every_n_epochs=2",
              "--trainer.max_epochs=4"]
    finals = {}
    for run in ("straight", "resumed"):
        (tmp_path / run).mkdir()
        monkeypatch.chdir(tmp_path / run)
        if run == "resumed":  # SIGKILL in the middle of the third epoch (step 7; last.ckpt is from step 6)
            (tmp_path / run / "killer.py").write_text(KILLER)
            killed = subprocess.run([sys.executable, "-m", "pdegen.cli", "fit", *config,
                                     "--trainer.callbacks+=killer.KillAtStep", "--trainer.callbacks.step=7"],
                                    env=os.environ | {"PYTHONPATH": str(tmp_path / run)}, capture_output=True)
            assert killed.returncode == -9
            assert torch.load("runs/quickstart/checkpoints/last.ckpt", weights_only=True)["global_step"] == 6
        cli = main(["fit", *config, *(["--ckpt_path", "last"] if run == "resumed" else [])])
        assert cli.trainer.global_step == 12
        finals[run] = torch.load("runs/quickstart/checkpoints/last.ckpt", weights_only=True)
    straight, resumed = finals["straight"], finals["resumed"]
    assert straight["global_step"] == resumed["global_step"] == 12
    # with EMAWeightAveraging the state_dict holds the averaged weights, current_model_state the trained ones
    for part in ("state_dict", "current_model_state"):
        assert straight[part].keys() == resumed[part].keys()
        for name, value in straight[part].items():
            torch.testing.assert_close(resumed[part][name], value, rtol=0, atol=0, msg=f"{part}: {name}")


def test_predict_writes_n_generated_samples_as_a_dataset_file(workdir):
    from pdegen.cli import main
    from pdegen.io import load_samples

    config = ["--config", str(ROOT / "lightning_configs/quickstart/darcy.yaml"), *TINY_TEACHER]
    fit = main(["fit", *config])
    request = ["--data", "datamodules.SampleRequest", "--data.num_samples=10", "--data.batch_size=4",
               "--trainer.callbacks+=pdegen.callbacks.SampleWriter", "--trainer.callbacks.path=generated/darcy.h5"]
    main(["predict", *config, *request, "--ckpt_path", "last"])
    samples, info = load_samples(workdir / "generated/darcy.h5", dtype=torch.float64)
    assert samples.shape == (10, 2, 16, 16) and info.pde.describe() == fit.model.pde.describe()
    assert info.attrs["module"] == "DiffusionTeacher" and info.attrs["nfe"] == 7
    run = json.loads(info.attrs["run"])
    assert run["checkpoint"].endswith("last.ckpt") and run["global_step"] == fit.trainer.global_step
    kept = (workdir / "generated/darcy.h5").read_bytes()
    with pytest.raises(FileExistsError, match="--overwrite"):  # refused when predict starts
        main(["predict", *config, *request, "--ckpt_path", "last"])
    assert (workdir / "generated/darcy.h5").read_bytes() == kept
    teacher = DiffusionTeacher.load_from_checkpoint(workdir / "runs/quickstart/checkpoints/last.ckpt")
    # in index order, each sample from its own (seed, index) noise whatever its batch (to float32 round-off of
    # the batched network), in physical units
    alone = teacher.sample_with(teacher.generate, 1, noise=teacher.indexed_noise([5]))
    torch.testing.assert_close(samples[5:6], alone, rtol=1e-5, atol=1e-5)
    regrouped = teacher.sample_with(teacher.generate, 3, noise=teacher.indexed_noise([9, 0, 6]))
    torch.testing.assert_close(samples[[9, 0, 6]], regrouped, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(samples[0], samples[1])


def test_a_task_callback_in_a_predict_of_sample_indices_warns_instead_of_observing_them():
    callback = TaskCallback("forward", num_samples=2)
    callback.begin(None, None, "predict")
    callback.add_reference(torch.arange(4))  # a SampleRequest batch: indices, not samples
    with pytest.warns(UserWarning, match="no samples to observe"):
        callback.evaluate(None, None, "predict")
    callback.add_reference(torch.zeros(3, 2, 4, 4, dtype=torch.float64))
    assert [t.shape for t in callback._truth] == [(2, 2, 4, 4)], "samples are kept, up to num_samples"


@pytest.mark.parametrize("script", sorted((ROOT / "tools/slurm").glob("*.sbatch")), ids=lambda p: p.stem)
def test_slurm_templates_are_valid_bash_with_one_task_per_gpu_and_requeue(script):
    subprocess.run(["bash", "-n", str(script)], check=True)
    text = script.read_text()
    header = dict(line.removeprefix("#SBATCH --").partition("=")[::2] for line in text.splitlines()
                  if line.startswith("#SBATCH --"))
    if script.stem.startswith("train"):
        assert header["gres"] == f"gpu:{header['ntasks-per-node']}", "Lightning under SLURM: one task per GPU"
        assert header["signal"] == "SIGUSR1@90" and "requeue" in header, "SIGUSR1 -> checkpoint -> requeue"
        assert "srun pdegen fit" in text and "--trainer.strategy=ddp" in text
    else:
        assert "--shard \"$SHARD\" --num-shards \"$SHARDS\"" in text and "pdegen-data merge" in text


def test_two_process_gloo_test_run_logs_what_one_process_computes_on_the_same_samples(workdir):
    """DDP on 2 CPU processes (gloo): each rank samples with seed + rank and reads its shard of the test
    split (3 samples: 2 + 1, no repeat); the residual callback's synchronised metrics equal one process's
    on the union."""
    from pdegen.cli import main
    from pdegen.metrics import MomentErrors, PDEResidualNorm

    config = ["--config", str(ROOT / "lightning_configs/quickstart/darcy.yaml"), *TINY_TEACHER,
              "--trainer.callbacks.init_args.num_samples=4", "--data.init_args.num_samples=30"]
    main(["fit", *config])
    env = {k: v for k, v in os.environ.items() if k != "WANDB_MODE"} | {"OMP_NUM_THREADS": "1"}
    ddp = ["--trainer.accelerator=cpu", "--trainer.devices=2", "--trainer.strategy=ddp"]
    subprocess.run([sys.executable, "-m", "pdegen.cli", "test", *config, "--ckpt_path", "last", *ddp],
                   cwd=workdir, check=True, capture_output=True, env=env)
    # a fresh 2-process fit into the trained run's folder: every rank stops with rank 0's refusal
    kept = (workdir / "runs/quickstart/checkpoints/last.ckpt").read_bytes()
    refused = subprocess.run([sys.executable, "-m", "pdegen.cli", "fit", *config, *ddp], cwd=workdir,
                             capture_output=True, text=True, env=env, timeout=300)
    assert refused.returncode != 0 and refused.stderr.count("already holds checkpoints of another run") == 2
    assert (workdir / "runs/quickstart/checkpoints/last.ckpt").read_bytes() == kept
    subprocess.run([sys.executable, "-m", "pdegen.cli", "fit", *config, *ddp, "--overwrite=true"], cwd=workdir,
                   check=True, capture_output=True, env=env, timeout=300)  # the EMA copy once failed under DDP
    assert (workdir / "runs/quickstart/checkpoints/last.ckpt").read_bytes() != kept
    main(["fit", *config, "--overwrite=true"])  # the checkpoint sampled below: the single-process one
    logged = json.loads((workdir / "runs/quickstart/report/metrics.json").read_text())["metrics"]

    teacher = DiffusionTeacher.load_from_checkpoint(workdir / "runs/quickstart/checkpoints/last.ckpt")
    generated = torch.cat([teacher.sample(4, generator=torch.Generator().manual_seed(rank)) for rank in (0, 1)])
    datamodule = main(config, run=False).datamodule
    datamodule.setup("test")
    held_out = datamodule.datasets["test"].take(range(len(datamodule.datasets["test"])))
    assert len(held_out) == 3, "an odd split: the distributed sampler must not pad a repeat into a shard"
    residual, truth = PDEResidualNorm(teacher.pde), PDEResidualNorm(teacher.pde)
    residual.update(generated)
    truth.update(held_out)
    moments = MomentErrors(teacher.pde.num_channels, teacher.pde.grid.shape)
    moments.update(generated=generated, reference=held_out)
    # float32 sampling on 1 thread per rank against 2 here: equal to round-off (a rank drawing another rank's
    # noise, or unsynchronised states, would be off by percents)
    assert logged["gen/residual_interior_rel"] == pytest.approx(float(residual.compute()["interior_rel"]), rel=1e-4)
    assert logged["gt/residual_interior_rel"] == pytest.approx(float(truth.compute()["interior_rel"]), rel=1e-9)
    expected = moments.compute()
    for i, channel in enumerate(teacher.pde.channels):
        assert logged[f"gen/mmse/{channel}"] == pytest.approx(float(expected["mmse"][i]), rel=1e-4)
        assert logged[f"gen/smse/{channel}"] == pytest.approx(float(expected["smse"][i]), rel=1e-4)


def test_radial_power_spectrum_obeys_parseval_and_puts_a_plane_wave_in_its_shell():
    from pdegen.metrics import radial_power_spectrum

    g = torch.Generator().manual_seed(0)
    fields = torch.randn(3, 2, 24, 32, generator=g, dtype=torch.float64)
    k, power = radial_power_spectrum(fields)
    assert power.shape == (3, 2, len(k)) and k[0] == 0
    torch.testing.assert_close(power.sum(-1), fields.square().mean((-2, -1)))
    y, x = torch.meshgrid(torch.arange(24.0), torch.arange(32.0), indexing="ij")
    wave = torch.cos(2 * torch.pi * (3 * y / 24 + 4 * x / 32)).double()  # |k| = 5
    _, single = radial_power_spectrum(wave)
    assert single.argmax() == 5 and single[5] == pytest.approx(0.5) and single.sum() == pytest.approx(0.5)


def test_sample_figures_write_sample_grids_and_spectra_for_the_csv_logger(workdir):
    from pdegen.cli import main

    config = ["--config", str(ROOT / "lightning_configs/quickstart/darcy.yaml"), *TINY_TEACHER,
              "--trainer.callbacks+=pdegen.callbacks.SampleFigures", "--trainer.callbacks.num_samples=6",
              "--trainer.callbacks.output_dir=figures"]
    main(["fit", *config])
    main(["test", *config, "--ckpt_path", "last"])
    written = sorted(p.name for p in (workdir / "figures").glob("*.png"))
    assert written == ["test_samples_epoch0000.png", "test_spectra_epoch0000.png", "val_samples_epoch0000.png",
                       "val_spectra_epoch0000.png"]
    assert all((workdir / "figures" / name).stat().st_size > 10_000 for name in written)
    with pytest.raises(ValueError, match="num_columns <= num_samples"):
        SampleFigures(num_samples=2, num_columns=4)


def test_compile_backbones_compiles_grid_networks_in_place_and_checkpoints_keep_their_names(workdir):
    from pdegen.callbacks import CompileBackbones
    from pdegen.cli import main

    config = ["--config", str(ROOT / "lightning_configs/quickstart/darcy.yaml"), *TINY_TEACHER,
              "--trainer.callbacks+=pdegen.callbacks.CompileBackbones", "--trainer.callbacks.backend=eager"]
    cli = main(["fit", *config])
    (compiler,) = [c for c in cli.trainer.callbacks if isinstance(c, CompileBackbones)]
    assert [type(m).__name__ for m in compiler.compiled] == ["UNet"], "the denoiser's U-Net, nothing else"
    saved = torch.load(workdir / "runs/quickstart/checkpoints/last.ckpt", weights_only=True)["state_dict"]
    assert "denoiser.net.conv_in.weight" in saved and not any("_orig_mod" in key for key in saved)
    plain = DiffusionTeacher.load_from_checkpoint(workdir / "runs/quickstart/checkpoints/last.ckpt")
    assert plain.denoiser.net._compiled_call_impl is None, "a compiled run's checkpoint loads into a plain module"


def test_exported_student_reproduces_the_modules_samples(workdir):
    from safetensors import safe_open

    from pdegen.cli import main
    from pdegen.export import OneStepSampler, load_student_safetensors
    from pdegen.export import main as export_main

    main(["fit", "--config", str(ROOT / "lightning_configs/quickstart/darcy.yaml"), *TINY_TEACHER])
    student = PIDStudent("runs/quickstart/checkpoints/last.ckpt", num_points=6)
    trainer = L.Trainer(accelerator="cpu", max_steps=2, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(student, torch.utils.data.DataLoader(torch.zeros(8, 2, 16, 16), batch_size=4))
    checkpoint = str(workdir / "student.ckpt")
    trainer.save_checkpoint(checkpoint)
    written = export_main([checkpoint, "--module", "pdegen.modules.PIDStudent", "--out", str(workdir / "export")])

    loaded = PIDStudent.load_from_checkpoint(checkpoint)
    expected = loaded.sample(5, generator=torch.Generator().manual_seed(3))
    noise = torch.randn(5, 2, 16, 16, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    scripted = torch.jit.load(written["torchscript"])
    torch.testing.assert_close(scripted(noise), expected, rtol=1e-6, atol=1e-9)  # another batch size than traced
    assert expected[:, 0].std() > 0, "physical-unit samples, not a constant"

    fresh = PIDStudent.load_from_checkpoint(checkpoint)
    with torch.no_grad():
        for parameter in fresh.trajectory.parameters():
            parameter.add_(0.1)
    load_student_safetensors(fresh, written["safetensors"])
    torch.testing.assert_close(fresh.sample(5, generator=torch.Generator().manual_seed(3)), expected)
    with safe_open(written["safetensors"], "pt") as f:
        metadata = f.metadata()
        assert not any(key.startswith("teacher.") for key in f.keys()), "the frozen teacher is not deployed"
    assert metadata["module"] == "pdegen.modules.pid.PIDStudent" and json.loads(metadata["pde"])["name"] == "darcy"

    with pytest.raises(ValueError, match="only one-pass students export"):
        OneStepSampler(loaded.teacher)
    smaller = PIDStudent(loaded.teacher, num_points=6, net=UNet(channels=2, base_channels=4, channel_mults=[1]))
    with pytest.raises(ValueError, match="does not fit PIDStudent"):
        load_student_safetensors(smaller, written["safetensors"])
