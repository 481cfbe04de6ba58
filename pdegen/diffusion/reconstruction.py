"""Reconstruction guidance (Chung et al. 2023; SDA, Rozet & Louppe 2023; Shysheya et al. 2024) in EDM form.

Observations y = A x₀ + σ_y ξ of a sample x₀ (A selects the entries where ``mask`` is True) steer a
denoiser D through the likelihood of y under its posterior-mean estimate,

    D̃(x, σ) = D(x, σ) + σ² ∇ₓ log N(y | A D(x, σ), (σ_y² + γ σ²) I),

the gradient taken through the network. By Tweedie's formula D̃ = E[x₀ | x_σ, y] when the likelihood is
exact, i.e. when γσ² I is replaced by A Cov[x₀ | x_σ] Aᵀ (``covariance``; exact for Gaussian data).
The conditional paper's VP form, ε̃ = ε̂ − σ_t ∇_{x_t} log N(y | A x̂₀, (σ_y² + γ σ_t²/μ_t²) I) on
x_t = μ_t x₀ + σ_t ε, is the same map in EDM variables x = x_t/μ_t, σ = σ_t/μ_t (tested to float64
round-off). Units are those of the denoised samples (pdegen's normalised units: σ_y = 0.01 is 1 % of a
channel's standard deviation). One backward pass per network evaluation; the evaluation count is unchanged.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from .edm import Denoiser, broadcast_like, per_sample_sigma


class ReconstructionGuidance:
    """The guided denoiser D̃ (module docstring) of ``denoiser`` for the observations ``observed`` at
    ``mask`` (both shaped like a batch of samples, or broadcastable to it; values off the mask are ignored,
    NaN included). A :data:`~pdegen.diffusion.edm.Denoiser` itself: pass it to any sampler.

    Args:
        noise_std: σ_y, the observation noise (default 0.01, the paper's).
        gamma: γ of the variance σ_y² + γσ² standing in for the posterior variance (default 0.1, the paper's).
        covariance: optional ``σ -> (m, m)`` A Cov[x₀ | x_σ] Aᵀ over the m observed entries (in flattened
            order), replacing γσ² I: the exact likelihood (it needs the same mask for every sample).
    """

    def __init__(self, denoiser: Denoiser, observed: Tensor, mask: Tensor, noise_std: float = 0.01,
                 gamma: float = 0.1, covariance: Callable[[float], Tensor] | None = None) -> None:
        if not (noise_std > 0 and gamma >= 0):
            raise ValueError(f"reconstruction guidance needs noise_std > 0 and gamma >= 0, got noise_std={noise_std}, "
                             f"gamma={gamma}")
        mask = torch.as_tensor(mask, dtype=torch.bool, device=observed.device)
        values = torch.where(mask, observed, torch.zeros((), dtype=observed.dtype, device=observed.device))
        if not bool(torch.isfinite(values).all()):
            raise ValueError("the observations are not finite (nan or inf) at observed entries: drop those entries "
                             "from the mask or fix the values")
        self.denoiser, self.observed, self.mask = denoiser, values, mask
        self.noise_std, self.gamma, self.covariance = float(noise_std), float(gamma), covariance
        self.sigma_data = getattr(denoiser, "sigma_data", 1.0)

    def log_likelihood(self, denoised: Tensor, sigma: Tensor) -> Tensor:
        """log N(y | A D, C) per sample (B,), up to a constant; σ (B,)."""
        residual = torch.where(self.mask, self.observed.to(denoised.dtype) - denoised, denoised.new_zeros(()))
        if self.covariance is None:
            variance = self.noise_std**2 + self.gamma * sigma**2
            return -0.5 * residual.square().flatten(1).sum(1) / variance
        mask = self.mask.expand_as(denoised).flatten(1)
        if not bool((mask == mask[:1]).all()):
            raise ValueError("an exact-likelihood covariance needs the same mask for every sample")
        r = residual.flatten(1)[:, mask[0]]
        if not bool((sigma == sigma[0]).all()):
            raise ValueError("an exact-likelihood covariance needs one σ for the batch")
        matrix = self.covariance(float(sigma[0])).to(r) + self.noise_std**2 * torch.eye(r.shape[1], dtype=r.dtype,
                                                                                        device=r.device)
        return -0.5 * (r * torch.linalg.solve(matrix, r.T).T).sum(1)

    def __call__(self, x: Tensor, sigma: Tensor | float) -> Tensor:
        sigma = per_sample_sigma(sigma, x)
        with torch.enable_grad():
            state = x.detach().requires_grad_(True)
            denoised = self.denoiser(state, sigma)
            (gradient,) = torch.autograd.grad(self.log_likelihood(denoised, sigma).sum(), state)
        return denoised.detach() + broadcast_like(sigma**2, x) * gradient
