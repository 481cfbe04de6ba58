"""Viscous Burgers ``u_t + u u_x = ν u_xx`` for PINNs: x ∈ [-1, 1], t ∈ [0, 1], ``u(x, 0) = -sin(πx)``,
``u(±1, t) = 0``, ``ν = 0.01/π`` (Raissi et al. 2019); non-dimensional units.

The solution steepens into a shock at x = 0 (inviscid breaking time ``1/π ≈ 0.318``; afterwards a
front of width ~``ν``). The reference is the Cole–Hopf closed form (:func:`cole_hopf_sine`) by
Gauss–Hermite quadrature in float64: against 300 nodes it changes by 2e-7 / 1e-9 / 1e-13 (max over a
401 × 101 grid of x × t ∈ [1e-3, 1], shock included) with 50 / 60 / 80 nodes and by < 4e-15 from
100 nodes on; a trapezoidal rule on ``η ∈ [-40σ, 40σ]`` (spacing 2e-3 σ) agrees to 6e-16. The
default 200 nodes is thus exact to rounding: its autograd PDE residual is ≤ 3e-14 over the domain
(|u_t| up to 6), and pdegen's periodic spectral :class:`~pdegen.pdes.burgers.Burgers` (rescaled to
[0, 1), 256 nodes, ETDRK4 step 5e-4) agrees to 2e-12 at t = 0.2 (max over its nodes).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from .base import Field, PointwiseProblem, space_time_derivatives

MAX_QUADRATURE_POINTS = 350
"""numpy's ``hermgauss`` returns NaN/zero weights from about 360 nodes on."""

CHUNK_ELEMENTS = 2**22
"""Points × quadrature nodes (or Fourier modes) evaluated at once: ~32 MB per float64 array."""


