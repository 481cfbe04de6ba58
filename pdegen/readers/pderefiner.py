"""PDE-Refiner / PDEArena Kuramoto–Sivashinsky (Lippe et al., NeurIPS 2023; github.com/pdearena/pdearena),
generated with LPSDA (Brandstetter, Welling & Worrall, ICML 2022; github.com/brandstetter-johannes/LPSDA).

Layout (LPSDA ``generate/generate_data.py``, ``generate_trajectories``; read by PDEArena's
``pdearena/data/oned/datapipes/kuramotosivashinsky1d.py``): one HDF5 file per split
(``KS_train_<N>.h5``, ``KS_valid.h5``, ``KS_test.h5``), holding a group named after the split
(``train``, ``valid``, ``test``) with the datasets ``pde_<T>-<X>`` ``(N, T, X)`` float64 (the
trajectories; PDEArena takes the first key starting with ``pde_``), ``dt`` ``(N,)`` and ``dx``
``(N,)`` (per trajectory), ``x`` ``(N, X)`` and ``t`` ``(N, T)``.  No normalisation: PDEArena
only rescales the conditioning scalars ``dt``, ``dx`` for its networks, never ``u``.

Simulation (LPSDA ``equations/PDEs.py::KS``; README command ``--experiment=KS --L=64 --nt=500``
with the defaults ``end_time=100, nt_effective=140, nx=256``): ``u_t + u u_x + u_xx + u_xxxx = 0``
on the periodic ``[0, L)``, pseudo-spectral in x (``scipy.fftpack.diff``, no dealiasing, the
non-conservative product ``u · u_x``), Radau IIA in t (``solve_ivp``, ``rtol = atol = 1e-9``),
states at ``linspace(0, T, nt)``; per trajectory ``L ~ U(0.9, 1.1) · 64`` and
``T ~ U(0.9, 1.1) · 100``, so ``dt = T / (nt - 1)`` ≈ 0.2 ± 10 % and ``dx = L / nx``; the nodes
are ``x_j = j L / nx`` (pdegen's periodic grid).  Only the last ``nt_effective`` states are kept:
the first ``nt - nt_effective`` (360 for the README's command, t < 360 dt ≈ 72) are a discarded
burn-in, and ``t`` holds the kept times.  The initial state is 10 sines of wavenumber 1 or 2 with
amplitudes U(-½, ½) (RMS ≈ 0.65), not pdegen's; after the burn-in it is forgotten.  PDE-Refiner's
models then step every 4th stored state (PDEArena's ``time_step=4``, Δt ≈ 0.8): ``stride=4``.

Mapping onto :class:`~pdegen.pdes.ks.KuramotoSivashinsky`: the same equation, the same nodes.
When every trajectory has the same ``L`` and ``dt`` the plain family (channels ``("u",)``) gets
them.  Otherwise the file is LPSDA's "L and T drawn ±10 %" design, which is pdegen's
``vary_domain`` variant exactly (``L_s = L (1 + ε₁)``, ``Δt_s = Δt (1 + ε₂)``, a burn-in of a fixed
number of steps lasting ``burn_in · Δt_s / Δt``): channels ``("u", "L", "dt")`` hold each sample's
constant ``L_s = X · dx`` and ``Δt_s = stride · dt``, around the nominal ``length`` / ``dt``
(default LPSDA's 64 and 100 / 499) within ``variation`` (default 0.1); a file outside that range
is refused (pass its nominal values).

Residual: pdegen's (spectral x with the 2/3 rule on ``½ ∂_x u²``, second-order differences in t)
applies up to its time-difference truncation at the stored Δt, as on pdegen's own data (6.6e-4
relative at Δt = 0.2, L = 64, R = 256; measured on pdegen trajectories written in this layout with
LPSDA's ±10 % L and Δt: 6.3e-4 median, 1.0e-2 with ``stride=4``): Radau at 1e-9 is far more accurate
than that, and LPSDA's undealiased product differs from the dealiased one only by the aliasing
of the top third of the spectrum, which attractor data at R = 256 hardly populate.
"""

