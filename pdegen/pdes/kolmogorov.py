"""Kolmogorov flow: 2-D incompressible Navier–Stokes in vorticity form on the torus [0, 2π)².

    ω_t + u·∇ω = ν Δω − μ ω + F(y),     F = curl f = −n A cos(n y),

``f = (A sin(n y), 0)`` the momentum forcing, ``ν = 1 / Re``, ``μ`` the linear drag (the SDA /
Kochkov et al. setting: Re = 1000, μ = 0.1, n = 4, A = 1).  Sign convention: ``Δψ = −ω``,
``u = ∂ψ/∂y``, ``v = −∂ψ/∂x``, so ``ω = ∂v/∂x − ∂u/∂y``.  Axis 1 of a sample is ``x``, axis 2 is
``y``; nodes ``x_i = 2π i / R`` (periodic spacing ``2π / R``).

Solver: pseudo-spectral on ``S × S`` nodes (``sim_resolution``), Galerkin-truncated by the 2/3
rule (the initial vorticity is projected onto ``|k_x|, |k_y| < S/3`` and the advection term is
masked to it, so the state never leaves it); the advection term is formed on the grid in
Basdevant's form ``∂x∂y(v² − u²) + (∂x² − ∂y²)(uv)`` (equal to ``u·∇ω`` for divergence-free ``u``,
four FFTs).  Time stepping by :class:`~.spectral.ETDRK4` with the exact linear part
``L = −ν|k|² − μ`` and ``N = F − P(u·∇ω)``, batched in float64 on the inputs' device.  The
internal step ``h = dt / substeps`` is the same for every sample and state, so data do not depend
on the batch they were solved in: ``substeps = ceil(dt · max_velocity / (cfl · 2π / S))`` keeps
the advective CFL number ``|u| h / Δx`` below ``cfl`` while ``|u| ≤ max_velocity`` (jax-cfd's
fixed-step rule, used by SDA; default 82 steps per Δt = 0.2 at 256²; the stationary flow has
max ``|u|`` ≈ 4-4.5).  The realised max ``|u|`` is checked after every stored interval: a warning
when it exceeds ``max_velocity``, an error when the state blows up.

Stored data: after ``burn_in`` time units (rounded up to whole ``dt``; discarded), ``num_states``
states ``Δt = dt`` apart, coarse-grained from ``S²`` to ``R²`` by :func:`coarse_grain`, the mean
over the ``r × r`` cell *centred on each coarse node* (``r = S / R``; for even ``r`` the fine
nodes on the cell's edges count half).  The plain ``reshape(...).mean()`` block mean centres its
cell 1.5 fine spacings (3/8 of a coarse cell) off the node, i.e. shifts the data against the grid
on which the residual evaluates ``F(y)``.  Channels ``("vorticity",)`` or, with ``with_velocity``,
``("vorticity", "u", "v")``, each the coarse-graining of the fine field (1/time, length/time).

Residual (physical units of ω / time): spectral derivatives in space on the stored ``R²`` grid
(first derivatives with the Nyquist wavenumber zeroed), second-order central differences in time,
one-sided second order at the first and last state (``finite_difference.time_derivative``):

    r_ω = D_t ω + u ω_x + v ω_y − ν Δω + μ ω − F,

with ``(u, v)`` from ``ω`` by Biot–Savart on the stored grid, or the stored velocity channels
with ``with_velocity``, which adds ``r_div = u_x + v_y`` and ``r_curl = v_x − u_y − ω`` (1/time).
It is O(Δt²) on exact smooth solutions (laminar state and Taylor–Green vortex: round-off and
order 2 in the tests), but on stored data it measures time truncation at Δt = 0.2 plus
coarse-graining (the sub-grid part of the filtered advection, aliasing of the sampled cell means).
Measured at the default setting (``tools/bench_kolmogorov.py``, ||r|| / ||residual_scale|| in the
discrete L2 norm): 0.72 at Δt = 0.2; from one run stored every 0.0125 and subsampled, 0.90, 0.59,
0.44, 0.43, 0.44 at Δt = 0.2, 0.1, 0.05, 0.025, 0.0125, so the coarse-graining floor is ≈ 0.4
(0.07 on the 256² data itself; a sharp spectral truncation to 64² would give ≈ 0.24); ``r_div``
and ``r_curl`` are 1.7 % and 5.4 % of the RMS of ω.  Compare generated samples with the data's
level, not with 0.  No boundary points: ``boundary_mask`` is all False.
"""

