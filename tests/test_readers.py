"""Readers of public dataset layouts: each test writes a small file in the source's layout (from
pdegen's own solver output, put into the source's scaling), reads it back and checks the round trip,
the undone scaling, the PDE parameters and the residual, plus clear errors for malformed files."""

from __future__ import annotations

import math

import h5py
import numpy as np
import pytest
import scipy.io
import torch

from pdegen.io import read_info
from pdegen.metrics.residual import region_norms
from pdegen.pdes.burgers import Burgers
from pdegen.pdes.darcy_pidm import DarcyPIDM
from pdegen.pdes.kolmogorov import KolmogorovFlow, coarse_grain
from pdegen.readers import FORMATS, LayoutError, import_dataset, read
from pdegen.readers._common import fourier_multiply, fourier_resample
from pdegen.readers.diffusionpde import NORMALISATION, family_pde
from pdegen.readers.sda import alignment, vorticity


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These problems are tiny: intra-op threads only contend on a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def relative_residual(pde, x):
    """Per-sample ||residual|| / ||residual_scale|| over the interior (discrete L2)."""
    return region_norms(pde, pde.residual(x))["interior"] / region_norms(pde, pde.residual_scale(x))["interior"]


def generate(pde, n, seed=0):
    return pde.generate(n, torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------- DiffusionPDE


def write_npy(folder, x, family, names="merge_{}.npy"):
    """Per-sample [H, W, C] files in DiffusionPDE's normalisation, as merge_data.py writes them."""
    folder.mkdir()
    for i, sample in enumerate(x.numpy()):
        stored = [scale * sample[c] + offset for c, (scale, offset) in enumerate(NORMALISATION[family])]
        np.save(folder / names.format(i), np.stack(stored, axis=-1))
    return folder


@pytest.mark.parametrize("family", ["darcy", "poisson", "helmholtz"])
def test_diffusionpde_npy_round_trip_undoes_the_scaling(tmp_path, family):
    pde = family_pde(family, (16, 16))
    x = generate(pde, 11)  # 11 files: natural order puts merge_10 last, string order would not
    data = read("diffusionpde-npy", write_npy(tmp_path / "d", x, family), pde=family)
    assert data.samples.shape == (11, 2, 16, 16) and data.pde.channels == pde.channels
    assert data.pde.params() == pde.params()
    torch.testing.assert_close(data.samples, x, rtol=0, atol=1e-12)
    assert relative_residual(data.pde, data.samples).max() < 1e-10  # our solver's data: round-off
    if family == "darcy":  # a in {3, 12} <-> stored -+0.9
        stored = np.load(tmp_path / "d" / "merge_0.npy")[..., 0]
        assert set(np.round(stored, 12).ravel()) <= {-0.9, 0.9}
        assert set(data.samples[:, 0].round(decimals=10).unique().tolist()) <= {3.0, 12.0}
    else:  # DiffusionPDE's source is FNO's GRF, tau^(alpha-1) = 3 times pdegen's normalised one
        assert data.pde.amplitude == 3.0


def test_diffusionpde_npy_burgers_time_first_and_name_detection(tmp_path):
    pde = family_pde("burgers", (9, 32))
    x = generate(pde, 3)
    folder = tmp_path / "b"
    folder.mkdir()
    for i, sample in enumerate(x.numpy()):  # the fork's naming, plain [T, X] arrays
        np.save(folder / f"mergeburger_{i}.npy", sample[0] / 1.415)
    data = read("diffusionpde-npy", folder)
    assert isinstance(data.pde, Burgers) and data.pde.grid.shape == (9, 32)
    assert (data.pde.viscosity, data.pde.final_time) == (0.01, 1.0)
    torch.testing.assert_close(data.samples, x, rtol=0, atol=1e-13)
    torch.testing.assert_close(data.pde.residual(data.samples), pde.residual(x), rtol=0, atol=1e-9)


def test_diffusionpde_npy_errors(tmp_path):
    pde = family_pde("poisson", (8, 8))
    folder = write_npy(tmp_path / "p", generate(pde, 2), "poisson")
    with pytest.raises(ValueError, match="pass pde="):
        read("diffusionpde-npy", folder)  # merge_<i>.npy does not say which PDE
    with pytest.raises(LayoutError, match=r"\[H, W, 1\]"):
        read("diffusionpde-npy", folder, pde="burgers")
    np.save(folder / "merge_9.npy", np.zeros((8, 8, 3)))
    with pytest.raises(LayoutError, match=r"differs .* \[H, W, 2\]"):
        read("diffusionpde-npy", folder, pde="poisson")
    with pytest.raises(LayoutError, match="no .npy files"):
        read("diffusionpde-npy", (tmp_path / "empty").mkdir() or tmp_path / "empty", pde="darcy")
    with pytest.raises(ValueError, match=r"2\) \(scale, offset\) pairs"):
        read("diffusionpde-npy", folder, pde="poisson", scales=[(1.0, 0.0)])


def test_diffusionpde_mat_v7_and_v73(tmp_path):
    darcy = family_pde("darcy", (16, 16))
    x = generate(darcy, 3)
    scipy.io.savemat(tmp_path / "darcy.mat", {"thresh_a_data": x[:, 0].numpy(), "thresh_p_data": x[:, 1].numpy()})
    data = read("diffusionpde-mat", tmp_path / "darcy.mat")
    assert data.pde.name == "darcy" and data.pde.face_average == "arithmetic"
    torch.testing.assert_close(data.samples, x, rtol=0, atol=0)
    assert "stored values were physical" in data.notes
    # -v7.3 files are HDF5 with MATLAB's column-major axes: h5py sees them reversed
    with h5py.File(tmp_path / "darcy73.mat", "w") as f:
        for key, channel in (("thresh_a_data", 0), ("thresh_p_data", 1)):
            f[key] = x[:, channel].numpy().T
    torch.testing.assert_close(read("diffusionpde-mat", tmp_path / "darcy73.mat", num_samples=2).samples, x[:2])

    helmholtz = family_pde("helmholtz", (16, 16))
    y = generate(helmholtz, 2)
    scipy.io.savemat(tmp_path / "helmholtz.mat", {"f_data": y[:, 0].numpy(), "psi_data": y[:, 1].numpy()})
    data = read("diffusionpde-mat", tmp_path / "helmholtz.mat")
    assert data.pde.name == "helmholtz" and data.pde.k == 1.0
    assert relative_residual(data.pde, data.samples).max() < 1e-10

    burgers = family_pde("burgers", (9, 32))
    z = generate(burgers, 2)
    scipy.io.savemat(tmp_path / "burgers.mat", {"input": z[:, 0, 0].numpy(), "output": z[:, 0].numpy()})
    torch.testing.assert_close(read("diffusionpde-mat", tmp_path / "burgers.mat").samples, z, rtol=0, atol=0)


def test_diffusionpde_mat_errors(tmp_path):
    scipy.io.savemat(tmp_path / "ns.mat", {"a": np.zeros((2, 8, 8)), "u": np.zeros((2, 8, 8, 10)), "t": np.ones(10)})
    with pytest.raises(ValueError, match="Navier-Stokes"):
        read("diffusionpde-mat", tmp_path / "ns.mat")
    scipy.io.savemat(tmp_path / "odd.mat", {"coefficient": np.zeros((2, 8, 8))})
    with pytest.raises(LayoutError, match="thresh_a_data"):
        read("diffusionpde-mat", tmp_path / "odd.mat")
    scipy.io.savemat(tmp_path / "flat.mat", {"f_data": np.zeros((2, 8, 6)), "phi_data": np.zeros((2, 8, 6))})
    with pytest.raises(LayoutError, match=r"\(N, S, S\)"):
        read("diffusionpde-mat", tmp_path / "flat.mat")
    for junk in (b"not a mat file at all" * 20, b"not a mat\n"):  # scipy: ValueError, then MatReadError
        (tmp_path / "junk.mat").write_bytes(junk)
        with pytest.raises(LayoutError, match="neither a MATLAB"):
            read("diffusionpde-mat", tmp_path / "junk.mat")
    with pytest.raises(FileNotFoundError, match="DiffusionPDE .mat file not found"):
        read("diffusionpde-mat", tmp_path / "missing.mat")


# ----------------------------------------------------------------------------- PDEBench


def write_pdebench(path, u, length, dt, nu_tilde, attribute=True):
    """PDEBench's layout: tensor (N, T, X) float32, cell-centre x, T + 1 time entries, attr Nu."""
    cells, steps = u.shape[-1], u.shape[-2]
    with h5py.File(path, "w") as f:
        f["tensor"] = u[:, 0].numpy().astype(np.float32)
        f["x-coordinate"] = ((np.arange(cells) + 0.5) * length / cells).astype(np.float32)
        f["t-coordinate"] = (np.arange(steps + 1) * dt).astype(np.float32)
        if attribute:
            f.attrs["Nu"] = nu_tilde
    return path


@pytest.fixture(scope="module")
def burgers_data():
    pde = Burgers(resolution=32, num_times=9, viscosity=0.02, final_time=0.4)
    return pde, generate(pde, 3)


def test_pdebench_round_trip_viscosity_over_pi(tmp_path, burgers_data):
    pde, u = burgers_data
    path = write_pdebench(tmp_path / "1D_Burgers_Sols_Nu0.0628.hdf5", u, 1.0, 0.05, math.pi * 0.02)
    data = read("pdebench-burgers", path)
    assert data.pde.viscosity == pytest.approx(0.02, rel=1e-12)  # nu = Nu / pi
    assert data.pde.grid.shape == (9, 32) and data.pde.final_time == pytest.approx(0.4, rel=1e-6)
    torch.testing.assert_close(data.samples, u, rtol=0, atol=1e-7)  # float32 storage
    residual, reference = data.pde.residual(data.samples), pde.residual(u)
    scale = pde.residual_scale(u).square().mean().sqrt()
    assert (residual - reference).square().mean().sqrt() < 1e-5 * scale  # only the float32 rounding differs

    coarse = read("pdebench-burgers", path, resolution=16, num_times=5)  # every 2nd point and state
    torch.testing.assert_close(coarse.samples, u[:, :, ::2, ::2], rtol=0, atol=1e-7)
    early = read("pdebench-burgers", path, final_time=0.2, num_samples=2)
    assert early.pde.final_time == pytest.approx(0.2) and early.samples.shape == (2, 1, 5, 32)
    torch.testing.assert_close(early.samples, u[:2, :, :5], rtol=0, atol=1e-7)
    resampled = read("pdebench-burgers", path, resolution=48)  # not a divisor: trigonometric interpolation
    torch.testing.assert_close(resampled.samples, fourier_resample(u.float().double(), 48), rtol=0, atol=1e-12)


def test_fourier_resample_is_exact_for_trigonometric_polynomials():
    def poly(n):
        x = torch.arange(n, dtype=torch.float64) * (2 * math.pi / n)
        return torch.sin(3 * x) + 0.3 * torch.cos(5 * x - 0.2) + 0.1

    for n, size in ((16, 40), (24, 13), (12, 20), (15, 30)):
        torch.testing.assert_close(fourier_resample(poly(n), size), poly(size), rtol=0, atol=1e-13)
    coarse = torch.randn(10, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(fourier_resample(coarse, 30)[::3], coarse, rtol=0, atol=1e-13)  # through the nodes


def test_pdebench_rescales_other_domain_lengths(tmp_path, burgers_data):
    """u(x, t) on [0, 1) with nu is u(x'/L, t'/L) on [0, L) with L nu: the reader must map it back."""
    pde, u = burgers_data
    path = write_pdebench(tmp_path / "long.hdf5", u, 2.0, 0.1, math.pi * 0.04)
    data = read("pdebench-burgers", path)
    assert data.pde.viscosity == pytest.approx(0.02, rel=1e-6)
    assert data.pde.final_time == pytest.approx(0.4, rel=1e-6)
    assert "rescaled" in data.notes


def test_pdebench_errors(tmp_path, burgers_data):
    _, u = burgers_data
    named = write_pdebench(tmp_path / "1D_Burgers_Sols_Nu0.01.hdf5", u, 1.0, 0.05, 0.0, attribute=False)
    assert read("pdebench-burgers", named).pde.viscosity == pytest.approx(0.01 / math.pi)  # Nu from the name
    anonymous = write_pdebench(tmp_path / "burgers.hdf5", u, 1.0, 0.05, 0.0, attribute=False)
    with pytest.raises(LayoutError, match="pass nu="):
        read("pdebench-burgers", anonymous)
    with pytest.raises(ValueError, match=r"use one of \[3, 5, 9\]"):
        read("pdebench-burgers", named, num_times=4)
    with pytest.raises(ValueError, match="not a stored time"):
        read("pdebench-burgers", named, final_time=0.33)
    with h5py.File(tmp_path / "wrong.hdf5", "w") as f:
        f["data"] = np.zeros((2, 9, 32))
    with pytest.raises(LayoutError, match='"tensor" \\(N, T, X\\)'):
        read("pdebench-burgers", tmp_path / "wrong.hdf5")


# ----------------------------------------------------------------------------- PIDM


def test_pidm_csv_round_trip(tmp_path):
    pde = DarcyPIDM(resolution=16)
    x = generate(pde, 3)
    for name, channel in (("K_data.csv", 0), ("p_data.csv", 1)):  # one flattened sample per row, no header
        np.savetxt(tmp_path / name, x[:, channel].reshape(3, -1).numpy(), delimiter=",", fmt="%.17g")
    data = read("pidm-darcy", tmp_path)
    assert data.pde.params() == pde.params() and data.pde.channels == ("K", "p")
    torch.testing.assert_close(data.samples, x, rtol=0, atol=0)
    assert relative_residual(data.pde, data.samples).max() < 1e-10
    assert pde.pressure_mean(data.samples).abs().max() < 1e-12
    assert read("pidm-darcy", tmp_path / "K_data.csv", num_samples=2).num_samples == 2


def test_pidm_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="K_data.csv"):
        read("pidm-darcy", tmp_path)
    np.savetxt(tmp_path / "K_data.csv", np.ones((2, 16)), delimiter=",")
    np.savetxt(tmp_path / "p_data.csv", np.ones((3, 16)), delimiter=",")
    with pytest.raises(LayoutError, match="one flattened R x R field per row"):
        read("pidm-darcy", tmp_path)
    np.savetxt(tmp_path / "p_data.csv", np.ones((2, 15)), delimiter=",")
    np.savetxt(tmp_path / "K_data.csv", np.ones((2, 15)), delimiter=",")
    with pytest.raises(LayoutError, match="R\\*R"):
        read("pidm-darcy", tmp_path)
    (tmp_path / "K_data.csv").write_text("K,p\n1,2\n")
    with pytest.raises(LayoutError, match="headerless CSV"):
        read("pidm-darcy", tmp_path)


# ----------------------------------------------------------------------------- SDA / pdediff


def test_sda_alignment_moves_staggered_block_means_onto_pdegen_nodes():
    """Sample a smooth field on jax-cfd's MAC faces, block-average 4 x 4 as SDA's coarsen does, align:
    the result must be pdegen's centred cell mean of the same field at the coarse nodes."""
    fine, coarse = 64, 16
    factor = fine // coarse
    h = 2 * math.pi / fine

    def field(x, y):
        return torch.sin(x + 2 * y) + 0.5 * torch.cos(3 * y - 0.4) - 0.3 * torch.sin(4 * x)

    i = torch.arange(fine, dtype=torch.float64)
    for component, (ox, oy) in enumerate(((1.0, 0.5), (0.5, 1.0))):
        staggered = field((i[:, None] + ox) * h, (i[None, :] + oy) * h)
        block = staggered.reshape(coarse, factor, coarse, factor).mean(dim=(1, 3))  # SDA's coarsen
        nodal = coarse_grain(field(i[:, None] * h, i[None, :] * h), factor)
        aligned = fourier_multiply(block, alignment(coarse, factor, component), (-2, -1))
        torch.testing.assert_close(aligned, nodal, rtol=0, atol=1e-12)
        assert (block - nodal).abs().max() > 1e-2  # without the alignment they differ


@pytest.fixture(scope="module")
def kolmogorov_data():
    pde = KolmogorovFlow(resolution=16, sim_resolution=32, num_states=4, burn_in=0.4, with_velocity=True)
    return pde, generate(pde, 2)


def write_sda(path, x):
    """(N, T, 2, R, R) float32 "x": pdegen's node values moved back to SDA's staggered block means."""
    factor = 2
    stored = [fourier_multiply(x[:, c + 1], [1 / m for m in alignment(x.shape[-1], factor, c)], (-2, -1))
              for c in (0, 1)]
    with h5py.File(path, "w") as f:
        f["x"] = torch.stack(stored, dim=2).numpy().astype(np.float32)
    return path


def test_sda_round_trip_and_vorticity(tmp_path, kolmogorov_data):
    pde, x = kolmogorov_data
    path = write_sda(tmp_path / "test.h5", x)
    data = read("sda-kolmogorov", path, with_velocity=True, sim_resolution=32)
    assert data.pde.channels == ("vorticity", "u", "v") and data.pde.grid.shape == (4, 16, 16)
    assert (data.pde.reynolds, data.pde.drag, data.pde.dt, data.pde.forcing_wavenumber) == (1000.0, 0.1, 0.2, 4)
    scale = x[:, 1:].abs().max()
    torch.testing.assert_close(data.samples[:, 1:], x[:, 1:], rtol=0, atol=1e-6 * scale)  # float32 storage
    expected = x.clone()
    expected[:, 0] = vorticity(x[:, 1], x[:, 2])  # omega = dv/dx - du/dy, spectral
    torch.testing.assert_close(data.samples[:, 0], expected[:, 0], rtol=0, atol=1e-5 * expected[:, 0].abs().max())
    residual, reference = data.pde.residual(data.samples), pde.residual(expected)
    rms = lambda field: field.square().mean().sqrt()  # noqa: E731
    assert rms(residual[:, 2]) < 1e-5 * rms(x[:, 0])  # r_curl vanishes by construction
    assert rms(residual - reference) < 1e-4 * rms(pde.residual_scale(x)[:, 0])  # only float32 rounding differs
    # the vorticity equation's relative residual is the solver data's (time truncation at dt = 0.2 dominates)
    ratio = relative_residual(data.pde, data.samples) / relative_residual(pde, x)
    assert ((ratio > 0.5) & (ratio < 2)).all()
    vorticity_only = read("pdediff-kolmogorov", path, sim_resolution=32, num_samples=1)
    assert vorticity_only.pde.channels == ("vorticity",)
    torch.testing.assert_close(vorticity_only.samples[:, 0], data.samples[:1, 0])
    raw = read("sda-kolmogorov", path, with_velocity=True, sim_resolution=32, align="none")
    with h5py.File(path) as f:
        torch.testing.assert_close(raw.samples[:, 1:], torch.from_numpy(f["x"][()]).double().transpose(1, 2))


def test_sda_errors(tmp_path):
    with h5py.File(tmp_path / "bad.h5", "w") as f:
        f["x"] = np.zeros((2, 4, 3, 16, 16), dtype=np.float32)
    with pytest.raises(LayoutError, match=r"\(N, T, 2, R, R\)"):
        read("sda-kolmogorov", tmp_path / "bad.h5")
    with pytest.raises(LayoutError, match="no dataset 'y'"):
        read("sda-kolmogorov", tmp_path / "bad.h5", dataset="y")
    with pytest.raises(ValueError, match="align must be one of"):
        read("sda-kolmogorov", tmp_path / "bad.h5", align="centre")


# ----------------------------------------------------------------------------- import_dataset


def test_import_dataset_writes_a_pdegen_file_with_source_notes(tmp_path):
    pde = family_pde("darcy", (16, 16))
    x = generate(pde, 5)
    folder = write_npy(tmp_path / "src", x, "darcy")
    result = import_dataset("diffusionpde-npy", folder, tmp_path / "out.h5", pde="darcy")
    assert result["num_samples"] == 5 and result["pde"] == "darcy"
    info = read_info(tmp_path / "out.h5")
    assert info.pde.params() == pde.params()
    assert "DiffusionPDE" in info.attrs["source"] and "scale 115" in info.attrs["source_notes"]
    assert info.attrs["import_format"] == "diffusionpde-npy"
    with h5py.File(tmp_path / "out.h5") as f:
        np.testing.assert_allclose(f["u"][()], x[:, 1].numpy(), rtol=0, atol=1e-12)


def test_import_dataset_errors_leave_no_file(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset format 'hdf5'.*pidm-darcy"):
        import_dataset("hdf5", tmp_path, tmp_path / "out.h5")
    with pytest.raises(ValueError, match=r"no option\(s\) \['resolution'\].*num_samples"):
        import_dataset("pidm-darcy", tmp_path, tmp_path / "out.h5", resolution=64)
    with pytest.raises(FileNotFoundError):
        import_dataset("pidm-darcy", tmp_path, tmp_path / "out.h5")
    assert not any(tmp_path.iterdir())
    assert set(FORMATS) >= {"diffusionpde-npy", "diffusionpde-mat", "pdebench-burgers", "pidm-darcy",
                            "sda-kolmogorov"}


def test_pdegen_data_import_command(tmp_path, capsys):
    from pdegen.data_cli import main as data_main

    pde = DarcyPIDM(resolution=16)
    x = generate(pde, 3)
    for name, channel in (("K_data.csv", 0), ("p_data.csv", 1)):
        np.savetxt(tmp_path / name, x[:, channel].reshape(3, -1).numpy(), delimiter=",", fmt="%.17g")
    out = tmp_path / "pidm.h5"
    assert data_main(["import", "pidm-darcy", str(tmp_path), "--output", str(out), "--set", "num_samples=2"]) == 0
    assert "imported 2 samples" in capsys.readouterr().out
    assert read_info(out).num_samples == 2
    assert data_main(["info", str(out)]) == 0
    assert "source" in capsys.readouterr().out
    assert data_main(["import", "nope", str(tmp_path), "--output", str(out)]) == 2
