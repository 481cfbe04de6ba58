"""The 5-point Laplacian with zero Dirichlet values and its exact inverse by the discrete sine transform.

Shared by Poisson, Helmholtz and the Darcy preconditioner (any family whose operator is, or is
preconditioned by, the constant-coefficient Laplacian on a box with u = 0 on the boundary).

On the interior nodes ``x_i = i h``, ``i = 1..m`` (``m + 2`` nodes, boundary included), the second
difference ``(u_{i-1} - 2 u_i + u_{i+1}) / h²`` with ``u_0 = u_{m+1} = 0`` has the eigenvectors
``s_j(i) = sin(π i j / (m + 1))`` and eigenvalues ``-μ_j``,

    μ_j = (4 / h²) sin²(π j / (2 (m + 1))),   j = 1..m.

The DST-I matrix ``Q_ij = sqrt(2 / (m + 1)) sin(π i j / (m + 1))`` is symmetric and orthogonal
(``Q² = I``), so on an ``m_1 × m_2`` interior the 5-point Laplacian ``Δ_h`` is
``Q_1 ⊗ Q_2 · diag(-μ_j - μ_l) · Q_1 ⊗ Q_2`` and

    (Δ_h + σ) u = f   ⇔   u = Q_1 [ (Q_1 f Q_2) / (σ - μ_j - μ_l) ] Q_2,

an exact (round-off) direct solve.  The transform runs either as dense matmuls with the cached
``Q`` (``O(m³)`` per sample but BLAS-fast, the faster at moderate m) or through ``torch.fft``
(``O(m² log m)``, used above :data:`MATMUL_MAX_SIZE` interior points per axis, near the measured
crossover: docs/measurements.md).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

MATMUL_MAX_SIZE = 512
"""``method="auto"`` transforms axes of at most this many interior points by dense matmul, longer
ones by FFT (the measured crossover: docs/measurements.md)."""
METHODS = ("auto", "matmul", "fft")
CPU_CHUNK_BYTES = 16 * 2**20
"""The size of the pieces a CPU batch is transformed in (:func:`batch_chunks`, :func:`map_batch`):
cache- and allocator-friendly, large enough for efficient GEMMs (~128 samples at 128²)."""
SINGULAR_CONDITION = 1e10
"""``Δ_h + σ`` counts as singular when ``max |σ - μ| / min |σ - μ|`` exceeds this: the solve would
lose more than 10 of float64's 16 digits."""


