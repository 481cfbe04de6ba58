"""Dataset files, generation, the pdegen-data CLI and the DataModule."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from datamodules import PDEDataModule
from pdegen.data_cli import main as data_main
from pdegen.datagen import generate_dataset
from pdegen.io import DatasetWriter, load_samples, read_info
from pdegen.pdes import Darcy, get_pde


def test_file_layout_and_attributes(darcy_file, small_darcy):
    with h5py.File(darcy_file, "r") as f:
        assert set(f.keys()) == {"a", "u", "sample", "x", "y"}  # the channels and their coordinates
        assert f["a"].shape == f["u"].shape == (48, 16, 16)
        assert f.attrs["pde"] == "darcy" and int(f.attrs["seed"]) == 3
        assert "pdegen_version" in f.attrs and "grid" in f.attrs
    data, info = load_samples(darcy_file, dtype=torch.float64)
    assert data.shape == (48, 2, 16, 16)
    assert info.pde.describe() == small_darcy.describe()
    assert set(torch.unique(data[:, 0]).tolist()) <= {3.0, 12.0}


def test_same_seed_same_data_whatever_the_batch_size(tmp_path, small_darcy, darcy_file):
    other = tmp_path / "again.h5"
    generate_dataset(small_darcy, 48, seed=3, output=other, batch_size=64 * 3, progress=False)
    a, _ = load_samples(darcy_file, dtype=torch.float64)
    b, _ = load_samples(other, dtype=torch.float64)
    assert torch.equal(a, b)
    with pytest.raises(FileExistsError, match="--overwrite"):
        generate_dataset(small_darcy, 48, seed=4, output=other, progress=False)
    assert torch.equal(load_samples(other, dtype=torch.float64)[0], a), "refused: the file is untouched"
    generate_dataset(small_darcy, 48, seed=4, output=other, progress=False, overwrite=True)
    c, _ = load_samples(other, dtype=torch.float64)
    assert not torch.equal(a[:, 0], c[:, 0])


def test_failed_write_leaves_no_file(tmp_path, small_darcy):
    path = tmp_path / "broken.h5"
    with pytest.raises(RuntimeError, match="boom"), DatasetWriter(path, small_darcy, 4) as writer:
        writer.write(0, small_darcy.generate(2))
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(RuntimeError, match="never written"), DatasetWriter(path, small_darcy, 4) as writer:
        writer.write(0, small_darcy.generate(2))
    assert list(tmp_path.iterdir()) == []


def test_bad_files_give_clear_errors(tmp_path, darcy_file):
    with pytest.raises(FileNotFoundError, match="pdegen-data generate"):
        read_info(tmp_path / "missing.h5")
    corrupt = tmp_path / "corrupt.h5"
    corrupt.write_bytes(b"this is not hdf5" * 10)
    with pytest.raises(ValueError, match="not a readable HDF5 file"):
        read_info(corrupt)
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["u"] = np.zeros((2, 16, 16))
    with pytest.raises(ValueError, match="not written by pdegen-data"):
        read_info(foreign)
    partial = tmp_path / "partial.h5"
    with h5py.File(darcy_file, "r") as src, h5py.File(partial, "w") as f:
        f.attrs.update(dict(src.attrs))
        f["a"] = src["a"][()]
    with pytest.raises(ValueError, match="lacks the dataset 'u'"):
        read_info(partial)


def test_unknown_pde():
    with pytest.raises(ValueError, match="unknown PDE 'heat'.*darcy"):
        get_pde("heat")


def test_data_cli_generate_and_info(tmp_path, capsys):
    out = tmp_path / "cli.h5"
    assert data_main(["generate", "darcy", "--num-samples", "5", "--resolution", "16", "--seed", "1",
                      "--output", str(out), "--no-progress", "--set", "a_high=10.0"]) == 0
    assert read_info(out).pde.params()["a_high"] == 10.0
    assert data_main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "channel 'u': shape (5, 16, 16)" in text and "residual of the first 5 samples" in text
    interior = float(text.split("interior ")[1].split()[0])
    assert interior < 1e-8, "solver output must satisfy the discrete equation to round-off"
    assert data_main(["generate", "nope", "--num-samples", "2", "--output", str(out)]) == 2
    assert "unknown PDE 'nope'" in capsys.readouterr().err


@pytest.mark.parametrize(("arguments", "message"), [
    (["--set", "a_hihg=10"], "no parameter 'a_hihg': did you mean 'a_high'\\? its parameters are resolution, a_high"),
    (["--set", "a_high=abc"], "a_high='abc' is not a valid float"),
    (["--device", "gpu"], "unknown device 'gpu'"),
    (["--batch-size", "0"], "--batch-size: must be at least 1"),
], ids=["unknown key", "wrong type", "unknown device", "zero batch"])
def test_bad_generate_arguments_fail_before_any_work_naming_the_fix(tmp_path, capsys, arguments, message):
    out = tmp_path / "never.h5"
    try:
        code = data_main(["generate", "darcy", "--num-samples", "2", "--output", str(out), *arguments])
    except SystemExit as exit_:  # argparse's own refusal
        code = exit_.code
    assert code == 2 and re.search(message, capsys.readouterr().err) and not out.exists()
    with pytest.raises(ValueError, match="burgers has no parameter 'nu': its parameters are .*viscosity"):
        get_pde("burgers", nu=0.1)


def test_info_fails_on_non_finite_values_mismatched_channels_and_unknown_parameters(tmp_path, darcy_file, capsys):
    def copy(name: str, edit) -> Path:
        path = tmp_path / name
        with h5py.File(darcy_file, "r") as src, h5py.File(path, "w") as f:
            f.attrs.update(dict(src.attrs))
            f["a"], f["u"] = src["a"][()], src["u"][()]
            edit(f)
        return path

    def poison(f):
        u = f["u"][()]
        u[3, 2, 2] = np.nan
        del f["u"]
        f["u"] = u

    assert data_main(["info", str(copy("nan.h5", poison))]) == 1
    assert "non-finite values in channel 'u' (1 NaN/inf values)" in capsys.readouterr().err

    def truncate(f):
        u = f["u"][:-5]
        del f["u"]
        f["u"] = u

    with pytest.raises(ValueError, match="different numbers of samples \\(a 48, u 43\\)"):
        read_info(copy("short.h5", truncate))

    def newer(f):
        f.attrs["pde_params"] = json.dumps({**json.loads(f.attrs["pde_params"]), "porosity": 0.3})

    with pytest.raises(ValueError, match="do not describe a PDE this pdegen knows.*'porosity'"):
        read_info(copy("newer.h5", newer))
    with pytest.raises(SystemExit):
        data_main(["info", str(darcy_file), "--max-samples", "0"])


def every(samples) -> torch.Tensor:
    """All the samples of a split, stacked."""
    return samples.take(range(len(samples)))


def test_datamodule_split_and_normalisation(tmp_path, darcy_file, small_darcy):
    dm = PDEDataModule(pde=small_darcy, file=str(darcy_file), batch_size=8, splits=(0.5, 0.25, 0.25))
    dm.prepare_data()
    dm.setup("fit")
    sizes = {k: len(v) for k, v in dm.datasets.items()}
    assert sizes == {"train": 24, "val": 12, "test": 12}
    everything = torch.cat([every(dm.datasets[k]) for k in ("train", "val", "test")])
    data, _ = load_samples(darcy_file, dtype=torch.float64)
    assert torch.equal(everything.sort(dim=0).values, data.sort(dim=0).values), "split must be a partition"
    again = PDEDataModule(pde=small_darcy, file=str(darcy_file), splits=(0.5, 0.25, 0.25))
    again.setup()
    assert torch.equal(every(again.datasets["val"]), every(dm.datasets["val"])), "split must be deterministic"
    mean, std = dm.normalizer_stats
    train = every(dm.datasets["train"])
    assert torch.allclose(mean, train.mean(dim=(0, 2, 3)))
    assert torch.allclose(std, train.transpose(0, 1).reshape(2, -1).std(dim=1))
    assert next(iter(dm.train_dataloader())).shape == (8, 2, 16, 16)


def test_datamodule_serves_what_the_model_trains_on_and_tells_it_the_epoch(darcy_file, small_darcy):
    """A model's training_data (a student's noise) replaces the training split in the same batches and
    seeded shuffle; the shuffle's epoch reaches the dataset (fresh noise per epoch, the same on a rerun),
    and the held-out splits stay the family's samples."""
    from types import SimpleNamespace

    from datamodules.generated import GaussianNoise

    dm = PDEDataModule(pde=small_darcy, file=str(darcy_file), batch_size=8, splits=(0.5, 0.25, 0.25), num_workers=2)
    dm.setup()
    model = SimpleNamespace(training_data=lambda samples: GaussianNoise(len(samples), small_darcy.sample_shape, 3))
    dm.trainer = SimpleNamespace(lightning_module=model)
    loader = dm.train_dataloader()
    assert isinstance(loader.dataset, GaussianNoise) and len(loader.dataset) == 24 and loader.num_workers == 0

    def epoch(e: int) -> torch.Tensor:
        loader.sampler.set_epoch(e)  # what Lightning calls before each epoch
        return torch.cat(list(loader))

    first = epoch(0)
    assert first.shape == (24, 2, 16, 16) and torch.equal(first, epoch(0))
    assert not torch.allclose(first.sum(0), epoch(1).sum(0), atol=1e-3), "other noise, not just another order"
    assert torch.equal(next(iter(dm.val_dataloader())), dm.datasets["val"].take(range(8)))


