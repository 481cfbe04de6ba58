"""Darcy flow: -∇·(a ∇u) = f on the unit square, u = 0 on the boundary.

The FNO / DiffusionPDE setting (Li et al. 2021; Huang et al. 2024): ``a = a_high`` where a
Gaussian random field with covariance (-Δ + τ²I)^(-α) is ≥ 0 and ``a_low`` elsewhere, ``f``
constant.  Samples are ``(batch, 2, R, R)`` = ``[a, u]`` at the nodes ``x_i = i h``,
``h = 1 / (R - 1)``, boundary nodes included.

Discretisation (vertex-centred finite volumes, the conservative 5-point scheme): at an interior
node P with neighbours W, E (axis 0) and S, N (axis 1),

    (A_h u)_P = (1/h²) [a_w (u_P - u_W) + a_e (u_P - u_E) + a_s (u_P - u_S) + a_n (u_P - u_N)],

where a face coefficient is the harmonic (default) or arithmetic mean of ``a`` at the two nodes
it joins.  The scheme is second order for smooth ``a`` and symmetric positive definite for
``a > 0``.  :func:`stencil` is the only place these coefficients are formed: the residual, the
conjugate-gradient matvec and the banded matrix of the direct solver all read them from it.

Solvers (both float64, both satisfy the discrete equations to round-off):

* ``"scipy"``: per sample, LAPACK's symmetric banded Cholesky (``?pbsv``, natural ordering,
  bandwidth R - 2, OpenBLAS held to one thread), large batches split over a fork process pool
  (one worker per usable core); about 3× a per-sample ``spsolve`` (``tools/bench_darcy.py``,
  figures in docs/measurements.md).  On a loaded machine the pool can be slower than one process
  (``num_workers=1``).
* ``"torch"``: batched preconditioned conjugate gradients over the whole batch, preconditioned
  by the exact inverse of the constant-coefficient 5-point Laplacian (a fast sine transform
  built on ``torch.fft``), so the condition number is at most max(a) / min(a) and a few dozen
  iterations reach a relative residual of 1e-12 at 64²-256².  Runs on any
  device; the GPU path.
* ``"auto"``: torch for CUDA inputs, scipy otherwise.
"""

from __future__ import annotations

import math
import multiprocessing
import warnings
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from itertools import repeat
from typing import Any, NamedTuple, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .base import PDE, Grid
from .grf import GaussianRandomField
from .sine import inverse_laplacian
from .threads import single_threaded_blas, usable_cpus

Array = TypeVar("Array", Tensor, np.ndarray)

FACE_AVERAGES: dict[str, Callable[[Any, Any], Any]] = {
    "harmonic": lambda p, q: 2 * p * q / (p + q),
    "arithmetic": lambda p, q: 0.5 * (p + q),
}
SOLVERS = ("auto", "scipy", "torch")
MIN_WORK_PER_WORKER = 16 * 62**4
"""The scipy path forks a process pool only when each worker gets at least this much banded
Cholesky work, counted as samples × (R - 2)⁴: 16 samples at 64², 1 at 128² (starting the pool costs
about ten 64² solves, docs/measurements.md; a solve's cost grows as (R - 2)⁴)."""


class Stencil(NamedTuple):
    """The four face coefficients of the 5-point operator at the interior nodes, divided by h²
    (units of a / length²), each ``(..., R - 2, R - 2)``.  West/east are the faces to the
    neighbours at ``i ∓ 1`` (axis -2), south/north those at ``j ∓ 1`` (axis -1).  Works on numpy
    arrays and torch tensors alike."""

    west: Any
    east: Any
    south: Any
    north: Any

    @property
    def centre(self) -> Any:
        return self.west + self.east + self.south + self.north

    def apply(self, u: Array) -> Array:
        """``A_h u`` at the interior nodes, ``(..., R - 2, R - 2)``, for ``u`` on the full grid
        ``(..., R, R)`` (the boundary values of ``u`` enter through the neighbours)."""
        c = u[..., 1:-1, 1:-1]
        return (self.west * (c - u[..., :-2, 1:-1]) + self.east * (c - u[..., 2:, 1:-1])
                + self.south * (c - u[..., 1:-1, :-2]) + self.north * (c - u[..., 1:-1, 2:]))


