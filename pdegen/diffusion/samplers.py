"""σ schedules and deterministic probability-flow ODE samplers (Karras et al. 2022, EDM).

The PF-ODE in the EDM parametrisation (s(t) = 1, σ(t) = t) is

    dx/dσ = (x − D(x, σ)) / σ,

integrated from sigmas[0] down to sigmas[-1]. The samplers run in float64; the network
inside D may run in lower precision (see :class:`~pdegen.diffusion.edm.EDMPreconditioner`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from pdegen import progress

from .edm import Denoiser


def karras_sigmas(
    num_steps: int,
    sigma_min: float = 0.002,
    sigma_max: float = 80.0,
    rho: float = 7.0,
    dtype: torch.dtype = torch.float64,
    append_zero: bool = True,
    device: torch.device | str | None = None,
) -> Tensor:
    """σ_i = (σ_max^(1/ρ) + i/(N−1) (σ_min^(1/ρ) − σ_max^(1/ρ)))^ρ, i = 0..N−1 (N = num_steps),
    decreasing from σ_max to σ_min, followed by σ_N = 0 when ``append_zero``.

    With the final zero there are N integration steps; without it, N − 1. For N = 1 the
    schedule is [σ_max] (then 0).
    """
    if int(num_steps) != num_steps or num_steps < 1:
        raise ValueError(f"num_steps must be an integer >= 1, got {num_steps}")
    if not 0 < sigma_min <= sigma_max:
        raise ValueError(f"need 0 < sigma_min <= sigma_max, got sigma_min={sigma_min}, sigma_max={sigma_max}")
    if rho <= 0:
        raise ValueError(f"rho must be positive, got {rho}")
    ramp = torch.linspace(0, 1, int(num_steps), dtype=torch.float64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    sigmas = (hi + ramp * (lo - hi)) ** rho
    if append_zero:
        sigmas = torch.cat([sigmas, sigmas.new_zeros(1)])
    return sigmas.to(dtype=dtype, device=device)


def _check_sigmas(sigmas: Tensor) -> None:
    """Fail early unless sigmas is 1-D, strictly decreasing, positive except a final 0."""
    if sigmas.ndim != 1 or sigmas.numel() < 2:
        raise ValueError(
            f"sigmas must be a 1-D schedule with at least 2 levels, got shape {tuple(sigmas.shape)}"
        )
    s = sigmas.detach().cpu()
    if not bool((s[:-1] > 0).all()) or bool(s[-1] < 0):
        raise ValueError(f"sigmas must be positive (only the last may be 0), got {s.tolist()}")
    if not bool((s[1:] < s[:-1]).all()):
        raise ValueError(f"sigmas must be strictly decreasing, got {s.tolist()}")


def _integrate(
    denoiser: Denoiser,
    x_T: Tensor,
    sigmas: Tensor,
    heun: bool,
    return_trajectory: bool,
    enable_grad: bool,
) -> Tensor | tuple[Tensor, Tensor]:
    """Shared Euler/Heun loop (EDM Algorithm 1 with S_churn = 0)."""
    sigmas = torch.as_tensor(sigmas, dtype=torch.float64, device=x_T.device)
    _check_sigmas(sigmas)
    with torch.set_grad_enabled(enable_grad):
        x = x_T.to(torch.float64)
        trajectory = [x]
        correct = [heun and s > 0 for s in sigmas[1:].tolist()]  # one host sync, not one a step
        for i, (sigma, sigma_next, heun_step) in enumerate(zip(sigmas[:-1], sigmas[1:], correct, strict=True)):
            progress.note(f"step {i + 1}/{len(correct)}")
            d = (x - denoiser(x, sigma)) / sigma
            x_next = x + (sigma_next - sigma) * d
            if heun_step:
                d_next = (x_next - denoiser(x_next, sigma_next)) / sigma_next
                x_next = x + (sigma_next - sigma) * (d + d_next) / 2
            x = x_next
            if return_trajectory:
                trajectory.append(x)
    if return_trajectory:
        return x, torch.stack(trajectory)
    return x


def euler_sample(
    denoiser: Denoiser,
    x_T: Tensor,
    sigmas: Tensor,
    return_trajectory: bool = False,
    enable_grad: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """Explicit Euler on the PF-ODE: x_{i+1} = x_i + (σ_{i+1} − σ_i)(x_i − D(x_i, σ_i))/σ_i.

    ``x_T`` is the state at sigmas[0] (for sampling from the prior: σ_max ε, ε ~ N(0, I)); it is
    cast to float64 and the result is float64. Runs without autograd unless ``enable_grad``.
    With ``return_trajectory`` returns (final, states) with states of shape
    (len(sigmas), B, ...) starting at x_T. First order; len(sigmas) − 1 network evaluations.
    """
    return _integrate(denoiser, x_T, sigmas, False, return_trajectory, enable_grad)


def heun_sample(
    denoiser: Denoiser,
    x_T: Tensor,
    sigmas: Tensor,
    return_trajectory: bool = False,
    enable_grad: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """Heun's 2nd-order method on the PF-ODE (EDM Algorithm 1, S_churn = 0): an Euler
    predictor, then x_{i+1} = x_i + (σ_{i+1} − σ_i)(d_i + d'_{i+1})/2, except for a step to
    σ = 0, which stays Euler. Same arguments and return as :func:`euler_sample`."""
    return _integrate(denoiser, x_T, sigmas, True, return_trajectory, enable_grad)


Sampler = Callable[..., "Tensor | tuple[Tensor, Tensor]"]
SAMPLERS: dict[str, Sampler] = {"euler": euler_sample, "heun": heun_sample}


def _lookup(name: str) -> Sampler:
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; choose one of {sorted(SAMPLERS)}")
    return SAMPLERS[name]


def sample(
    denoiser: Denoiser,
    x_T: Tensor,
    sigmas: Tensor,
    sampler: str = "heun",
    return_trajectory: bool = False,
    enable_grad: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """Run the sampler named ``sampler`` (a key of :data:`SAMPLERS`)."""
    return _lookup(sampler)(
        denoiser, x_T, sigmas, return_trajectory=return_trajectory, enable_grad=enable_grad
    )


def sampler_nfe(name: str, num_steps: int, ends_at_zero: bool = True) -> int:
    """Network evaluations for ``num_steps`` integration steps (len(sigmas) − 1):
    Euler N; Heun 2N − 1 when the last step goes to σ = 0 (Euler there), else 2N."""
    _lookup(name)
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    if name == "euler":
        return num_steps
    return 2 * num_steps - int(ends_at_zero)
