"""PDEBench 1-D Burgers and 2-D Darcy flow (Takamoto et al., NeurIPS 2022 Datasets; github.com/pdebench/PDEBench).

Burgers layout (``pdebench/data_gen/data_gen_NLE/Data_Merge.py``, ``transform``): an HDF5 file
``1D_Burgers_Sols_Nu<ν̃>.hdf5`` with datasets ``"tensor"`` ``(N, T, X)`` float32 (sample, time,
space), ``"x-coordinate"`` ``(X,)`` — the cell centres ``x_i = x_L + (i + ½) Δx`` — and
``"t-coordinate"``, which holds ``T + 1`` entries ``0, Δt_save, ...`` (``burgers_multi_solution_Hydra.py``
builds it as ``arange(it_tot + 1) · dt_save`` for ``it_tot`` stored states, so the last entry
belongs to no state; only the first ``T`` are used), and the attribute ``Nu = ν̃``.  Published
files: ``T = 201`` states at ``Δt = 0.01`` on ``[0, 2]``, ``X = 1024`` cells on ``[0, 1]``
(config ``multi/<ν̃>.yaml``: ``xL = 0, xR = 1, dt_save = 0.01, fin_time = 2, nx = 1024``).

Equation (``burgers_multi_solution_Hydra.py``): the flux is ``u²/2`` (upwinded, second-order MUSCL
limiter) minus ``epsilon · pi_inv · ∂_x u`` with ``pi_inv = 1/π``, i.e.

    u_t + (u²/2)_x = (ν̃ / π) u_xx,    periodic (``utils.bc``: mode "periodic"),

so the viscosity is ``ν = Nu / π`` (Nu = 0.01 gives ν ≈ 3.18e-3), verified in the code.  The
scheme is a finite-volume, predictor–corrector (midpoint) time stepper at CFL 0.25 with cell
averages stored in float32; its initial states (``utils.init_multi``: two random sines of
wavenumber 1..4 with random amplitudes and phases, sometimes ``|·|`` or windowed) are not
pdegen's GRF, so the imported PDE's ``alpha, tau, amplitude`` describe pdegen's input measure,
not the file's.

Mapping onto :class:`~pdegen.pdes.burgers.Burgers` (x ∈ [0, 1) periodic nodes ``j / R``, times
``n Δt`` on ``[0, T_final]``):

* **space.**  The cell centres are an equispaced periodic grid shifted by ``x_L + Δx/2``; Burgers
  is translation invariant on the torus, so relabelling them ``j · Δx`` is exact.  A domain of
  length ``L ≠ 1`` is rescaled exactly by ``x' = x/L, t' = t/L`` (u unchanged), ``ν' = ν/L``.
  ``resolution`` R: ``X`` itself by default; a divisor of ``X`` subsamples (``u[..., ::X/R]``,
  the stored point values), anything else is trigonometric interpolation
  (:func:`~._common.fourier_resample`).
* **time.**  ``final_time`` (default: the last stored state) must be a stored time and
  ``num_times - 1`` must divide its number of intervals: the states are subsampled, never
  interpolated.
* **residual.**  pdegen's residual (spectral in x, second-order differences in t) applies only
  approximately: the data are a different (finite-volume, limited) discretisation, stored in
  float32 (≈ 1e-7 relative), and at ν ≈ 3e-3 the shocks are a few cells wide on 1024 cells, so a
  subsampled grid under-resolves them (expect O(1) relative residuals at fronts for R ≪ X).

Darcy layout (``data_gen_NLE/Data_Merge.py``, ``merge`` for ``ReacDiff``; read by
``models/fno/utils.py``): ``2D_DarcyFlow_beta<β>_Train.hdf5`` with ``"nu"`` ``(N, X, Y)`` float32, the
coefficient ``a`` at the cell centres, ``"tensor"`` ``(N, 1, X, Y)`` float32, the solution ``u`` at
the same points, ``"x-coordinate"`` / ``"y-coordinate"`` the cell centres ``(i + ½) / X`` of
[0, 1] (published: X = Y = 128, β ∈ {0.01, 0.1, 1, 10, 100}), and the attribute ``beta``.

Equation and scheme (``ReactionDiffusionEq/reaction_diffusion_2D_multi_solution_Hydra.py``):
``-∇·(a ∇u) = β`` reached as the late state of ``u_t = ∇·(a ∇u) + β`` (explicit predictor–corrector,
CFL 0.25), a finite-volume 5-point flux with *arithmetic* face means ``(a_P + a_Q)/2``; the boundary
(``utils.bc_2D``: mode ``"Neumann"`` for ``u``, which in fact sets the ghost cells to **zero**, and
``"trans"`` for ``a``, ghost = the adjacent cell) makes the wall flux ``a_0 (u_0 - 0) / Δx``, i.e.
``u = 0`` at the ghost-cell centres ``-Δx/2`` and ``1 + Δx/2``.  ``a = 1`` where a sum of 5 random
Gaussian bumps exceeds its batch mean, else ``0.1``; the initial state is a random constant in
(0.1, 10) plus a windowed random Fourier field.  The file holds the state at ``t = 1.75`` (index
``-2`` of the 9 saved states at ``dt_save = 0.25`` up to ``fin_time = 2``), so the steady equation
holds up to the not fully decayed transient ``u_t``.

Mapping onto :class:`~pdegen.pdes.darcy.Darcy` (nodes ``i h``, boundary nodes included, ``u = 0``
there): the ghost-cell centres are pdegen's boundary nodes, so the ``X × Y`` cells padded with a
ring of ``u = 0`` (``a`` padded with the adjacent value, as the source's ghost cells) are an
``(X + 2)²`` node grid of spacing ``Δx`` on ``[-Δx/2, 1 + Δx/2]``.  Rescaled to pdegen's [0, 1]
(``h = 1/(X + 1)``), the source's discrete equation is exactly pdegen's arithmetic-mean scheme with
``forcing = β (1 + Δx)²``, so pdegen's residual measures only the transient left at t = 1.75 and
float32 rounding.  Measured on an emulation of the source's generator (its coefficient recipe and
time stepping, a constant start in (0.1, 10) with a small Fourier field, no window; 8 samples at
32² and 64² cells): pdegen's relative residual has median ≈ 1.3e-3 (max
0.26) at β = 1, 1.4e-4 (max 0.017) at β = 100 and 0.15 (max 28) at β = 0.01, with ``u`` within the
same relative distance of the steady solution: the transient of the start (a constant up to 10)
does not scale with β while the solution does, and it decays slowest where ``a`` is mostly 0.1.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import torch

from pdegen.pdes.burgers import Burgers
from pdegen.pdes.darcy import Darcy

from ._common import ImportedData, LayoutError, check_uniform, existing, fourier_resample, open_hdf5, take

SOURCE = "PDEBench 1-D Burgers (Takamoto et al., NeurIPS 2022; github.com/pdebench/PDEBench)"
DARCY_SOURCE = "PDEBench 2-D Darcy flow (Takamoto et al., NeurIPS 2022; github.com/pdebench/PDEBench)"
CHUNK = 256
"""Samples read from the HDF5 file at once (the published files hold 10000 × 201 × 1024 float32)."""


def read_pdebench_burgers(source: str | Path, resolution: int | None = None, num_times: int | None = None,
                          final_time: float | None = None, num_samples: int | None = None,
                          nu: float | None = None) -> ImportedData:
    """Read a PDEBench ``1D_Burgers_Sols_Nu*.hdf5`` file as :class:`~pdegen.pdes.burgers.Burgers` samples.

    ``resolution``: stored x points (default all, must be even); ``final_time``: last time kept,
    in the file's time units (default the last state); ``num_times``: states kept on
    ``[0, final_time]`` (default every stored one); ``nu``: the file's ``Nu`` when neither the
    ``Nu`` attribute nor the file name gives it (the viscosity is ``Nu / π``).  Samples,
    viscosity and time are rescaled to x ∈ [0, 1) when the file's domain has another length.
    """
    path = existing(source, "PDEBench Burgers HDF5 file")
    expected = ('datasets "tensor" (N, T, X), "x-coordinate" (X,) and "t-coordinate" (T or T + 1,), '
                'attribute "Nu"')
    with open_hdf5(path, f"PDEBench's {expected}") as file:
        missing = [key for key in ("tensor", "x-coordinate", "t-coordinate") if key not in file]
        if missing:
            raise LayoutError(f"{path}: no {missing} among {sorted(file.keys())}; expected {expected}")
        tensor = file["tensor"]
        if tensor.ndim != 3:
            raise LayoutError(f"{path}: tensor has shape {tensor.shape}; expected (N, T, X) for 1-D Burgers")
        count, steps, cells = tensor.shape
        x = np.asarray(file["x-coordinate"][()], dtype=np.float64)
        t = np.asarray(file["t-coordinate"][()], dtype=np.float64)
        if x.shape != (cells,) or t.ndim != 1 or len(t) not in (steps, steps + 1):
            raise LayoutError(f"{path}: x-coordinate {x.shape} / t-coordinate {t.shape} do not match tensor "
                              f"{tensor.shape}; expected (X,) and (T,) or (T + 1,)")
        nu_file = _nu(file.attrs.get("Nu"), path, nu)
        dx = check_uniform(x, "x-coordinate", path)
        dt = check_uniform(t[:steps], "t-coordinate", path)
        length = dx * cells
        stride, kept = _time_stride(steps, dt, final_time, num_times, path)
        resolution = cells if resolution is None else int(resolution)
        n = take(count, num_samples)
        parts = []
        for start in range(0, n, CHUNK):
            block = torch.from_numpy(np.asarray(tensor[start:min(n, start + CHUNK), : kept:stride], np.float64))
            parts.append(_resample(block, resolution))
        samples = torch.cat(parts).unsqueeze(1)
    viscosity = nu_file / math.pi / length
    span = (kept - 1) * dt / length
    pde = Burgers(resolution=resolution, num_times=samples.shape[2], viscosity=viscosity, final_time=span)
    scaling = "" if abs(length - 1) < 1e-9 else f" rescaled from x in [0, {length:.6g}) by x/L, t/L, nu/L;"
    notes = (f"u_t + (u^2/2)_x = (Nu/pi) u_xx with Nu = {nu_file:.6g}: viscosity {viscosity:.6g}, no value scaling;"
             f"{scaling} cell centres relabelled as nodes (translation-exact), x {cells} -> {resolution} points, "
             f"t every {stride} of {steps} stored states up to t = {span:.6g}; source scheme: finite-volume MUSCL "
             f"upwind flux + predictor-corrector, float32 storage; pdegen's spectral-x/central-t residual applies "
             f"only approximately (different discretisation, under-resolved shocks when subsampled)")
    return ImportedData(samples, pde, f"{SOURCE}, {path.name}", notes)


def read_pdebench_darcy(source: str | Path, num_samples: int | None = None, beta: float | None = None) -> ImportedData:
    """Read a PDEBench ``2D_DarcyFlow_beta*_Train.hdf5`` file as :class:`~pdegen.pdes.darcy.Darcy` samples
    ``[a, u]`` on ``(X + 2) × (Y + 2)`` nodes: the cells plus the source's zero ghost ring (module
    docstring), ``forcing = β (1 + Δx)²``.  ``beta``: the source term when neither the ``beta``
    attribute nor the file name gives it."""
    path = existing(source, "PDEBench Darcy HDF5 file")
    expected = ('datasets "nu" (N, X, X), "tensor" (N, 1, X, X), "x-coordinate" and "y-coordinate" (X,) (cell '
                'centres), attribute "beta"')
    with open_hdf5(path, f"PDEBench's {expected}") as file:
        missing = [key for key in ("nu", "tensor", "x-coordinate", "y-coordinate") if key not in file]
        if missing:
            raise LayoutError(f"{path}: no {missing} among {sorted(file.keys())}; expected {expected}")
        nu, tensor = file["nu"], file["tensor"]
        if tensor.ndim == 3:
            tensor = tensor[:, None]
        if nu.ndim != 3 or tensor.ndim != 4 or tensor.shape[1] != 1 or tensor.shape[2:] != nu.shape[1:] \
                or len(tensor) != len(nu) or nu.shape[1] != nu.shape[2]:
            raise LayoutError(f"{path}: nu {nu.shape} / tensor {tensor.shape} do not match; expected {expected}")
        count, cells = nu.shape[0], nu.shape[1]
        spacing = [check_uniform(file[key][()], key, path) for key in ("x-coordinate", "y-coordinate")]
        if any(abs(step * cells - 1) > 1e-3 for step in spacing):
            raise LayoutError(f"{path}: coordinate spacings {spacing} are not 1/{cells}; expected {cells} cell "
                              f"centres on [0, 1]")
        beta_file = _attribute(file.attrs.get("beta"), path, beta, "beta", "the source term of -div(a grad u) = beta")
        n = take(count, num_samples)
        a = torch.from_numpy(np.asarray(nu[:n], dtype=np.float64))
        u = torch.from_numpy(np.asarray(tensor[:n, 0], dtype=np.float64))
    if not bool((a > 0).all()):
        raise LayoutError(f"{path}: nu has values <= 0; expected PDEBench's positive coefficient (0.1 and 1)")
    a = torch.nn.functional.pad(a[:, None], (1, 1, 1, 1), mode="replicate")[:, 0]  # the source's "trans" ghosts
    u = torch.nn.functional.pad(u, (1, 1, 1, 1))  # its zero ghost cells: pdegen's boundary nodes
    forcing = beta_file * (1 + 1 / cells) ** 2
    a_high, a_low = (float(f"{float(v):.7g}") for v in (a.max(), a.min()))  # float32 0.1 -> 0.1
    pde = Darcy(resolution=cells + 2, a_high=a_high, a_low=a_low, forcing=forcing,
                face_average="arithmetic")
    notes = (f"no value scaling (float32 a and u); -div(a grad u) = beta with beta = {beta_file:.6g}: the {cells}^2 "
             f"cell centres plus the source's ghost ring (u = 0, a copied from the adjacent cell) taken as "
             f"{cells + 2}^2 nodes, rescaled from [-dx/2, 1 + dx/2] to [0, 1], so forcing = beta (1 + 1/{cells})^2 = "
             f"{forcing:.6g}; source scheme: finite-volume 5-point flux with arithmetic face means, pdegen's with "
             f"face_average='arithmetic' (identical discrete operator); the stored u is the state at t = 1.75 of "
             f"u_t = div(a grad u) + beta from a random start, so pdegen's residual measures the undecayed transient "
             f"(larger for small beta) plus float32 rounding; a is PDEBench's thresholded Gaussian bumps (0.1 / 1), "
             f"not pdegen's GRF (a_high, a_low are the file's extremes)")
    return ImportedData(torch.stack([a, u], dim=1), pde, f"{DARCY_SOURCE}, {path.name}", notes)


def _nu(attribute: object, path: Path, override: float | None) -> float:
    """``Nu`` from the argument, the file's attribute or its name ``..._Nu0.01.hdf5``, in that order."""
    return _attribute(attribute, path, override, "Nu", "the equation's viscosity is Nu / pi")


