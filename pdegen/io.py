"""HDF5 dataset files: one dataset per channel, ``(num_samples, *grid)``, PDE metadata in attributes.

Files are written under a temporary name and renamed only when complete, so a crash never
leaves a file that looks finished.

The file's axes are named with HDF5 dimension scales, netCDF-4 style: 1-D coordinate datasets
``sample`` (the sample index; a shard's hold the indices of the whole run) and, per grid axis,
``time`` (a time axis, in the PDE's time units) then ``x``, ``y``, ``z`` (node positions,
:meth:`~pdegen.pdes.Grid.coordinates`), attached to every channel dataset, so
``xarray.open_dataset(path, engine="h5netcdf")`` shows named dimensions and coordinates.  The
channels are the datasets named in the ``channels`` attribute; read them by name, never by listing
the file (:data:`COORDINATES` are datasets too).
"""

from __future__ import annotations

import errno
import json
import math
import os
import shutil
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from torch import Tensor

from pdegen import __version__
from pdegen.pdes import PDE, Grid, get_pde

COORDINATES = ("sample", "time", "x", "y", "z")
"""Names of the coordinate (dimension scale) datasets a dataset file may hold beside its channels."""
SPATIAL_DIMS = ("x", "y", "z")


def dimension_names(grid: Grid) -> tuple[str, ...] | None:
    """The names of ``grid``'s axes in dataset files: ``time`` for a time axis, then ``x``, ``y``, ``z`` for
    the spatial axes in order (KS, Burgers: ``(time, x)``; Kolmogorov: ``(time, x, y)``; Darcy:
    ``(x, y)``); ``None`` for a grid these names do not fit (two time axes, more than three spatial)."""
    times = sum(kind == "time" for kind in grid.boundary)
    spatial = grid.ndim - times
    if times > 1 or spatial > len(SPATIAL_DIMS):
        return None
    names = iter(SPATIAL_DIMS)
    return tuple("time" if kind == "time" else next(names) for kind in grid.boundary)


def write_dimension_scales(f: h5py.File, pde: PDE, num_samples: int, first_sample: int = 0) -> None:
    """Create the coordinate datasets of :func:`dimension_names` (and ``sample``: ``first_sample ..``) in
    ``f`` as HDF5 dimension scales and attach them to every channel dataset of ``pde``, so netCDF-4 readers
    (h5netcdf, xarray) see named dimensions.  Nothing is written for a grid without names, or when a channel
    is named like a coordinate."""
    names = dimension_names(pde.grid)
    if names is None or set(pde.channels) & {"sample", *names}:
        return
    coordinates = [np.arange(first_sample, first_sample + num_samples, dtype=np.int64),
                   *(c.numpy() for c in pde.grid.coordinates())]
    kinds = ["sample index", *pde.grid.boundary]
    scales = []
    for name, values, kind in zip(("sample", *names), coordinates, kinds):
        scale = f.create_dataset(name, data=values)
        scale.make_scale(name)
        scale.attrs["long_name"] = (name if name == "sample" else
                                    f"{name} ({'PDE time units' if kind == 'time' else kind + ' axis'})")
        scales.append(scale)
    for channel in pde.channels:
        for axis, (name, scale) in enumerate(zip(("sample", *names), scales)):
            f[channel].dims[axis].attach_scale(scale)
            f[channel].dims[axis].label = name  # h5py's own view (``dataset.dims``) names the axis too


@dataclass
class DatasetInfo:
    """What a dataset file says about itself."""

    path: Path
    pde: PDE
    num_samples: int
    attrs: dict[str, Any]