def test_datamodule_generates_into_cache_and_rejects_mismatch(tmp_path, darcy_file):
    dm = PDEDataModule(pde=Darcy(resolution=16), num_samples=6, cache_dir=str(tmp_path / "cache"))
    dm.prepare_data()
    assert dm.path.exists() and dm.path.parent == tmp_path / "cache"
    dm.setup()
    solver_choice_only = PDEDataModule(pde=Darcy(resolution=16, solver="torch", num_workers=1), file=str(darcy_file))
    solver_choice_only.setup()  # how the data were solved does not make them another dataset
    wrong = PDEDataModule(pde=Darcy(resolution=16, a_high=9.0), file=str(darcy_file))
    with pytest.raises(ValueError, match="point `file` at a matching dataset"):
        wrong.setup()
    with pytest.raises(ValueError, match="splits"):
        PDEDataModule(Darcy(resolution=16), splits=(0.5, 0.5, 0.5))


def test_shard_arguments_are_checked(tmp_path, capsys):
    out = str(tmp_path / "x.h5")
    # 48 samples are a single seed block: it cannot be split three ways
    assert data_main(["generate", "darcy", "--num-samples", "48", "--resolution", "16", "--shard", "0",
                      "--num-shards", "3", "--output", out, "--no-progress"]) == 2
    assert "use at most 1 shards" in capsys.readouterr().err
    assert data_main(["generate", "darcy", "--num-samples", "200", "--resolution", "16", "--shard", "3",
                      "--num-shards", "3", "--output", out, "--no-progress"]) == 2
    assert "--shard must be in 0..2" in capsys.readouterr().err


