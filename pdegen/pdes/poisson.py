"""Poisson's equation ∇²u = f on the unit square, u = 0 on the boundary, and the shared
shifted-Laplacian family ∇²u + k²u = f that Helmholtz (:mod:`.helmholtz`) also builds on.

The DiffusionPDE setting (Huang et al. 2024): the source ``f`` is a Gaussian random field with
covariance ``(-Δ + τ²I)^(-α)`` and Neumann cosine modes (:class:`~.grf.GaussianRandomField`,
the measure of the FNO Darcy coefficients; α = 2, τ = 3 by default, zero spatial mean), times
``amplitude`` (default 1: then ``f`` has an RMS of ≈ 0.1 and ``u`` of ≈ 0.0014; FNO's GRF code
also multiplies by ``τ^(α-1)``, 3 for the defaults: ``amplitude=3`` applies that factor).  Samples are
``(batch, 2, R, R)`` = ``[f, u]`` at the nodes ``x_i = i h``, ``h = 1 / (R - 1)``, boundary nodes
included (default R = 128).

Discretisation: the 5-point Laplacian at the interior nodes,

    (Δ_h u)_ij + k² u_ij = f_ij,   (Δ_h u)_ij = (u_{i-1,j} + u_{i+1,j} + u_{i,j-1} + u_{i,j+1} - 4 u_ij) / h²,

with ``u = 0`` at the boundary nodes (the boundary values of ``f`` are stored but do not enter).
Second order for smooth solutions.  Solver: the exact solve of this system by the discrete sine
transform (:func:`~.sine.solve_shifted_laplacian`), batched in torch, float64, any device, so
stored data has residual at round-off (relative ≈ 1e-12 at 128²).  Throughput: ``tools/bench_poisson.py``
(figures in docs/measurements.md).

The discrete system is singular where ``k²`` equals an eigenvalue ``μ_j + μ_l`` of ``-Δ_h``
(:func:`~.sine.shifted_laplacian_spectrum`; the constructor raises).  Near a *continuous*
eigenvalue ``π² (j² + l²)`` (2π² ≈ 19.7 is the lowest) the continuous problem is resonant: the
discrete system is solvable but its solution is huge and says little about the PDE.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from .base import PDE, Grid
from .grf import GaussianRandomField
from .sine import METHODS, laplacian, shifted_laplacian_spectrum, solve_shifted_laplacian

MIN_RESOLUTION = 4
"""At least 2 × 2 interior nodes."""


class ShiftedLaplacianPDE(PDE):
    """``∇²u + k²u = f`` on [0, 1]², ``u = 0`` on the boundary: everything Poisson (k = 0) and
    Helmholtz share.  Channels ``("f", "u")``; ``f`` is the random input.  Grid: ``R × R`` nodes
    including the boundary, ``h = 1 / (R - 1)``.  ``transform`` ("auto" | "matmul" | "fft") only
    chooses how the sine transform is computed (a solver parameter).
    """

    channels = ("f", "u")
    input_channels = ("f",)
    solver_params = ("transform",)

    def __init__(self, resolution: int, k: float, alpha: float, tau: float, amplitude: float,
                 transform: str) -> None:
        if int(resolution) != resolution or resolution < MIN_RESOLUTION:
            raise ValueError(f"{self.name}: resolution too small ({resolution}): use an integer of at least "
                             f"{MIN_RESOLUTION} grid points per side, boundary included (128 is the default)")
        if not (math.isfinite(k) and k >= 0):
            raise ValueError(f"{self.name}: wavenumber k must be finite and >= 0 (only k² enters), got {k}")
        if not (math.isfinite(amplitude) and amplitude > 0):
            raise ValueError(f"{self.name}: amplitude must be finite and > 0, got {amplitude}")
        if not (alpha > 0 and tau > 0):
            raise ValueError(f"{self.name}: the source GRF needs alpha > 0 and tau > 0, got alpha={alpha}, "
                             f"tau={tau} (the default is 2 and 3)")
        if transform not in METHODS:
            raise ValueError(f"{self.name}: unknown transform {transform!r}: use one of {list(METHODS)}")
        self.resolution = int(resolution)
        self.k, self.alpha, self.tau = float(k), float(alpha), float(tau)
        self.amplitude, self.transform = float(amplitude), transform
        self.grid = Grid((self.resolution,) * 2, (1.0, 1.0), "dirichlet")
        try:
            shifted_laplacian_spectrum((self.resolution - 2,) * 2, self.h, self.k**2)
        except ValueError as error:
            raise ValueError(f"{self.name}: {error}") from None
        self.grf = GaussianRandomField(self.grid.shape, self.grid.extent, self.alpha, self.tau)

    @property
    def h(self) -> float:
        """Grid spacing ``1 / (R - 1)``."""
        return self.grid.spacing[0]

    @property
    def boundary_mask(self) -> Tensor:
        return self.grid.edge_mask()

    def sample_inputs(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Sources ``f = amplitude · GRF(α, τ)``: ``(n, 1, R, R)`` float64 on the generator's device."""
        f = self.grf.sample(n, generator)
        if self.amplitude != 1.0:
            f.mul_(self.amplitude)
        return f.unsqueeze(1)

    def solve(self, inputs: Tensor) -> Tensor:
        """``[f, u]`` ``(n, 2, R, R)`` float64 on the inputs' device for sources ``(n, 1, R, R)`` or
        ``(n, R, R)`` (finite); ``u`` solves the discrete system exactly (to round-off)."""
        f = self.input_field(inputs, self.grid.shape, "sources", hint="pass the 'f' channel at the PDE's resolution")
        out = f.new_empty((f.shape[0], 2, *self.grid.shape))
        out[:, 0] = f
        for edge in (0, -1):  # u = 0 on the boundary
            out[:, 1, edge, :] = 0.0
            out[:, 1, :, edge] = 0.0
        solve_shifted_laplacian(f[:, 1:-1, 1:-1], self.h, self.k**2, self.transform, out=out[:, 1, 1:-1, 1:-1])
        return out

    def residual(self, x: Tensor) -> Tensor:
        """``(B, 1, R, R)`` in the units of f: ``Δ_h u + k² u - f`` at interior nodes, ``u`` at boundary
        nodes.  Differentiable in both channels; any device.  Half-precision inputs are evaluated
        in float32 (the 5-point difference cancels badly in float16, and u / h² can overflow it)
        and the result is cast back to ``x.dtype``."""
        self.check_sample(x)
        f, u = x.to(torch.promote_types(x.dtype, torch.float32)).unbind(1)
        inner = u[:, 1:-1, 1:-1]
        equation = laplacian(u, self.h) - f[:, 1:-1, 1:-1]
        if self.k != 0.0:
            equation = equation + self.k**2 * inner
        interior = torch.nn.functional.pad(equation, (1, 1, 1, 1))
        return torch.where(self.boundary_mask_on(x.device), u, interior).unsqueeze(1).to(x.dtype)

    def residual_scale(self, x: Tensor) -> Tensor:
        """``(B, 1, R, R)``: at interior nodes the RMS of ``f`` over the interior nodes (per sample), at
        boundary nodes the RMS of ``u`` over the whole grid (per sample).

        ``f`` changes sign, so a pointwise ``|f|`` would make a pointwise ratio blow up at its zeros;
        the RMS is constant per sample, and the region-L2 ratio ``||residual|| / ||scale||`` over the
        interior equals ``||residual|| / ||f||`` exactly."""
        self.check_sample(x)
        f, u = x.unbind(1)
        f_rms = f[:, 1:-1, 1:-1].square().mean(dim=(-2, -1), keepdim=True).sqrt()
        u_rms = u.square().mean(dim=(-2, -1), keepdim=True).sqrt()
        return torch.where(self.boundary_mask_on(x.device), u_rms, f_rms).unsqueeze(1)


class Poisson(ShiftedLaplacianPDE):
    """Poisson's equation ``∇²u = f`` on [0, 1]², ``u = 0`` on the boundary, ``f`` an
    ``amplitude``-scaled GRF(α, τ); see the module docstring."""

    name = "poisson"

    def __init__(self, resolution: int = 128, alpha: float = 2.0, tau: float = 3.0, amplitude: float = 1.0,
                 transform: str = "auto") -> None:
        super().__init__(resolution, 0.0, alpha, tau, amplitude, transform)

    def params(self) -> dict[str, Any]:
        return {"resolution": self.resolution, "alpha": self.alpha, "tau": self.tau,
                "amplitude": self.amplitude, "transform": self.transform}
