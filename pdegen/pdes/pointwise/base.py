"""The point-wise problem contract for PINNs: a box domain, the residuals of a coordinate network
``fn: (N, d) coordinates -> (N, k) outputs`` taken with autograd, and a reference solution.

A problem names its coordinates (:attr:`PointwiseProblem.inputs`, e.g. ``("x", "t")``), its outputs
(:attr:`PointwiseProblem.outputs`, e.g. ``("u",)``) and its conditions (:attr:`PointwiseProblem.conditions`,
e.g. ``("ic", "bc")``). :meth:`PointwiseProblem.sample_points` draws one point set per loss term: ``"pde"``
in the interior and one per condition on its face. :meth:`PointwiseProblem.residuals` evaluates every
term; a PINN's loss is the weighted sum of their mean squares. Residuals are point values in the
problem's own (non-dimensional) units, unscaled.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import ClassVar

import torch
from torch import Tensor

Field = Callable[[Tensor], Tensor]
"""A coordinate network or closed form: ``(N, d)`` coordinates -> ``(N, k)`` outputs."""

SAMPLING_METHODS = ("uniform", "sobol")


def sample_box(lower: tuple[float, ...], upper: tuple[float, ...], n: int, method: str = "sobol",
               generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32) -> Tensor:
    """``n`` points ``(n, d)`` in the box ``[lower, upper]``: i.i.d. uniform, or a scrambled Sobol
    sequence (low discrepancy; its scrambling seed drawn from ``generator``)."""
    if method not in SAMPLING_METHODS:
        raise ValueError(f"unknown sampling method {method!r}: use one of {SAMPLING_METHODS}")
    if n < 1:
        raise ValueError(f"need at least one point, got n={n}")
    lo, hi = torch.tensor(lower, dtype=torch.float64), torch.tensor(upper, dtype=torch.float64)
    if method == "uniform":
        unit = torch.rand(n, len(lower), generator=generator, dtype=torch.float64)
    else:
        seed = int(torch.randint(2**31 - 1, (1,), generator=generator))
        unit = torch.quasirandom.SobolEngine(len(lower), scramble=True, seed=seed).draw(n, dtype=torch.float64)
    return (lo + (hi - lo) * unit).to(dtype)


def gradient(y: Tensor, x: Tensor) -> Tensor:
    """d y / d x ``(N, d)`` of point values ``y`` ``(N,)`` with respect to coordinates ``x`` ``(N, d)``
    (``x.requires_grad``), kept differentiable so that second derivatives and training go through it."""
    (grad,) = torch.autograd.grad(y, x, grad_outputs=torch.ones_like(y), create_graph=True)
    return grad


def with_grad(coords: Tensor) -> Tensor:
    """A leaf copy of ``coords`` that records gradients (residuals differentiate the network in it)."""
    return coords.detach().clone().requires_grad_(True)


def space_time_derivatives(coords: Tensor, fn: Field) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(u, u_t, u_x, u_xx)``, each ``(N,)``, of the first output of ``fn`` at ``coords`` ``(N, 2)``
    with columns ``(x, t)`` (any one space-like and one time-like coordinate), by autograd and
    differentiable, so a PINN trains through them."""
    points = with_grad(coords)
    u = fn(points)[:, 0]
    du = gradient(u, points)
    u_x, u_t = du[:, 0], du[:, 1]
    u_xx = gradient(u_x, points)[:, 0]
    return u, u_t, u_x, u_xx