def test_sigterm_during_generate_exits_143_and_leaves_no_temporary_file(tmp_path):
    out = tmp_path / "big.h5"
    process = subprocess.Popen([sys.executable, "-m", "pdegen.data_cli", "generate", "darcy", "--num-samples",
                                "100000", "--resolution", "16", "--batch-size", "64", "--output", str(out),
                                "--no-progress"], stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".big.h5.tmp-*")) and time.monotonic() < deadline:  # writing has begun
        time.sleep(0.05)
    assert list(tmp_path.glob(".big.h5.tmp-*")), "generation never started"
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 143
    assert list(tmp_path.iterdir()) == [], "no temporary file, lock or partial output left"


def test_merge_reproduces_the_unsharded_file(tmp_path, capsys):
    pde = Darcy(resolution=8)
    whole = tmp_path / "whole.h5"
    generate_dataset(pde, 200, seed=5, output=whole, progress=False)
    parts = [tmp_path / f"p{i}.h5" for i in range(3)]
    for i, part in enumerate(parts):
        generate_dataset(pde, 200, seed=5, output=part, progress=False, shard=i, num_shards=3)
    sizes = [read_info(p).num_samples for p in parts]
    assert sum(sizes) == 200 and min(sizes) > 0
    merged = tmp_path / "merged.h5"
    assert data_main(["merge", *map(str, reversed(parts)), "--output", str(merged)]) == 0
    a, _ = load_samples(whole, dtype=torch.float64)
    b, info = load_samples(merged, dtype=torch.float64)
    assert torch.equal(a, b) and info.num_samples == 200
    with pytest.raises(ValueError, match=r"shards \[1\] of 3 are missing"):
        from pdegen.datagen import merge_shards

        merge_shards([parts[0], parts[2]], tmp_path / "bad.h5")
    kept = parts[1].read_bytes()
    for flags in ([], ["--overwrite"]):  # onto one of its own inputs: never, even when told to overwrite
        assert data_main(["merge", *map(str, parts), "--output", str(parts[1]), *flags]) == 2
        assert "is one of the shards being merged" in capsys.readouterr().err and parts[1].read_bytes() == kept
    assert data_main(["merge", *map(str, parts), "--output", str(merged)]) == 2
    assert "exists: pass --overwrite" in capsys.readouterr().err
    assert data_main(["merge", *map(str, parts), "--output", str(merged), "--overwrite"]) == 0


