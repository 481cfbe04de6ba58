"""Helpers shared by the readers: the result type, layout errors, file loading, periodic resampling."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch
from torch import Tensor

from pdegen.pdes import PDE


@dataclass
class ImportedData:
    """Samples read from a public layout, in pdegen's conventions.

    ``samples``: ``(N, C, *grid)`` float64 in physical units, channels in ``pde.channels`` order;
    ``pde``: the family with the source's physical parameters (its ``residual`` is what
    ``pdegen-data info`` reports); ``source``: where the data came from (paper, repository, file);
    ``notes``: the scaling undone, the source's residual convention and how far ours applies.
    """

    samples: Tensor
    pde: PDE
    source: str
    notes: str

    def __post_init__(self) -> None:
        self.samples = self.samples.to(torch.float64)
        self.pde.check_sample(self.samples)
        if not bool(torch.isfinite(self.samples).all()):
            raise ValueError(f"{self.source}: the file holds NaN or inf values; it is corrupt or not in "
                             f"the expected layout")

    @property
    def num_samples(self) -> int:
        return self.samples.shape[0]


class LayoutError(ValueError):
    """A file that is not in the layout a reader expects; the message names the expected layout."""


def existing(path: str | Path, what: str) -> Path:
    """``path`` as a Path, or a FileNotFoundError saying which file of which layout is missing."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{what} not found: {path}")
    return path


def open_hdf5(path: Path, expected: str) -> h5py.File:
    """``path`` opened for reading, or a LayoutError saying it is not HDF5 and naming the ``expected`` layout."""
    try:
        return h5py.File(path, "r")
    except OSError as err:
        raise LayoutError(f"{path} is not a readable HDF5 file ({err}); expected {expected}") from err


def sample_limit(num_samples: int | None) -> int | None:
    """``num_samples`` checked: None (read all) or a positive integer."""
    if num_samples is None:
        return None
    if isinstance(num_samples, bool) or int(num_samples) != num_samples or num_samples < 1:
        raise ValueError(f"num_samples must be None (all) or a positive integer, got {num_samples!r}")
    return int(num_samples)


def take(count: int, num_samples: int | None) -> int:
    """How many of ``count`` stored samples to read (all, or the first ``num_samples``)."""
    limit = sample_limit(num_samples)
    return count if limit is None else min(count, limit)


def natural_key(path: Path) -> list[object]:
    """Sort key that orders ``merge_2.npy`` before ``merge_10.npy`` (digits compared as integers)."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def load_mat(path: Path) -> dict[str, np.ndarray]:
    """The arrays of a MATLAB file, in MATLAB's axis order, whatever its version.

    ``-v7`` and older files go through ``scipy.io.loadmat``; ``-v7.3`` files are HDF5, whose
    datasets h5py returns with the axes reversed (MATLAB is column-major), so they are transposed
    back.  Keys starting with ``__`` (MATLAB's header) are dropped.
    """
    if h5py.is_hdf5(path):
        try:
            with h5py.File(path, "r") as f:
                return {k: np.asarray(f[k][()]).T for k in f.keys() if isinstance(f[k], h5py.Dataset)}
        except OSError as err:
            raise LayoutError(f"{path} is an unreadable HDF5 (MATLAB -v7.3) file ({err})") from err
    import scipy.io  # here: slow to import, and only MATLAB files need it

    try:
        raw = scipy.io.loadmat(path)
    except (ValueError, TypeError, OSError, scipy.io.matlab.MatReadError) as err:
        raise LayoutError(f"{path} is neither a MATLAB v5/v7 nor a v7.3 (HDF5) file ({err})") from err
    return {k: np.asarray(v) for k, v in raw.items() if not k.startswith("__")}


def affine_inverse(array: np.ndarray | Tensor, scale: float, offset: float) -> Tensor:
    """Undo ``stored = scale · physical + offset``: float64 ``(stored - offset) / scale``."""
    if scale == 0 or not math.isfinite(scale) or not math.isfinite(offset):
        raise ValueError(f"a normalisation needs a finite non-zero scale and a finite offset, got "
                         f"scale={scale}, offset={offset}")
    return (torch.as_tensor(np.asarray(array), dtype=torch.float64) - offset) / scale


def check_uniform(coordinate: np.ndarray, name: str, path: Path) -> float:
    """The spacing of a 1-D coordinate array, or a LayoutError if it is not uniform and increasing."""
    coordinate = np.asarray(coordinate, dtype=np.float64).ravel()
    if coordinate.size < 2:
        raise LayoutError(f"{path}: {name} has {coordinate.size} entries; need at least 2")
    steps = np.diff(coordinate)
    step = float(steps.mean())
    if step <= 0 or np.abs(steps - step).max() > 1e-3 * step:  # float32 coordinates
        raise LayoutError(f"{path}: {name} is not uniformly increasing (steps from {steps.min():.6g} to "
                          f"{steps.max():.6g}); the reader needs a uniform grid")
    return step


def fourier_resample(x: Tensor, size: int, dim: int = -1) -> Tensor:
    """Trigonometric interpolation of a periodic field along ``dim`` from its ``n`` equispaced points
    to ``size`` equispaced points with the same first point (same period).

    Upsampling passes through the original points exactly (an even ``n``'s Nyquist mode becomes the
    cosine ``Re(X) cos(π n x / L)``); downsampling keeps the modes ``|k| < size / 2``, so it is exact
    for trigonometric polynomials of degree below ``size / 2`` (where ``n`` is a multiple of
    ``size``, the readers subsample ``x[::n // size]`` instead, keeping the stored point values).
    """
    n = x.shape[dim]
    if size == n:
        return x
    spectrum = torch.fft.rfft(x, dim=dim)
    keep = min(n, size) // 2 + 1
    shape = list(spectrum.shape)
    shape[dim] = size // 2 + 1
    out = spectrum.new_zeros(shape)
    out.narrow(dim, 0, keep).copy_(spectrum.narrow(dim, 0, keep))
    if min(n, size) % 2 == 0:
        nyquist = out.select(dim, min(n, size) // 2)
        nyquist.copy_(nyquist.real / 2 if size > n else torch.zeros_like(nyquist))
    return torch.fft.irfft(out, n=size, dim=dim) * (size / n)


def fourier_multiply(x: Tensor, multipliers: Sequence[Tensor | None], dims: Sequence[int]) -> Tensor:
    """Apply 1-D Fourier multipliers (complex, on the ``fft`` frequencies ``fftfreq(n) · n``) along
    ``dims`` of a real periodic field; ``None`` skips an axis.  Used for sub-cell shifts and filters."""
    spectrum = torch.fft.fftn(x.to(torch.float64), dim=list(dims))
    for m, dim in zip(multipliers, dims):
        if m is None:
            continue
        view = [1] * x.ndim
        view[dim] = -1
        spectrum = spectrum * m.view(view)
    return torch.fft.ifftn(spectrum, dim=list(dims)).real
