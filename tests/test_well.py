"""Named dimensions in dataset files (HDF5 dimension scales for xarray / netCDF-4 readers) and the Well
format: export, import, round trips, the layout WellDataset reads, errors and the CLI."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch

from pdegen.data_cli import main as data_main
from pdegen.datagen import generate_dataset, merge_shards
from pdegen.io import load_samples, read_info
from pdegen.pdes import Burgers, Darcy, KolmogorovFlow, KuramotoSivashinsky
from pdegen.readers import FORMATS, LayoutError, import_dataset
from pdegen.well import TIME_FAMILIES, export_well, read_well

TINY = {
    "ks": lambda: KuramotoSivashinsky(resolution=16, length=8.0, ic_modes=2, burn_in=0.5, num_states=4),
    "burgers": lambda: Burgers(resolution=16, num_times=4),
    "kolmogorov": lambda: KolmogorovFlow(resolution=8, sim_resolution=16, forcing_wavenumber=2, num_states=3,
                                         burn_in=0.0, with_velocity=True),
}


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict:
    """Tiny pdegen files of the three time-dependent families and Darcy, 3 samples each."""
    folder = tmp_path_factory.mktemp("well")
    paths = {}
    for name, make in [*TINY.items(), ("darcy", lambda: Darcy(resolution=12))]:
        paths[name] = folder / f"{name}.h5"
        generate_dataset(make(), 3, seed=0, output=paths[name], progress=False)
    return paths


# ----------------------------------------------------------------------------- named dimensions


@pytest.mark.parametrize("family, dims", [("darcy", ("sample", "x", "y")), ("ks", ("sample", "time", "x")),
                                          ("burgers", ("sample", "time", "x")),
                                          ("kolmogorov", ("sample", "time", "x", "y"))])
def test_xarray_sees_named_dimensions_and_physical_coordinates(files, family, dims):
    xr = pytest.importorskip("xarray")
    pytest.importorskip("h5netcdf")
    data, info = load_samples(files[family], dtype=torch.float64)
    grid = info.pde.grid
    with xr.open_dataset(files[family], engine="h5netcdf") as ds:
        assert set(ds.data_vars) == set(info.pde.channels)
        for c, channel in enumerate(info.pde.channels):
            assert ds[channel].dims == dims
            np.testing.assert_array_equal(ds[channel].values, data[:, c].numpy())
        np.testing.assert_array_equal(ds["sample"].values, np.arange(3))
        for name, coordinate in zip(dims[1:], grid.coordinates()):
            np.testing.assert_array_equal(ds[name].values, coordinate.numpy())
        if "time" in dims:  # the PDE's time units: 0, dt, ..., (T - 1) dt
            assert ds["time"].values[-1] == pytest.approx(grid.extent[0])
        assert ds.attrs["pde"] == family
    assert not any(name.startswith("phony_dim") for name in dims)


def test_coordinates_are_not_channels_for_the_readers(files, capsys):
    """read_info, load_samples and `pdegen-data info` read the channels by name beside the coordinates."""
    with h5py.File(files["kolmogorov"], "r") as f:
        assert set(f.keys()) == {"vorticity", "u", "v", "sample", "time", "x", "y"}
        assert [d.label for d in f["vorticity"].dims] == ["sample", "time", "x", "y"]
        assert all(f[name].is_scale for name in ("sample", "time", "x", "y"))
    info = read_info(files["kolmogorov"])
    assert info.pde.channels == ("vorticity", "u", "v") and info.num_samples == 3
    assert data_main(["info", str(files["darcy"]), "--max-samples", "2"]) == 0
    assert "channel 'x'" not in capsys.readouterr().out


def test_merged_shards_keep_the_dimensions(tmp_path):
    pde = Burgers(resolution=8, num_times=3)
    shards = [tmp_path / f"s{i}.h5" for i in range(2)]
    for i, path in enumerate(shards):
        generate_dataset(pde, 70, seed=1, output=path, shard=i, num_shards=2, progress=False)
    with h5py.File(shards[1], "r") as f:  # a shard's sample coordinate: its indices in the whole run
        np.testing.assert_array_equal(f["sample"][()], np.arange(64, 70))
    merged = tmp_path / "merged.h5"
    merge_shards(shards, merged, progress=False)
    whole = tmp_path / "whole.h5"
    generate_dataset(pde, 70, seed=1, output=whole, progress=False)
    with h5py.File(merged, "r") as f:
        assert [d.label for d in f["u"].dims] == ["sample", "time", "x"]
        assert [d[0].name for d in f["u"].dims] == ["/sample", "/time", "/x"]  # the attached scales
        np.testing.assert_array_equal(f["sample"][()], np.arange(70))
        np.testing.assert_array_equal(f["x"][()], pde.grid.coordinates()[1].numpy())
    assert torch.equal(load_samples(merged)[0], load_samples(whole)[0])


# ----------------------------------------------------------------------------- the Well


@pytest.mark.parametrize("family", sorted(TINY))
def test_round_trip_pdegen_well_pdegen(files, tmp_path, family):
    data, info = load_samples(files[family], dtype=torch.float64)
    exact = export_well(files[family], tmp_path / "exact.hdf5", dtype="float64")
    back = read_well(exact)
    assert torch.equal(back.samples, data)
    assert back.pde.describe() == info.pde.describe() and back.pde.params() == info.pde.params()
    single = read_well(export_well(files[family], tmp_path / "single.hdf5"))  # the Well's float32
    assert torch.equal(single.samples, data.to(torch.float32).to(torch.float64))
    assert read_well(exact, num_samples=2).samples.shape[0] == 2
    result = import_dataset("the-well", exact, tmp_path / "again.h5")  # pdegen-data import the-well
    again, again_info = load_samples(result["path"], dtype=torch.float64)
    assert torch.equal(again, data) and again_info.pde.describe() == info.pde.describe()


def test_the_file_holds_what_well_dataset_reads(files, tmp_path):
    """The attributes, groups and datasets the_well/data/datasets.py (WellDataset._build_metadata,
    _reconstruct_fields/_scalars/_grids, _padding_bcs) and docs/data_format.md name."""
    out = export_well(files["kolmogorov"], tmp_path / "k.hdf5")
    data, info = load_samples(files["kolmogorov"], dtype=torch.float64)
    grid = info.pde.grid
    with h5py.File(out, "r") as f:
        assert f.attrs["dataset_name"] == "pdegen_kolmogorov" and f.attrs["grid_type"] == "cartesian"
        assert f.attrs["n_spatial_dims"] == 2 and f.attrs["n_trajectories"] == 3
        parameters = list(f.attrs["simulation_parameters"])
        assert "reynolds" in parameters and all(name in f.attrs for name in parameters)
        dims = f["dimensions"]
        assert list(dims.attrs["spatial_dims"]) == ["x", "y"]
        np.testing.assert_allclose(dims["time"][()], grid.coordinates()[0].numpy(), rtol=1e-6)
        assert not dims["time"].attrs["sample_varying"]
        for axis in ("x", "y"):
            assert not dims[axis].attrs["sample_varying"] and not dims[axis].attrs["time_varying"]
            assert dims[axis].shape == (8,)
        for axis in ("x", "y"):
            bc = f["boundary_conditions"][f"{axis}_periodic"]
            assert list(bc.attrs["associated_dims"]) == [axis] and bc.attrs["bc_type"] == "PERIODIC"
            assert not bc.attrs["sample_varying"] and not bc.attrs["time_varying"]
            assert bc["mask"].dtype == bool and bc["mask"][0] and bc["mask"][-1]
        scalars = f["scalars"]
        assert list(scalars.attrs["field_names"]) == parameters
        assert scalars["reynolds"][()] == info.pde.reynolds and not scalars["reynolds"].attrs["time_varying"]
        assert list(f["t0_fields"].attrs["field_names"]) == ["vorticity"]
        assert list(f["t1_fields"].attrs["field_names"]) == ["velocity"]
        assert list(f["t2_fields"].attrs["field_names"]) == []
        vorticity, velocity = f["t0_fields"]["vorticity"], f["t1_fields"]["velocity"]
        assert vorticity.shape == (3, 3, 8, 8) and velocity.shape == (3, 3, 8, 8, 2)
        for field in (vorticity, velocity):
            assert list(field.attrs["dim_varying"]) == [True, True]
            assert field.attrs["sample_varying"] and field.attrs["time_varying"]
            assert field.dtype == np.float32
        np.testing.assert_array_equal(velocity[..., 0], data[:, 1].float().numpy())  # u along x
        np.testing.assert_array_equal(velocity[..., 1], data[:, 2].float().numpy())  # v along y
        assert json.loads(f.attrs["pdegen_description"]) == info.pde.describe()


def test_export_and_import_errors(files, tmp_path):
    with pytest.raises(ValueError, match="burgers, kolmogorov, ks"):
        export_well(files["darcy"], tmp_path / "darcy.hdf5")
    out = export_well(files["ks"], tmp_path / "ks.hdf5")
    with pytest.raises(FileExistsError, match="--overwrite"):
        export_well(files["ks"], out)
    export_well(files["ks"], out, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ks.hdf5"], "no temporary file left"
    foreign = tmp_path / "foreign.hdf5"  # the Well's own dummy layout (the_well/utils/dummy_data.py)
    with h5py.File(foreign, "w") as f:
        f.attrs.update({"dataset_name": "dummy", "grid_type": "cartesian", "n_spatial_dims": 1,
                        "n_trajectories": 1, "simulation_parameters": []})
        f.create_group("dimensions").attrs["spatial_dims"] = ["x"]
        for group in ("t0_fields", "t1_fields", "t2_fields", "scalars", "boundary_conditions"):
            f.create_group(group)
    with pytest.raises(LayoutError, match="pdegen did not export.*pdegen_pde"):
        read_well(foreign)
    with h5py.File(tmp_path / "bare.hdf5", "w") as f:
        f.create_dataset("u", data=np.zeros(3))
    with pytest.raises(LayoutError, match="'n_trajectories'.*'dimensions'"):
        read_well(tmp_path / "bare.hdf5")
    with pytest.raises(LayoutError, match="not a readable HDF5"):
        (tmp_path / "junk.hdf5").write_text("junk")
        read_well(tmp_path / "junk.hdf5")
    assert FORMATS["the-well"] is read_well and set(TIME_FAMILIES) == set(TINY)


def test_split_folder_layout_reads_back_as_a_folder(files, tmp_path):
    path = export_well(files["burgers"], tmp_path / "burgers_well", split="train", dtype="float64")
    assert path == tmp_path / "burgers_well" / "data" / "train" / "burgers.hdf5"
    assert torch.equal(read_well(path.parent).samples, load_samples(files["burgers"], dtype=torch.float64)[0])
    with pytest.raises(ValueError, match="dataset folder"):
        export_well(files["burgers"], tmp_path / "x.hdf5", split="train")


def test_cli_export_and_import(files, tmp_path, capsys):
    out = tmp_path / "ks.hdf5"
    args = ["export", str(files["ks"]), "--format", "the-well", "--output", str(out)]
    assert data_main(args) == 0 and out.is_file()
    assert data_main(args) == 2 and "--overwrite" in capsys.readouterr().err
    assert data_main([*args, "--overwrite", "--dtype", "float64"]) == 0
    assert data_main(["export", str(files["darcy"]), "--format", "the-well", "--output", str(tmp_path / "d.hdf5")]) == 2
    assert "burgers, kolmogorov, ks" in capsys.readouterr().err
    back = tmp_path / "back.h5"
    assert data_main(["import", "the-well", str(out), "--output", str(back)]) == 0
    assert torch.equal(load_samples(back, dtype=torch.float64)[0], load_samples(files["ks"], dtype=torch.float64)[0])
    assert read_info(back).attrs["import_format"] == "the-well"


def test_well_dataset_reads_the_export(files, tmp_path):
    """Optional: the_well's own reader (pip install --no-deps the_well einops)."""
    well_data = pytest.importorskip("the_well.data")
    data, _ = load_samples(files["kolmogorov"], dtype=torch.float64)
    export_well(files["kolmogorov"], tmp_path / "kolmogorov", split="train")
    dataset = well_data.WellDataset(path=str(tmp_path / "kolmogorov"), well_split_name="train",
                                    use_normalization=False, n_steps_input=1, n_steps_output=1)
    assert len(dataset) == 3 * 2  # 3 trajectories, 2 windows of 1 + 1 of 3 states each
    meta = dataset.metadata
    assert meta.field_names[0] == ["vorticity"] and meta.field_names[1] == ["velocity_x", "velocity_y"]
    assert meta.boundary_condition_types == ["PERIODIC"] and meta.spatial_resolution == (8, 8)
    sample = dataset[3]  # trajectory 1, window 1: states 1 -> 2
    expected = data[1, :, 1].permute(1, 2, 0).float()  # (x, y, [vorticity, u, v])
    torch.testing.assert_close(sample["input_fields"][0], expected, rtol=0, atol=0)
    torch.testing.assert_close(sample["output_fields"][0], data[1, :, 2].permute(1, 2, 0).float(), rtol=0, atol=0)
    assert sample["boundary_conditions"].tolist() == [[2.0, 2.0], [2.0, 2.0]]  # BoundaryCondition.PERIODIC
    assert tuple(sample["space_grid"].shape) == (8, 8, 2)