def test_generate_refuses_existing_outputs_folders_and_a_concurrent_writer_before_any_work(tmp_path, capsys,
                                                                                         darcy_file):
    def generate(output, *flags) -> int:
        return data_main(["generate", "poisson", "--num-samples", "2", "--resolution", "16", "--output",
                          str(output), "--no-progress", *flags])

    kept = darcy_file.read_bytes()
    assert generate(darcy_file) == 2 and darcy_file.read_bytes() == kept  # a dataset of another family
    assert f"{darcy_file} exists: pass --overwrite" in capsys.readouterr().err
    assert generate(tmp_path) == 2 and "is a folder: give a file path" in capsys.readouterr().err
    out = tmp_path / "p.h5"
    lock = tmp_path / ".p.h5.lock"
    lock.write_text(f"{socket.gethostname()} {os.getpid()}")  # a live writer of the same path
    assert generate(out) == 2 and "another pdegen process" in capsys.readouterr().err
    assert lock.exists() and sorted(p.name for p in tmp_path.iterdir()) == [".p.h5.lock"]
    lock.write_text(f"{socket.gethostname()} 0")  # a writer that is gone
    assert generate(out) == 0 and sorted(p.name for p in tmp_path.iterdir()) == ["p.h5"]
    assert generate(out) == 2 and generate(out, "--overwrite") == 0


def test_generation_without_room_is_refused_before_any_sample_and_a_failed_write_leaves_nothing(
        tmp_path, monkeypatch, capsys):
    """Case 8: the file system's free space is checked before the first solve (a dataset that cannot fit was
    found out only when the disk filled), and a write that fails midway removes the temporary file and lock."""
    import shutil

    from pdegen import io

    monkeypatch.setattr(io.shutil, "disk_usage", lambda folder: shutil._ntuple_diskusage(2**30, 2**30 - 2**20, 2**20))
    monkeypatch.setattr(Darcy, "solve", lambda *args: pytest.fail("solved a sample although the file cannot fit"))
    out = tmp_path / "new" / "darcy.h5"
    assert data_main(["generate", "darcy", "--resolution", "16", "--num-samples", "300", "--output", str(out)]) == 2
    assert re.search(r"needs 1\.1\d MiB and its file system has 1 MiB free", capsys.readouterr().err)
    assert not out.parent.exists(), "nothing written"
    monkeypatch.undo()

    writes = []

    def full_after_one_batch(self, start, batch):
        if writes:
            raise OSError(28, "No space left on device")
        writes.append(start)
        original(self, start, batch)

    original = DatasetWriter.write
    monkeypatch.setattr(DatasetWriter, "write", full_after_one_batch)
    assert data_main(["generate", "darcy", "--resolution", "8", "--num-samples", "100", "--batch-size", "32",
                      "--output", str(out), "--no-progress"]) == 2
    assert "No space left on device" in capsys.readouterr().err and writes == [0]
    assert list(out.parent.iterdir()) == [], "no temporary file, no lock"


FULL_DISK = """
import sys
from pdegen import io
io.check_free_space = lambda path, needed: None  # as if another job filled the disk after the check
from pdegen.data_cli import main
sys.exit(main(["generate", "darcy", "--resolution", "16", "--num-samples", "2000", "--output", sys.argv[1],
               "--no-progress"]))
"""


def test_generation_onto_a_full_file_system_fails_with_one_message_and_frees_the_disk(tmp_path):
    """On a real 1 MiB file system: an error line and exit 2 (there were pages of HDF5 errors, a segmentation
    fault, and a temporary file keeping the disk full)."""
    small = tmp_path / "small"
    small.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(small)], capture_output=True)
    if mounted.returncode:
        pytest.skip(f"cannot mount a small file system here: {mounted.stderr.decode().strip()}")
    try:
        result = subprocess.run([sys.executable, "-c", FULL_DISK, str(small / "darcy.h5")], capture_output=True,
                                text=True, timeout=120)
        assert result.returncode == 2, result.stderr[-3000:]
        assert result.stderr.startswith("pdegen-data: error: [Errno 28] could not reserve the space of")
        assert "Exception ignored" not in result.stderr and "Traceback" not in result.stderr
        assert list(small.iterdir()) == [], "the disk is left as it was"
    finally:
        subprocess.run(["umount", str(small)], check=True)


def test_every_small_output_is_written_whole_and_durably_or_not_at_all(tmp_path, monkeypatch):
    """Reports, metrics, task arrays and exports go through one atomic_path: flushed to disk and renamed
    (a crash leaves the old file or the whole new one), and a failed write leaves the old file and no
    temporary file."""
    from pdegen import io

    synced = []
    monkeypatch.setattr(io.os, "fsync", lambda fd: synced.append(fd))
    path = io.write_text_atomic(tmp_path / "report.md", "old")
    assert path.read_text() == "old" and len(synced) == 2, "the file and its folder"
    with pytest.raises(RuntimeError, match="midway"), io.atomic_path(path) as tmp:
        tmp.write_text("half")
        raise RuntimeError("midway")
    assert path.read_text() == "old" and list(tmp_path.iterdir()) == [path]
