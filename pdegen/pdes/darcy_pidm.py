"""Darcy flow with zero-flux boundaries and corner sources: the PIDM data set.

The setting of Bastek, Sun & Kochmann, "Physics-Informed Diffusion Models" (ICLR 2025), after
Zhu & Zabaras (2018):

    -∇·(K ∇p) = f  on [0, 1]²,   K ∇p · n = 0 on the boundary,   ∫ p = 0,

with ``K = exp(G)``, ``G`` a centred Gaussian field with covariance ``σ² exp(-|x - y| / ℓ)``
(ℓ = 0.1, σ = 1), and ``f = +r`` on the corner square ``[0, w]²``, ``-r`` on ``[1 - w, 1]²``,
0 elsewhere (r = 10, w = 1/8: PIDM's ``create_f_s``), so ``∫ f = 0`` (the Neumann problem's
compatibility condition) and ``p`` is unique once its mean is fixed.  Samples are
``(batch, 2, R, R)`` = ``[K, p]`` at the nodes ``x_i = i h``, ``h = 1 / (R - 1)``, boundary nodes
included (PIDM's ``pixels_at_boundary``; ``Grid`` boundary ``"neumann"``).

Discretisation (vertex-centred finite volumes): node ``(i, j)`` owns the control volume
``[x_i - h/2, x_i + h/2] × [y_j - h/2, y_j + h/2] ∩ Ω`` of area ``|V_ij| = h² d_i d_j``,
``d = 1/2`` at the two end nodes of an axis and 1 inside (half cells on the edges, quarter cells
at the corners).  The flux through the face between neighbours P and Q is
``K_PQ (p_P - p_Q) / h`` times the face length (``h d`` along the face's axis), with ``K_PQ`` the
harmonic (default) or arithmetic mean of the nodal ``K``; the outer faces carry no flux, which is
how the Neumann condition enters.  The discrete equation at every node is the flux balance per
unit area

    (A_h p)_P = (1 / |V_P|) Σ_Q K_PQ (p_P - p_Q) |e_PQ| / h = f̄_P,
    f̄_P = (1 / |V_P|) ∫_{V_P} f  (exact cell average of the piecewise-constant source),

in units of f (``1/h²`` scaling).  The cells tile Ω, so ``Σ_P f̄_P |V_P| = ∫ f = 0`` holds
exactly (the discrete compatibility condition), and the pressure is fixed by the trapezoidal-rule
mean ``Σ_P p_P |V_P| = 0``.  ``A_h`` is second order wherever K and p extend evenly across the
boundary (e.g. cosine series: K, p with vanishing odd normal derivatives); at the boundary nodes
of a general smooth K the pointwise truncation error is first order (the half cells), while the
solution error stays second order (both measured in the tests).  ``|V_P| A_h`` is symmetric
positive semi-definite with the constants as its null space.

Solvers (float64, discrete equations to round-off, ``p`` with zero trapezoidal mean):

* ``"torch"``: batched preconditioned conjugate gradients on the zero-sum subspace, preconditioned
  by the exact pseudo-inverse of the constant-coefficient operator (a DCT-I on each axis, built on
  ``torch.fft``).  Runs on any device; the GPU path.
* ``"scipy"``: per sample, LAPACK's symmetric banded Cholesky of the system with node (0, 0)
  pinned to 0, then shifted to zero mean.
* ``"auto"``: torch for CUDA inputs, scipy otherwise.

On a CPU scipy is much the faster (docs/measurements.md): PCG needs hundreds of iterations at
σ = 1, as the constant-coefficient preconditioner bounds the condition number only by max K / min K,
against one iteration for constant K.

Departures from PIDM's generator (``src/darcy_data_generation.py``): PIDM keeps the 64 leading
Karhunen–Loève modes of G (≈ 65 % of its variance at ℓ = 0.1, so its K is smoother) and solves a
non-conservative finite-difference form (second-order one-sided stencils, Neumann rows and the
mean condition stacked, least squares) with ``f`` sampled at the nodes; here G is sampled exactly
and the scheme is conservative.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .base import PDE, Grid
from .darcy import FACE_AVERAGES
from .grf import ExponentialGaussianRandomField
from .threads import single_threaded_blas

SOLVERS = ("auto", "scipy", "torch")


# ----------------------------------------------------------------------------- the finite-volume operator


def cell_fractions(n: int, dtype: torch.dtype = torch.float64, device: Any = None) -> Tensor:
    """``d``: the control-volume lengths over ``h`` of ``n`` nodes on an axis (1/2 at both ends)."""
    d = torch.ones(n, dtype=dtype, device=device)
    d[0] = d[-1] = 0.5
    return d


def cell_areas(resolution: int, dtype: torch.dtype = torch.float64, device: Any = None) -> Tensor:
    """``|V_ij| = h² d_i d_j`` ``(R, R)``: the trapezoidal-rule weights, summing to 1."""
    d = cell_fractions(resolution, dtype, device)
    return torch.outer(d, d) / (resolution - 1) ** 2


def corner_source(resolution: int, strength: float, width: float) -> Tensor:
    """The cell averages ``f̄`` ``(R, R)`` of ``f = r 1[0, w]² - r 1[1-w, 1]²``: the exact overlap of
    each control volume with the corner squares over its area; ``Σ f̄ |V| = 0`` up to round-off."""
    h = 1.0 / (resolution - 1)
    x = torch.arange(resolution, dtype=torch.float64) * h
    lower, upper = (x - h / 2).clamp_min(0.0), (x + h / 2).clamp_max(1.0)
    covered = (upper.clamp_max(width) - lower).clamp_min(0.0) / (upper - lower)  # fraction in [0, w]
    near = torch.outer(covered, covered)
    return strength * (near - near.flip(0, 1))


def face_coefficients(K: Tensor, face_average: str = "harmonic") -> tuple[Tensor, Tensor]:
    """Face transmissibilities ``K_PQ |e_PQ| / h`` (units of K) for nodal ``K`` ``(..., R, R)``.

    Returns ``(c_x, c_y)``: ``c_x[i, j]`` for the face between nodes (i, j) and (i+1, j),
    ``(..., R-1, R)``, weighted by ``d_j`` (half faces along the edges y = 0, 1); ``c_y`` likewise
    ``(..., R, R-1)`` for the faces between (i, j) and (i, j+1), weighted by ``d_i``.
    """
    mean = FACE_AVERAGES[face_average]
    d = cell_fractions(K.shape[-1], K.dtype, K.device)
    c_x = mean(K[..., :-1, :], K[..., 1:, :]) * d
    c_y = mean(K[..., :, :-1], K[..., :, 1:]) * d[:, None]
    return c_x, c_y


def net_outflow(p: Tensor, c_x: Tensor, c_y: Tensor) -> Tensor:
    """``|V| A_h p = Σ_Q c_PQ (p_P - p_Q)`` ``(..., R, R)``: each control volume's net outflow
    (units of K p).  Symmetric positive semi-definite in ``p``, null space the constants; the outer
    faces carry no flux (the Neumann condition)."""
    flux_x = c_x * (p[..., :-1, :] - p[..., 1:, :])  # from (i, j) to (i+1, j)
    flux_y = c_y * (p[..., :, :-1] - p[..., :, 1:])  # from (i, j) to (i, j+1)
    return (F.pad(flux_x, (0, 0, 0, 1)) - F.pad(flux_x, (0, 0, 1, 0))
            + F.pad(flux_y, (0, 1)) - F.pad(flux_y, (1, 0)))


def operator(K: Tensor, p: Tensor, face_average: str = "harmonic") -> Tensor:
    """``A_h p`` ``(..., R, R)`` in units of f: the net outflow of each control volume per unit area."""
    c_x, c_y = face_coefficients(K, face_average)
    return net_outflow(p, c_x, c_y) / cell_areas(p.shape[-1], p.dtype, p.device)


def weighted_mean(p: Tensor) -> Tensor:
    """The trapezoidal mean ``Σ p |V| / Σ |V|`` over the last two axes, keepdim."""
    d = cell_fractions(p.shape[-1], p.dtype, p.device)
    return (p * torch.outer(d, d)).sum(dim=(-2, -1), keepdim=True) / d.sum() ** 2


# ----------------------------------------------------------------------------- iterative solver (torch)


def dct1(x: Tensor, dim: int) -> Tensor:
    """Unnormalised DCT-I along ``dim``: ``X_k = Σ_{i=0..n-1} x_i cos(π k i / (n - 1))``, via a real
    FFT of the even extension ``[x_0 .. x_{n-1}, x_{n-2} .. x_1]`` (length ``2 (n - 1)``)."""
    x = x.movedim(dim, -1)
    n = x.shape[-1]
    spectrum = torch.fft.rfft(torch.cat([x, x.flip(-1)[..., 1:-1]], dim=-1), dim=-1).real
    sign = torch.ones(n, dtype=x.dtype, device=x.device)
    sign[1::2] = -1.0
    return (0.5 * (spectrum + x[..., :1] + sign * x[..., -1:])).movedim(-1, dim)


def neumann_pseudo_inverse(r: Tensor) -> Tensor:
    """The pseudo-inverse of :func:`net_outflow` for ``K = 1`` applied to ``r`` ``(..., R, R)``.

    With ``V`` the DCT-I matrix, ``D = diag(d)`` and ``T`` the 1-D Neumann second difference,
    ``D⁻¹T V = V Λ``, ``λ_k = 4 sin²(π k / (2 (R - 1)))``, ``Vᵀ D V = C = diag(c_k)``
    (``c_k = R - 1`` at k = 0, R - 1, else ``(R - 1) / 2``), so the operator ``T⊗D + D⊗T`` has the
    pseudo-inverse ``(V⊗V) diag(1 / (c_k c_l (λ_k + λ_l))) (V⊗V)ᵀ`` with the constant mode dropped:
    symmetric, exact on zero-sum ``r``, returning a field of zero trapezoidal mean.
    """
    n = r.shape[-1]
    k = torch.arange(n, dtype=r.dtype, device=r.device)
    lam = 4.0 * torch.sin(0.5 * math.pi * k / (n - 1)) ** 2
    c = 0.5 * (n - 1) / cell_fractions(n, r.dtype, r.device)
    weight = 1.0 / (torch.outer(c, c) * (lam[:, None] + lam[None, :]))
    weight[0, 0] = 0.0
    return dct1(dct1(dct1(dct1(r, -1), -2) * weight, -1), -2)


def conjugate_gradients(apply: Callable[[Tensor], Tensor], precondition: Callable[[Tensor], Tensor],
                        b: Tensor, tol: float, max_iter: int,
                        project: Callable[[Tensor], Tensor] = lambda v: v) -> tuple[Tensor, Tensor, int]:
    """Batched preconditioned CG for ``apply(x) = b`` over the last two axes, one independent
    system per leading index, each stopped (its step set to 0) once ``||b - A x||_2 <= tol ||b||_2``.

    ``project`` is applied to every residual (the zero-sum projection for singular Neumann
    systems, which stops round-off drifting into the null space).  Returns ``(x, relative residual
    per system, iterations)``; the caller decides what non-convergence means.
    """

    def dot(p: Tensor, q: Tensor) -> Tensor:
        return (p * q).sum(dim=(-2, -1), keepdim=True)

    x = torch.zeros_like(b)
    r = project(b.clone())
    z = precondition(r)
    p = z
    rz = dot(r, z)
    norm_b = dot(b, b).sqrt().clamp_min(torch.finfo(b.dtype).tiny)
    iteration = 0
    while True:
        active = dot(r, r).sqrt() > tol * norm_b
        if iteration == max_iter or not bool(active.any()):
            return x, (dot(r, r).sqrt() / norm_b).flatten(), iteration
        q = apply(p)
        alpha = torch.where(active, rz / dot(p, q), 0.0)
        x = x + alpha * p
        r = project(r - alpha * q)
        z = precondition(r)
        rz_new = dot(r, z)
        p = z + torch.where(active, rz_new / rz, 0.0) * p
        rz = rz_new
        iteration += 1


def solve_pcg(K: Tensor, source: Tensor, face_average: str = "harmonic", tol: float = 1e-12,
              max_iter: int = 2000) -> Tensor:
    """``p`` ``(n, R, R)`` with ``A_h p = f̄`` and zero trapezoidal mean, for ``K`` ``(n, R, R)`` and a
    source ``(R, R)`` or ``(n, R, R)`` on the same device; the source's trapezoidal mean is removed
    first (a no-op for a compatible source).  Raises RuntimeError after ``max_iter`` iterations."""
    if K.shape[0] == 0:
        return torch.zeros_like(K, dtype=torch.float64)
    with torch.no_grad():
        K = K.to(torch.float64)
        c_x, c_y = face_coefficients(K, face_average)
        source = source.to(K)
        b = (source - weighted_mean(source)) * cell_areas(K.shape[-1], K.dtype, K.device)
        b = b.expand_as(K)
        scale = K.mean(dim=(-2, -1), keepdim=True)  # M = pinv(A_1) / mean(K); CG ignores the scale

        def precondition(v: Tensor) -> Tensor:
            return neumann_pseudo_inverse(v) / scale

        def zero_sum(v: Tensor) -> Tensor:
            return v - v.mean(dim=(-2, -1), keepdim=True)

        p, relative, _ = conjugate_gradients(lambda v: net_outflow(v, c_x, c_y), precondition, b, tol,
                                             max_iter, zero_sum)
        if bool((relative > tol).any()):
            raise RuntimeError(f"darcy_pidm: conjugate gradients did not reach relative residual {tol:g} in "
                               f"{max_iter} iterations (worst {relative.max().item():.2e}); the permeability "
                               f"contrast max(K)/min(K) is probably huge: raise cg_max_iter or use "
                               f"solver='scipy'")
        return p - weighted_mean(p)


# ----------------------------------------------------------------------------- direct solver (scipy)


def solve_banded(K: np.ndarray, source: np.ndarray, face_average: str = "harmonic") -> np.ndarray:
    """The same discrete problem as :func:`solve_pcg`, per sample by LAPACK's banded Cholesky
    (``?pbsv``, lexicographic order, bandwidth R, OpenBLAS held to one thread): node (0, 0) is pinned
    to 0 (its row is implied by the others since ``Σ b = 0``), then ``p`` is shifted to zero mean."""
    K = torch.as_tensor(np.ascontiguousarray(K, dtype=np.float64))
    n, size = K.shape[0], K.shape[-1]
    if n == 0:
        return np.zeros(K.shape)
    source = torch.as_tensor(source, dtype=torch.float64).expand_as(K)
    b = ((source - weighted_mean(source)) * cell_areas(size)).reshape(n, -1).numpy()
    c_x, c_y = face_coefficients(K, face_average)
    zero = torch.zeros(n, 1, size, dtype=torch.float64)
    diagonal = (torch.cat([zero, c_x], 1) + torch.cat([c_x, zero], 1)
                + torch.cat([zero.mT, c_y], 2) + torch.cat([c_y, zero.mT], 2)).reshape(n, -1).numpy()
    next_in_row = (-torch.cat([c_y, zero.mT], 2)).reshape(n, -1).numpy()  # coupling of k to k + 1
    next_row = (-c_x).reshape(n, -1).numpy()  # coupling of k to k + R
    p = np.zeros((n, size * size))
    from scipy.linalg import lapack  # here: scipy.linalg is slow to import

    pbsv = lapack.get_lapack_funcs("pbsv", (p,))
    with single_threaded_blas():
        for s in range(n):
            band = np.zeros((size * size, size + 1))  # LAPACK lower band storage, transposed
            band[:, 0], band[:, 1], band[: size * (size - 1), size] = diagonal[s], next_in_row[s], next_row[s]
            band[0, :] = 0.0
            band[0, 0] = 1.0  # pin p at node (0, 0)
            rhs = b[s].copy()
            rhs[0] = 0.0
            _, x, info = pbsv(band.T, rhs, lower=1, overwrite_ab=1, overwrite_b=1)
            if info != 0:
                raise np.linalg.LinAlgError(f"darcy_pidm: banded Cholesky failed (info={info}); is K > 0?")
            p[s] = x
    p_t = torch.from_numpy(p.reshape(n, size, size))
    return (p_t - weighted_mean(p_t)).numpy()


# ----------------------------------------------------------------------------- the PDE


class DarcyPIDM(PDE):
    """PIDM's Darcy flow ``-∇·(K ∇p) = f``, zero flux on the boundary, ``∫ p = 0``, on [0, 1]².

    Channels ``("K", "p")``; ``K = exp(G)`` is the random input, G with covariance
    ``sigma² exp(-|x - y| / length_scale)``.  ``f = ±source_strength`` on the corner squares of side
    ``source_width`` at (0, 0) and (1, 1).  Grid: ``R × R`` nodes including the boundary,
    ``h = 1 / (R - 1)``.  ``cg_tol`` / ``cg_max_iter`` control the torch solver.

    Residual: ``A_h p - f̄`` at every node (the zero-flux condition is part of the boundary nodes'
    flux balance), so :attr:`boundary_mask` is all False; the residual ignores the gauge ``∫ p``,
    which :meth:`pressure_mean` reports and :meth:`fix_gauge` sets to 0.
    """

    name = "darcy_pidm"
    channels = ("K", "p")
    input_channels = ("K",)
    solver_params = ("solver", "cg_tol", "cg_max_iter")

    def __init__(self, resolution: int = 64, length_scale: float = 0.1, sigma: float = 1.0,
                 source_strength: float = 10.0, source_width: float = 0.125, face_average: str = "harmonic",
                 solver: str = "auto", cg_tol: float = 1e-12, cg_max_iter: int = 2000) -> None:
        if int(resolution) != resolution or resolution < 8:
            raise ValueError(f"darcy_pidm: resolution too small ({resolution}): use an integer of at least 8 "
                             f"grid points per side (64 is the PIDM setting)")
        if not (length_scale > 0 and sigma > 0 and math.isfinite(length_scale) and math.isfinite(sigma)):
            raise ValueError(f"darcy_pidm: the log-permeability needs a finite length_scale > 0 and sigma > 0, "
                             f"got {length_scale}, {sigma} (PIDM: 0.1 and 1)")
        if not math.isfinite(source_strength):
            raise ValueError(f"darcy_pidm: source_strength must be a finite number, got {source_strength}")
        if not 0 < source_width <= 0.5:
            raise ValueError(f"darcy_pidm: source_width {source_width} must be in (0, 0.5] so the two corner "
                             f"squares do not overlap (PIDM: 0.125)")
        if face_average not in FACE_AVERAGES:
            raise ValueError(f"darcy_pidm: unknown face_average {face_average!r}: use one of {sorted(FACE_AVERAGES)}")
        if solver not in SOLVERS:
            raise ValueError(f"darcy_pidm: unknown solver {solver!r}: use one of {list(SOLVERS)}")
        if not (cg_tol > 0 and cg_max_iter >= 1):
            raise ValueError(f"darcy_pidm: need cg_tol > 0 and cg_max_iter >= 1, got {cg_tol}, {cg_max_iter}")
        self.resolution = int(resolution)
        self.length_scale, self.sigma = float(length_scale), float(sigma)
        self.source_strength, self.source_width = float(source_strength), float(source_width)
        self.face_average, self.solver = face_average, solver
        self.cg_tol, self.cg_max_iter = float(cg_tol), int(cg_max_iter)
        self.grid = Grid((self.resolution,) * 2, (1.0, 1.0), "neumann")
        self.grf = ExponentialGaussianRandomField(self.grid.shape, self.grid.extent, self.length_scale, self.sigma)
        self._source = corner_source(self.resolution, self.source_strength, self.source_width)
        self._cache: dict[tuple[torch.device, torch.dtype], Tensor] = {}

    @property
    def h(self) -> float:
        """Grid spacing ``1 / (R - 1)``."""
        return self.grid.spacing[0]

    @property
    def source(self) -> Tensor:
        """``f̄`` ``(R, R)`` float64: the control-volume averages of f (units of f)."""
        return self._source.clone()

    def params(self) -> dict[str, Any]:
        return {"resolution": self.resolution, "length_scale": self.length_scale, "sigma": self.sigma,
                "source_strength": self.source_strength, "source_width": self.source_width,
                "face_average": self.face_average, "solver": self.solver, "cg_tol": self.cg_tol,
                "cg_max_iter": self.cg_max_iter}

    @property
    def boundary_mask(self) -> Tensor:
        return torch.zeros(self.grid.shape, dtype=torch.bool)

    def _source_on(self, device: torch.device, dtype: torch.dtype) -> Tensor:
        """``f̄`` on ``device`` in ``dtype``, cached (the residual runs every training step)."""
        key = (device, dtype)
        if key not in self._cache:
            self._cache[key] = self._source.to(device=device, dtype=dtype)
        return self._cache[key]

    def sample_inputs(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``K = exp(G)`` ``(n, 1, R, R)`` float64 on the generator's device."""
        return self.grf.sample(n, generator).exp().unsqueeze(1)

    def solve(self, inputs: Tensor) -> Tensor:
        """``[K, p]`` ``(n, 2, R, R)`` float64 on the inputs' device for permeabilities ``(n, 1, R, R)``
        or ``(n, R, R)``; ``K`` must be finite and > 0.  ``p`` has zero trapezoidal mean."""
        K = self.input_field(inputs, self.grid.shape, "permeabilities", positive=True,
                             hint="pass the 'K' channel at the PDE's resolution")
        if self.solver == "torch" or (self.solver == "auto" and K.is_cuda):
            p = solve_pcg(K, self._source_on(K.device, K.dtype), self.face_average, self.cg_tol, self.cg_max_iter)
        else:
            p = torch.from_numpy(solve_banded(K.cpu().numpy(), self._source.numpy(), self.face_average))
        return torch.stack([K, p.to(K.device)], dim=1)

    def residual(self, x: Tensor) -> Tensor:
        """``(B, 1, R, R)`` in the units of f: ``A_h p - f̄`` at every node.  Differentiable in both
        channels; any device; ``K`` is not checked; unchanged by adding a constant to ``p``.
        Half-precision inputs are evaluated in float32 (K / h² overflows float16) and cast back."""
        self.check_sample(x)
        dtype = torch.promote_types(x.dtype, torch.float32)
        K, p = x.to(dtype).unbind(1)
        r = operator(K, p, self.face_average) - self._source_on(x.device, dtype)
        return r.unsqueeze(1).to(x.dtype)

    def residual_scale(self, x: Tensor) -> Tensor:
        """``(B, 1, R, R)``: the RMS of ``f̄`` over the nodes, everywhere (its discrete L2 norm is
        the source's, ``≈ r w sqrt(2)``)."""
        self.check_sample(x)
        rms = self._source.square().mean().sqrt().item()
        return x.new_full((x.shape[0], 1, *self.grid.shape), rms)

    def pressure_mean(self, x: Tensor) -> Tensor:
        """``(B,)``: the trapezoidal mean of ``p``, 0 for solver output (the gauge condition)."""
        self.check_sample(x)
        return weighted_mean(x[:, 1]).flatten()

    def fix_gauge(self, x: Tensor) -> Tensor:
        """``x`` with ``p`` shifted to zero trapezoidal mean (e.g. for generated samples); differentiable."""
        self.check_sample(x)
        return torch.stack([x[:, 0], x[:, 1] - weighted_mean(x[:, 1])], dim=1)