from __future__ import annotations

import functools
import math
import warnings
from typing import Any, NamedTuple

import torch
from torch import Tensor

from .base import PDE, Grid
from .finite_difference import time_derivative
from .grf import PeriodicGaussianRandomField
from .spectral import ETDRK4, dealias_mask, wavenumbers

TWO_PI = 2 * math.pi


# ----------------------------------------------------------------------------- spectral helpers


class SpectralOperators(NamedTuple):
    """Fourier multipliers on an ``n × n`` grid of [0, 2π)², on the ``rfft2`` spectrum ``(n, n//2+1)``:
    ``i k_x``, ``i k_y`` (Nyquist wavenumber zeroed: first derivatives of real fields stay real),
    ``|k|²`` and ``1/|k|²`` (0 at k = 0, so the mean of ψ is 0)."""

    ikx: Tensor
    iky: Tensor
    k2: Tensor
    inv_k2: Tensor

    def velocity(self, w_hat: Tensor) -> tuple[Tensor, Tensor]:
        """Spectra of ``(u, v) = (∂ψ/∂y, −∂ψ/∂x)`` with ``Δψ = −ω``, from the vorticity spectrum."""
        psi_hat = w_hat * self.inv_k2
        return self.iky * psi_hat, -self.ikx * psi_hat


@functools.lru_cache(maxsize=16)
def spectral_operators(n: int, device: torch.device, dtype: torch.dtype = torch.float64) -> SpectralOperators:
    """The :class:`SpectralOperators` of an ``n × n`` periodic grid (cached per device and dtype)."""
    kx, ky = wavenumbers((n, n), (TWO_PI, TWO_PI), dtype=dtype, device=device)
    k2 = kx**2 + ky**2
    inv_k2 = torch.where(k2 > 0, 1 / torch.where(k2 > 0, k2, 1), 0)
    nyquist = n // 2 if n % 2 == 0 else None
    kx1 = torch.where(kx.abs() == nyquist, 0, kx) if nyquist else kx
    ky1 = torch.where(ky.abs() == nyquist, 0, ky) if nyquist else ky
    return SpectralOperators(1j * kx1, 1j * ky1, k2, inv_k2)


def _irfft2(spectrum: Tensor, n: int) -> Tensor:
    return torch.fft.irfft2(spectrum, s=(n, n))


def coarse_grain(field: Tensor, factor: int) -> Tensor:
    """Mean of a periodic field ``(..., n, n)`` over the ``factor × factor`` cell centred on each
    coarse node: ``(..., n / factor, n / factor)``, coarse node ``m`` at fine node ``factor · m``.

    Per axis ``g_m = Σ_j w_j f_{r m + j}`` with ``w_j = 1/r`` for ``|j| < r/2`` and ``1/(2r)`` for
    ``|j| = r/2`` (even ``r``: the trapezoidal cell mean), indices modulo ``n``.  Exact on constants,
    symmetric (no phase shift: ``cos(k x) ↦ H(k) cos(k X)``, for ``r = 4``
    ``H(k) = cos(k h) cos²(k h / 2)``), equivariant under shifts by whole coarse cells; linear and
    differentiable.  ``factor = 1`` is the identity.  Any other periodic family can reuse it.
    """
    if factor == 1:
        return field
    n = field.shape[-1]
    if field.shape[-2] != n or n % factor:
        raise ValueError(f"coarse_grain: need a square field whose side is a multiple of {factor}, "
                         f"got {tuple(field.shape[-2:])}")
    half = factor // 2
    offsets = range(-half, half + 1)
    weights = [(0.5 if factor % 2 == 0 and abs(j) == half else 1.0) / factor for j in offsets]
    base = torch.arange(0, n, factor, device=field.device)
    for dim in (-2, -1):
        field = sum(w * field.index_select(dim, (base + j) % n) for j, w in zip(offsets, weights))
    return field


