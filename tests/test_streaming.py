"""Splits read from the dataset file when asked (datamodules.samples): the same samples, batches and statistics
as the in-memory splits, only the asked rows read, corrupt values caught, float32 storage."""

from __future__ import annotations

import json
import pickle

import h5py
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler

from datamodules import FileSamples, PDEDataModule, TensorSamples, TrajectoryWindows, channel_stats
from pdegen.io import DatasetWriter, load_samples
from pdegen.pdes import KuramotoSivashinsky


def every(samples) -> torch.Tensor:
    return samples.take(range(len(samples)))


def record_reads(monkeypatch) -> list[int]:
    """The file rows every FileSamples read touches, in order."""
    rows: list[int] = []
    read = FileSamples._read

    def spy(self, wanted, index=(), file=None):
        rows.extend(int(r) for r in wanted)
        return read(self, wanted, index, file)

    monkeypatch.setattr(FileSamples, "_read", spy)
    return rows


def test_file_splits_serve_what_memory_serves(darcy_file, small_darcy):
    """Streaming and in-memory splits agree on every sample, on batch reads (unsorted, repeated indices), on the
    seeded training batches (two workers reading the file against none) and on the statistics."""
    options = dict(pde=small_darcy, file=str(darcy_file), batch_size=8, splits=(0.5, 0.25, 0.25), seed=1)
    streamed, memory = PDEDataModule(**options, num_workers=2), PDEDataModule(**options, in_memory=True)
    streamed.setup(), memory.setup()
    assert isinstance(streamed.datasets["train"], FileSamples) and isinstance(memory.datasets["val"], TensorSamples)
    for split in ("train", "val", "test"):
        assert torch.equal(every(streamed.datasets[split]), every(memory.datasets[split])), split
        assert torch.equal(streamed.datasets[split][3], memory.datasets[split][3])
    indices = [5, 1, 5, 0, 11]
    assert torch.equal(streamed.datasets["val"].take(indices), memory.datasets["val"].take(indices))
    assert streamed.datasets["val"].take([]).shape == (0, 2, 16, 16)
    for stream_batch, memory_batch in zip(streamed.train_dataloader(), memory.train_dataloader(), strict=True):
        assert stream_batch.dtype == torch.float64 and torch.equal(stream_batch, memory_batch)
    for stream_stat, memory_stat in zip(streamed.normalizer_stats, memory.normalizer_stats):
        assert torch.allclose(stream_stat, memory_stat, rtol=1e-12, atol=0)
    assert streamed.residual_scales == pytest.approx(memory.residual_scales, rel=1e-12)
    data, _ = load_samples(darcy_file, dtype=torch.float64)
    assert torch.equal(every(streamed.datasets["train"]).sort(dim=0).values,
                       data[torch.randperm(48, generator=torch.Generator().manual_seed(0))[:24]].sort(dim=0).values)


def test_one_pass_statistics_match_two_passes_where_the_naive_formula_fails():
    """Chan's update over blocks of 256 equals the two-pass mean and unbiased std (to 1e-9) on data whose mean is
    10⁸ times its spread, where E[x²] − E[x]² loses every digit."""
    generator = torch.Generator().manual_seed(0)
    data = 1e6 + 1e-2 * torch.randn(1000, 3, 4, 5, generator=generator, dtype=torch.float64)
    data[:, 1] *= -3
    mean, std = channel_stats(TensorSamples(data))
    flat = data.transpose(0, 1).reshape(3, -1)
    assert torch.allclose(mean, flat.mean(dim=1), rtol=1e-14)
    assert torch.allclose(std, flat.std(dim=1), rtol=1e-9)
    naive = ((flat**2).mean(dim=1) - flat.mean(dim=1) ** 2).clamp(min=0).sqrt()
    assert not torch.allclose(naive, flat.std(dim=1), rtol=1e-2), "the test data must defeat the naive formula"
    with pytest.raises(ValueError, match="at least two values"):
        channel_stats(TensorSamples(torch.zeros(0, 1, 1, dtype=torch.float64)))


def test_a_rank_reads_only_its_shard_and_the_statistics_only_the_training_split(darcy_file, small_darcy, monkeypatch):
    """Under a two-rank DistributedSampler, rank 1's loader reads exactly the file rows of its half of the training
    split, each once; the statistics pass reads the training rows, none of the held-out ones."""
    dm = PDEDataModule(pde=small_darcy, file=str(darcy_file), batch_size=4, splits=(0.5, 0.25, 0.25))
    dm.setup()
    train = dm.datasets["train"]
    rows = record_reads(monkeypatch)
    sampler = DistributedSampler(train, num_replicas=2, rank=1, shuffle=True, seed=0)
    batches = list(DataLoader(train, batch_size=4, sampler=sampler))
    assert sum(len(b) for b in batches) == 12
    assert sorted(rows) == sorted(int(train.rows[i]) for i in sampler)
    rows.clear()
    dm.normalizer_stats  # noqa: B018 - a cached property: the pass happens here
    held_out = {int(r) for split in ("val", "test") for r in dm.datasets[split].rows}
    assert sorted(rows) == sorted(int(r) for r in train.rows) and not held_out & set(rows)