from __future__ import annotations

import math
from pathlib import Path

import h5py
import numpy as np
import torch

from pdegen.pdes.ks import KuramotoSivashinsky

from ._common import ImportedData, LayoutError, existing, open_hdf5, take

SOURCE = ("PDE-Refiner / PDEArena Kuramoto-Sivashinsky (Lippe et al., NeurIPS 2023; github.com/pdearena/pdearena), "
          "generated with LPSDA (github.com/brandstetter-johannes/LPSDA)")
SPLITS = ("train", "valid", "test")
LENGTH, DT = 64.0, 100.0 / 499
"""LPSDA's README command for KS: L = 64, end_time = 100 over nt = 500 states."""
IC_MODES, IC_AMPLITUDE = 2, math.sqrt(10 / 24)
"""LPSDA's initial state: 10 sines of wavenumber 1 or 2, amplitudes U(-1/2, 1/2) (RMS sqrt(10/24))."""
TOLERANCE = 1e-9


def read_pderefiner_ks(source: str | Path, split: str = "train", num_samples: int | None = None, stride: int = 1,
                       length: float = LENGTH, dt: float = DT, variation: float = 0.1) -> ImportedData:
    """Read a PDE-Refiner / PDEArena KS file (``KS_train_2048.h5`` etc.) as
    :class:`~pdegen.pdes.ks.KuramotoSivashinsky` trajectories.

    ``split``: the group to read (``"train"``, ``"valid"`` or ``"test"``); ``stride``: keep every
    ``stride``-th stored state (PDE-Refiner's models use 4); ``length``, ``dt``, ``variation``: the
    nominal L and stored Δt and the relative spread of the ``vary_domain`` variant, used only when
    the trajectories' L or Δt differ (module docstring).
    """
    path = existing(source, "PDE-Refiner KS HDF5 file")
    if int(stride) != stride or stride < 1:
        raise ValueError(f"PDE-Refiner KS: stride must be a positive integer (keep every stride-th state), "
                         f"got {stride}")
    stride = int(stride)
    layout = (f'a group per split ({", ".join(SPLITS)}) with datasets "pde_<T>-<X>" (N, T, X), "dt" (N,), '
              f'"dx" (N,) and optionally "t" (N, T)')
    with open_hdf5(path, f"LPSDA's layout: {layout}") as file:
        if split not in file or not isinstance(file[split], h5py.Group):
            raise LayoutError(f"{path}: no group {split!r} among {sorted(file.keys())}; expected {layout} (pass "
                              f"split= one of the file's groups)")
        group = file[split]
        keys = sorted(k for k in group.keys() if k.startswith("pde_"))
        missing = [k for k in ("dt", "dx") if k not in group] + ([] if keys else ["pde_<T>-<X>"])
        if missing:
            raise LayoutError(f"{path}: group {split!r} has no {missing} among {sorted(group.keys())}; "
                              f"expected {layout}")
        data = group[keys[0]]
        if data.ndim == 4 and data.shape[2] == 1:  # PDEArena also accepts a channel axis
            data = data[:, :, 0]
        if data.ndim != 3:
            raise LayoutError(f"{path}: {split}/{keys[0]} has shape {data.shape}; expected (N, T, X)")
        count, steps, points = data.shape
        step = np.asarray(group["dt"][()], dtype=np.float64).ravel()
        spacing = np.asarray(group["dx"][()], dtype=np.float64).ravel()
        if step.shape != (count,) or spacing.shape != (count,):
            raise LayoutError(f"{path}: dt {step.shape} / dx {spacing.shape} do not match {keys[0]} {data.shape}; "
                              f"expected one value per trajectory, ({count},)")
        start = None
        if "t" in group:
            times = np.asarray(group["t"][()], dtype=np.float64)
            if times.shape != (count, steps):
                raise LayoutError(f"{path}: t has shape {times.shape}; expected (N, T) = {(count, steps)}")
            start = times[:, 0] / step  # the burn-in in stored steps
        n = take(count, num_samples)
        u = torch.from_numpy(np.asarray(data[:n, ::stride], dtype=np.float64))
    step, spacing = step[:n] * stride, spacing[:n]
    lengths = points * spacing
    kept = u.shape[1]
    if kept < 3:
        raise ValueError(f"PDE-Refiner KS: stride={stride} keeps {kept} of {steps} states; the residual needs >= 3")
    steps_before = None if start is None else float(np.median(start[:n]))
    if start is not None and np.abs(start[:n] - steps_before).max() > 1e-6 * max(1.0, steps_before):
        raise LayoutError(f"{path}: the first stored times t[:, 0] are not a common number of steps dt (from "
                          f"{start[:n].min():.6g} to {start[:n].max():.6g} steps); expected LPSDA's fixed burn-in")
    burn_steps = 0.0 if steps_before is None else steps_before / stride  # in kept steps
    constant = all(np.ptp(v) <= TOLERANCE * abs(v.mean()) for v in (lengths, step))
    common = dict(resolution=points, num_states=kept, ic_modes=min(IC_MODES, math.ceil(points / 3) - 1),
                  ic_amplitude=IC_AMPLITUDE)
    if constant:
        pde = KuramotoSivashinsky(length=float(lengths.mean()), dt=float(step.mean()),
                                  burn_in=burn_steps * float(step.mean()), **common)
        samples = u.unsqueeze(1)
        domain = f"L = {pde.length:.6g}, dt = {pde.dt:.6g} for every trajectory"
    else:
        nominal = np.array([length, dt * stride])
        for name, values, centre in (("L", lengths, nominal[0]), ("dt", step, nominal[1])):
            if np.abs(values / centre - 1).max() > variation * (1 + 1e-9):
                raise ValueError(f"PDE-Refiner KS: the trajectories' {name} range over [{values.min():.6g}, "
                                 f"{values.max():.6g}], not within +-{variation:g} of the nominal {centre:.6g}; pass "
                                 f"the file's nominal length= and dt= (the stored step) and variation=")
        pde = KuramotoSivashinsky(length=float(length), dt=float(dt) * stride, burn_in=burn_steps * float(dt) * stride,
                                  vary_domain=True, variation=float(variation), **common)
        domain_values = torch.from_numpy(np.stack([lengths, step], axis=1))[:, :, None, None]
        samples = torch.cat([u.unsqueeze(1), domain_values.expand(n, 2, kept, points)], dim=1)
        domain = (f"L in [{lengths.min():.6g}, {lengths.max():.6g}], dt in [{step.min():.6g}, {step.max():.6g}] per "
                  f"trajectory: vary_domain channels (u, L, dt) around L = {length:.6g}, dt = {pde.dt:.6g}")
    burn = ("burn-in unknown (no 't' dataset; burn_in set to 0)" if steps_before is None else
            f"first stored state after {steps_before:.6g} discarded steps (LPSDA keeps the last nt_effective states)")
    notes = (f"no value scaling (u stored in physical units, float64); {domain}; every {stride} of {steps} stored "
             f"states; {burn}; source: u_t + u u_x + u_xx + u_xxxx = 0, scipy.fftpack pseudo-spectral x without "
             f"dealiasing, Radau IIA t at tol 1e-9, nodes j L / X; pdegen's residual (spectral x with the 2/3 rule, "
             f"finite differences in t) applies up to its time truncation at dt (same equation and grid; the "
             f"aliasing difference is negligible on resolved attractor data); the initial-condition parameters "
             f"describe pdegen's sampler (LPSDA: 10 sines of wavenumber 1-2)")
    return ImportedData(samples, pde, f"{SOURCE}, {path.name} [{split}]", notes)
