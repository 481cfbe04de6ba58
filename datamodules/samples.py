"""A split of a dataset as a torch Dataset: held in memory (:class:`TensorSamples`) or read from the file when
asked (:class:`FileSamples`, memory independent of the file's size), and the per-channel statistics of either
in one streaming pass (:func:`channel_stats`)."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import h5py
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

STATS_BLOCK = 256
"""Samples read at once by the streaming passes (:func:`channel_stats`, :meth:`FileSamples.blocks`)."""


class TensorSamples(Dataset):
    """Samples ``(N, C, *grid)`` held in memory, served one by one as ``(C, *grid)`` tensors."""

    def __init__(self, data: Tensor) -> None:
        self.data = data

    def __len__(self) -> int:
        return self.data.shape[0]

    def __getitem__(self, index: int) -> Tensor:
        return self.data[index]

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape[1:])

    def take(self, indices: Sequence[int] | Tensor) -> Tensor:
        """The samples at ``indices``, stacked ``(len(indices), C, *grid)``."""
        return self.data[torch.as_tensor(indices, dtype=torch.long)]

    def states(self, index: int, start: int, stop: int) -> Tensor:
        """States ``start .. stop - 1`` of trajectory ``index``: ``(C, stop - start, *space)``."""
        return self.data[index, :, start:stop]

    def blocks(self, size: int = STATS_BLOCK) -> Iterator[Tensor]:
        """Every sample, in order, ``size`` at a time."""
        return iter(self.data.split(size))


class FileSamples(Dataset):
    """The samples ``rows`` of a pdegen dataset file (one HDF5 dataset per channel, ``(N, *grid)``), read only
    when asked: memory is that of the samples served, whatever the file's size, and under DDP each rank reads
    only the samples its sampler gives it. Served as float64 ``(C, *grid)`` (a float32 file is widened per
    batch). Each process (a DataLoader worker included) opens the file on its first read; a batch
    (``__getitems__``) is read in one call. Non-finite values fail the read that meets them."""

    def __init__(self, path: str | Path, channels: Sequence[str], rows: Sequence[int] | Tensor,
                 sample_shape: Sequence[int]) -> None:
        self.path, self.channels = Path(path), tuple(channels)
        self.rows = torch.as_tensor(rows, dtype=torch.long).numpy()
        self.sample_shape = (len(self.channels), *sample_shape)
        self._file: h5py.File | None = None
        self._pid: int | None = None

    def __len__(self) -> int:
        return len(self.rows)

    def __getstate__(self) -> dict:  # a worker started by spawn opens its own handle
        return {**self.__dict__, "_file": None, "_pid": None}

    def _open(self) -> h5py.File:
        if self._file is None or self._pid != os.getpid():  # a forked worker must not share its parent's handle
            self._file, self._pid = h5py.File(self.path, "r"), os.getpid()
        return self._file

    def _read(self, rows: np.ndarray, index: tuple = (), file: h5py.File | None = None) -> Tensor:
        """File rows ``rows`` (any order) of every channel, ``index`` applied after the row axis; from ``file``,
        or this process's own handle. A whole sample stored as one uncompressed chunk (pdegen's writer) is
        copied straight from its chunk; other layouts are read row by row (h5py's fancy indexing is several
        times slower than either)."""
        file = file if file is not None else self._open()
        datasets = [file[name] for name in self.channels]
        shape = datasets[0][(0, *index)].shape if index else datasets[0].shape[1:]
        out = np.empty((len(rows), len(datasets), *shape), dtype=np.result_type(*(d.dtype for d in datasets)))
        for c, dataset in enumerate(datasets):
            whole_chunks = (not index and dataset.chunks == (1, *shape) and dataset.dtype == out.dtype
                            and dataset.dtype.isnative and dataset.id.get_create_plist().get_nfilters() == 0)
            origin = (0,) * len(shape)
            for i, row in enumerate(rows):
                if whole_chunks:
                    chunk = dataset.id.read_direct_chunk((int(row), *origin))[1]
                    out[i, c] = np.frombuffer(chunk, dtype=out.dtype).reshape(shape)
                else:
                    dataset.read_direct(out, np.s_[(int(row), *index)], np.s_[i, c])
        if not np.isfinite(out).all():
            raise ValueError(f"{self.path} holds NaN or inf values (among samples {rows.tolist()[:8]}): the file is "
                             "corrupt, regenerate it")
        return torch.from_numpy(out).to(torch.float64)

    def take(self, indices: Sequence[int] | Tensor) -> Tensor:
        """The samples at ``indices`` (positions in this split), stacked ``(len(indices), C, *grid)``."""
        return self._read(self.rows[torch.as_tensor(indices, dtype=torch.long).numpy().reshape(-1)])

    def __getitem__(self, index: int) -> Tensor:
        return self._read(self.rows[[int(index)]])[0]

    def __getitems__(self, indices: list[int]) -> list[Tensor]:
        return list(self.take(indices))

    def states(self, index: int, start: int, stop: int) -> Tensor:
        """States ``start .. stop - 1`` of trajectory ``index``: ``(C, stop - start, *space)``, only those read."""
        return self._read(self.rows[[int(index)]], (slice(start, stop),))[0]

    def blocks(self, size: int = STATS_BLOCK) -> Iterator[Tensor]:
        """Every sample of the split, ``size`` at a time, in file order (each block read in one pass), through a
        handle of its own (closed after: no open file for DataLoader workers to inherit)."""
        rows = np.sort(self.rows)
        with h5py.File(self.path, "r") as file:
            for lo in range(0, len(rows), size):
                yield self._read(rows[lo:lo + size], file=file)

    def close(self) -> None:
        if self._file is not None and self._pid == os.getpid():
            self._file.close()
        self._file = self._pid = None


def channel_stats(samples: TensorSamples | FileSamples) -> tuple[Tensor, Tensor]:
    """Per-channel mean and (unbiased) std over every sample and grid point, float64, in one pass of
    :data:`STATS_BLOCK` samples at a time (Chan et al.'s pairwise update of the mean and the sum of squared
    deviations: as accurate as the two-pass formula, and memory of one block)."""
    count, mean, m2 = 0, None, None
    for block in samples.blocks():
        flat = block.transpose(0, 1).reshape(block.shape[1], -1)
        n = flat.shape[1]
        block_mean = flat.mean(dim=1)
        block_m2 = ((flat - block_mean[:, None]) ** 2).sum(dim=1)
        if mean is None:
            count, mean, m2 = n, block_mean, block_m2
            continue
        delta = block_mean - mean
        total = count + n
        mean = mean + delta * (n / total)
        m2 = m2 + block_m2 + delta**2 * (count * n / total)
        count = total
    if mean is None or count < 2:
        raise ValueError("the statistics of a split need at least two values per channel: raise num_samples")
    return mean, (m2 / (count - 1)).sqrt()
