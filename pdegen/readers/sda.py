"""The Kolmogorov-flow HDF5 files of SDA (Rozet & Louppe, NeurIPS 2023; github.com/francois-rozet/sda),
also used unchanged by pdediff (Shysheya et al., NeurIPS 2024; github.com/cambridge-mlg/pdediff).

Layout (SDA ``experiments/kolmogorov/generate.py``, ``aggregate``; pdediff
``pdediff/utils/misc.py::load_dataset`` reads the same key): ``train.h5`` / ``valid.h5`` /
``test.h5`` (an 80/10/10 split of the trajectories), each with one dataset ``"x"`` of shape
``(N, 64, 2, 64, 64)`` float32: trajectory, state, velocity component ``(u, v)``, then the two
spatial axes ``x`` (axis -2) and ``y`` (axis -1).  Velocities in the simulation's units, no
normalisation (SDA's networks see the raw ``x``; pdediff applies no scaling to Kolmogorov either).

Simulation (``components/mcs.py`` / ``sda/mcs.py::KolmogorovFlow(size=256, dt=0.2)``; pdediff
``config/data/kolmogorov.yaml``): jax-cfd's ``semi_implicit_navier_stokes`` on a 256² staggered
(MAC) grid of [0, 2π)², density 1, ν = 1/Re = 1e-3, forcing ``simple_turbulence_forcing``
(``kolmogorov``: ``f = (sin(4y), 0)``, plus the linear drag ``-0.1 u``), initial state
``filtered_velocity_field(max velocity 3, peak wavenumber 4)``, 128 steps of Δt = 0.2 of which the
last 64 are kept (``x[64:]``: the first stored state is at t = 65 Δt = 13), then
``KolmogorovFlow.coarsen(x, 4)``: the plain 4 × 4 **block mean** of the staggered fields.  The
vorticity is never stored; SDA's ``vorticity()`` (used for plots, and by pdediff for its metrics)
is ``torch.gradient(u, dim=-1) - torch.gradient(v, dim=-2)`` in grid-index units, i.e.
``-h ω`` with ``h = 2π/64`` and ``ω = ∂v/∂x - ∂u/∂y`` (the opposite sign and no spacing).

Where the stored values sit.  jax-cfd puts ``u`` at the x-faces ``((i + 1) h_f, (j + ½) h_f)`` and
``v`` at the y-faces ``((i + ½) h_f, (j + 1) h_f)`` of the fine grid (``h_f = 2π/256``); the block
mean over fine cells ``4I .. 4I + 3`` is centred ``(4I + 2.5) h_f = (I + 0.625) H`` (u along x) and
``(I + 0.5) H`` (u along y), ``H = 2π/64``.  pdegen's :class:`~pdegen.pdes.kolmogorov.KolmogorovFlow`
stores every field at the nodes ``(I H, J H)``, filtered by its centred trapezoidal cell mean
:func:`~pdegen.pdes.kolmogorov.coarse_grain` with response ``G(k)``.  With ``align="pdegen"``
(default) each axis of each component is multiplied in Fourier space by ``G(k) / B(k)``, ``B`` the
block mean's complex response (phase = its offset), which moves the samples onto the nodes and
swaps SDA's filter for pdegen's: exact for the band-limited part of the fine field, not for what
the 4× coarsening aliased (the Nyquist mode keeps only the magnitude ``|G / B|``).
``align="shift"`` only moves the samples (keeps the block filter), ``"none"`` takes them as they
are.  The vorticity is then the spectral curl ``∂v/∂x - ∂u/∂y`` on the 64² grid (pdegen's
convention), so ``r_curl`` of the imported samples vanishes.

Residual: jax-cfd's data satisfy its finite-volume scheme on the fine grid; after coarse-graining no
discrete equation holds exactly, and pdegen's residual (spectral in space, second-order differences
at Δt = 0.2) measures the time truncation plus the coarse-graining, as on pdegen's own data.  The
input measure (jax-cfd's filtered velocity field) differs from pdegen's vorticity GRF, so the
imported PDE's ``init_*`` parameters describe pdegen's sampler, not these files.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from pdegen.pdes.kolmogorov import KolmogorovFlow, spectral_operators

from ._common import ImportedData, LayoutError, existing, fourier_multiply, open_hdf5, take

SOURCE = ("SDA / pdediff Kolmogorov flow (Rozet & Louppe 2023, github.com/francois-rozet/sda; Shysheya et al. "
          "2024, github.com/cambridge-mlg/pdediff)")
ALIGNMENTS = ("pdegen", "shift", "none")
STAGGER = {0: (1.0, 0.5), 1: (0.5, 1.0)}
"""Per velocity component, its offset in fine cells along (x, y) on jax-cfd's MAC grid."""
CHUNK = 64


def block_response(k: Tensor, factor: int, offset: float, cells: int) -> Tensor:
    """``B(k)``: the response of SDA's block mean of ``factor`` fine samples at offsets
    ``(m + offset) h_f`` (``m = 0 .. factor-1``) from a coarse node, for integer wavenumbers ``k``
    on [0, 2π) with ``cells`` fine cells; complex (its phase is the block's off-node centre)."""
    h = 2 * math.pi / cells
    m = torch.arange(factor, dtype=torch.float64)
    return torch.exp(1j * k[:, None] * (m + offset) * h).mean(dim=1)


