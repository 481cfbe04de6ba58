"""Kuramoto–Sivashinsky: u_t + u u_x + u_xx + u_xxxx = 0 on the periodic interval [0, L).

Samples are trajectories on the chaotic attractor: ``(batch, 1, num_states, R)`` = ``[u]`` at the
nodes ``x_j = j L / R`` (periodic, spacing ``L / R``) and the stored times ``t_n = n Δt``,
``n = 0 .. num_states - 1``, taken after a discarded burn-in (the initial condition, a small random
sum of low Fourier modes, is forgotten).  Units: x and t in the equation's own nondimensional
units, u in those of x / t.

Solver (batched torch, float64, any device): pseudo-spectral in x with Orszag's 2/3 rule on the
quadratic term, ETDRK4 in t (Cox & Matthews; Kassam & Trefethen) on the rfft spectrum,

    û_t = (k² - k⁴) û - (i k / 2) P(FFT(u²)),    k = 2π m / L,  P the 2/3 mask,

with ``substeps`` internal steps per stored Δt (default 8: h = 0.025).  Internally time is counted
in stored steps, τ = t / Δt, so one ETDRK4 object serves a batch whose samples have different Δt.

Residual (:meth:`KuramotoSivashinsky.residual`, units of u / t, every grid point):

    r = D_t u + ½ ∂_x P(u²) + ∂_x² u + ∂_x⁴ u,

the x-derivatives spectral and the quadratic term evaluated exactly as the solver does (the 2/3 rule
included), D_t the finite-difference time derivative of :func:`time_derivative` of order
``time_order`` (2, the default: central differences, one-sided second order at the first and last
state; 4: five-point stencils, shifted inwards at the ends), Δt the stored step.  Solver data
therefore has the residual of D_t's truncation error at the stored Δt.  Measured on default data
(L = 64, R = 256, Δt = 0.2, 16 trajectories) ``||r|| / ||residual_scale||`` is 6.6e-4 with
``time_order=2`` and 2.1e-5 with ``time_order=4``.  The second-order level falls as Δt² when the
stored step is refined; the fourth-order one is within a factor ~3 of the solver's own defect at
h = 0.025 (≈ 7e-6 relative: where the order-4 residual of one solve stored ever more finely stops
falling), so it converges only down to that floor.  ``residual_scale`` is per sample the largest
RMS of the three spatial terms (on attractor data u_xxxx, ≈ 1.9).  ``boundary_mask`` is all False:
nothing is prescribed at the periodic boundary or at the first stored state.

``vary_domain=True`` draws per sample ``L_s = L (1 + ε₁)`` and ``Δt_s = Δt (1 + ε₂)``,
ε ~ U(-variation, variation) ("L and T drawn ±10 %": T = (num_states - 1) Δt_s is the time span,
the number of stored states is fixed).  The sample then carries the constant channels ``"L"`` and
``"dt"`` (channels ``("u", "L", "dt")``), so a generative model generates them with u, and the
residual reads them (their mean over the grid) instead of the nominal L and Δt.  The grid keeps the
nominal extent; only relative residual norms are exact then.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from .base import PDE, Grid
from .finite_difference import time_derivative
from .spectral import ETDRK4, dealias_mask, wavenumbers
from .threads import torch_threads

TIME_ORDERS = (2, 4)
MIN_VALUES_PER_THREAD = 2**15
"""A CPU solve uses one torch thread per this many grid values of a state (128 trajectories at
R = 256), at most torch's thread count: the per-step FFTs of small batches lose to thread hand-offs
(docs/measurements.md)."""


class KuramotoSivashinsky(PDE):
    """``u_t + u u_x + u_xx + u_xxxx = 0`` on [0, L), trajectories of ``num_states`` states Δt apart.

    Channels ``("u",)`` (``("u", "L", "dt")`` with ``vary_domain``); grid ``(num_states, R)`` with
    axes ``("time", "periodic")`` and extent ``((num_states - 1) Δt, L)``.  ``burn_in`` time units are
    integrated and discarded before the first stored state.  The initial condition is
    ``ic_amplitude · Σ_{m=1}^{ic_modes} (a_m cos + b_m sin)(2π m x / L) / sqrt(ic_modes)``,
    a, b ~ N(0, 1) (RMS ``ic_amplitude``, zero mean; the mean is conserved).

    Solver parameters (not in :meth:`physics`): ``substeps`` ETDRK4 steps per stored Δt,
    ``time_order`` of the residual's time stencil (it does not change the data) and ``num_threads``
    for CPU solves (None: :data:`MIN_VALUES_PER_THREAD`).  The dynamics are chaotic, so runs with
    different ``substeps``, devices or FFT libraries agree closely only for a while: measured, the
    default h = Δt/8 and h = Δt/32 agree to 3e-7 of max |u| over 5 time units from the same state,
    but differ by 8e-4 at the first stored state after the default burn-in and by O(0.1) at its
    140th; they sample the same attractor (RMS of u ≈ 1.3).  ETDRK4's observed order on this grid is
    ≈ 3.45 (its known order reduction on stiff problems, k_max⁴ ≈ 2.5e4; 3.92 on a 64-point grid).
    """

    name = "ks"
    channels = ("u",)
    input_channels = ()
    solver_params = ("substeps", "time_order", "num_threads")

    def __init__(self, length: float = 64.0, resolution: int = 256, dt: float = 0.2, num_states: int = 140,
                 burn_in: float = 100.0, ic_modes: int = 16, ic_amplitude: float = 0.1,
                 vary_domain: bool = False, variation: float = 0.1, substeps: int = 8,
                 time_order: int = 2, num_threads: int | None = None) -> None:
        if int(resolution) != resolution or resolution < 8 or resolution % 2:
            raise ValueError(f"ks: resolution must be an even integer >= 8 grid points, got {resolution} "
                             f"(256 is the default for L = 64)")
        if not (math.isfinite(length) and length > 0 and math.isfinite(dt) and dt > 0):
            raise ValueError(f"ks: need a finite domain length > 0 and stored time step dt > 0, got "
                             f"length={length}, dt={dt}")
        if time_order not in TIME_ORDERS:
            raise ValueError(f"ks: time_order must be one of {TIME_ORDERS} (the residual's time stencil), "
                             f"got {time_order}")
        if int(num_states) != num_states or num_states < time_order + 1:
            raise ValueError(f"ks: num_states={num_states} is too few for the order-{time_order} time stencil: "
                             f"use at least {time_order + 1} (140 for training data, 640 for test data)")
        if not (burn_in >= 0 and math.isfinite(burn_in)):
            raise ValueError(f"ks: burn_in must be a finite time >= 0, got {burn_in}")
        if int(ic_modes) != ic_modes or not 1 <= ic_modes < resolution / 3:
            raise ValueError(f"ks: ic_modes must be an integer in [1, resolution / 3) so the initial condition "
                             f"is resolved and alias-free, got {ic_modes} with resolution {resolution}")
        if not (ic_amplitude > 0 and math.isfinite(ic_amplitude)):
            raise ValueError(f"ks: ic_amplitude must be a finite positive RMS, got {ic_amplitude}")
        if not 0 <= variation < 1 or (vary_domain and variation == 0):
            raise ValueError(f"ks: variation must be a fraction in [0, 1) (0.1 means ±10 %), and > 0 with "
                             f"vary_domain (else use vary_domain=False), got {variation}")
        if int(substeps) != substeps or substeps < 1:
            raise ValueError(f"ks: substeps must be a positive integer (ETDRK4 steps per stored dt), got {substeps}")
        if num_threads is not None and (int(num_threads) != num_threads or num_threads < 1):
            raise ValueError(f"ks: num_threads must be None (automatic) or a positive integer, got {num_threads}")
        self.length, self.resolution, self.dt = float(length), int(resolution), float(dt)
        self.num_states, self.burn_in = int(num_states), float(burn_in)
        self.ic_modes, self.ic_amplitude = int(ic_modes), float(ic_amplitude)
        self.vary_domain, self.variation = bool(vary_domain), float(variation)
        self.substeps, self.time_order = int(substeps), int(time_order)
        self.num_threads = None if num_threads is None else int(num_threads)
        if self.vary_domain:  # instance attributes: the sample carries its own L and Δt
            self.channels = ("u", "L", "dt")
            self.input_channels = ("L", "dt")
        self.grid = Grid((self.num_states, self.resolution), ((self.num_states - 1) * self.dt, self.length),
                         ("time", "periodic"))
        self._modes = wavenumbers((self.resolution,), (2 * math.pi,))[0]  # integer m = 0 .. R/2
        self._keep = dealias_mask((self.resolution,))

    def params(self) -> dict[str, Any]:
        return {"length": self.length, "resolution": self.resolution, "dt": self.dt,
                "num_states": self.num_states, "burn_in": self.burn_in, "ic_modes": self.ic_modes,
                "ic_amplitude": self.ic_amplitude, "vary_domain": self.vary_domain,
                "variation": self.variation, "substeps": self.substeps, "time_order": self.time_order,
                "num_threads": self.num_threads}

    @property
    def boundary_mask(self) -> Tensor:
        return torch.zeros(self.grid.shape, dtype=torch.bool)

    @property
    def burn_in_steps(self) -> int:
        """ETDRK4 steps of the burn-in: ``round(burn_in / Δt · substeps)`` (with ``vary_domain`` a
        sample's burn-in lasts ``burn_in · Δt_s / Δt``)."""
        return round(self.burn_in / self.dt * self.substeps)

    # ------------------------------------------------------------------------- inputs and solver

    def sample_inputs(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Initial conditions ``(n, 1, R)`` float64 on the generator's device; with ``vary_domain``
        ``(n, 3, R)``, rows 1 and 2 holding the sample's constant L_s and Δt_s."""
        device = generator.device if generator is not None else torch.device("cpu")
        coefficients = torch.randn((n, 2, self.ic_modes), generator=generator, dtype=torch.float64, device=device)
        x = torch.arange(self.resolution, dtype=torch.float64, device=device) * (2 * math.pi / self.resolution)
        phase = torch.arange(1, self.ic_modes + 1, dtype=torch.float64, device=device)[:, None] * x
        u0 = (coefficients[:, 0] @ torch.cos(phase) + coefficients[:, 1] @ torch.sin(phase))
        u0 = (self.ic_amplitude / math.sqrt(self.ic_modes)) * u0
        if not self.vary_domain:
            return u0.unsqueeze(1)
        factors = 1 + self.variation * (2 * torch.rand((n, 2), generator=generator, dtype=torch.float64,
                                                       device=device) - 1)
        nominal = torch.tensor([self.length, self.dt], dtype=torch.float64, device=device)
        domain = (factors * nominal)[:, :, None].expand(n, 2, self.resolution)
        return torch.cat([u0.unsqueeze(1), domain], dim=1)

    def solve(self, inputs: Tensor) -> Tensor:
        """Integrate the burn-in and the stored trajectory from initial conditions ``(n, 1, R)`` (or
        ``(n, R)``; ``(n, 3, R)`` with ``vary_domain``, see :meth:`sample_inputs`); returns samples
        ``(n, channels, num_states, R)`` float64 on the inputs' device."""
        u0, length, dt = self._check_inputs(inputs)
        n, size = u0.shape
        with torch.no_grad(), torch_threads(self.cpu_threads(n) if u0.device.type == "cpu" else None):
            k = (2 * math.pi / length) * self._modes.to(u0.device)  # (R/2 + 1,) or (n, R/2 + 1)
            # time in stored steps τ = t / Δt: v_τ = Δt (k² - k⁴) v + Δt N(v)
            stepper = ETDRK4(dt * (k**2 - k**4), 1.0 / self.substeps)
            coupling = -0.5j * dt * k * self._keep.to(u0.device)

            def nonlinear(v: Tensor) -> Tensor:
                return coupling * torch.fft.rfft(torch.fft.irfft(v, n=size) ** 2)

            v = stepper.integrate(torch.fft.rfft(u0), nonlinear, self.burn_in_steps)
            u = u0.new_empty((n, self.num_states, size))
            u[:, 0] = torch.fft.irfft(v, n=size)
            for state in range(1, self.num_states):
                v = stepper.integrate(v, nonlinear, self.substeps)
                u[:, state] = torch.fft.irfft(v, n=size)
        if not bool(torch.isfinite(u).all()):
            raise RuntimeError(f"ks: the integration blew up (non-finite values); the initial condition is "
                               f"probably far too large or substeps={self.substeps} far too small")
        if not self.vary_domain:
            return u.unsqueeze(1)
        domain = torch.cat([length, dt], dim=1)[:, :, None, None].expand(n, 2, self.num_states, size)
        return torch.cat([u.unsqueeze(1), domain], dim=1)

    def cpu_threads(self, n: int) -> int:
        """Torch threads for a CPU solve of ``n`` trajectories (see :data:`MIN_VALUES_PER_THREAD`)."""
        if self.num_threads is not None:
            return self.num_threads
        return max(1, min(torch.get_num_threads(), n * self.resolution // MIN_VALUES_PER_THREAD))

    def _check_inputs(self, inputs: Tensor) -> tuple[Tensor, Tensor | float, Tensor | float]:
        """The initial conditions ``(n, R)`` float64 and L, Δt: floats, or ``(n, 1)`` with ``vary_domain``."""
        rows = 3 if self.vary_domain else 1
        if not self.vary_domain and inputs.ndim == 2:
            inputs = inputs.unsqueeze(1)
        if inputs.ndim != 3 or tuple(inputs.shape[1:]) != (rows, self.resolution):
            raise ValueError(f"ks: solve expects inputs of shape (n, {rows}, {self.resolution}) as made by "
                             f"sample_inputs (vary_domain={self.vary_domain}), got {tuple(inputs.shape)}")
        x = inputs.detach().to(torch.float64)
        if not bool(torch.isfinite(x).all()):
            raise ValueError("ks: non-finite values (nan or inf) in the initial conditions passed to solve")
        if not self.vary_domain:
            return x[:, 0], self.length, self.dt
        domain = x[:, 1:, :1]
        if not bool((x[:, 1:] == domain).all() and (domain > 0).all()):
            raise ValueError("ks: rows 1 and 2 of the inputs (L and dt) must be positive and constant along x; "
                             "build them with sample_inputs")
        return x[:, 0], domain[:, 0], domain[:, 1]

    # ------------------------------------------------------------------------- residual

    def _terms(self, x: Tensor) -> tuple[Tensor, Tensor | float, tuple[Tensor, Tensor, Tensor]]:
        """u ``(B, T, R)``, the Δt to use and the spatial terms ``½ ∂_x P(u²)``, ``u_xx``, ``u_xxxx``."""
        self.check_sample(x)
        x = x.to(torch.float64)  # k⁴ (≈ 2.5e4 at R = 256) lifts float32 round-off to ~3e-3 of the scale
        u = x[:, 0]
        modes = self._modes.to(x.device, x.dtype)
        if self.vary_domain:
            k = (2 * math.pi / x[:, 1].mean(dim=(-2, -1)))[:, None, None] * modes  # (B, 1, R/2 + 1)
            dt = x[:, 2].mean(dim=(-2, -1))[:, None, None]
        else:
            k, dt = (2 * math.pi / self.length) * modes, self.dt
        size = self.resolution
        spectrum = torch.fft.rfft(u)
        advection = torch.fft.irfft(0.5j * k * self._keep.to(x.device) * torch.fft.rfft(u**2), n=size)
        diffusion = torch.fft.irfft(-(k**2) * spectrum, n=size)
        hyperdiffusion = torch.fft.irfft(k**4 * spectrum, n=size)
        return u, dt, (advection, diffusion, hyperdiffusion)

    def residual(self, x: Tensor) -> Tensor:
        """``(B, 1, num_states, R)`` in units of u / t: ``D_t u + ½ ∂_x P(u²) + u_xx + u_xxxx`` at every
        stored state (see the module docstring).  Differentiable in every channel (with
        ``vary_domain`` also in L and Δt, read as the channel means).  Evaluated in float64 whatever
        ``x.dtype`` (float32 round-off times k⁴ would exceed the data's truncation level), returned
        in ``x.dtype``."""
        u, dt, terms = self._terms(x)
        return (time_derivative(u, dt, self.time_order, dim=-2) + sum(terms)).unsqueeze(1).to(x.dtype)

    def residual_scale(self, x: Tensor) -> Tensor:
        """``(B, 1, num_states, R)``: per sample, the largest RMS (over the trajectory) of the three
        spatial terms ``u u_x``, ``u_xx``, ``u_xxxx``, constant over the grid."""
        with torch.no_grad():
            _, _, terms = self._terms(x)
            rms = torch.stack([t.square().mean(dim=(-2, -1)).sqrt() for t in terms]).amax(0)
        return rms[:, None, None, None].expand(-1, 1, *self.grid.shape).to(x.dtype)