def cole_hopf_sine(x: Tensor, t: Tensor, viscosity: float, quadrature_points: int = 200) -> Tensor:
    """The exact solution of viscous Burgers on the line with ``u(x, 0) = -sin(πx)`` (Cole–Hopf):

        u = -∫ sin(π(x-η)) f(x-η) e^{-η²/4νt} dη / ∫ f(x-η) e^{-η²/4νt} dη,   f(y) = e^{-cos(πy)/(2πν)},

    by ``quadrature_points``-node Gauss–Hermite quadrature in ``η = √(4νt) z``, the exponents
    shifted by their maximum per point (``f`` alone spans ``e^{±1/(2πν)}``, ``e^{±50}`` for the
    default ν). Exactly ``-sin(πx)`` at ``t = 0``. ``x``, ``t``: same shape, ``t >= 0``; float64
    result of that shape, differentiable in both (chunked over points)."""
    if not 1 <= quadrature_points <= MAX_QUADRATURE_POINTS:
        raise ValueError(f"cole_hopf_sine: quadrature_points must be in [1, {MAX_QUADRATURE_POINTS}] (numpy's "
                         f"hermgauss fails above), got {quadrature_points}; 100 already converge to rounding")
    x, t = x.to(torch.float64), t.to(torch.float64)
    if bool((t < 0).any()):
        raise ValueError("cole_hopf_sine: the closed form needs t >= 0 (pass times inside the domain t in [0, 1])")
    nodes, weights = np.polynomial.hermite.hermgauss(quadrature_points)
    z = torch.as_tensor(nodes, dtype=torch.float64, device=x.device)
    log_w = torch.as_tensor(np.log(weights), dtype=torch.float64, device=x.device)
    positive = t > 0
    sigma = torch.sqrt(4 * viscosity * torch.where(positive, t, torch.ones_like(t)))  # t = 0 handled below
    flat_x, flat_sigma = x.reshape(-1, 1), sigma.reshape(-1, 1)
    chunk = max(1, CHUNK_ELEMENTS // quadrature_points)
    values = []
    for start in range(0, len(flat_x), chunk):
        y = flat_x[start:start + chunk] - flat_sigma[start:start + chunk] * z
        exponent = log_w - torch.cos(math.pi * y) / (2 * math.pi * viscosity)
        density = torch.exp(exponent - exponent.max(dim=1, keepdim=True).values.detach())
        values.append(-(torch.sin(math.pi * y) * density).sum(1) / density.sum(1))
    u = torch.cat(values).reshape(x.shape) if values else torch.zeros_like(x)
    return torch.where(positive, u, -torch.sin(math.pi * x))


class BurgersPINN(PointwiseProblem):
    """Viscous Burgers ``u_t + u u_x = ν u_xx`` on x ∈ [-1, 1], t ∈ [0, 1] with ``u(x, 0) = -sin(πx)``
    and ``u(±1, t) = 0`` (module docstring). ``viscosity`` ν (default 0.01/π); ``quadrature_points``:
    Gauss–Hermite nodes of the Cole–Hopf reference (default 200, converged from 100)."""

    name = "burgers"
    inputs = ("x", "t")
    outputs = ("u",)
    conditions = ("ic", "bc")

    def __init__(self, viscosity: float = 0.01 / math.pi, quadrature_points: int = 200) -> None:
        if not (math.isfinite(viscosity) and viscosity > 0):
            raise ValueError(f"burgers: viscosity must be a finite positive number, got {viscosity} "
                             f"(0.01/π is the default)")
        if int(quadrature_points) != quadrature_points or not 1 <= quadrature_points <= MAX_QUADRATURE_POINTS:
            raise ValueError(f"burgers: quadrature_points must be an integer in [1, {MAX_QUADRATURE_POINTS}], got "
                             f"{quadrature_points} (200 is the default; 100 already converge to rounding)")
        self.viscosity = float(viscosity)
        self.quadrature_points = int(quadrature_points)

    @property
    def lower(self) -> tuple[float, ...]:
        return (-1.0, 0.0)

    @property
    def upper(self) -> tuple[float, ...]:
        return (1.0, 1.0)

    @property
    def params(self) -> dict:
        return {"viscosity": self.viscosity, "quadrature_points": self.quadrature_points}

    def initial_state(self, coords: Tensor) -> Tensor:
        """``-sin(πx)`` ``(N, 1)``."""
        return -torch.sin(math.pi * coords[:, :1])

    def pde_residual(self, coords: Tensor, fn: Field) -> Tensor:
        """``u_t + u u_x - ν u_xx`` ``(N, 1)`` by autograd."""
        self.check_coords(coords)
        u, u_t, u_x, u_xx = space_time_derivatives(coords, fn)
        return (u_t + u * u_x - self.viscosity * u_xx).unsqueeze(1)

    def sample_condition(self, name: str, n: int, method: str, generator: torch.Generator | None) -> Tensor:
        """``"ic"``: x in [-1, 1] at t = 0; ``"bc"``: the first ``n // 2`` points at x = -1, the rest at
        x = +1, t in [0, 1]."""
        if name == "ic":
            return self.face(1, 0.0, n, method, generator)
        if name == "bc":
            points = self.face(0, -1.0, n, method, generator)
            points[n // 2:, 0] = 1.0
            return points
        raise self.unknown(name)

    def condition_residual(self, name: str, coords: Tensor, fn: Field) -> Tensor:
        """``"ic"``: ``u(x, 0) + sin(πx)``; ``"bc"``: ``u`` itself (prescribed 0), both ``(N, 1)`` at the
        given points."""
        self.check_coords(coords)
        if name == "ic":
            return fn(coords) - self.initial_state(coords)
        if name == "bc":
            return fn(coords)
        raise self.unknown(name)

    def reference(self, coords: Tensor) -> Tensor:
        """The Cole–Hopf solution ``(N, 1)`` float64 (:func:`cole_hopf_sine`), differentiable in
        ``coords``; t must be >= 0 (x any: the solution has period 2)."""
        self.check_coords(coords)
        coords = coords.to(torch.float64)
        return cole_hopf_sine(coords[:, 0], coords[:, 1], self.viscosity, self.quadrature_points).unsqueeze(1)