def check_output(path: str | Path, overwrite: bool = False) -> Path:
    """``path`` as a file this run may write: not a folder, and not an existing file unless ``overwrite``."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"the output {path} is a folder: give a file path, e.g. {path / 'data.h5'}")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists: pass --overwrite to replace it (SampleWriter: overwrite: true), "
                              "or choose another output path")
    return path


def check_free_space(path: Path, needed: int) -> None:
    """Refuse, before any work, to write ``needed`` bytes to ``path`` when its file system has less free
    (with 1% and 1 MiB to spare for metadata)."""
    folder = path.parent
    while not folder.exists():  # the nearest folder that exists is on the file system that will hold it
        folder = folder.parent
    free = shutil.disk_usage(folder).free
    if free < needed * 1.01 + 2**20:
        raise OSError(errno.ENOSPC, f"{path} needs {_size(needed)} and its file system has {_size(free)} free: "
                      "free some space, write elsewhere, or write fewer samples (or shards: --shard/--num-shards)")


def _size(count: int) -> str:
    return f"{count / 2**30:.3g} GiB" if count >= 2**30 else f"{count / 2**20:.3g} MiB"


def replace_durably(source: Path, target: Path) -> None:
    """Flush ``source`` to disk and rename it over ``target`` (atomic within one file system), then flush
    the folder, so that after a crash ``target`` is either the old file or the whole new one."""
    with open(source, "rb") as file:
        os.fsync(file.fileno())
    os.replace(source, target)
    fsync_folder(target.parent)


def fsync_folder(folder: Path) -> None:
    """Flush ``folder``'s entries (a rename into it) to disk."""
    directory = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def take_lock(lock: Path, what: str, take_foreign: bool = False) -> None:
    """Create ``lock`` (``host pid``) exclusively, so one process at a time writes ``what``. A lock whose
    process is gone on this host is taken over, one held on another host only with ``take_foreign``."""
    me = f"{socket.gethostname()} {os.getpid()}"
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        holder = lock.read_text().strip()
        host, _, pid = holder.partition(" ")
        here = host == socket.gethostname()
        if (here and _alive(int(pid) if pid.isdigit() else 0)) or (not here and not take_foreign):
            raise FileExistsError(
                f"another pdegen process ({holder}: host, pid) is writing {what}: wait for it, or "
                f"write elsewhere; delete {lock} if that process is gone") from None
        lock.write_text(me)
    else:
        with os.fdopen(fd, "w") as file:
            file.write(me)


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class DatasetWriter:
    """Write a dataset file in pieces; the file appears under its final name only on success. An existing
    file (or folder) at ``path`` is refused at construction, before any work, unless ``overwrite``; a lock
    beside it refuses a second writer of the same path at the same time.

    >>> with DatasetWriter(path, pde, num_samples, attrs={"seed": 0}) as w:
    ...     w.write(0, batch)          # batch: (n, channels, *grid) in physical units
    """

    def __init__(self, path: str | Path, pde: PDE, num_samples: int, attrs: dict[str, Any] | None = None,
                 dtype: str = "float64", overwrite: bool = False) -> None:
        if num_samples < 1:
            raise ValueError(f"num_samples must be positive, got {num_samples}")
        self.path = check_output(path, overwrite)
        self.pde = pde
        self.num_samples = num_samples
        self.dtype = np.dtype(dtype)
        self.attrs = dict(attrs or {})
        check_free_space(self.path, num_samples * pde.num_channels * math.prod(pde.grid.shape) * self.dtype.itemsize)
        self._tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        self._lock = self.path.with_name(f".{self.path.name}.lock")
        self._file: h5py.File | None = None
        self._written = np.zeros(num_samples, dtype=bool)

    def __enter__(self) -> DatasetWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        take_lock(self._lock, str(self.path))
        try:
            self._file = h5py.File(self._tmp, "w")
            for name in self.pde.channels:  # the whole file's space taken now: a full disk fails here, not later
                dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
                dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
                self._file.create_dataset(name, shape=(self.num_samples, *self.pde.grid.shape), dtype=self.dtype,
                                          chunks=(1, *self.pde.grid.shape), dcpl=dcpl)
            # named axes for netCDF-4 readers; a shard's samples keep their index in the whole run
            write_dimension_scales(self._file, self.pde, self.num_samples, int(self.attrs.get("sample_start", 0)))
        except BaseException as err:
            self._discard()
            if isinstance(err, (OSError, ValueError)):  # h5py reports a full disk as either
                raise OSError(errno.ENOSPC, f"could not reserve the space of {self.path} ({err})") from None
            raise
        description = self.pde.describe()
        attrs = {
            "pde": description["name"],
            "pde_params": json.dumps(description["params"]),
            "channels": json.dumps(description["channels"]),
            "grid": json.dumps(description["grid"]),
            "pdegen_version": __version__,
            "num_samples": self.num_samples,
            **{k: (json.dumps(v) if isinstance(v, (dict, list, tuple)) else v) for k, v in self.attrs.items()},
        }
        self._file.attrs.update(attrs)
        return self

    def write(self, start: int, batch: Tensor) -> None:
        """Store ``batch`` (n, channels, *grid) as samples ``start .. start + n - 1``."""
        assert self._file is not None, "use DatasetWriter as a context manager"
        self.pde.check_sample(batch)
        stop = start + batch.shape[0]
        if start < 0 or stop > self.num_samples:
            raise ValueError(f"samples {start}..{stop - 1} fall outside the file's 0..{self.num_samples - 1}")
        array = batch.detach().cpu().numpy()
        for c, name in enumerate(self.pde.channels):
            self._file[name][start:stop] = array[:, c]
        self._written[start:stop] = True

    def __exit__(self, exc_type, exc, tb) -> None:
        assert self._file is not None
        if exc_type is not None:
            self._discard()
            return
        try:
            self._file.close()
            if not self._written.all():
                missing = int((~self._written).sum())
                raise RuntimeError(f"{missing} of {self.num_samples} samples were never written to {self.path}")
            replace_durably(self._tmp, self.path)
        finally:
            self._discard()

    def _discard(self) -> None:
        """Close the file without a word (a failed write leaves HDF5 unable to flush), remove it and the lock."""
        if self._file is not None:
            hook, sys.unraisablehook = sys.unraisablehook, lambda unraisable: None  # h5py's dealloc errors
            try:
                self._file.close()
            except Exception:  # noqa: BLE001 - the write has failed already; its error is the one to report
                pass
            finally:
                sys.unraisablehook = hook
        self._tmp.unlink(missing_ok=True)
        self._lock.unlink(missing_ok=True)


