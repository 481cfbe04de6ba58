"""Checkpoints that belong to one run and are what they claim (``pdegen.callbacks.RunCheckpoint``)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from torch.utils.data import DataLoader, TensorDataset

from pdegen.callbacks import RunCheckpoint
from pdegen.callbacks.checkpoint import LOCK

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = str(ROOT / "lightning_configs/quickstart/darcy.yaml")
TINY = ["--data.init_args.pde.init_args.resolution=16", "--data.init_args.num_samples=24",
        "--data.init_args.batch_size=8", "--trainer.max_epochs=1", "--trainer.limit_train_batches=2",
        "--trainer.check_val_every_n_epoch=1", "--trainer.enable_progress_bar=false",
        "--model.init_args.net.init_args.base_channels=8", "--model.init_args.num_steps=2",
        "--trainer.callbacks.init_args.num_samples=4"]


class Line(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(1, 1)

    def training_step(self, batch, batch_idx):
        return (self.layer(batch[0]) ** 2).mean()

    def train_dataloader(self):
        return DataLoader(TensorDataset(torch.randn(8, 1)), batch_size=4)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def fit(folder: Path, ckpt_path: str | None = None, max_epochs: int = 1, **checkpoint_args) -> L.Trainer:
    trainer = L.Trainer(max_epochs=max_epochs, logger=False, enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[RunCheckpoint(dirpath=folder, save_last=True, **checkpoint_args)])
    trainer.fit(Line(), ckpt_path=ckpt_path)
    return trainer


def test_a_fresh_fit_refuses_an_earlier_runs_folder_unless_resuming_or_overwriting(tmp_path):
    fit(tmp_path)
    names = sorted(p.name for p in tmp_path.iterdir())
    first = (tmp_path / "last.ckpt").read_bytes()
    with pytest.raises(FileExistsError, match="--ckpt_path last.*--overwrite"):
        fit(tmp_path)
    assert (tmp_path / "last.ckpt").read_bytes() == first and sorted(p.name for p in tmp_path.iterdir()) == names
    resumed = fit(tmp_path, ckpt_path=str(tmp_path / "last.ckpt"), max_epochs=2)
    assert resumed.global_step == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch=1-step=4.ckpt", "last.ckpt"], "no last-v1.ckpt"
    (tmp_path / "stray.ckpt").write_bytes(first)  # a checkpoint of an earlier run
    fit(tmp_path, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == names, "--overwrite replaces the earlier run"
    assert torch.load(tmp_path / "last.ckpt", weights_only=True)["global_step"] == 2


def test_a_second_fit_into_a_folder_in_use_is_refused_and_a_dead_runs_lock_is_taken_over(tmp_path):
    lock = tmp_path / LOCK
    lock.write_text(f"{socket.gethostname()} {os.getpid()}")  # a live process holds it
    with pytest.raises(FileExistsError, match="another pdegen process.*writing checkpoints into"):
        fit(tmp_path)
    assert not (tmp_path / "last.ckpt").exists() and lock.exists()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    lock.write_text(f"{socket.gethostname()} {dead.stdout.strip()}")  # its process has exited
    fit(tmp_path)
    assert (tmp_path / "last.ckpt").is_file() and not lock.exists(), "the lock is released at the end"


def test_an_interrupted_checkpoint_write_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    fit(tmp_path, save_top_k=0)  # last.ckpt alone
    good = (tmp_path / "last.ckpt").read_bytes()

    def disk_full(io, checkpoint, path, storage_options=None):  # part of the file is written, then ENOSPC
        with open(path, "wb") as file:
            file.write(b"PK\x03\x04 truncated")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(TorchCheckpointIO, "save_checkpoint", disk_full)
    with pytest.raises(OSError, match="No space left"):
        fit(tmp_path, ckpt_path=str(tmp_path / "last.ckpt"), max_epochs=2, save_top_k=0)
    monkeypatch.undo()
    assert (tmp_path / "last.ckpt").read_bytes() == good
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"], "no partial file, no lock left"
    assert torch.load(tmp_path / "last.ckpt", weights_only=True)["global_step"] == 2


def test_debug_run_beside_a_trained_run_writes_nothing_and_test_needs_a_checkpoint(workdir):
    from pdegen.cli import main

    with pytest.raises(FileNotFoundError, match="untrained model.*pdegen fit"):
        main(["test", "--config", QUICKSTART, *TINY, "--ckpt_path", "last"])
    with pytest.raises(FileNotFoundError, match="untrained model"):
        main(["test", "--config", QUICKSTART, *TINY])
    main(["fit", "--config", QUICKSTART, *TINY])
    folder = workdir / "runs/quickstart/checkpoints"
    trained = {p.name: p.read_bytes() for p in folder.glob("*.ckpt")}
    main(["fit", "--config", QUICKSTART, "--config", str(ROOT / "lightning_configs/trainer/debug.yaml"), *TINY])
    assert {p.name: p.read_bytes() for p in folder.glob("*.ckpt")} == trained, "fast_dev_run writes nothing"
    with pytest.raises(FileExistsError, match="--overwrite"):
        main(["fit", "--config", QUICKSTART, *TINY])
    for subcommand in ("test", "fit"):  # a checkpoint meets data of other physics: refused, nothing written
        with pytest.raises(ValueError, match="the checkpoint has Darcy.*a_high \\(10.0 vs 12.0\\)"):
            main([subcommand, "--config", QUICKSTART, *TINY, "--data.init_args.pde.init_args.a_high=10",
                  "--ckpt_path", "last"])
    assert not (workdir / "runs/quickstart/report/metrics.json").exists()
    cli = main(["fit", "--config", QUICKSTART, *TINY, "--overwrite=true"])
    assert cli.trainer.global_step == 2 and sorted(p.name for p in folder.glob("*.ckpt")) == sorted(trained)


TRAIN_MARKER = '''
import os, pathlib, lightning as L
class Marker(L.Callback):
    """Writes the step count to $MARKER after every batch from the third on."""
    def on_train_batch_end(self, trainer, *args):
        if trainer.global_step >= 3:
            pathlib.Path(os.environ["MARKER"]).write_text(str(trainer.global_step))
'''
TEST_MARKER = '''
import os, pathlib, lightning as L
class Marker(L.Callback):
    """Touches $MARKER when the test loop starts."""
    def on_test_start(self, *args):
        pathlib.Path(os.environ["MARKER"]).touch()
'''


def sigterm_once_started(workdir: Path, marker: str, args: list[str]) -> tuple[int, str]:
    """Run ``pdegen <args>`` with the callback ``marker.Marker`` (source ``marker``), send SIGTERM a second
    after it has written $MARKER, and return the exit code and stderr."""
    (workdir / "marker.py").write_text(marker)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(workdir), os.environ.get("PYTHONPATH", "")]),
           "MARKER": str(workdir / "started")}
    process = subprocess.Popen([sys.executable, "-m", "pdegen.cli", *args, "--trainer.callbacks+=marker.Marker"],
                               env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (workdir / "started").exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (workdir / "started").exists(), f"never started: {process.communicate()[1][-2000:]}"
        time.sleep(1)
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
        return process.returncode, err
    finally:
        process.kill()


def test_sigterm_during_fit_exits_143_with_a_final_checkpoint_that_resumes(workdir):
    """What SLURM and scancel send: the fit stops at the end of a batch, writes last.ckpt with every step
    taken and exits non-zero (Lightning alone exited 0 with the last steps missing, so a `set -e` script
    went on to test); resuming from it continues the step count."""
    endless = [*TINY, "--data.init_args.num_samples=800", "--trainer.limit_train_batches=100",  # no epoch end
               "--trainer.limit_val_batches=0"]
    returncode, err = sigterm_once_started(workdir, TRAIN_MARKER, ["fit", "--config", QUICKSTART, *endless])
    assert returncode == 143 and "stopped by SIGTERM" in err, err[-2000:]
    folder = workdir / "runs/quickstart/checkpoints"
    assert sorted(p.name for p in folder.iterdir()) == ["last.ckpt"], "no lock, no partial file"
    step = torch.load(folder / "last.ckpt", weights_only=False)["global_step"]
    assert step == int((workdir / "started").read_text()), "the checkpoint holds every step taken"
    from pdegen.cli import main

    cli = main(["fit", "--config", QUICKSTART, *TINY, f"--trainer.max_steps={step + 2}", "--trainer.max_epochs=-1",
                "--trainer.limit_val_batches=0", "--ckpt_path", "last"])
    assert cli.trainer.global_step == step + 2


def test_sigterm_during_test_stops_at_once_with_143_and_writes_no_report(workdir):
    """An interrupted evaluation exits non-zero and leaves no report of it (Lightning alone noted the signal
    and went on evaluating for as long as the evaluation took, then exited 0)."""
    from pdegen.cli import main

    main(["fit", "--config", QUICKSTART, *TINY])
    long_evaluation = [*TINY, "--trainer.callbacks.init_args.num_samples=100000", "--ckpt_path", "last"]
    returncode, err = sigterm_once_started(workdir, TEST_MARKER, ["test", "--config", QUICKSTART, *long_evaluation])
    assert returncode == 143, err[-2000:]
    assert not (workdir / "runs/quickstart/report/metrics.json").exists()
    assert not (workdir / "runs/quickstart/report/report.md").exists()


def test_pdegen_load_rebuilds_the_module_a_checkpoint_names_and_refuses_what_it_cannot(workdir):
    """pdegen.load reads the module class from the checkpoint: the rebuilt teacher samples exactly what
    its class's load_from_checkpoint does; a checkpoint without the record, or naming a class that is no
    LightningModule, is refused with a message saying what to do."""
    import pdegen
    from pdegen.cli import main
    from pdegen.modules import DiffusionTeacher

    cli = main(["fit", "--config", QUICKSTART, *TINY, "--trainer.max_epochs=1", "--trainer.limit_train_batches=1",
                "--trainer.limit_val_batches=0", "--trainer.logger=false"])
    path = Path(cli.trainer.checkpoint_callback.last_model_path)
    assert torch.load(path, weights_only=True)["pdegen"]["module"] == "pdegen.modules.teacher:DiffusionTeacher"
    model = pdegen.load(path)
    assert type(model) is DiffusionTeacher and not model.training
    expected = DiffusionTeacher.load_from_checkpoint(path, map_location="cpu", weights_only=True).eval()
    samples = model.sample(2, torch.Generator().manual_seed(3))
    assert samples.shape == (2, 2, 16, 16)
    torch.testing.assert_close(samples, expected.sample(2, torch.Generator().manual_seed(3)))

    checkpoint = torch.load(path, weights_only=True)
    del checkpoint["pdegen"]["module"]
    torch.save(checkpoint, workdir / "unnamed.ckpt")
    with pytest.raises(ValueError, match="does not record its module class.*load it with its class"):
        pdegen.load(workdir / "unnamed.ckpt")
    checkpoint["pdegen"]["module"] = "pathlib:Path"
    torch.save(checkpoint, workdir / "foreign.ckpt")
    with pytest.raises(TypeError, match="pathlib:Path, which is not a LightningModule"):
        pdegen.load(workdir / "foreign.ckpt")
    checkpoint["pdegen"]["module"] = "not_imported_here:Model"
    torch.save(checkpoint, workdir / "elsewhere.ckpt")
    with pytest.raises(ValueError, match="outside pdegen.*import not_imported_here first"):
        pdegen.load(workdir / "elsewhere.ckpt")
    with pytest.raises(FileNotFoundError, match="missing.ckpt"):
        pdegen.load(workdir / "missing.ckpt")
