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
from pdegen.pdes.darcy import Darcy
from pdegen.pdes.darcy_pidm import DarcyPIDM
from pdegen.pdes.kolmogorov import KolmogorovFlow, coarse_grain
from pdegen.pdes.ks import KuramotoSivashinsky
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


# ----------------------------------------------------------------------------- PDE-Refiner / PDEArena KS


def write_lpsda(path, u, lengths, dts, burn_in_steps, split="train"):
    """LPSDA's KS layout: group <split> with pde_<T>-<X> (N, T, X), dt, dx (N,), x (N, X), t (N, T), float64."""
    n, steps, points = u.shape
    lengths, dts = np.broadcast_to(lengths, (n,)), np.broadcast_to(dts, (n,))
    with h5py.File(path, "a") as f:
        group = f.create_group(split)
        group[f"pde_{steps}-{points}"] = u.numpy()
        group["dt"], group["dx"] = dts, lengths / points
        group["x"] = np.arange(points)[None, :] * (lengths / points)[:, None]
        group["t"] = (burn_in_steps + np.arange(steps))[None, :] * dts[:, None]
    return path


@pytest.fixture(scope="module")
def ks_varying():
    pde = KuramotoSivashinsky(length=16.0, resolution=32, dt=0.2, num_states=9, burn_in=4.0, ic_modes=4,
                              ic_amplitude=0.5, vary_domain=True)
    return pde, generate(pde, 3)


def test_pderefiner_ks_varying_domain_maps_onto_the_vary_domain_variant(tmp_path, ks_varying):
    pde, x = ks_varying
    lengths, dts = x[:, 1, 0, 0].numpy(), x[:, 2, 0, 0].numpy()
    path = write_lpsda(tmp_path / "KS_train_3.h5", x[:, 0], lengths, dts, burn_in_steps=20)  # burn_in 4 = 20 dt
    data = read("pderefiner-ks", path, length=16.0, dt=0.2)
    assert data.pde.channels == ("u", "L", "dt") and data.pde.vary_domain
    assert (data.pde.length, data.pde.dt, data.pde.num_states, data.pde.resolution) == (16.0, 0.2, 9, 32)
    assert data.pde.burn_in == pytest.approx(4.0) and data.pde.variation == 0.1
    torch.testing.assert_close(data.samples, x, rtol=0, atol=1e-12)  # L = X dx per sample, float64 storage
    torch.testing.assert_close(relative_residual(data.pde, data.samples), relative_residual(pde, x), rtol=1e-9, atol=0)
    assert relative_residual(data.pde, data.samples).max() < 0.05  # time truncation at dt = 0.2 on a tiny grid
    strided = read("pdearena-ks", path, length=16.0, dt=0.2, stride=2, num_samples=2)
    assert strided.samples.shape == (2, 3, 5, 32) and strided.pde.dt == pytest.approx(0.4)
    torch.testing.assert_close(strided.samples[:, 0], x[:2, 0, ::2], rtol=0, atol=0)
    torch.testing.assert_close(strided.samples[:, 2], 2 * x[:2, 2, ::2], rtol=0, atol=1e-15)
    with pytest.raises(ValueError, match=r"not within \+-0.1 of the nominal 64"):
        read("pderefiner-ks", path)  # LPSDA's nominal L = 64 does not fit L ~ 16