def read_info(path: str | Path) -> DatasetInfo:
    """Open a dataset file's metadata; clear errors for a missing, corrupt or foreign file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"dataset file {path} does not exist: create it with `pdegen-data generate <pde> --output {path}` "
            f"or point the config at an existing file"
        )
    try:
        with h5py.File(path, "r") as f:
            attrs = dict(f.attrs)
            shapes = {name: f[name].shape for name in f.keys()}
    except OSError as err:
        raise ValueError(f"{path} is not a readable HDF5 file ({err}); delete it and generate it again") from err
    if "pde" not in attrs or "pde_params" not in attrs:
        raise ValueError(f"{path} has no 'pde'/'pde_params' attributes: it was not written by pdegen-data; "
                         f"use a reader for its format or regenerate it")
    try:
        pde = get_pde(str(attrs["pde"]), **json.loads(attrs["pde_params"]))
    except (ValueError, TypeError) as err:  # a broken attribute, or one written by a newer pdegen
        raise ValueError(f"{path}: its PDE attributes ({attrs['pde']!s}, {attrs['pde_params']!s}) do not describe "
                         f"a PDE this pdegen knows ({err}); regenerate the file or update pdegen") from err
    for name in pde.channels:
        shape = shapes.get(name)
        if shape is None:
            raise ValueError(f"{path} lacks the dataset {name!r} required by {pde.name} (channels {pde.channels})")
        if tuple(shape[1:]) != pde.grid.shape:
            raise ValueError(f"{path}: dataset {name!r} has shape {shape}, expected (N, {pde.grid.shape})")
    counts = {name: shapes[name][0] for name in pde.channels}
    if len(set(counts.values())) > 1:
        raise ValueError(f"{path}: the channels hold different numbers of samples "
                         f"({', '.join(f'{k} {v}' for k, v in counts.items())}): the file is truncated or "
                         "was written by two runs; regenerate it")
    num_samples = counts[pde.channels[0]]
    return DatasetInfo(path=path, pde=pde, num_samples=int(num_samples), attrs=attrs)


def read_channels(f: h5py.File, info: DatasetInfo) -> np.ndarray:
    """Every channel of the open dataset file ``f`` stacked as ``(num_samples, channels, *grid)``, as stored."""
    return np.stack([f[name][()] for name in info.pde.channels], axis=1)


def load_samples(path: str | Path, dtype: torch.dtype = torch.float32) -> tuple[Tensor, DatasetInfo]:
    """Read a whole dataset file as ``(num_samples, channels, *grid)`` in physical units."""
    info = read_info(path)
    with h5py.File(info.path, "r") as f:
        array = read_channels(f, info)
    if not np.isfinite(array).all():
        raise ValueError(f"{path} contains NaN or inf values: the file is corrupt, regenerate it")
    return torch.from_numpy(array).to(dtype), info


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path in ``path``'s folder (same suffix) for the block to write; when the block succeeds it
    is flushed to disk and renamed over ``path`` (:func:`replace_durably`), when it fails it is removed.
    Readers never see half a file, and a crash leaves the previous one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    try:
        yield tmp
        replace_durably(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` through :func:`atomic_path`."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_arrays_atomic(path: str | Path, arrays: dict[str, Tensor], attrs: dict[str, Any]) -> Path:
    """Write named tensors (and JSON-able attributes) to an HDF5 file through :func:`atomic_path`."""
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        for name, tensor in arrays.items():
            f.create_dataset(name, data=tensor.detach().cpu().numpy())
        f.attrs["meta"] = json.dumps({**attrs, "pdegen_version": __version__})
    return Path(path)


def read_arrays(path: str | Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """The tensors and attributes :func:`write_arrays_atomic` wrote; a clear error for a corrupt file."""
    try:
        with h5py.File(path, "r") as f:
            arrays = {name: torch.from_numpy(f[name][()]) for name in f}
            attrs = json.loads(f.attrs["meta"])
    except (OSError, KeyError) as error:
        raise ValueError(f"{path} is not a readable pdegen array file ({error}): delete it to regenerate") from None
    return arrays, attrs


def read_config(path: str | os.PathLike) -> dict:
    """A ``pdegen`` YAML config as a dict, each top-level section given as a path to another YAML (``data:
    ../data/darcy.yaml``, resolved against the config's folder, as LightningCLI resolves it) read in its place."""
    import yaml

    path = Path(path)
    config = yaml.safe_load(path.read_text())
    for key, value in config.items():
        if isinstance(value, str) and value.endswith((".yaml", ".yml")):
            config[key] = yaml.safe_load((path.parent / value).read_text())
    return config