def test_a_corrupt_value_fails_the_read_that_meets_it(tmp_path, darcy_file, small_darcy):
    path = tmp_path / "corrupt.h5"
    path.write_bytes(darcy_file.read_bytes())
    with h5py.File(path, "r+") as f:
        f["u"][7, 3, 3] = np.nan
    samples = FileSamples(path, small_darcy.channels, range(48), small_darcy.grid.shape)
    assert torch.isfinite(samples[6]).all()
    with pytest.raises(ValueError, match=r"corrupt\.h5 holds NaN or inf.*regenerate"):
        samples[7]
    with pytest.raises(ValueError, match="NaN or inf"):
        channel_stats(samples)


def test_a_pickled_split_opens_its_own_file(darcy_file, small_darcy):
    """What a spawned DataLoader worker gets: no handle of its parent's, and the same samples."""
    samples = FileSamples(darcy_file, small_darcy.channels, [4, 2], small_darcy.grid.shape)
    first = samples[0]
    copy = pickle.loads(pickle.dumps(samples))
    assert copy._file is None and torch.equal(copy[0], first)
    samples.close()
    assert torch.equal(samples[1], copy[1])


def test_windows_of_a_file_equal_those_of_the_tensor(tmp_path):
    pde = KuramotoSivashinsky(resolution=64, num_states=12)
    data = torch.randn(3, *pde.sample_shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    path = tmp_path / "ks.h5"
    with DatasetWriter(path, pde, 3) as writer:
        writer.write(0, data)
    from_file = TrajectoryWindows(FileSamples(path, pde.channels, [2, 0, 1], pde.grid.shape), 4)
    in_memory = TrajectoryWindows(data[[2, 0, 1]], 4)
    assert len(from_file) == len(in_memory) == 27
    for index in (0, 8, 9, 26):
        assert torch.equal(from_file[index], in_memory[index])
    assert torch.equal(from_file.take(torch.tensor([26, 3])), in_memory.take(torch.tensor([26, 3])))
    with pytest.raises(ValueError, match="does not fit trajectories of 12 states"):
        TrajectoryWindows(from_file.trajectories, 13)


def test_float32_storage_halves_the_file_and_is_served_in_float64(tmp_path, small_darcy):
    options = dict(pde=small_darcy, num_samples=6, cache_dir=str(tmp_path), splits=(0.5, 0.5, 0.0))
    wide, narrow = PDEDataModule(**options), PDEDataModule(**options, storage_dtype="float32")
    for dm in (wide, narrow):
        dm.prepare_data()
        dm.setup()
    assert narrow.path != wide.path and narrow.path.name.endswith("_float32.h5")
    with h5py.File(narrow.path) as f:
        assert f["u"].dtype == np.float32
    served = every(narrow.datasets["train"])
    assert served.dtype == torch.float64
    assert torch.equal(served, every(wide.datasets["train"]).float().double())


def test_bench_loading_measures_a_fit_and_compares_sizes(tmp_path, load_tool):
    """tools/bench_loading.py: the data file repeats its solved samples, one fit (one rank, in this process)
    reports positive rates and its memory, and the table gives the peak-memory ratio between the sizes."""
    bench_loading = load_tool("bench_loading")
    file = bench_loading.make_dataset(tmp_path / "darcy.h5", 10, resolution=16, base=4)
    data, info = load_samples(file, dtype=torch.float64)
    assert info.num_samples == 10 and torch.equal(data[4:8], data[:4]) and torch.equal(data[8:], data[:2])
    bench_loading.child(file, "stream", ranks=1, workers=0, batch_size=4, steps=3, out=tmp_path)
    result = json.loads((tmp_path / "rank0.json").read_text())
    assert result["samples"] == 10 and result["mode"] == "stream" and result["rank"] == 0
    assert result["loader_samples_per_s"] > 0 and result["train_samples_per_s"] > 0
    # in this process the peak may predate the fit, and ru_maxrss lags VmRSS by a page or so: growth ~ 0 here
    assert result["peak_rss_mib"] > 0 and -1 < result["growth_mib"] <= result["peak_rss_mib"]
    other = {**result, "samples": 100, "peak_rss_mib": 2 * result["peak_rss_mib"], "loader_samples_per_s": 1.0,
             "train_samples_per_s": 4.0}
    text = bench_loading.table([result, other])
    assert "stream: peak RSS per rank at 100 samples / at 10: 2.00×" in text
    assert "loader / training rate, lowest: 0.2× (100 samples, stream, rank 0)" in text


def test_files_of_other_layouts_read_the_same(tmp_path, darcy_file, small_darcy):
    """A file whose channels are compressed, chunked otherwise or contiguous (another writer's) serves the same
    samples as pdegen's one-chunk-per-sample file."""
    rows = [40, 3, 3, 17]
    expected = FileSamples(darcy_file, small_darcy.channels, rows, small_darcy.grid.shape).take(range(4))
    for name, options in {"gzip": {"compression": "gzip", "chunks": (4, 16, 16)}, "contiguous": {}}.items():
        path = tmp_path / f"{name}.h5"
        with h5py.File(darcy_file) as source, h5py.File(path, "w") as f:
            for channel in small_darcy.channels:
                f.create_dataset(channel, data=source[channel][()], **options)
        samples = FileSamples(path, small_darcy.channels, rows, small_darcy.grid.shape)
        assert torch.equal(samples.take(range(4)), expected), name
        assert torch.equal(samples.states(1, 2, 5), expected[1][:, 2:5]), name