def test_pderefiner_ks_constant_domain_and_errors(tmp_path):
    pde = KuramotoSivashinsky(length=16.0, resolution=32, dt=0.25, num_states=6, burn_in=2.0, ic_modes=4,
                              ic_amplitude=0.5)
    x = generate(pde, 2)
    path = write_lpsda(tmp_path / "KS_valid.h5", x[:, 0], 16.0, 0.25, burn_in_steps=8, split="valid")
    data = read("pderefiner-ks", path, split="valid")
    assert not data.pde.vary_domain and data.pde.channels == ("u",)
    assert (data.pde.length, data.pde.dt, data.pde.burn_in) == (16.0, 0.25, 2.0)
    torch.testing.assert_close(data.samples, x, rtol=0, atol=0)
    torch.testing.assert_close(data.pde.residual(data.samples), pde.residual(x), rtol=0, atol=1e-12)
    assert "8 discarded steps" in data.notes
    with pytest.raises(LayoutError, match=r"no group 'train' among \['valid'\]"):
        read("pderefiner-ks", path)
    with pytest.raises(ValueError, match="stride must be a positive integer"):
        read("pderefiner-ks", path, split="valid", stride=0)
    with pytest.raises(ValueError, match="keeps 2 of 6 states"):
        read("pderefiner-ks", path, split="valid", stride=3)
    with h5py.File(path, "a") as f:
        del f["valid/dx"]
    with pytest.raises(LayoutError, match=r"no \['dx'\].*\"pde_<T>-<X>\" \(N, T, X\)"):
        read("pderefiner-ks", path, split="valid")
    with h5py.File(tmp_path / "flat.h5", "w") as f:
        f["train/pde_6-32"] = np.zeros((2, 192))
        f["train/dt"], f["train/dx"] = np.ones(2), np.ones(2)
    with pytest.raises(LayoutError, match=r"expected \(N, T, X\)"):
        read("pderefiner-ks", tmp_path / "flat.h5")


# ----------------------------------------------------------------------------- PDEBench Darcy


def write_pdebench_darcy(path, a, u, beta=None):
    """PDEBench's Darcy layout: nu (N, X, X), tensor (N, 1, X, X) float32 at cell centres, attr beta."""
    cells = a.shape[-1]
    with h5py.File(path, "w") as f:
        f["nu"] = a.numpy().astype(np.float32)
        f["tensor"] = u[:, None].numpy().astype(np.float32)
        f["x-coordinate"] = f["y-coordinate"] = ((np.arange(cells) + 0.5) / cells).astype(np.float32)
        if beta is not None:
            f.attrs["beta"] = beta
    return path


def pdebench_darcy_emulation(n, cells, beta, seed=0, final_time=1.75):
    """An emulation of PDEBench's Darcy generator: a = 1 where 5 Gaussian bumps exceed their batch mean, else
    0.1; u_t = div(a grad u) + beta from a constant in (0.1, 10) plus a small Fourier field, arithmetic face
    means, ghost cells u = 0 / a = adjacent cell, explicit midpoint steps at CFL 0.25, the state at t = 1.75."""
    rng = np.random.default_rng(seed)
    h = 1.0 / cells
    c = (np.arange(cells) + 0.5) * h
    centres, widths = rng.uniform(0, 1, (n, 2, 5)), 0.5 * rng.uniform(0, 1, (n, 5))
    bumps = sum(np.exp(-((c[None, :, None] - centres[:, 0, None, None, i]) ** 2
                         + (c[None, None, :] - centres[:, 1, None, None, i]) ** 2) / widths[:, None, None, i])
                for i in range(5))
    a = np.where(bumps > bumps.mean(), 1.0, 0.1)
    phase = rng.uniform(0, 2 * np.pi, (n, 2))
    u = rng.uniform(0.1, 10, (n, 1, 1)) * (1 + 0.25 * np.sin(2 * np.pi * c[None, :, None] + phase[:, :1, None])
                                           * np.sin(2 * np.pi * c[None, None, :] + phase[:, 1:, None]))
    ap = np.pad(a, ((0, 0), (1, 1), (1, 1)), mode="edge")
    fx, fy = 0.5 * (ap[:, 1:, 1:-1] + ap[:, :-1, 1:-1]) / h**2, 0.5 * (ap[:, 1:-1, 1:] + ap[:, 1:-1, :-1]) / h**2

    def rate(v):
        p = np.pad(v, ((0, 0), (1, 1), (1, 1)))
        gx, gy = fx * (p[:, 1:, 1:-1] - p[:, :-1, 1:-1]), fy * (p[:, 1:-1, 1:] - p[:, 1:-1, :-1])
        return gx[:, 1:] - gx[:, :-1] + gy[:, :, 1:] - gy[:, :, :-1] + beta

    dt = 0.25 * 0.5 * h**2 / a.max()
    steps = math.ceil(final_time / dt)
    dt = final_time / steps
    for _ in range(steps):
        u = u + dt * rate(u + 0.5 * dt * rate(u))
    return torch.from_numpy(a), torch.from_numpy(u)