def _attribute(attribute: object, path: Path, override: float | None, name: str, meaning: str) -> float:
    """A parameter from the argument, the file's attribute ``name`` or its file name (``..._<name><value>_...``)."""
    if override is not None:
        return float(override)
    if attribute is not None:
        return float(np.asarray(attribute).item())
    match = re.search(name + r"([0-9.eE+-]+?)(?:_|\.hdf5|\.h5|$)", path.name)
    if match:
        try:
            return float(match.group(1))
        except ValueError:
            pass
    raise LayoutError(f"{path}: no {name!r} attribute and no {name}<value> in the file name; pass "
                      f"{name.lower()}=<{name}> ({meaning})")


def _time_stride(steps: int, dt: float, final_time: float | None, num_times: int | None,
                 path: Path) -> tuple[int, int]:
    """``(stride, kept)``: read states ``0, stride, ..., kept - 1``."""
    last = steps - 1 if final_time is None else round(final_time / dt)
    if final_time is not None and (abs(last * dt - final_time) > 1e-6 * max(1.0, final_time) or not 2 <= last < steps):
        raise ValueError(f"{path}: final_time={final_time} is not a stored time: use a multiple of dt = {dt:.6g} "
                         f"in [{2 * dt:.6g}, {(steps - 1) * dt:.6g}]")
    if num_times is None:
        return 1, last + 1
    if int(num_times) != num_times or num_times < 3 or last % (num_times - 1):
        options = [d + 1 for d in range(2, last + 1) if last % d == 0]
        raise ValueError(f"{path}: num_times={num_times} does not subsample the {last + 1} stored states up to "
                         f"t = {last * dt:.6g} evenly; use one of {options} (or change final_time)")
    return last // (num_times - 1), last + 1


def _resample(block: torch.Tensor, resolution: int) -> torch.Tensor:
    cells = block.shape[-1]
    if resolution < 8 or resolution % 2:
        raise ValueError(f"PDEBench Burgers: resolution must be an even integer >= 8, got {resolution}")
    if cells % resolution == 0:
        return block[..., :: cells // resolution]
    return fourier_resample(block, resolution, dim=-1)
