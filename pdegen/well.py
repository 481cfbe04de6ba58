"""The Well's HDF5 format (PolymathicAI, ``the_well``): export pdegen trajectories, import them back.

    pdegen-data export data/ks.h5 --format the-well --output well/ks.hdf5
    pdegen-data export data/kolmogorov.h5 --format the-well --output well/kolmogorov --split train
    pdegen-data import the-well well/ks.hdf5 --output data/ks_again.h5

Layout written (the Well's ``docs/data_format.md``; the attributes, groups and datasets that
``the_well.data.WellDataset`` reads are all present; written with h5py only, ``the_well`` is not needed)::

    root   @dataset_name @grid_type='cartesian' @n_spatial_dims @n_trajectories
           @simulation_parameters=[numeric physical parameters], @<each of them>
           @pdegen_pde @pdegen_pde_params @pdegen_description @pdegen_channels @pdegen_version
           @pdegen_source_attrs                      (pdegen's own: import restores the exact PDE)
    dimensions/      @spatial_dims=['x'(, 'y')]
        time (T,)    @sample_varying=False          (the PDE's time units, 0 .. (T-1) dt)
        x, y (n,)    @sample_varying=False @time_varying=False      (Grid.coordinates())
    boundary_conditions/x_periodic, y_periodic (one group per spatial axis)
                     @associated_dims=[axis] @associated_fields=[] @bc_type (PERIODIC, or WALL for a
                     Dirichlet/Neumann axis) @sample_varying=False @time_varying=False; mask (n,) bool,
                     True at the first and last node
    scalars/         @field_names = the simulation parameters; one 0-d float64 dataset each
                     @sample_varying=False @time_varying=False
    t0_fields/       @field_names; KS, Burgers: u; Kolmogorov: vorticity (any other channel too)
                     (N, T, *space) @dim_varying=[True]*d @sample_varying=True @time_varying=True
    t1_fields/       @field_names; Kolmogorov with velocity: velocity (N, T, X, Y, 2) = (u, v)
    t2_fields/       @field_names=[]

Only time-dependent families (:data:`TIME_FAMILIES`) are exported: the Well's fields are
trajectories ``(n_trajectories, n_steps, *space)``.  Import (:func:`read_well`, format
``the-well``) reads files pdegen exported, and refuses a Well file from elsewhere, naming what it
lacks (its PDE family and parameters cannot be inferred from the Well's metadata).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np
import torch

from pdegen import __version__
from pdegen.io import SPATIAL_DIMS, atomic_path, check_free_space, check_output, read_info
from pdegen.pdes import PDE, get_pde

if TYPE_CHECKING:
    from pdegen.readers import ImportedData

TIME_FAMILIES = ("burgers", "kolmogorov", "ks")
"""The pdegen families :func:`export_well` writes (time axis first, then 1 or 2 periodic space axes)."""
BC_TYPES = {"periodic": "PERIODIC", "dirichlet": "WALL", "neumann": "WALL"}
"""pdegen's boundary type of a spatial axis -> the Well's ``bc_type`` (its enum: WALL, OPEN, PERIODIC)."""
VECTOR_FIELDS = {"kolmogorov": {"velocity": ("u", "v")}}
"""pdegen channels written as one t1 (vector) field, components in ``spatial_dims`` order."""
REQUIRED_ATTRS = ("dataset_name", "grid_type", "n_spatial_dims", "n_trajectories")
REQUIRED_GROUPS = ("dimensions", "t0_fields", "t1_fields")
PDEGEN_ATTRS = ("pdegen_pde", "pdegen_pde_params", "pdegen_channels")
BATCH = 64


def export_well(source: str | Path, output: str | Path, *, overwrite: bool = False, split: str | None = None,
                dataset_name: str | None = None, dtype: str = "float32") -> Path:
    """Write the pdegen dataset file ``source`` (a family of :data:`TIME_FAMILIES`) as a Well HDF5 file.

    Without ``split``, ``output`` is the file to write (``.hdf5``).  ``WellDataset`` reads a *folder*
    of ``*.h5``/``*.hdf5`` files (``WellDataset(path=<folder>)``), or with ``well_split_name`` the
    folder ``<path>/data/<split>``: with ``split`` (e.g. ``"train"``), ``output`` is that dataset
    folder and the file is written to ``<output>/data/<split>/<source stem>.hdf5``, so
    ``WellDataset(path=output, well_split_name=split)`` reads it.  (The Well's own layout
    ``<base>/datasets/<name>/data/<split>/`` is found through ``well_base_path`` only for its
    official dataset names, which ``WellDataset`` checks, so it does not apply to pdegen data.)

    ``dtype``: ``"float32"`` (the Well's precision) or ``"float64"`` (lossless round trip).  The
    write is atomic (:func:`~pdegen.io.atomic_path`); an existing file is refused unless
    ``overwrite``.  Returns the path of the file written.
    """
    info = read_info(source)
    pde = info.pde
    if pde.name not in TIME_FAMILIES or pde.grid.boundary[0] != "time":
        raise ValueError(f"{source} holds {pde.name} data: the Well format stores trajectories, and export supports "
                         f"the time-dependent families {', '.join(TIME_FAMILIES)} only")
    if dtype not in ("float32", "float64"):
        raise ValueError(f"dtype must be float32 (the Well's precision) or float64 (lossless), got {dtype!r}")
    target = Path(output)
    if split is not None:
        if not split or "/" in split or split in (".", ".."):
            raise ValueError(f"split must be a folder name such as train, valid or test, got {split!r}")
        if target.suffix in (".h5", ".hdf5"):
            raise ValueError(f"with --split, --output is the dataset folder (the file goes to "
                             f"<output>/data/{split}/), got the file name {target}")
        target = target / "data" / split / f"{Path(source).stem}.hdf5"
    target = check_output(target, overwrite)
    check_free_space(target, info.num_samples * pde.num_channels * math.prod(pde.grid.shape) * np.dtype(dtype).itemsize)
    with atomic_path(target) as tmp, h5py.File(tmp, "w") as out, h5py.File(info.path, "r") as f:
        _write_well(out, f, info.attrs, pde, info.num_samples, dataset_name or f"pdegen_{pde.name}", np.dtype(dtype))
    return target


def _write_well(out: h5py.File, f: h5py.File, source_attrs: dict[str, Any], pde: PDE, count: int, name: str,
                dtype: np.dtype) -> None:
    grid = pde.grid
    space = grid.shape[1:]
    dims = SPATIAL_DIMS[:len(space)]
    coordinates = [c.numpy() for c in grid.coordinates()]
    parameters = {k: v for k, v in pde.physics().items()
                  if k != "name" and isinstance(v, (int, float)) and not isinstance(v, bool)}
    mapping = _channel_mapping(pde)

    out.attrs.update({"dataset_name": name, "grid_type": "cartesian", "n_spatial_dims": len(space),
                      "n_trajectories": count, "simulation_parameters": _names(parameters), **parameters})
    description = pde.describe()
    out.attrs.update({
        "pdegen_pde": pde.name, "pdegen_pde_params": json.dumps(description["params"]),
        "pdegen_description": json.dumps(description), "pdegen_channels": json.dumps(mapping),
        "pdegen_version": __version__,
        "pdegen_source_attrs": json.dumps({k: _plain(v) for k, v in source_attrs.items()}),
    })

    group = out.create_group("dimensions")
    group.attrs["spatial_dims"] = _names(dims)
    time = group.create_dataset("time", data=coordinates[0].astype(dtype))
    time.attrs["sample_varying"] = False
    for dim, values in zip(dims, coordinates[1:]):
        axis = group.create_dataset(dim, data=values.astype(dtype))
        axis.attrs["sample_varying"] = False
        axis.attrs["time_varying"] = False

    group = out.create_group("boundary_conditions")
    for dim, kind, n in zip(dims, grid.boundary[1:], space):
        bc = group.create_group(f"{dim}_{kind}")
        bc.attrs.update({"associated_dims": _names([dim]), "associated_fields": _names([]), "bc_type": BC_TYPES[kind],
                         "sample_varying": False, "time_varying": False})
        mask = np.zeros(n, dtype=bool)
        mask[[0, -1]] = True  # the Well's padding BCs read the first and last entry of each axis
        bc.create_dataset("mask", data=mask)

    group = out.create_group("scalars")
    group.attrs["field_names"] = _names(parameters)
    for key, value in parameters.items():
        scalar = group.create_dataset(key, data=np.array(value, dtype=np.float64))
        scalar.attrs["sample_varying"] = False
        scalar.attrs["time_varying"] = False

    fields: dict[str, dict[str, list[tuple[str, int | None]]]] = {"t0_fields": {}, "t1_fields": {}, "t2_fields": {}}
    for channel, (order, field, component) in mapping.items():
        fields[order].setdefault(field, []).append((channel, component))
    for order, entries in fields.items():
        group = out.create_group(order)
        group.attrs["field_names"] = _names(entries)
        for field, channels in entries.items():
            vector = order == "t1_fields"
            shape = (count, *grid.shape, len(space)) if vector else (count, *grid.shape)
            dataset = group.create_dataset(field, shape=shape, dtype=dtype, chunks=(1, 1, *shape[2:]))
            dataset.attrs["dim_varying"] = [True] * len(space)
            dataset.attrs["sample_varying"] = True
            dataset.attrs["time_varying"] = True
            for start in range(0, count, BATCH):
                stop = min(count, start + BATCH)
                if vector:
                    dataset[start:stop] = np.stack([f[c][start:stop] for c, _ in sorted(channels, key=lambda e: e[1])],
                                                   axis=-1).astype(dtype)
                else:
                    dataset[start:stop] = f[channels[0][0]][start:stop].astype(dtype)


def _names(names: Any) -> np.ndarray:
    """A list of names as an HDF5 string-array attribute (typed as strings even when empty)."""
    return np.array(list(names), dtype=h5py.string_dtype())


def _channel_mapping(pde: PDE) -> dict[str, tuple[str, str, int | None]]:
    """``{pdegen channel: (Well group, field name, vector component or None)}``."""
    mapping: dict[str, tuple[str, str, int | None]] = {}
    for field, components in VECTOR_FIELDS.get(pde.name, {}).items():
        if all(c in pde.channels for c in components):
            mapping.update({c: ("t1_fields", field, i) for i, c in enumerate(components)})
    for channel in pde.channels:
        mapping.setdefault(channel, ("t0_fields", channel, None))
    return mapping


def _plain(value: Any) -> Any:
    """An HDF5 attribute value as JSON can hold it."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def read_well(source: str | Path, num_samples: int | None = None) -> ImportedData:
    """Read a Well HDF5 file that pdegen exported (:func:`export_well`), or a folder of them (sorted by
    name, concatenated: e.g. ``<dataset>/data/train``), back into pdegen samples and the exact PDE.

    ``num_samples``: read only the first trajectories (None: all).  A Well file from elsewhere is refused
    with a LayoutError naming what it lacks.
    """
    from pdegen.readers._common import ImportedData, LayoutError, existing  # here: pdegen.readers imports this module

    path = existing(source, "Well HDF5 file or folder")
    files = sorted([*path.glob("*.h5"), *path.glob("*.hdf5")]) if path.is_dir() else [path]
    if not files:
        raise LayoutError(f"{path} holds no *.h5 or *.hdf5 files: give a Well file or a split folder")
    pieces, pde, meta = [], None, {}
    left = num_samples
    for file in files:
        samples, file_pde, meta = _read_file(file, left)
        if pde is not None and file_pde.describe() != pde.describe():
            raise LayoutError(f"{file} holds {file_pde!r}, but {files[0]} holds {pde!r}: import one dataset at a time")
        pde = file_pde
        pieces.append(samples)
        if left is not None:
            left -= samples.shape[0]
            if left <= 0:
                break
    assert pde is not None
    samples = torch.cat(pieces)
    notes = (f"The Well format ({len(files)} file(s), dataset {meta['dataset_name']!r}, stored as {meta['dtype']}), "
             f"exported by pdegen {meta['version']}; the PDE is restored from the file's pdegen_pde/pdegen_pde_params "
             f"attributes; values as stored (a float32 export rounds pdegen's float64 samples to float32)")
    return ImportedData(samples=samples, pde=pde, source=f"The Well (PolymathicAI) HDF5: {path}", notes=notes)


def _read_file(path: Path, num_samples: int | None) -> tuple[torch.Tensor, PDE, dict[str, Any]]:
    from pdegen.readers._common import LayoutError, open_hdf5, take

    with open_hdf5(path, "the Well's layout (its docs/data_format.md)") as f:
        missing = [f"attribute {a!r}" for a in REQUIRED_ATTRS if a not in f.attrs]
        missing += [f"group {g!r}" for g in REQUIRED_GROUPS if g not in f]
        if missing:
            raise LayoutError(f"{path} is not in the Well's layout: it lacks {', '.join(missing)} (see the Well's "
                              f"docs/data_format.md)")
        lacking = [a for a in PDEGEN_ATTRS if a not in f.attrs]
        if lacking:
            raise LayoutError(
                f"{path} is a Well file (dataset {_plain(f.attrs['dataset_name'])!r}) that pdegen did not export: it "
                f"lacks the attributes {', '.join(lacking)} that name the pdegen family, its parameters and which "
                f"field holds which channel, and the Well's metadata do not determine them; the-well import reads "
                f"files written by `pdegen-data export --format the-well`")
        try:
            pde = get_pde(str(_plain(f.attrs["pdegen_pde"])), **json.loads(f.attrs["pdegen_pde_params"]))
            mapping = json.loads(f.attrs["pdegen_channels"])
        except (ValueError, TypeError) as err:
            raise LayoutError(f"{path}: its pdegen attributes do not describe a PDE this pdegen knows ({err}); "
                              f"export it again or update pdegen") from err
        count = take(int(f.attrs["n_trajectories"]), num_samples)
        channels = []
        dtype = "float32"
        for channel in pde.channels:
            if channel not in mapping:
                raise LayoutError(f"{path}: pdegen_channels names no Well field for {pde.name}'s channel {channel!r}")
            order, field, component = mapping[channel]
            if order not in f or field not in f[order]:
                raise LayoutError(f"{path} lacks the field {order}/{field} that holds the channel {channel!r}")
            dataset = f[order][field]
            expected = (int(f.attrs["n_trajectories"]), *pde.grid.shape) + (() if component is None else
                                                                            (len(pde.grid.shape) - 1,))
            if dataset.shape != expected:
                raise LayoutError(f"{path}: {order}/{field} has shape {dataset.shape}, expected {expected} for "
                                  f"{pde!r}")
            dtype = str(dataset.dtype)
            data = dataset[:count] if component is None else dataset[:count, ..., int(component)]
            channels.append(torch.from_numpy(np.asarray(data, dtype=np.float64)))
        meta = {"dataset_name": _plain(f.attrs["dataset_name"]), "dtype": dtype,
                "version": _plain(f.attrs.get("pdegen_version", "unknown"))}
    return torch.stack(channels, dim=1), pde, meta


__all__ = ["BC_TYPES", "TIME_FAMILIES", "export_well", "read_well"]