def test_pdebench_darcy_ghost_ring_makes_the_scheme_exact(tmp_path):
    cells, beta = 14, 2.0
    forcing = beta * (1 + 1 / cells) ** 2
    pde = Darcy(resolution=cells + 2, a_high=1.0, a_low=0.1, forcing=forcing, face_average="arithmetic")
    inner = (pde.grf.sample(3, torch.Generator().manual_seed(0))[:, 1:-1, 1:-1] >= 0) * 0.9 + 0.1
    a = torch.nn.functional.pad(inner[:, None], (1, 1, 1, 1), mode="replicate")[:, 0]  # the source's ghosts
    x = pde.solve(a)
    path = write_pdebench_darcy(tmp_path / "2D_DarcyFlow_beta2.0_Train.hdf5", inner, x[:, 1, 1:-1, 1:-1], beta)
    data = read("pdebench-darcy", path)
    assert data.pde.params() == pde.params()
    assert data.samples.shape == (3, 2, 16, 16) and data.pde.channels == ("a", "u")
    torch.testing.assert_close(data.samples, x, rtol=0, atol=1e-6 * x[:, 1].abs().max())  # float32 storage
    assert relative_residual(data.pde, data.samples).max() < 1e-5  # only float32 rounding
    wrong = Darcy(resolution=cells + 2, forcing=beta, face_average="arithmetic")  # beta without the rescaling
    assert relative_residual(wrong, data.samples).min() > 0.1
    named = write_pdebench_darcy(tmp_path / "2D_DarcyFlow_beta2.0_Train_copy.hdf5", inner, x[:, 1, 1:-1, 1:-1])
    assert read("pdebench-darcy", named, num_samples=2).pde.forcing == pytest.approx(forcing)  # beta from the name
    with pytest.raises(LayoutError, match="pass beta="):
        read("pdebench-darcy", write_pdebench_darcy(tmp_path / "darcy.hdf5", inner, x[:, 1, 1:-1, 1:-1]))
    with h5py.File(tmp_path / "wrong.hdf5", "w") as f:
        f["tensor"] = np.zeros((2, 1, 8, 8))
    with pytest.raises(LayoutError, match=r"no \['nu', 'x-coordinate', 'y-coordinate'\]"):
        read("pdebench-darcy", tmp_path / "wrong.hdf5", beta=1.0)


def test_pdebench_darcy_emulated_generator_residual(tmp_path):
    """The source stores the t = 1.75 state of a time-dependent run: pdegen's residual is the transient left."""
    a, u = pdebench_darcy_emulation(4, 16, beta=1.0)
    data = read("pdebench-darcy", write_pdebench_darcy(tmp_path / "2D_DarcyFlow_beta1.0_Train.hdf5", a, u))
    residual = relative_residual(data.pde, data.samples)  # measured 8e-5 .. 5e-2: the slowest decaying starts
    assert residual.median() < 0.02 and residual.max() < 0.2
    steady = data.pde.solve(data.samples[:, :1])
    assert ((steady[:, 1] - data.samples[:, 1]).norm() / steady[:, 1].norm()) < 0.05


# ----------------------------------------------------------------------------- neuraloperator Darcy


