"""σ schedules and deterministic probability-flow ODE samplers (Karras et al. 2022, EDM).

The PF-ODE in the EDM parametrisation (s(t) = 1, σ(t) = t) is

    dx/dσ = (x − D(x, σ)) / σ,

integrated from sigmas[0] down to sigmas[-1]. A sampler is an object (chosen in YAML by
``class_path``) with one call signature, ``sampler(denoiser, x, sigmas, guidance=None,
callback=None, enable_grad=False)``, and :meth:`Sampler.nfe`; a new one is a subclass that
writes :meth:`Sampler.step` and :meth:`Sampler.step_nfe` (k-diffusion's samplers share this shape).
Guidance (DiffusionPDE) and per-step callbacks plug into the one loop of :meth:`Sampler.__call__`.
The samplers run in float64; the network inside D may run in lower precision (see
:class:`~pdegen.diffusion.edm.EDMPreconditioner`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from pdegen import progress

from .edm import Denoiser


def check_sigma_range(sigma_min: float, sigma_max: float, equal: bool = False) -> None:
    """Refuse a σ range that is not 0 < σ_min < σ_max (σ_min = σ_max allowed with ``equal``)."""
    if not (0 < sigma_min <= sigma_max if equal else 0 < sigma_min < sigma_max):
        relation = "<=" if equal else "<"
        raise ValueError(f"need 0 < sigma_min {relation} sigma_max, got sigma_min={sigma_min}, sigma_max={sigma_max}")


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
    decreasing from σ_max (exactly: σ_0 scales unit noise) to σ_min, followed by σ_N = 0 when ``append_zero``.

    With the final zero there are N integration steps; without it, N − 1. For N = 1 the
    schedule is [σ_max] (then 0).
    """
    if int(num_steps) != num_steps or num_steps < 1:
        raise ValueError(f"num_steps must be an integer >= 1, got {num_steps}")
    check_sigma_range(sigma_min, sigma_max, equal=True)
    if rho <= 0:
        raise ValueError(f"rho must be positive, got {rho}")
    ramp = torch.linspace(0, 1, int(num_steps), dtype=torch.float64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    sigmas = (hi + ramp * (lo - hi)) ** rho
    sigmas[0] = sigma_max  # (σ_max^(1/ρ))^ρ may be off by an ulp
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


Guidance = Callable[[Tensor, int], Tensor]
"""``guidance(denoised, i) -> (B,)``: per-sample losses of the posterior-mean estimate x̂0 = D(x_i, σ_i) at step
``i``, their weights for that step applied; the sampler subtracts their gradient with respect to x_i."""

StepCallback = Callable[[dict[str, Any]], None]
"""``callback({"i", "x", "sigma", "sigma_next", "denoised"})`` after each step (``x`` is the new state)."""


class Sampler(ABC):
    """A deterministic PF-ODE solver from ``sigmas[0]`` to ``sigmas[-1]`` (EDM Algorithm 1, S_churn = 0).

    Call it as ``sampler(denoiser, x, sigmas)``: ``x`` is the state at sigmas[0] (from the prior: σ_max ε,
    ε ~ N(0, I)), cast to float64; the result is float64. Runs without autograd unless ``enable_grad``.

    - ``guidance``: DiffusionPDE's gradient guidance (Huang et al. 2024): after each step from x_i,
      x_{i+1} ← x_{i+1} − ∇_{x_i} Σ_b guidance(x̂0, i)_b with x̂0 = D(x_i, σ_i), the gradient flowing
      through the denoiser (one backward pass per step; the evaluation count is unchanged). A loss on x̂0
      constrains E[x0 | x_i], not the sample: Jensen's gap for a nonlinear residual.
    - ``callback``: called after every step with ``{"i", "x", "sigma", "sigma_next", "denoised"}``.

    One host synchronisation per call (to read where the schedule ends at 0), none per step.
    """

    name: str = "sampler"
    """A short name for metric keys and reports (``teacher_<name>/...``)."""

    @abstractmethod
    def step(self, denoiser: Denoiser, x: Tensor, denoised: Tensor, sigma: Tensor, sigma_next: Tensor,
             to_zero: bool) -> Tensor:
        """x_{i+1} from x_i and its denoised estimate D(x_i, σ_i); ``to_zero`` when σ_{i+1} = 0."""

    @abstractmethod
    def step_nfe(self, to_zero: bool) -> int:
        """Network evaluations of one step, D(x_i, σ_i) included."""

    def nfe(self, num_steps: int, ends_at_zero: bool = True) -> int:
        """Network evaluations for ``num_steps`` steps (len(sigmas) − 1), the last one to σ = 0 if ``ends_at_zero``."""
        if int(num_steps) != num_steps or num_steps < 1:
            raise ValueError(f"num_steps must be an integer >= 1, got {num_steps}")
        return (num_steps - 1) * self.step_nfe(False) + self.step_nfe(ends_at_zero)

    def __call__(self, denoiser: Denoiser, x: Tensor, sigmas: Tensor, guidance: Guidance | None = None,
                 callback: StepCallback | None = None, enable_grad: bool = False) -> Tensor:
        sigmas = torch.as_tensor(sigmas, dtype=torch.float64, device=x.device)
        _check_sigmas(sigmas)
        to_zero = [s == 0 for s in sigmas[1:].tolist()]  # one host sync, not one a step
        x = x.to(torch.float64)
        for i, (sigma, sigma_next) in enumerate(zip(sigmas[:-1], sigmas[1:])):
            progress.note(f"step {i + 1}/{len(to_zero)}")
            gradient = None
            if guidance is not None:
                x = x.detach().requires_grad_(True)
                with torch.enable_grad():
                    denoised = denoiser(x, sigma)
                    loss = guidance(denoised, i).sum()
                    gradient = torch.autograd.grad(loss, x)[0] if loss.requires_grad else None
                x, denoised = x.detach(), denoised.detach()
            with torch.set_grad_enabled(enable_grad and guidance is None):
                if guidance is None:
                    denoised = denoiser(x, sigma)
                x_next = self.step(denoiser, x, denoised, sigma, sigma_next, to_zero[i])
            x = x_next if gradient is None else x_next - gradient
            if callback is not None:
                callback({"i": i, "x": x, "sigma": sigma, "sigma_next": sigma_next, "denoised": denoised})
        return x

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Euler(Sampler):
    """Explicit Euler: x_{i+1} = x_i + (σ_{i+1} − σ_i)(x_i − D(x_i, σ_i))/σ_i. First order; one evaluation a step."""

    name = "euler"

    def step(self, denoiser, x, denoised, sigma, sigma_next, to_zero):
        d = (x - denoised) / sigma
        return x + (sigma_next - sigma) * d

    def step_nfe(self, to_zero: bool) -> int:
        return 1


class Heun(Sampler):
    """Heun's second-order method: an Euler predictor, then x_{i+1} = x_i + (σ_{i+1} − σ_i)(d_i + d'_{i+1})/2,
    except for a step to σ = 0, which stays Euler (and lands on D(x_i, σ_i)). 2N − 1 evaluations for N steps
    ending at 0, else 2N."""

    name = "heun"

    def step(self, denoiser, x, denoised, sigma, sigma_next, to_zero):
        d = (x - denoised) / sigma
        x_next = x + (sigma_next - sigma) * d
        if to_zero:
            return x_next
        d_next = (x_next - denoiser(x_next, sigma_next)) / sigma_next
        return x + (sigma_next - sigma) * (d + d_next) / 2

    def step_nfe(self, to_zero: bool) -> int:
        return 1 if to_zero else 2


class LangevinCorrected(Sampler):
    """A predictor step, then ``corrections`` Langevin steps on p_σ at the new level (Song et al. 2021's
    predictor–corrector; SDA's sampler): x ← x + τ (D(x, σ) − x) + √(2τ) σ z, z ~ N(0, I), Langevin dynamics with
    step δ = τσ² (the score is (D(x, σ) − x)/σ²). None after the step to σ = 0. Stochastic: z comes from torch's
    global generator (seeded by ``seed_everything``).

    Args:
        predictor: the PF-ODE step (default :class:`Euler`).
        corrections: Langevin steps after each predictor step (each one evaluation).
        tau: the step's fraction τ of σ²: the stationary law's variance is off by a factor of at most
            1/(1 − τ/2) (exact as τ → 0, slower mixing).
    """

    name = "langevin"

    def __init__(self, predictor: Sampler | None = None, corrections: int = 1, tau: float = 0.25) -> None:
        if int(corrections) != corrections or corrections < 0:
            raise ValueError(f"corrections must be an integer >= 0, got {corrections}")
        if not 0 < tau < 2:
            raise ValueError(f"tau must be in (0, 2) (Langevin's step over σ²), got {tau}")
        self.predictor = as_sampler(predictor, Euler, "predictor")
        self.corrections, self.tau = int(corrections), float(tau)

    def step(self, denoiser, x, denoised, sigma, sigma_next, to_zero):
        x = self.predictor.step(denoiser, x, denoised, sigma, sigma_next, to_zero)
        if to_zero:
            return x
        for _ in range(self.corrections):
            x = x + self.tau * (denoiser(x, sigma_next) - x) + (2 * self.tau) ** 0.5 * sigma_next * torch.randn_like(x)
        return x

    def step_nfe(self, to_zero: bool) -> int:
        return self.predictor.step_nfe(to_zero) + (0 if to_zero else self.corrections)

    def __repr__(self) -> str:
        return f"LangevinCorrected({self.predictor!r}, corrections={self.corrections}, tau={self.tau})"


def as_sampler(value: Sampler | None, default: type[Sampler], label: str) -> Sampler:
    """``value``, or a ``default()`` for ``None``; anything else (e.g. a name) is refused, naming ``label``."""
    if value is None:
        return default()
    if not isinstance(value, Sampler):
        raise TypeError(f"{label} must be a pdegen.diffusion.Sampler (in YAML `{label}: Heun` or `Euler`; in Python "
                        f"pdegen.diffusion.Heun()), got {value!r}")
    return value