class PointwiseProblem(abc.ABC):
    """A PDE on the box ``[lower, upper]`` with its initial/boundary conditions and reference solution."""

    name: ClassVar[str]
    inputs: ClassVar[tuple[str, ...]]
    outputs: ClassVar[tuple[str, ...]]
    conditions: ClassVar[tuple[str, ...]]

    @property
    @abc.abstractmethod
    def lower(self) -> tuple[float, ...]:
        """Lower corner of the domain, one value per input coordinate."""

    @property
    @abc.abstractmethod
    def upper(self) -> tuple[float, ...]:
        """Upper corner of the domain."""

    @abc.abstractmethod
    def pde_residual(self, coords: Tensor, fn: Field) -> Tensor:
        """The equation's residual ``(N, r)`` of ``fn`` at interior points ``coords`` ``(N, d)``."""

    @abc.abstractmethod
    def sample_condition(self, name: str, n: int, method: str, generator: torch.Generator | None) -> Tensor:
        """``n`` points ``(n, d)`` on the face where condition ``name`` holds."""

    @abc.abstractmethod
    def condition_residual(self, name: str, coords: Tensor, fn: Field) -> Tensor:
        """The residual ``(N, k)`` of condition ``name`` (prediction minus the prescribed value, or
        the mismatch across a periodic boundary) at points ``coords`` drawn by :meth:`sample_condition`."""

    @abc.abstractmethod
    def reference(self, coords: Tensor) -> Tensor:
        """The reference solution ``(N, k)`` (float64) at ``coords`` ``(N, d)``."""

    def initial_state(self, coords: Tensor) -> Tensor:
        """The prescribed state ``(N, k)`` at the first time, as a function of the points' space coordinates
        (their time is not read), for networks that build the initial condition in; a problem with no such
        closed form raises."""
        raise NotImplementedError(f"{self.name} has no closed-form initial state to build into the network; "
                                  f"set hard_initial_condition: false")

    def covering(self, upper: tuple[float, ...]) -> PointwiseProblem:
        """This problem, or one of its family whose :meth:`reference` also holds up to ``upper`` (beyond the
        box, e.g. to score extrapolation); a closed-form reference holds everywhere, so here: itself."""
        return self

    def align(self, coords: Tensor, prediction: Tensor) -> Tensor:
        """``prediction`` ``(N, k)`` at ``coords`` made comparable with :meth:`reference` before errors are
        taken: unchanged here; a problem whose solution is fixed only up to a gauge (a pressure constant)
        removes it."""
        return prediction

    @property
    def params(self) -> dict:
        """The problem's parameters (saved with checkpoints and benchmark results)."""
        return {}

    # ------------------------------------------------------------------ shared
    def sample_points(self, num_interior: int, num_condition: int, method: str = "sobol",
                      seed: int = 0) -> dict[str, Tensor]:
        """Collocation points per loss term: ``"pde"`` ``(num_interior, d)`` in the domain and
        ``num_condition`` points for each condition; the same seed gives the same points."""
        generator = torch.Generator().manual_seed(seed)
        points = {"pde": sample_box(self.lower, self.upper, num_interior, method, generator)}
        for name in self.conditions:
            points[name] = self.sample_condition(name, num_condition, method, generator)
        return points

    def residuals(self, fn: Field, points: dict[str, Tensor]) -> dict[str, Tensor]:
        """Every loss term's residual at its points (keys as in :meth:`sample_points`)."""
        unknown = set(points) - {"pde", *self.conditions}
        if unknown:
            raise ValueError(f"{self.name}: unknown point sets {sorted(unknown)}; this problem has "
                             f"'pde' and the conditions {self.conditions}")
        return {name: (self.pde_residual(coords, fn) if name == "pde" else self.condition_residual(name, coords, fn))
                for name, coords in points.items()}

    def grid(self, points_per_axis: int | tuple[int, ...], lower: tuple[float, ...] | None = None,
             upper: tuple[float, ...] | None = None) -> Tensor:
        """A tensor-product grid ``(prod n, d)`` over the domain (or the box ``[lower, upper]``, e.g. beyond it),
        the first coordinate varying slowest (evaluation points for errors against :meth:`reference` and for
        figures)."""
        counts = (points_per_axis,) * len(self.inputs) if isinstance(points_per_axis, int) else points_per_axis
        lower, upper = lower or self.lower, upper or self.upper
        axes = [torch.linspace(lo, hi, n, dtype=torch.float64) for lo, hi, n in zip(lower, upper, counts)]
        return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, len(axes))

    def unknown(self, name: str) -> ValueError:
        """The error for a condition name this problem does not have."""
        return ValueError(f"{self.name}: unknown condition {name!r}; use one of {self.conditions}")

    def check_condition(self, name: str) -> None:
        """Fail early on a condition name this problem does not have."""
        if name not in self.conditions:
            raise self.unknown(name)

    def check_coords(self, coords: Tensor) -> None:
        """Fail early on coordinates of the wrong width."""
        if coords.ndim != 2 or coords.shape[1] != len(self.inputs):
            raise ValueError(f"{self.name}: coordinates must be (N, {len(self.inputs)}) with columns {self.inputs}, "
                             f"got shape {tuple(coords.shape)}")

    def face(self, axis: int, value: float, n: int, method: str, generator: torch.Generator | None) -> Tensor:
        """``n`` points on the face ``coords[:, axis] = value`` of the domain."""
        points = sample_box(self.lower, self.upper, n, method, generator)
        points[:, axis] = value
        return points
