"""2-D incompressible Navier–Stokes (density 1, non-dimensional units) for PINNs, with closed-form flows.

Outputs ``("u", "v", "p")``: velocity and kinematic pressure. The residual ``(N, 3)`` is

    [u_t + u u_x + v u_y + p_x - ν Δu,   v_t + u v_x + v v_y + p_y - ν Δv,   u_x + v_y]

(``u_t = v_t = 0`` for steady flows): momentum in velocity per unit time, continuity in 1 / time.

Pressure gauge: the conditions prescribe the velocity only and the equations hold ``∇p`` only, so a
network's pressure is defined up to a constant (a function of ``t`` for unsteady flows). The
reference returns the closed-form pressure as written; compare a prediction with it after
:meth:`IncompressibleFlow.align`, which removes the offset of the mean pressure per time level.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .base import Field, PointwiseProblem, gradient, sample_box, with_grad


def navier_stokes_residual(coords: Tensor, fn: Field, nu: float, time_axis: int | None = None) -> Tensor:
    """The residual ``(N, 3)`` above of ``fn: (N, d) -> (N, 3)`` at ``coords`` ``(N, d)``, whose first two
    columns are ``x, y``; ``time_axis`` is the column of ``t`` (None: steady, no ``u_t`` term)."""
    x = with_grad(coords)
    out = fn(x)
    if out.shape != (len(x), 3):
        raise ValueError(f"fn must return (N, 3) columns (u, v, p), got shape {tuple(out.shape)}")
    u, v, p = out.unbind(1)
    du, dv, dp = gradient(u, x), gradient(v, x), gradient(p, x)

    def laplacian(d: Tensor) -> Tensor:
        return gradient(d[:, 0], x)[:, 0] + gradient(d[:, 1], x)[:, 1]

    momentum_x = u * du[:, 0] + v * du[:, 1] + dp[:, 0] - nu * laplacian(du)
    momentum_y = u * dv[:, 0] + v * dv[:, 1] + dp[:, 1] - nu * laplacian(dv)
    if time_axis is not None:
        momentum_x = momentum_x + du[:, time_axis]
        momentum_y = momentum_y + dv[:, time_axis]
    return torch.stack([momentum_x, momentum_y, du[:, 0] + dv[:, 1]], dim=1)


class IncompressibleFlow(PointwiseProblem):
    """A closed-form flow on a box whose first two inputs are ``x, y`` (a last input ``t`` if unsteady).
    Every condition is Dirichlet on the velocity ``(u, v)`` from the closed form (residual ``(N, 2)``)."""

    outputs = ("u", "v", "p")
    time_axis: int | None = None
    """The column of ``t`` in the coordinates; None for a steady flow."""

    def __init__(self, nu: float):
        if not nu > 0:
            raise ValueError(f"{self.name}: the kinematic viscosity must be positive, got {nu}")
        self.nu = float(nu)

    def pde_residual(self, coords: Tensor, fn: Field) -> Tensor:
        self.check_coords(coords)
        return navier_stokes_residual(coords, fn, self.nu, self.time_axis)

    def condition_residual(self, name: str, coords: Tensor, fn: Field) -> Tensor:
        self.check_condition(name)
        self.check_coords(coords)
        prediction = fn(coords)[:, :2]
        return prediction - self.reference(coords)[:, :2].to(prediction.dtype)

    def wall_points(self, n: int, method: str, generator: torch.Generator | None) -> Tensor:
        """``n`` points ``(n, d)`` on the spatial boundary of the box (and any ``t`` in its range), spread
        along the perimeter in proportion to edge length: a low-discrepancy (Sobol) or uniform draw of
        the arc length, mapped counter-clockwise from ``(x_lo, y_lo)`` onto the four edges."""
        (x0, y0), (x1, y1) = self.lower[:2], self.upper[:2]
        lx, ly = x1 - x0, y1 - y0
        walk = sample_box((0.0, *self.lower[2:]), (2 * (lx + ly), *self.upper[2:]), n, method, generator,
                          dtype=torch.float64)
        s = walk[:, 0]
        bottom, right, top = s < lx, (s >= lx) & (s < lx + ly), (s >= lx + ly) & (s < 2 * lx + ly)
        left = ~(bottom | right | top)
        x = torch.where(bottom, x0 + s, torch.where(top, x1 - (s - lx - ly), torch.where(right, x1, x0)))
        y = torch.where(right, y0 + (s - lx), torch.where(left, y1 - (s - 2 * lx - ly), torch.where(top, y1, y0)))
        xy = torch.stack([x.clamp(x0, x1), y.clamp(y0, y1)], dim=1)
        return torch.cat([xy, walk[:, 1:]], dim=1).to(torch.float32)

    def align(self, coords: Tensor, values: Tensor) -> Tensor:
        """A float64 copy of the prediction ``values`` ``(N, 3)`` at ``coords`` with its pressure shifted by
        the mean of ``p_reference - p`` over each time level (all points when steady), removing the
        gauge constant before errors against :meth:`reference`. Unsteady flows need several points per
        time level: use a tensor-product grid such as :meth:`grid`."""
        self.check_coords(coords)
        if values.shape != (len(coords), 3):
            raise ValueError(f"{self.name}: values must be (N, 3) columns {self.outputs} at the N coordinates, "
                             f"got shape {tuple(values.shape)} for {len(coords)} points")
        values = values.detach().to(torch.float64).clone()
        offset = self.reference(coords.detach())[:, 2] - values[:, 2]
        if self.time_axis is None:
            values[:, 2] += offset.mean()
            return values
        _, level, counts = torch.unique(coords[:, self.time_axis], return_inverse=True, return_counts=True)
        if counts.min() < 2:
            raise ValueError(f"{self.name}: align needs several points per time level (a time level holds "
                             f"{int(counts.min())}); evaluate on a tensor-product grid such as self.grid(...)")
        level_mean = torch.zeros(len(counts), dtype=torch.float64).index_add_(0, level, offset) / counts
        values[:, 2] += level_mean[level]
        return values


class KovasznayFlow(IncompressibleFlow):
    """Kovasznay's steady laminar wake behind a grid, ν = 1 / Re, on x ∈ [-0.5, 1], y ∈ [-0.5, 1.5]:

        λ = Re/2 - sqrt(Re²/4 + 4π²),  u = 1 - e^{λx} cos 2πy,  v = λ/(2π) e^{λx} sin 2πy,  p = ½(1 - e^{2λx}).

    Condition ``"bc"``: ``(u, v)`` on the four edges. Pressure: see :meth:`align`."""

    name = "kovasznay"
    inputs = ("x", "y")
    conditions = ("bc",)

    def __init__(self, reynolds: float = 20.0):
        if not reynolds > 0:
            raise ValueError(f"kovasznay: the Reynolds number must be positive, got {reynolds}")
        super().__init__(1.0 / reynolds)
        self.reynolds = float(reynolds)
        self.lam = self.reynolds / 2 - math.sqrt(self.reynolds**2 / 4 + 4 * math.pi**2)

    @property
    def lower(self) -> tuple[float, ...]:
        return (-0.5, -0.5)

    @property
    def upper(self) -> tuple[float, ...]:
        return (1.0, 1.5)

    @property
    def params(self) -> dict:
        return {"reynolds": self.reynolds}

    def sample_condition(self, name: str, n: int, method: str, generator: torch.Generator | None) -> Tensor:
        self.check_condition(name)
        return self.wall_points(n, method, generator)

    def reference(self, coords: Tensor) -> Tensor:
        self.check_coords(coords)
        x, y = coords.to(torch.float64).unbind(1)
        decay = torch.exp(self.lam * x)
        u = 1 - decay * torch.cos(2 * math.pi * y)
        v = self.lam / (2 * math.pi) * decay * torch.sin(2 * math.pi * y)
        p = 0.5 * (1 - decay**2)
        return torch.stack([u, v, p], dim=1)


class TaylorGreenVortex(IncompressibleFlow):
    """The decaying Taylor–Green vortex on (x, y) ∈ [0, 2π]², t ∈ [0, t_end]; F(t) = e^{-2νt}:

        u = -cos x sin y F,  v = sin x cos y F,  p = -¼(cos 2x + cos 2y) F².

    Default ν = 0.1: over t ∈ [0, 1] the velocity decays to e^{-0.2} ≈ 0.82, the kinetic energy to
    e^{-0.4} ≈ 0.67. Conditions ``"ic"``: ``(u, v)`` at t = 0; ``"bc"``: ``(u, v)`` on the four edges
    for all t. Pressure: see :meth:`align`."""

    name = "taylor_green"
    inputs = ("x", "y", "t")
    conditions = ("ic", "bc")
    time_axis = 2

    def __init__(self, nu: float = 0.1, t_end: float = 1.0):
        if not t_end > 0:
            raise ValueError(f"taylor_green: t_end must be positive, got {t_end}")
        super().__init__(nu)
        self.t_end = float(t_end)

    @property
    def lower(self) -> tuple[float, ...]:
        return (0.0, 0.0, 0.0)

    @property
    def upper(self) -> tuple[float, ...]:
        return (2 * math.pi, 2 * math.pi, self.t_end)

    @property
    def params(self) -> dict:
        return {"nu": self.nu, "t_end": self.t_end}

    def sample_condition(self, name: str, n: int, method: str, generator: torch.Generator | None) -> Tensor:
        self.check_condition(name)
        return self.face(2, 0.0, n, method, generator) if name == "ic" else self.wall_points(n, method, generator)

    def reference(self, coords: Tensor) -> Tensor:
        self.check_coords(coords)
        x, y, t = coords.to(torch.float64).unbind(1)
        decay = torch.exp(-2 * self.nu * t)
        u = -torch.cos(x) * torch.sin(y) * decay
        v = torch.sin(x) * torch.cos(y) * decay
        p = -0.25 * (torch.cos(2 * x) + torch.cos(2 * y)) * decay**2
        return torch.stack([u, v, p], dim=1)