def stencil(a: Array, h: float, face_average: str = "harmonic") -> Stencil:
    """Face coefficients of ``-∇·(a ∇·)`` for nodal ``a`` ``(..., R, R)`` and spacing ``h``.

    The harmonic mean is singular where neighbouring values of ``a`` sum to 0, which only
    non-physical (generated) coefficients can do.
    """
    mean = FACE_AVERAGES[face_average]
    inv_h2 = 1.0 / h**2
    a_x = mean(a[..., :-1, :], a[..., 1:, :]) * inv_h2  # face between (i, j) and (i+1, j): (..., R-1, R)
    a_y = mean(a[..., :, :-1], a[..., :, 1:]) * inv_h2  # face between (i, j) and (i, j+1): (..., R, R-1)
    return Stencil(west=a_x[..., :-1, 1:-1], east=a_x[..., 1:, 1:-1],
                   south=a_y[..., 1:-1, :-1], north=a_y[..., 1:-1, 1:])


# ----------------------------------------------------------------------------- direct (scipy)

def solve_banded(a: np.ndarray, h: float, forcing: float, face_average: str = "harmonic",
                 num_workers: int = 1) -> np.ndarray:
    """Solve ``A_h u = f`` (u = 0 on the boundary) for coefficients ``a`` ``(n, R, R)``;
    returns ``u`` ``(n, R, R)`` float64.  Splits the batch over ``num_workers`` forked processes
    when it is large enough to pay for them (and the platform can fork)."""
    a = np.ascontiguousarray(a, dtype=np.float64)
    workers = min(num_workers, len(a), len(a) * (a.shape[-1] - 2) ** 4 // MIN_WORK_PER_WORKER)
    if workers < 2 or not _can_fork():
        return _solve_banded_serial(a, h, forcing, face_average)
    chunks = np.array_split(a, workers)
    context = multiprocessing.get_context("fork")
    with warnings.catch_warnings():
        # Python >= 3.12 warns when forking a threaded process (torch's thread pools); the workers
        # only run numpy and LAPACK, never torch, so those threads cannot deadlock them.
        warnings.filterwarnings("ignore", r".*fork\(\) may lead to deadlocks", DeprecationWarning)
        with ProcessPoolExecutor(workers, context) as pool:
            args = (chunks, repeat(h), repeat(forcing), repeat(face_average))
            parts = list(pool.map(_solve_banded_serial, *args))
    return np.concatenate(parts)


def _can_fork() -> bool:
    return "fork" in multiprocessing.get_all_start_methods() and not multiprocessing.current_process().daemon


def _solve_banded_serial(a: np.ndarray, h: float, forcing: float, face_average: str) -> np.ndarray:
    """The per-sample loop (numpy + LAPACK only: it runs in forked workers)."""
    n, size = a.shape[0], a.shape[-1]
    m = size - 2
    st = stencil(a, h, face_average)
    centre = st.centre.reshape(n, m * m)
    north = -st.north  # coupling of unknown k = (i-1) m + (j-1) to k + 1; none across rows
    north[..., -1] = 0.0
    north = north.reshape(n, m * m)
    east = -st.east[..., :-1, :].reshape(n, m * (m - 1))  # coupling of k to k + m
    rhs = np.full(m * m, float(forcing))
    from scipy.linalg import lapack  # here: scipy.linalg is slow to import

    pbsv = lapack.get_lapack_funcs("pbsv", (rhs,))
    u = np.zeros_like(a)
    with single_threaded_blas():
        for s in range(n):
            band = np.zeros((m * m, m + 1))  # LAPACK lower band storage, transposed to Fortran order
            band[:, 0], band[:, 1], band[: m * (m - 1), m] = centre[s], north[s], east[s]
            _, x, info = pbsv(band.T, rhs, lower=1, overwrite_ab=1)
            if info != 0:
                raise np.linalg.LinAlgError(f"darcy: banded Cholesky failed (info={info}); is a > 0?")
            u[s, 1:-1, 1:-1] = x.reshape(m, m)
    return u


# ----------------------------------------------------------------------------- iterative (torch)

def solve_pcg(a: Tensor, h: float, forcing: float, face_average: str = "harmonic",
              tol: float = 1e-12, max_iter: int = 1000) -> Tensor:
    """Batched preconditioned CG for ``A_h u = f`` (u = 0 on the boundary), ``a`` ``(n, R, R)``.

    Stops when every sample has ``||f - A_h u||_2 <= tol ||f||_2`` (Euclidean norm over the
    interior nodes); raises RuntimeError after ``max_iter`` iterations.  Returns ``u``
    ``(n, R, R)`` float64 on ``a``'s device.
    """
    if a.shape[0] == 0:
        return torch.zeros_like(a, dtype=torch.float64)
    with torch.no_grad():
        a = a.to(torch.float64)
        st = stencil(a, h, face_average)
        scale = a.mean(dim=(-2, -1), keepdim=True)  # M = mean(a) (-Δ_h); CG is invariant to the scale

        def operator(v: Tensor) -> Tensor:
            return st.apply(F.pad(v, (1, 1, 1, 1)))

        def precondition(v: Tensor) -> Tensor:
            return inverse_laplacian(v, h) / scale

        def dot(p: Tensor, q: Tensor) -> Tensor:
            return (p * q).sum(dim=(-2, -1), keepdim=True)

        b = torch.full_like(a[..., 1:-1, 1:-1], float(forcing))
        x = torch.zeros_like(b)
        r = b.clone()
        z = precondition(r)
        p = z
        rz = dot(r, z)
        threshold = tol * dot(b, b).sqrt()
        for iteration in range(max_iter + 1):
            active = dot(r, r).sqrt() > threshold
            if not bool(active.any()):
                return F.pad(x, (1, 1, 1, 1))
            if iteration == max_iter:
                break
            q = operator(p)
            alpha = torch.where(active, rz / dot(p, q), 0.0)
            x = x + alpha * p
            r = r - alpha * q
            z = precondition(r)
            rz_new = dot(r, z)
            p = z + torch.where(active, rz_new / rz, 0.0) * p
            rz = rz_new
        worst = (dot(r, r).sqrt() / dot(b, b).sqrt()).max().item()
        raise RuntimeError(f"darcy: conjugate gradients did not reach relative residual {tol:g} in "
                           f"{max_iter} iterations (worst {worst:.2e}); the coefficient contrast "
                           f"max(a)/min(a) is probably huge: raise cg_max_iter or use solver='scipy'")


# ----------------------------------------------------------------------------- the PDE

class Darcy(PDE):
    """Steady Darcy flow ``-∇·(a ∇u) = f`` on [0, 1]², ``u = 0`` on the boundary.

    Channels ``("a", "u")``; ``a`` is the random input.  Grid: ``R × R`` nodes including the
    boundary, ``h = 1 / (R - 1)``.  ``num_workers`` (default: the usable CPU cores) bounds the
    process pool of the scipy solver; ``cg_tol`` / ``cg_max_iter`` control the torch solver.
    """

    name = "darcy"
    channels = ("a", "u")
    input_channels = ("a",)
    solver_params = ("solver", "num_workers", "cg_tol", "cg_max_iter")

    def __init__(self, resolution: int = 64, a_high: float = 12.0, a_low: float = 3.0, alpha: float = 2.0,
                 tau: float = 3.0, forcing: float = 1.0, face_average: str = "harmonic", solver: str = "auto",
                 num_workers: int | None = None, cg_tol: float = 1e-12, cg_max_iter: int = 1000) -> None:
        if int(resolution) != resolution or resolution < 8:
            raise ValueError(f"darcy: resolution too small ({resolution}): use an integer of at least 8 grid "
                             f"points per side (64 is the FNO/DiffusionPDE setting)")
        if not (a_high > 0 and a_low > 0):
            raise ValueError(f"darcy: non-positive coefficients a_high={a_high}, a_low={a_low}: both must "
                             f"be > 0 for the equation to be elliptic (the FNO setting is 12 and 3)")
        if face_average not in FACE_AVERAGES:
            raise ValueError(f"darcy: unknown face_average {face_average!r}: "
                             f"use one of {sorted(FACE_AVERAGES)}")
        if solver not in SOLVERS:
            raise ValueError(f"darcy: unknown solver {solver!r}: use one of {list(SOLVERS)}")
        if not math.isfinite(forcing):
            raise ValueError(f"darcy: forcing must be a finite number, got {forcing}")
        if num_workers is not None and num_workers < 1:
            raise ValueError(f"darcy: num_workers must be None (all cores) or >= 1, got {num_workers}")
        if not (cg_tol > 0 and cg_max_iter >= 1):
            raise ValueError(f"darcy: need cg_tol > 0 and cg_max_iter >= 1, got {cg_tol}, {cg_max_iter}")
        self.resolution = int(resolution)
        self.a_high, self.a_low = float(a_high), float(a_low)
        self.alpha, self.tau, self.forcing = float(alpha), float(tau), float(forcing)
        self.face_average, self.solver = face_average, solver
        self.num_workers = num_workers
        self.cg_tol, self.cg_max_iter = float(cg_tol), int(cg_max_iter)
        self.grid = Grid((self.resolution,) * 2, (1.0, 1.0), "dirichlet")
        self.grf = GaussianRandomField(self.grid.shape, self.grid.extent, self.alpha, self.tau)

    @property
    def h(self) -> float:
        """Grid spacing ``1 / (R - 1)``."""
        return self.grid.spacing[0]

    def params(self) -> dict[str, Any]:
        return {"resolution": self.resolution, "a_high": self.a_high, "a_low": self.a_low,
                "alpha": self.alpha, "tau": self.tau, "forcing": self.forcing,
                "face_average": self.face_average, "solver": self.solver, "num_workers": self.num_workers,
                "cg_tol": self.cg_tol, "cg_max_iter": self.cg_max_iter}

    @property
    def boundary_mask(self) -> Tensor:
        return self.grid.edge_mask()

    def sample_inputs(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``a = a_high`` where a GRF(α, τ) is ≥ 0, ``a_low`` elsewhere: ``(n, 1, R, R)`` float64 on the
        generator's device."""
        g = self.grf.sample(n, generator)
        return torch.where(g >= 0, g.new_tensor(self.a_high), self.a_low).unsqueeze(1)

    def solve(self, inputs: Tensor) -> Tensor:
        """``[a, u]`` ``(n, 2, R, R)`` float64 on the inputs' device for coefficients ``(n, 1, R, R)``
        or ``(n, R, R)``; ``a`` must be finite and > 0."""
        a = self.input_field(inputs, self.grid.shape, "coefficients", positive=True,
                             hint="pass the 'a' channel at the PDE's resolution")
        if self.solver == "torch" or (self.solver == "auto" and a.is_cuda):
            u = solve_pcg(a, self.h, self.forcing, self.face_average, self.cg_tol, self.cg_max_iter)
        else:
            workers = self.num_workers or usable_cpus()
            u_np = solve_banded(a.cpu().numpy(), self.h, self.forcing, self.face_average, workers)
            u = torch.from_numpy(u_np)
        return torch.stack([a, u.to(a.device)], dim=1)

    def residual(self, x: Tensor) -> Tensor:
        """``(B, 1, R, R)`` in the units of f: ``A_h u - f`` at interior nodes, ``u`` at boundary
        nodes.  Differentiable in both channels; any device; ``a`` is not checked.  Half-precision
        inputs are evaluated in float32 (the face coefficients a / h² overflow float16) and the
        result is cast back to ``x.dtype``."""
        self.check_sample(x)
        a, u = x.to(torch.promote_types(x.dtype, torch.float32)).unbind(1)
        interior = F.pad(stencil(a, self.h, self.face_average).apply(u) - self.forcing, (1, 1, 1, 1))
        return torch.where(self.boundary_mask_on(x.device), u, interior).unsqueeze(1).to(x.dtype)

    def residual_scale(self, x: Tensor) -> Tensor:
        """``(B, 1, R, R)``: ``|f|`` at interior nodes, the RMS of ``u`` over the whole grid (per sample)
        at boundary nodes."""
        self.check_sample(x)
        u = x[:, 1]
        rms = u.square().mean(dim=(-2, -1), keepdim=True).sqrt()
        scale = torch.where(self.boundary_mask_on(x.device), rms, abs(self.forcing))
        return scale.unsqueeze(1)