def cell_mean_response(k: Tensor, factor: int, cells: int) -> Tensor:
    """``G(k)``: the response of pdegen's centred cell mean :func:`~pdegen.pdes.kolmogorov.coarse_grain`
    (weights ``1/r``, halved at ``|j| = r/2`` for even ``r``); real and even."""
    h = 2 * math.pi / cells
    half = factor // 2
    j = torch.arange(-half, half + 1, dtype=torch.float64)
    w = torch.full_like(j, 1.0 / factor)
    if factor % 2 == 0:
        w[0] = w[-1] = 0.5 / factor
    return (w * torch.cos(k[:, None] * j * h)).sum(dim=1).to(torch.complex128)


def alignment(resolution: int, factor: int, component: int, align: str = "pdegen") -> list[Tensor | None]:
    """The Fourier multipliers along (x, y) on the ``fftfreq`` frequencies of a ``resolution``-point
    axis that take SDA's stored ``component`` (0: u, 1: v) to pdegen's node values (module
    docstring).  A Nyquist entry keeps only the magnitude, so each multiplier is invertible."""
    if align == "none":
        return [None, None]
    k = torch.fft.fftfreq(resolution, d=1.0 / resolution).to(torch.float64)
    cells = resolution * factor
    multipliers = []
    for offset in STAGGER[component]:
        block = block_response(k, factor, offset, cells)
        if align == "shift":
            m = block.abs() / block
        else:
            m = cell_mean_response(k, factor, cells) / block
        if resolution % 2 == 0:
            m[resolution // 2] = m[resolution // 2].abs()
        multipliers.append(m)
    return multipliers


def vorticity(u: Tensor, v: Tensor) -> Tensor:
    """``ω = ∂v/∂x - ∂u/∂y`` ``(..., R, R)`` by spectral derivatives on [0, 2π)² (x = axis -2)."""
    r = u.shape[-1]
    ops = spectral_operators(r, u.device, u.dtype)
    return torch.fft.irfft2(ops.ikx * torch.fft.rfft2(v) - ops.iky * torch.fft.rfft2(u), s=(r, r))


def read_sda_kolmogorov(source: str | Path, num_samples: int | None = None, with_velocity: bool = False,
                        align: str = "pdegen", dt: float = 0.2, sim_resolution: int = 256,
                        dataset: str = "x") -> ImportedData:
    """Read an SDA / pdediff Kolmogorov file (``train.h5`` etc.) as
    :class:`~pdegen.pdes.kolmogorov.KolmogorovFlow` trajectories.

    Channels ``("vorticity",)``, or ``("vorticity", "u", "v")`` with ``with_velocity``; ``align``:
    ``"pdegen" | "shift" | "none"`` (module docstring); ``dt``: the time between stored states
    (SDA: 0.2); ``sim_resolution``: the fine grid the file was coarse-grained from (SDA: 256).
    """
    path = existing(source, "SDA Kolmogorov HDF5 file")
    if align not in ALIGNMENTS:
        raise ValueError(f"SDA Kolmogorov: align must be one of {ALIGNMENTS}, got {align!r}")
    layout = f'dataset "{dataset}" of shape (N, T, 2, R, R): trajectories of (u, v) on an R x R grid'
    with open_hdf5(path, f"SDA's {layout}") as file:
        if dataset not in file:
            raise LayoutError(f"{path}: no dataset {dataset!r} among {sorted(file.keys())}; expected SDA's {layout}")
        data = file[dataset]
        if data.ndim != 5 or data.shape[2] != 2 or data.shape[3] != data.shape[4]:
            raise LayoutError(f"{path}: {dataset!r} has shape {data.shape}; expected SDA's {layout}")
        count, steps, _, resolution, _ = data.shape
        if sim_resolution % resolution:
            raise ValueError(f"SDA Kolmogorov: sim_resolution={sim_resolution} is not a multiple of the stored "
                             f"resolution {resolution}; pass the fine grid the file was coarsened from")
        factor = sim_resolution // resolution
        multipliers = [alignment(resolution, factor, c, align) for c in (0, 1)]
        n = take(count, num_samples)
        parts = []
        for start in range(0, n, CHUNK):
            uv = torch.from_numpy(np.asarray(data[start:min(n, start + CHUNK)], dtype=np.float64))
            u, v = (fourier_multiply(uv[:, :, c], multipliers[c], (-2, -1)) for c in (0, 1))
            fields = [vorticity(u, v)] + ([u, v] if with_velocity else [])
            parts.append(torch.stack(fields, dim=1))
        samples = torch.cat(parts)
    pde = KolmogorovFlow(resolution=resolution, sim_resolution=sim_resolution, reynolds=1000.0, drag=0.1,
                         forcing_wavenumber=4, forcing_amplitude=1.0, dt=dt, num_states=steps, burn_in=65 * dt,
                         with_velocity=with_velocity)
    notes = (f"no value scaling (raw float32 velocities); align={align!r}: "
             + {"pdegen": "MAC-staggered 4x4 block means moved to the nodes and refiltered to pdegen's centred "
                          "cell mean in Fourier space (exact for the band-limited part)",
                "shift": "MAC-staggered 4x4 block means moved to the nodes in Fourier space (block filter kept)",
                "none": "staggered block means taken as node values (half-cell offsets ignored)"}[align]
             + "; vorticity = spectral curl dv/dx - du/dy (SDA's own vorticity() is -h*omega in index units); "
               "source: jax-cfd semi-implicit finite volumes on 256^2, Re 1000, drag 0.1, sin(4y) forcing, dt 0.2, "
               "states from t = 13; pdegen's residual (spectral x, central t) applies approximately: time "
               "truncation at dt = 0.2 plus coarse-graining")
    return ImportedData(samples, pde, f"{SOURCE}, {path.name}", notes)