def batch_chunks(x: Tensor) -> list[slice]:
    """Slices along the first dimension of ``x`` (three or more dimensions, on the CPU) holding at
    most :data:`CPU_CHUNK_BYTES` each; one slice for everything else."""
    if x.ndim < 3 or x.device.type != "cpu" or len(x) == 0:
        return [slice(None)]
    step = max(1, CPU_CHUNK_BYTES // (x[0].numel() * x.element_size()))
    return [slice(start, start + step) for start in range(0, len(x), step)]


def map_batch(x: Tensor, step: Callable[[Tensor, Tensor], Tensor], out: Tensor | None = None) -> Tensor:
    """``out[part] = step(work, scratch)`` for each chunk of :func:`batch_chunks`, where ``work``
    holds a copy of ``x[part]`` and ``scratch`` is as large (both contiguous; ``step`` may
    overwrite both and returns the result).  Returns ``out`` (allocated like ``x`` if not given).

    The two workspaces are allocated once per call: fresh memory is page-faulted on first touch,
    which on the 2-core VM cost as much system time as the GEMMs' user time when every transform
    of a 128² batch allocated its result."""
    out = torch.empty_like(x, memory_format=torch.contiguous_format) if out is None else out
    if x.numel() == 0:
        return out
    parts = batch_chunks(x)
    workspace = x.new_empty((2, *x[parts[0]].shape))
    for part in parts:
        size = len(range(*part.indices(len(x))))
        work, scratch = workspace[0, :size], workspace[1, :size]
        work.copy_(x[part])
        out[part] = step(work, scratch)
    return out


def dst1(x: Tensor, dim: int) -> Tensor:
    """Unnormalised DST-I along ``dim``: ``X_k = Σ_{n=1..m} x_n sin(π k n / (m + 1))``, k = 1..m,
    as ``-Im`` of a real FFT of length ``2 (m + 1)`` of ``[0, x, 0, ..., 0]``.  Applying it twice
    multiplies by ``(m + 1) / 2``."""
    x = x.movedim(dim, -1)
    m = x.shape[-1]
    spectrum = torch.fft.rfft(F.pad(x, (1, m + 1)), dim=-1)
    return (-spectrum.imag[..., 1 : m + 1]).movedim(-1, dim)


@functools.lru_cache(maxsize=32)
def dst1_matrix(m: int, dtype: torch.dtype = torch.float64, device: Any = None) -> Tensor:
    """The orthonormal DST-I matrix ``Q_ij = sqrt(2 / (m + 1)) sin(π i j / (m + 1))``, i, j = 1..m
    (symmetric, ``Q @ Q = I``), cached per size, dtype and device; do not modify it in place.
    The angle is reduced exactly in integers (``i j mod 2 (m + 1)``) before the sine."""
    index = torch.arange(1, m + 1, dtype=torch.int64)
    phase = (index[:, None] * index[None, :]) % (2 * (m + 1))
    q = math.sqrt(2.0 / (m + 1)) * torch.sin(phase.to(torch.float64) * (math.pi / (m + 1)))
    return q.to(dtype=dtype, device=device)


def matmul_along(x: Tensor, matrix: Tensor, dim: int, out: Tensor | None = None) -> Tensor:
    """``y[..., i, ...] = Σ_k matrix[i, k] x[..., k, ...]`` along ``dim``: one GEMM over the last
    axis (the batch folded into one large product) or one batched GEMM with the matrix broadcast
    from the left for other axes; ``x`` is never transposed.  ``out`` (contiguous, ``y``'s shape)
    receives the result without a temporary; ``x`` must then be contiguous too."""
    dim = dim % x.ndim
    n = x.shape[dim]
    trailing = math.prod(x.shape[dim + 1 :])
    shape = (*x.shape[:dim], matrix.shape[0], *x.shape[dim + 1 :])
    if out is None:
        if dim == x.ndim - 1:
            return x @ matrix.T
        return torch.matmul(matrix, x.reshape(-1, n, trailing)).reshape(shape)
    if dim == x.ndim - 1:
        torch.mm(x.view(-1, n), matrix.T, out=out.view(-1, matrix.shape[0]))
    else:
        torch.matmul(matrix, x.view(-1, n, trailing), out=out.view(-1, matrix.shape[0], trailing))
    return out


def transform_in_place(x: Tensor, matrices: Sequence[Tensor], scratch: Tensor) -> Tensor:
    """``x ← M_1 ⊗ ... ⊗ M_d x`` over the last ``d = len(matrices)`` axes (square matrices):
    ``x[..., i_1, ..., i_d] ← Σ_k M_1[i_1, k_1] ... M_d[i_d, k_d] x[..., k_1, ..., k_d]``, one
    :func:`matmul_along` per axis ping-ponging with ``scratch`` (contiguous, ``x``'s shape, also
    overwritten); no allocations.  Shared with :class:`~.grf.GaussianRandomField`."""
    source, target = x, scratch
    for axis, matrix in enumerate(matrices):
        matmul_along(source, matrix, x.ndim - len(matrices) + axis, out=target)
        source, target = target, source
    return source if source is x else x.copy_(source)


def laplacian_eigenvalues(m: int, h: float, dtype: torch.dtype = torch.float64, device: Any = None) -> Tensor:
    """``μ_j = (4 / h²) sin²(π j / (2 (m + 1)))``, j = 1..m: minus the eigenvalues of the 1-D second
    difference with zero Dirichlet values (units 1 / length²)."""
    j = torch.arange(1, m + 1, dtype=torch.float64)
    mu = (4.0 / h**2) * torch.sin(0.5 * math.pi * j / (m + 1)) ** 2
    return mu.to(dtype=dtype, device=device)


def laplacian(u: Tensor, h: float) -> Tensor:
    """The 5-point Laplacian ``Δ_h u`` (units of u / length²) at the interior nodes, ``(..., m_1, m_2)``,
    of ``u`` given on the full node grid ``(..., m_1 + 2, m_2 + 2)`` with spacing ``h``; the
    boundary values of ``u`` enter through the neighbours."""
    centre = u[..., 1:-1, 1:-1]
    neighbours = u[..., :-2, 1:-1] + u[..., 2:, 1:-1] + u[..., 1:-1, :-2] + u[..., 1:-1, 2:]
    return (neighbours - 4.0 * centre) / h**2


def resolve_method(shape: tuple[int, ...], method: str) -> str:
    """``"matmul"`` or ``"fft"`` for an interior of ``shape``; ``"auto"`` picks by :data:`MATMUL_MAX_SIZE`."""
    if method not in METHODS:
        raise ValueError(f"unknown sine-transform method {method!r}: use one of {list(METHODS)}")
    if method == "auto":
        return "matmul" if max(shape) <= MATMUL_MAX_SIZE else "fft"
    return method


@functools.lru_cache(maxsize=32)
def _inverse_symbol(shape: tuple[int, int], h: float, shift: float, method: str, dtype: torch.dtype,
                    device: Any) -> Tensor:
    """``1 / (σ - μ_j - μ_l)`` times the transform's normalisation (1 for the orthonormal matmul,
    ``(2 / (m_1 + 1)) (2 / (m_2 + 1))`` per application pair for the unnormalised FFT)."""
    symbol = shifted_laplacian_spectrum(shape, h, shift)
    norm = 1.0 if method == "matmul" else 4.0 / ((shape[0] + 1) * (shape[1] + 1))
    return (norm / symbol).to(dtype=dtype, device=device)


def shifted_laplacian_spectrum(shape: tuple[int, int], h: float, shift: float = 0.0) -> Tensor:
    """The eigenvalues ``σ - μ_j - μ_l`` of ``Δ_h + σ`` on an ``m_1 × m_2`` interior, float64 on the CPU.

    Raises ValueError when the operator is singular to working precision (condition number above
    :data:`SINGULAR_CONDITION`), i.e. ``σ`` is (within round-off) a discrete eigenvalue ``μ_j + μ_l``.
    """
    mu = [laplacian_eigenvalues(m, h) for m in shape]
    symbol = shift - (mu[0][:, None] + mu[1][None, :])
    size = symbol.abs()
    smallest = int(size.argmin())
    if not bool(size.min() * SINGULAR_CONDITION > size.max()):
        row, col = divmod(smallest, shape[1])
        raise ValueError(
            f"the shifted Laplacian Δ_h + k² is singular on a {shape[0]}×{shape[1]} interior grid (h = {h:.6g}): "
            f"the shift k² = {shift:.12g} equals, to round-off, the discrete eigenvalue μ_{row + 1} + μ_{col + 1} = "
            f"{(shift - symbol.flatten()[smallest]).item():.12g} (condition number above {SINGULAR_CONDITION:g}); "
            f"change k or the resolution")
    return symbol


def solve_shifted_laplacian(f: Tensor, h: float, shift: float = 0.0, method: str = "auto",
                            out: Tensor | None = None) -> Tensor:
    """Solve ``(Δ_h + σ) u = f`` with ``u = 0`` on the boundary, exactly (to round-off).

    ``f`` holds the right-hand side at the interior nodes, ``(..., m_1, m_2)`` (any leading batch
    dimensions, any device, float32/64); returns ``u`` at the interior nodes, same shape and dtype,
    written into ``out`` when given (any strides, e.g. the interior of a full-grid array).
    ``method``: ``"matmul"`` / ``"fft"`` / ``"auto"`` (see the module docstring).  Raises
    ValueError if ``Δ_h + σ`` is singular (:func:`shifted_laplacian_spectrum`).
    """
    shape = tuple(f.shape[-2:])
    method = resolve_method(shape, method)
    inverse = _inverse_symbol(shape, float(h), float(shift), method, f.dtype, f.device)
    if out is not None and out.shape != f.shape:
        raise ValueError(f"solve_shifted_laplacian: out has shape {tuple(out.shape)}, f has {tuple(f.shape)}")
    if method == "matmul":
        q = [dst1_matrix(m, f.dtype, f.device) for m in shape]

        def step(work: Tensor, scratch: Tensor) -> Tensor:  # Q_1 [(Q_1 f Q_2) / symbol] Q_2
            transform_in_place(work, q, scratch).mul_(inverse)
            return transform_in_place(work, q, scratch)
    else:
        def step(work: Tensor, scratch: Tensor) -> Tensor:
            spectrum = dst1(dst1(work, -1), -2).mul_(inverse)
            return dst1(dst1(spectrum, -1), -2)

    return map_batch(f, step, out)


def inverse_laplacian(r: Tensor, h: float) -> Tensor:
    """``(-Δ_h)^(-1) r`` for the constant-coefficient 5-point Laplacian with zero Dirichlet
    values, ``r`` ``(..., m, m)`` on the interior nodes, spacing ``h`` (FFT transform: the Darcy
    conjugate-gradient preconditioner)."""
    return solve_shifted_laplacian(r, h, 0.0, method="fft").neg_()
