"""Physics Informed Distillation (Tee et al., arXiv 2411.08378): the PF-ODE solved PINN-style.

The teacher's probability-flow ODE dx/dt = (x − D(x, t))/t, x(T) = z ~ N(0, T² I), has one
trajectory x(z, t) per noise z. A student trajectory function

    x_θ(z, t) = (t/T) z + (1 − t/T) X_θ(c_in z, c_noise(t)),  c_in = 1/sqrt(σ_d² + T²), c_noise = ln t / 4,

meets the boundary condition x_θ(z, T) = z exactly, and is trained on the Karras grid
T = t_0 > t_1 > … > t_{N−1} = σ_min with the residual (eq. 11 of the paper)

    d( x_θ(z, t_i) − t_i (x_θ(z, t_i) − x_θ(z, t_{i+1}))/(t_i − t_{i+1}),  sg D(x_θ(z, t_i), t_i) ).

This is the first-order **upwind** scheme: zero loss means the student reproduces explicit Euler
on the grid (Theorem 1). The **central** scheme evaluates the same residual at the interval's
midpoint, x̄ = (x_θ(z, t_i) + x_θ(z, t_{i+1}))/2 at t̄ = (t_i + t_{i+1})/2, where the difference
quotient is a second-order derivative: zero loss means the implicit midpoint rule, O(Δt²).
Both cost two student evaluations and one teacher evaluation.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from .edm import broadcast_like, per_sample_sigma
from .samplers import karras_sigmas

SCHEMES = ("upwind", "central")


def pid_grid(num_points: int, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0) -> Tensor:
    """The N-point Karras grid t_0 = T > … > t_{N−1} = σ_min (float64, no final zero)."""
    if num_points < 2:
        raise ValueError(f"the PID grid needs at least 2 points, got num_points={num_points}")
    return karras_sigmas(num_points, sigma_min=sigma_min, sigma_max=sigma_max, rho=rho, append_zero=False)


def check_scheme(scheme: str) -> str:
    """``scheme`` if it names a PID scheme, else a ValueError listing them."""
    if scheme not in SCHEMES:
        raise ValueError(f"unknown PID scheme {scheme!r}; choose one of {SCHEMES}")
    return scheme


def pid_prediction(x_hi: Tensor, x_lo: Tensor, t_hi: Tensor, t_lo: Tensor,
                   scheme: str = "upwind") -> tuple[Tensor, Tensor, Tensor]:
    """The student's side of the residual, x − t dx/dt, from its states at t_hi > t_lo ((B,) each).

    Returns ``(prediction, x, t)``: the teacher is queried as D(x, t). ``upwind`` uses x = x_hi,
    t = t_hi; ``central`` the midpoint x = (x_hi + x_lo)/2, t = (t_hi + t_lo)/2.
    """
    check_scheme(scheme)
    slope = (x_hi - x_lo) / broadcast_like(t_hi - t_lo, x_hi)
    if scheme == "upwind":
        x, t = x_hi, t_hi
    else:
        x, t = (x_hi + x_lo) / 2, (t_hi + t_lo) / 2
    return x - broadcast_like(t, x) * slope, x, t


def pid_loss(x_hi: Tensor, x_lo: Tensor, t_hi: Tensor, t_lo: Tensor, denoiser: Callable[[Tensor, Tensor], Tensor],
             distance: Callable[[Tensor, Tensor], Tensor], scheme: str = "upwind") -> Tensor:
    """Per-sample PID loss (B,): d(prediction, sg D(x, t)); no gradient reaches the teacher."""
    prediction, x, t = pid_prediction(x_hi, x_lo, t_hi, t_lo, scheme)
    with torch.no_grad():
        target = denoiser(x.detach(), t.detach())
    return distance(prediction, target)


def has_active_dropout(module: nn.Module) -> bool:
    """Whether ``module`` draws dropout masks now (training mode and some dropout with p > 0)."""
    return module.training and any(
        isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0 for m in module.modules()
    )


class PIDTrajectory(nn.Module):
    """The student trajectory function x_θ(z, t) around a backbone X_θ = ``net(x, c_noise)``.

    ``z`` is the noise at T (std T per element, normalised data units); ``t`` a scalar or (B,).
    The backbone runs in its parameters' dtype, the combination in z's dtype (float64 for sampling).
    """

    def __init__(self, net: nn.Module, sigma_max: float = 80.0, sigma_data: float = 1.0) -> None:
        super().__init__()
        if sigma_max <= 0 or sigma_data <= 0:
            raise ValueError(f"need positive sigma_max and sigma_data, got {sigma_max} and {sigma_data}")
        self.net = net
        self.sigma_max = float(sigma_max)
        self.c_in = 1.0 / (sigma_data**2 + sigma_max**2) ** 0.5

    def forward(self, z: Tensor, t: Tensor | float) -> Tensor:
        t = per_sample_sigma(t, z)
        param = next((p for p in self.net.parameters() if p.is_floating_point()), None)
        dtype = z.dtype if param is None else param.dtype
        out = self.net((self.c_in * z).to(dtype), (t.log() / 4).to(dtype)).to(z.dtype)
        skip = broadcast_like(t / self.sigma_max, z)
        return skip * z + (1 - skip) * out

    def pair(self, z: Tensor, t_hi: Tensor, t_lo: Tensor) -> tuple[Tensor, Tensor]:
        """x_θ(z, t_hi) and x_θ(z, t_lo) with the same dropout masks: one batched call without
        dropout, two calls from the same RNG state with it."""
        if not has_active_dropout(self):
            both = self(torch.cat([z, z]), torch.cat([t_hi, t_lo]))
            return both[: len(z)], both[len(z):]
        devices = [z.device] if z.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):  # restores the RNG state on exit
            x_hi = self(z, t_hi)
        return x_hi, self(z, t_lo)