def test_neuraloperator_darcy_bool_mask_round_trip(tmp_path):
    pde = Darcy(resolution=16, a_high=12.0, a_low=4.0, face_average="arithmetic")
    x = generate(pde, 3)
    torch.save({"x": x[:, 0] == 12.0, "y": x[:, 1].float()}, tmp_path / "darcy_train_16.pt")  # the bundled dtypes
    data = read("neuraloperator-darcy", tmp_path / "darcy_train_16.pt")
    assert data.pde.params() == pde.params()
    torch.testing.assert_close(data.samples[:, 0], x[:, 0], rtol=0, atol=0)
    torch.testing.assert_close(data.samples[:, 1], x[:, 1], rtol=0, atol=1e-6 * x[:, 1].abs().max())
    assert relative_residual(data.pde, data.samples).max() < 1e-5  # float32 rounding of u only
    assert "binary mask" in data.notes
    other = read("neuraloperator-darcy", tmp_path / "darcy_train_16.pt", a_high=1.0, a_low=0.1, forcing=4.0,
                 num_samples=2)
    assert other.num_samples == 2 and (other.pde.a_high, other.pde.a_low, other.pde.forcing) == (1.0, 0.1, 4.0)
    assert set(other.samples[:, 0].unique().tolist()) <= {0.1, 1.0}
    assert relative_residual(other.pde, other.samples).min() > 0.1  # other physics: the residual says so
    torch.save({"x": x[:, 0].float(), "y": x[:, 1].float()}, tmp_path / "values.pt")  # coefficient values stored
    stored = read("neuraloperator-darcy", tmp_path / "values.pt", a_high=1.0, a_low=0.5)
    assert (stored.pde.a_high, stored.pde.a_low) == (12.0, 4.0)
    torch.testing.assert_close(stored.samples[:, 0], x[:, 0], rtol=0, atol=0)


def test_neuraloperator_darcy_errors(tmp_path):
    torch.save({"x": torch.zeros(2, 8, 8, dtype=torch.bool)}, tmp_path / "no_y.pt")
    with pytest.raises(LayoutError, match=r"holds \['x'\]; expected .*\"y\": \(N, r, r\)"):
        read("neuraloperator-darcy", tmp_path / "no_y.pt")
    torch.save({"x": torch.zeros(2, 8, 8), "y": torch.zeros(2, 8, 6)}, tmp_path / "shape.pt")
    with pytest.raises(LayoutError, match=r"x \(2, 8, 8\) / y \(2, 8, 6\)"):
        read("neuraloperator-darcy", tmp_path / "shape.pt")
    torch.save({"x": torch.rand(2, 8, 8) + 1, "y": torch.zeros(2, 8, 8)}, tmp_path / "smooth.pt")
    with pytest.raises(LayoutError, match="distinct values"):
        read("neuraloperator-darcy", tmp_path / "smooth.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(LayoutError, match="weights_only=True"):
        read("neuraloperator-darcy", tmp_path / "junk.pt")
    with pytest.raises(ValueError, match="face_average must be one of"):
        read("neuraloperator-darcy", tmp_path / "shape.pt", face_average="geometric")
    with pytest.raises(FileNotFoundError, match="neuraloperator Darcy .pt file not found"):
        read("neuraloperator-darcy", tmp_path / "missing.pt")


def test_pdegen_data_import_pdebench_darcy(tmp_path, capsys):
    from pdegen.data_cli import main as data_main

    a, u = (torch.rand(2, 8, 8, generator=torch.Generator().manual_seed(0)) > 0.5) * 0.9 + 0.1, torch.rand(2, 8, 8)
    source = write_pdebench_darcy(tmp_path / "2D_DarcyFlow_beta0.1_Train.hdf5", a, u)
    out = tmp_path / "darcy.h5"
    assert data_main(["import", "pdebench-darcy", str(source), "--output", str(out)]) == 0
    assert "imported 2 samples" in capsys.readouterr().out
    info = read_info(out)
    assert info.pde.name == "darcy" and info.pde.grid.shape == (10, 10)
    assert info.pde.forcing == pytest.approx(0.1 * (9 / 8) ** 2)
    assert info.attrs["import_format"] == "pdebench-darcy" and "ghost ring" in info.attrs["source_notes"]