# ----------------------------------------------------------------------------- the PDE


class KolmogorovFlow(PDE):
    """Forced 2-D Navier–Stokes (Kolmogorov flow) trajectories, see the module docstring.

    Samples ``(batch, C, num_states, R, R)`` on ``Grid((T, R, R), ((T − 1) dt, 2π, 2π),
    ("time", "periodic", "periodic"))``, ``C = 1`` (ω) or 3 (ω, u, v with ``with_velocity``).
    Random inputs: the initial vorticity on the ``S × S`` simulation grid, a periodic Gaussian
    random field with covariance ``(−Δ + τ²)^(−α)`` scaled to the expected RMS ``init_rms`` (peak
    of the enstrophy spectrum near ``|k| = τ / sqrt(2α − 1) ≈ 4``).  ``burn_in`` (time units,
    rounded up to whole ``dt``; 12.8 = the 64 states SDA discards) is integrated and discarded
    before the first stored state.  ``max_velocity``, ``cfl`` or an explicit ``substeps`` choose
    the internal step (solver parameters: they change a chaotic trajectory beyond truncation
    level after long times, not its statistics).
    """

    name = "kolmogorov"
    channels: tuple[str, ...] = ("vorticity",)
    input_channels = ("vorticity",)
    solver_params = ("max_velocity", "cfl", "substeps")

    def __init__(self, resolution: int = 64, sim_resolution: int = 256, reynolds: float = 1000.0,
                 drag: float = 0.1, forcing_wavenumber: int = 4, forcing_amplitude: float = 1.0,
                 dt: float = 0.2, num_states: int = 64, burn_in: float = 12.8, with_velocity: bool = False,
                 init_alpha: float = 2.0, init_tau: float = 7.0, init_rms: float = 4.0,
                 max_velocity: float = 5.0, cfl: float = 0.5, substeps: int | None = None) -> None:
        for label, value in (("resolution", resolution), ("sim_resolution", sim_resolution),
                             ("num_states", num_states), ("forcing_wavenumber", forcing_wavenumber)):
            if int(value) != value:
                raise ValueError(f"kolmogorov: {label} must be an integer, got {value!r}")
        if resolution < 8 or sim_resolution < resolution or sim_resolution % resolution:
            raise ValueError(f"kolmogorov: resolution {resolution} must be >= 8 and divide sim_resolution "
                             f"{sim_resolution} (the data are sim_resolution / resolution times coarse-grained): "
                             f"e.g. resolution=64, sim_resolution=256")
        if not 1 <= forcing_wavenumber < min(sim_resolution / 3, resolution / 2):
            raise ValueError(f"kolmogorov: forcing_wavenumber {forcing_wavenumber} must be >= 1 and resolved "
                             f"by both grids (< sim_resolution / 3 and < resolution / 2)")
        if not (reynolds > 0 and drag >= 0 and math.isfinite(forcing_amplitude)):
            raise ValueError(f"kolmogorov: need reynolds > 0, drag >= 0 and a finite forcing_amplitude, got "
                             f"{reynolds}, {drag}, {forcing_amplitude}")
        if not (dt > 0 and num_states >= 3):
            raise ValueError(f"kolmogorov: need dt > 0 and num_states >= 3 (second-order time differences "
                             f"need three states), got dt={dt}, num_states={num_states}")
        if not burn_in >= 0:
            raise ValueError(f"kolmogorov: burn_in={burn_in} must be a non-negative time (12.8 = 64 intervals of "
                             f"0.2 is the SDA setting)")
        if not (init_alpha > 0 and init_tau > 0 and init_rms >= 0):
            raise ValueError(f"kolmogorov: need init_alpha > 0, init_tau > 0, init_rms >= 0, got "
                             f"{init_alpha}, {init_tau}, {init_rms}")
        if not (max_velocity > 0 and 0 < cfl <= 1.0):
            raise ValueError(f"kolmogorov: need max_velocity > 0 and 0 < cfl <= 1 (ETDRK4 with 2/3 "
                             f"dealiasing is unstable beyond about 1.3), got {max_velocity}, {cfl}")
        if substeps is not None and (int(substeps) != substeps or substeps < 1):
            raise ValueError(f"kolmogorov: substeps must be None (from the CFL rule) or >= 1, got {substeps}")
        self.resolution, self.sim_resolution = int(resolution), int(sim_resolution)
        self.reynolds, self.drag = float(reynolds), float(drag)
        self.forcing_wavenumber, self.forcing_amplitude = int(forcing_wavenumber), float(forcing_amplitude)
        self.dt, self.num_states, self.burn_in = float(dt), int(num_states), float(burn_in)
        self.with_velocity = bool(with_velocity)
        self.init_alpha, self.init_tau, self.init_rms = float(init_alpha), float(init_tau), float(init_rms)
        self.max_velocity, self.cfl = float(max_velocity), float(cfl)
        self.substeps = None if substeps is None else int(substeps)
        self.burn_intervals = math.ceil(self.burn_in / self.dt - 1e-9)
        """Stored intervals integrated and discarded: ``burn_in`` rounded up to a multiple of ``dt``."""
        self.channels = ("vorticity", "u", "v") if self.with_velocity else ("vorticity",)
        r, t = self.resolution, self.num_states
        self.grid = Grid((t, r, r), ((t - 1) * self.dt, TWO_PI, TWO_PI), ("time", "periodic", "periodic"))
        self.grf = PeriodicGaussianRandomField((sim_resolution,) * 2, (TWO_PI, TWO_PI), init_alpha, init_tau)
        k = torch.fft.fftfreq(sim_resolution, 1.0 / sim_resolution, dtype=torch.float64)
        eigenvalues = (k[:, None] ** 2 + k[None, :] ** 2 + init_tau**2) ** -init_alpha
        expected_rms = math.sqrt((eigenvalues.sum().item() - init_tau ** (-2 * init_alpha)) / TWO_PI**2)
        self._init_scale = self.init_rms / expected_rms  # E[g²] = Σ_k λ_k / |Ω| over all k ≠ 0

    # ------------------------------------------------------------------ parameters

    @property
    def viscosity(self) -> float:
        """ν = 1 / Re."""
        return 1.0 / self.reynolds

    @property
    def factor(self) -> int:
        """Coarse-graining factor ``sim_resolution / resolution``."""
        return self.sim_resolution // self.resolution

    @property
    def steps_per_state(self) -> int:
        """Internal ETDRK4 steps per stored interval ``dt``."""
        if self.substeps is not None:
            return self.substeps
        dx = TWO_PI / self.sim_resolution
        return max(1, math.ceil(self.dt * self.max_velocity / (self.cfl * dx) - 1e-9))

    @property
    def laminar_amplitude(self) -> float:
        """``a`` of the laminar steady state ``ω = a cos(n y)``: ``−ν n² a − μ a − n A = 0``, so
        ``a = −n A / (ν n² + μ)`` (Re = 1000, μ = 0.1, n = 4: −4 / 0.116); its velocity is
        ``u = −a sin(n y) / n``, ``v = 0``."""
        n = self.forcing_wavenumber
        return -n * self.forcing_amplitude / (self.viscosity * n**2 + self.drag)

    def forcing(self, resolution: int, dtype: torch.dtype = torch.float64, device: Any = None) -> Tensor:
        """``F(y) = −n A cos(n y)`` on the ``resolution²`` grid, ``(resolution, resolution)``."""
        y = torch.arange(resolution, dtype=dtype, device=device) * (TWO_PI / resolution)
        f = -self.forcing_wavenumber * self.forcing_amplitude * torch.cos(self.forcing_wavenumber * y)
        return f.expand(resolution, resolution)

    def static_fields(self) -> Tensor:
        """The forcing's shape ``−cos(n y)`` (F / (n A)), ``(1, R, R)``: windowed models take it as input, since
        a translation-equivariant network cannot tell where the forcing acts."""
        return self.forcing(self.resolution)[None] / (self.forcing_wavenumber * self.forcing_amplitude)

    def params(self) -> dict[str, Any]:
        return {"resolution": self.resolution, "sim_resolution": self.sim_resolution,
                "reynolds": self.reynolds, "drag": self.drag, "forcing_wavenumber": self.forcing_wavenumber,
                "forcing_amplitude": self.forcing_amplitude, "dt": self.dt, "num_states": self.num_states,
                "burn_in": self.burn_in, "with_velocity": self.with_velocity, "init_alpha": self.init_alpha,
                "init_tau": self.init_tau, "init_rms": self.init_rms, "max_velocity": self.max_velocity,
                "cfl": self.cfl, "substeps": self.substeps}

    @property
    def boundary_mask(self) -> Tensor:
        return torch.zeros(self.grid.shape, dtype=torch.bool)

    # ------------------------------------------------------------------ inputs and solver

    def sample_inputs(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Initial vorticity ``(n, 1, S, S)`` float64 on the generator's device: the periodic GRF
        ``(−Δ + τ²)^(−α)`` (zero mean) times ``init_rms / sqrt(E[g²])``."""
        return (self._init_scale * self.grf.sample(n, generator)).unsqueeze(1)

    def solve(self, inputs: Tensor) -> Tensor:
        """Trajectories ``(n, C, num_states, R, R)`` float64 on the inputs' device from initial
        vorticities ``(n, 1, S, S)`` or ``(n, S, S)`` on the simulation grid."""
        w0 = self.input_field(inputs, (self.sim_resolution,) * 2, "initial vorticities",
                              hint="draw them with sample_inputs at sim_resolution")
        s, r = self.sim_resolution, self.resolution
        if len(w0) == 0:
            return w0.new_zeros((0, self.num_channels, self.num_states, r, r))
        ops = spectral_operators(s, w0.device)
        mask = dealias_mask((s, s), device=w0.device)
        forcing_hat = torch.fft.rfft2(self.forcing(s, device=w0.device))
        kx, ky = wavenumbers((s, s), (TWO_PI, TWO_PI), device=w0.device)
        mixed, difference = mask * kx * ky, mask * (kx**2 - ky**2)

        def nonlinear(w_hat: Tensor) -> Tensor:
            """``F − P(u·∇ω)`` in Basdevant's form ``u·∇ω = ∂x∂y(v² − u²) + (∂x² − ∂y²)(u v)`` (exact
            for divergence-free u): four FFTs instead of five; one transform per call (batching the
            fields in one call was slower on CPU)."""
            u_hat, v_hat = ops.velocity(w_hat)
            u, v = _irfft2(u_hat, s), _irfft2(v_hat, s)
            return forcing_hat + mixed * torch.fft.rfft2(v * v - u * u) + difference * torch.fft.rfft2(u * v)

        steps = self.steps_per_state
        stepper = ETDRK4(-self.viscosity * ops.k2 - self.drag, self.dt / steps)
        with torch.no_grad():
            w_hat = torch.fft.rfft2(w0) * mask
            states, warned = [], False
            for interval in range(self.burn_intervals + self.num_states):
                if interval:
                    w_hat = stepper.integrate(w_hat, nonlinear, steps)
                fields = torch.stack([_irfft2(z, s) for z in (w_hat, *ops.velocity(w_hat))], dim=1)  # ω, u, v
                speed = fields[:, 1:].square().sum(dim=1).sqrt().amax()
                if not torch.isfinite(speed):
                    raise RuntimeError(f"kolmogorov: the solution blew up at t = {interval * self.dt:g}; lower "
                                       f"cfl or raise max_velocity (now {self.max_velocity}) for a finer step")
                if not warned and speed > self.max_velocity:
                    warned = True
                    warnings.warn(f"kolmogorov: max |u| = {speed.item():.3g} exceeds max_velocity = "
                                  f"{self.max_velocity} at t = {interval * self.dt:g}: the CFL number is "
                                  f"{speed.item() / self.max_velocity * self.cfl:.2f} > cfl; raise max_velocity",
                                  stacklevel=2)
                if interval >= self.burn_intervals:
                    kept = fields if self.with_velocity else fields[:, :1]
                    states.append(coarse_grain(kept, self.factor))
        return torch.stack(states, dim=2)

    def terms(self, x: Tensor) -> tuple[dict[str, Tensor], Tensor | None, Tensor | None]:
        """The five terms of ``r_ω`` as ``{"time": D_t ω, "advection": u·∇ω, "diffusion": −νΔω,
        "drag": μω, "forcing": −F}``, each ``(B, T, R, R)``, and, with velocity channels, ``r_div``
        and ``r_curl`` (else None); computed in at least float32 (for diagnostics and the residual)."""
        self.check_sample(x)
        x = x.to(torch.promote_types(x.dtype, torch.float32))
        r = self.resolution
        ops = spectral_operators(r, x.device, x.dtype)
        w = x[:, 0]
        w_hat = torch.fft.rfft2(w)
        if self.with_velocity:
            u, v = x[:, 1], x[:, 2]
            u_hat, v_hat = torch.fft.rfft2(u), torch.fft.rfft2(v)
        else:
            u_hat, v_hat = ops.velocity(w_hat)
            u, v = _irfft2(u_hat, r), _irfft2(v_hat, r)
        wx, wy, lap = _irfft2(torch.stack([ops.ikx * w_hat, ops.iky * w_hat, -ops.k2 * w_hat]), r).unbind(0)
        terms = {
            "time": time_derivative(w, self.dt, dim=1),
            "advection": u * wx + v * wy,
            "diffusion": -self.viscosity * lap,
            "drag": self.drag * w,
            "forcing": -self.forcing(r, x.dtype, x.device).expand_as(w),
        }
        if not self.with_velocity:
            return terms, None, None
        div = _irfft2(ops.ikx * u_hat + ops.iky * v_hat, r)
        curl = _irfft2(ops.ikx * v_hat - ops.iky * u_hat, r) - w
        return terms, div, curl

    def residual(self, x: Tensor) -> Tensor:
        """``(B, 1, T, R, R)``: ``r_ω``; with velocity ``(B, 3, T, R, R)``: ``[r_ω, r_div, r_curl]``
        (module docstring).  Differentiable in every channel; half precision is evaluated in float32
        and cast back."""
        terms, div, curl = self.terms(x)
        parts = [sum(terms.values())] + ([div, curl] if div is not None else [])
        return torch.stack(parts, dim=1).to(x.dtype)

    def residual_scale(self, x: Tensor) -> Tensor:
        """Shaped like :meth:`residual`, constant per sample: for ``r_ω`` the largest per-sample RMS
        (over space-time) of its five terms, for ``r_div`` and ``r_curl`` the RMS of ω."""
        terms, div, _ = self.terms(x)

        def rms(field: Tensor) -> Tensor:
            return field.square().mean(dim=(1, 2, 3)).sqrt()

        scale = torch.stack([rms(term) for term in terms.values()]).amax(dim=0)
        scales = [scale] + ([rms(x[:, 0].to(scale.dtype))] * 2 if div is not None else [])
        shape = (len(x), 1, *self.grid.shape)
        return torch.cat([s.view(-1, 1, 1, 1, 1).expand(shape) for s in scales], dim=1).to(x.dtype)
