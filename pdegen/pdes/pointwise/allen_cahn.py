"""Allen–Cahn ``u_t - d u_xx + 5u³ - 5u = 0`` for PINNs: x ∈ [-1, 1] periodic, t ∈ [0, T] (T = 1 by default),
``u(x, 0) = x² cos(πx)``, ``d = 1e-4`` (Raissi et al. 2019); non-dimensional units.

The reaction drives ``u`` to ±1 plateaus separated by fronts of width ``√(2d/5)`` (the steady front is
``tanh(x √(5/2d))``: 0.006 wide for the default d). The periodic extension of ``u(x, 0)`` is continuous
but kinked at x = ±1 (``u_x(-1, 0) = 2``, ``u_x(1, 0) = -2``), smoothed by diffusion for t > 0.

Reference (:meth:`AllenCahnPINN.reference`, float64): Fourier pseudo-spectral on the periodic nodes
``x_j = -1 + 2j/n`` (``n = reference_resolution``, the products taken on the grid), in time
:class:`~pdegen.pdes.spectral.ETDRK4` with ``L = -d k²``, ``N(u) = 5u - 5u³``, step ``reference_dt``;
solved once per instance up to ``final_time`` T, its spectra stored every 1e-3 (1000 T + 1 times). At a query point the
spectrum is the cubic Lagrange interpolant in t of the four nearest stored ones, summed as a Fourier
series at x (spectrally exact in x); at t = 0 exactly it returns ``x² cos(πx)`` itself (so it
jumps there by the early-time error below, near x = ±1).

Accuracy verified (default d; max |Δu| over 2600 x in [-1, 1], 401 of them in each of |x| > 0.9,
against n = 8192): n = 2048 (default): 3.5e-4 at t → 0, 2.3e-4 at t = 1e-3, 1e-5 at t = 0.1, 2.6e-6 at
t = 0.2, 8e-8 at t = 0.5, 4e-10 at t = 1 (n = 1024: 7.5e-4, 5.7e-4, 4.2e-5, 1.1e-5, 3.5e-7, 1.6e-9;
n = 4096 halves the early ones; n = 512: 1.3e-5 at t = 1, not converged). This early-time error is the
IC's kink, first order in 1/n (so about 4/3 of the numbers above) and confined to |x| > 0.9: for
|x| ≤ 0.9 it is 3e-6 at t → 0, 1e-6 at t = 1e-3 and < 1e-13 from t = 0.02 on. The step: dt = 1e-3
against 5e-4 changes u by ≤ 6e-10 (≤ 1e-11 from t = 0.02 on). The cubic interpolation in t, against
the solution stored at the mid-times: ≤ 2e-6 for t < 3e-3 (near x = ±1), ≤ 6e-10 for t ≥ 0.02, 3e-11
from t = 0.05 on. The reference's own autograd PDE residual is ≤ 5e-8 for t ≥ 0.05 (terms O(4)).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..spectral import ETDRK4, wavenumbers
from .base import Field, PointwiseProblem, gradient, space_time_derivatives, with_grad
from .burgers import CHUNK_ELEMENTS

STORED_TIME_SPACING = 1e-3
"""The reference keeps its spectrum every 1e-3 (``reference_dt`` must divide it)."""


def initial_state(x: Tensor) -> Tensor:
    """``u(x, 0) = x² cos(πx)`` (x·x, not x**2: ONNX Runtime's Pow took 0.23 ms of a built-in-IC student's 1.0 ms
    at 10,000 points)."""
    return x * x * torch.cos(math.pi * x)


def cubic_weights(s: Tensor) -> Tensor:
    """Lagrange weights ``(4, N)`` of the nodes -1, 0, 1, 2 at positions ``s`` (in node spacings)."""
    return torch.stack([-s * (s - 1) * (s - 2) / 6, (s + 1) * (s - 1) * (s - 2) / 2,
                        -(s + 1) * s * (s - 2) / 2, (s + 1) * s * (s - 1) / 6])


class AllenCahnPINN(PointwiseProblem):
    """Allen–Cahn ``u_t - d u_xx + 5u³ - 5u = 0``, x ∈ [-1, 1] periodic, t ∈ [0, ``final_time``] (default 1, the
    benchmark's; a multiple of 1e-3), ``u(x, 0) = x² cos(πx)`` (module docstring). ``diffusion`` d (default
    1e-4); ``reference_resolution`` (Fourier nodes, even,
    default 2048) and ``reference_dt`` (ETDRK4 step, 1e-3 / m for an integer m, default 1e-3) choose
    how the reference is computed (converged for the default d, see the module docstring)."""

    name = "allen_cahn"
    inputs = ("x", "t")
    outputs = ("u",)
    conditions = ("ic", "bc")

    def __init__(self, diffusion: float = 1e-4, reference_resolution: int = 2048,
                 reference_dt: float = 1e-3, final_time: float = 1.0) -> None:
        if not (math.isfinite(diffusion) and diffusion > 0):
            raise ValueError(f"allen_cahn: diffusion must be a finite positive number, got {diffusion} (1e-4 is the "
                             f"default)")
        if int(reference_resolution) != reference_resolution or reference_resolution < 16 or reference_resolution % 2:
            raise ValueError(f"allen_cahn: reference_resolution must be an even integer >= 16, got "
                             f"{reference_resolution} (2048 is the default)")
        ratio = STORED_TIME_SPACING / reference_dt if reference_dt > 0 else 0.0
        if not (math.isfinite(ratio) and round(ratio) >= 1 and abs(ratio - round(ratio)) < 1e-9 * ratio):
            raise ValueError(f"allen_cahn: reference_dt must be {STORED_TIME_SPACING} / m for an integer m >= 1 "
                             f"(the reference is stored every {STORED_TIME_SPACING}), got {reference_dt}")
        stored = final_time / STORED_TIME_SPACING
        if not (math.isfinite(stored) and round(stored) >= 1 and abs(stored - round(stored)) < 1e-9 * stored):
            raise ValueError(f"allen_cahn: final_time must be a positive multiple of {STORED_TIME_SPACING}, got "
                             f"{final_time} (1.0 is the default)")
        self.final_time = float(final_time)
        self.diffusion = float(diffusion)
        self.reference_resolution = int(reference_resolution)
        self.reference_dt = float(reference_dt)
        self._steps_per_stored = round(ratio)
        self._spectra: Tensor | None = None

    @property
    def lower(self) -> tuple[float, ...]:
        return (-1.0, 0.0)

    @property
    def upper(self) -> tuple[float, ...]:
        return (1.0, self.final_time)

    @property
    def params(self) -> dict:
        return {"diffusion": self.diffusion, "reference_resolution": self.reference_resolution,
                "reference_dt": self.reference_dt, "final_time": self.final_time}

    def covering(self, upper: tuple[float, ...]) -> AllenCahnPINN:
        """The same problem with ``final_time`` raised to ``upper``'s t (rounded up to the stored spacing), so the
        reference is solved that far; itself when it already is."""
        until = math.ceil(upper[1] / STORED_TIME_SPACING - 1e-6) * STORED_TIME_SPACING
        return self if until <= self.final_time else AllenCahnPINN(**(self.params | {"final_time": until}))

    def initial_state(self, coords: Tensor) -> Tensor:
        """``x² cos(πx)`` ``(N, 1)``."""
        return initial_state(coords[:, :1])

    def pde_residual(self, coords: Tensor, fn: Field) -> Tensor:
        """``u_t - d u_xx + 5u³ - 5u`` ``(N, 1)`` by autograd."""
        self.check_coords(coords)
        u, u_t, _, u_xx = space_time_derivatives(coords, fn)
        return (u_t - self.diffusion * u_xx + 5 * u**3 - 5 * u).unsqueeze(1)

    def sample_condition(self, name: str, n: int, method: str, generator: torch.Generator | None) -> Tensor:
        """``"ic"``: x in [-1, 1] at t = 0; ``"bc"``: points at x = -1, t in [0, 1] (the residual pairs
        each with x = +1)."""
        if name == "ic":
            return self.face(1, 0.0, n, method, generator)
        if name == "bc":
            return self.face(0, -1.0, n, method, generator)
        raise self.unknown(name)

    def condition_residual(self, name: str, coords: Tensor, fn: Field) -> Tensor:
        """``"ic"``: ``u(x, 0) - x² cos(πx)`` ``(N, 1)``; ``"bc"``: the periodicity mismatch
        ``[u(-1, t) - u(1, t), u_x(-1, t) - u_x(1, t)]`` ``(N, 2)`` at the points' t (their x is not used)."""
        self.check_coords(coords)
        if name == "ic":
            return fn(coords) - self.initial_state(coords)
        if name == "bc":
            t = coords[:, 1:]
            ends = with_grad(torch.cat([torch.cat([-torch.ones_like(t), t], 1), torch.cat([torch.ones_like(t), t], 1)]))
            u = fn(ends)[:, 0]
            u_x = gradient(u, ends)[:, 0]
            left, right = torch.stack([u, u_x], 1).chunk(2)
            return left - right
        raise self.unknown(name)

    # ------------------------------------------------------------------ reference
    def reference(self, coords: Tensor) -> Tensor:
        """The spectral reference ``(N, 1)`` float64 at any x (periodic) and t in [0, T]: Fourier series
        in x of the cubic-in-t interpolated spectrum, ``x² cos(πx)`` at t = 0 (module docstring).
        Differentiable in ``coords``; the first call solves (about a second) and caches."""
        self.check_coords(coords)
        coords = coords.to(torch.float64)
        x, t = coords[:, 0], coords[:, 1]
        if not bool(((t >= 0) & (t <= self.final_time)).all()):  # NaN included
            raise ValueError(f"{self.name}: reference needs t in [0, {self.final_time}] (the solved interval; a "
                             f"larger final_time solves further), got "
                             f"t from {float(t.min())} to {float(t.max())}")
        spectra = self._reference_spectra().to(x.device)
        real, imag = spectra.real, spectra.imag
        position = t / STORED_TIME_SPACING
        first = position.detach().floor().clamp(1, len(spectra) - 3).long()  # nodes first - 1 .. first + 2
        weights = cubic_weights(position - first).T  # (N, 4)
        k = math.pi * torch.arange(spectra.shape[1], dtype=torch.float64, device=x.device)
        chunk = max(1, CHUNK_ELEMENTS // spectra.shape[1])
        # points sorted by time interval: each run shares its four stored spectra (a matrix product, no gather)
        order = torch.argsort(first)
        intervals, counts = torch.unique_consecutive(first[order], return_counts=True)
        values, start = [], 0
        for node, count in zip(intervals.tolist(), counts.tolist()):
            for lo in range(start, start + count, chunk):
                rows = order[lo:min(lo + chunk, start + count)]
                phase = k * (x[rows, None] + 1)
                at_nodes = torch.cos(phase) @ real[node - 1:node + 3].T - torch.sin(phase) @ imag[node - 1:node + 3].T
                values.append((at_nodes * weights[rows]).sum(1))
            start += count
        u = torch.cat(values)[torch.argsort(order)] if values else torch.zeros_like(x)
        return torch.where(t == 0, initial_state(x), u).unsqueeze(1)

    def _reference_spectra(self) -> Tensor:
        """The solution's real-Fourier coefficients ``(1000 T + 1, n/2 + 1)`` complex128 at t = 0, 1e-3, ..., T,
        scaled so that ``u(x) = Re Σ_k c_k e^{iπk(x+1)}`` (interior wavenumbers doubled); cached."""
        if self._spectra is None:
            n = self.reference_resolution
            (k,) = wavenumbers((n,), (2.0,))
            stepper = ETDRK4(-self.diffusion * k**2, self.reference_dt)

            def nonlinear(v: Tensor) -> Tensor:
                u = torch.fft.irfft(v, n=n)
                return torch.fft.rfft(5 * u - 5 * u**3)

            x = -1 + 2 * torch.arange(n, dtype=torch.float64) / n
            num_stored = round(self.final_time / STORED_TIME_SPACING)
            with torch.no_grad():
                saved = stepper.integrate(torch.fft.rfft(initial_state(x)), nonlinear,
                                          num_stored * self._steps_per_stored, save_every=self._steps_per_stored)
            spectra = torch.stack(saved) / n
            spectra[:, 1:n // 2] *= 2  # e^{ikx} and its conjugate; k = 0 and the Nyquist cosine count once
            if not bool(torch.isfinite(spectra).all()):
                raise RuntimeError(f"{self.name}: the reference solve blew up; lower reference_dt")
            self._spectra = spectra
        return self._spectra
