"""EDM preconditioning and training loss (Karras et al. 2022, "Elucidating the design space
of diffusion-based generative models", Table 1 and Sec. 5).

The denoiser is D(x, σ) = c_skip(σ) x + c_out(σ) F(c_in(σ) x, c_noise(σ)) with

    c_skip = σ_d² / (σ² + σ_d²)      c_out   = σ σ_d / sqrt(σ² + σ_d²)
    c_in   = 1 / sqrt(σ² + σ_d²)     c_noise = ln(σ) / 4

and is trained with ln σ ~ N(P_mean, P_std²), n ~ N(0, σ² I) and the weight
λ(σ) = (σ² + σ_d²) / (σ σ_d)² on ‖D(x + n, σ) − x‖².
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor, nn

Denoiser = Callable[[Tensor, Tensor], Tensor]
"""Anything called as D(x, σ) -> Tensor shaped like x (σ a scalar or per-sample (B,))."""


class EDMCoefficients(NamedTuple):
    """The four EDM preconditioning coefficients, each shaped like the σ they came from."""

    c_skip: Tensor
    c_out: Tensor
    c_in: Tensor
    c_noise: Tensor


def edm_coefficients(sigma: Tensor, sigma_data: float = 1.0) -> EDMCoefficients:
    """c_skip, c_out, c_in, c_noise of EDM (formulas in the module docstring), elementwise in σ."""
    sd2 = sigma_data**2
    norm = (sigma**2 + sd2).sqrt()
    return EDMCoefficients(
        c_skip=sd2 / norm**2,
        c_out=sigma * sigma_data / norm,
        c_in=1.0 / norm,
        c_noise=sigma.log() / 4,
    )


def edm_loss_weight(sigma: Tensor, sigma_data: float = 1.0) -> Tensor:
    """λ(σ) = (σ² + σ_d²) / (σ σ_d)², which equals 1 / c_out(σ)²."""
    return (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2


def per_sample_sigma(sigma: Tensor | float, x: Tensor) -> Tensor:
    """σ as a (B,) tensor in x's dtype/device, from a scalar, a 0-d tensor or B values."""
    sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    if sigma.numel() == 1:
        return sigma.reshape(1).expand(x.shape[0])
    if sigma.numel() != x.shape[0]:
        raise ValueError(
            f"sigma has {sigma.numel()} values but the batch has {x.shape[0]} samples; "
            "pass one σ for the batch or one per sample, shape (B,)"
        )
    return sigma.reshape(x.shape[0])


def broadcast_like(values: Tensor, x: Tensor) -> Tensor:
    """Reshape per-sample values (B,) to (B, 1, ..., 1) so they broadcast over x's other dims."""
    return values.reshape(-1, *([1] * (x.ndim - 1)))


class EDMPreconditioner(nn.Module):
    """D(x, σ) = c_skip x + c_out F(c_in x, c_noise) around a backbone F = ``net(x, c_noise)``.

    The backbone runs in its parameters' dtype (float32, or whatever autocast picks); the
    combination with c_skip/c_out is done in x's dtype, so a float64 sampler keeps a float64
    ODE state. σ must be positive (c_noise = ln σ / 4).
    """

    def __init__(self, net: nn.Module, sigma_data: float = 1.0) -> None:
        super().__init__()
        if sigma_data <= 0:
            raise ValueError(f"sigma_data must be positive, got {sigma_data}")
        self.net = net
        self.sigma_data = float(sigma_data)

    def coefficients(self, sigma: Tensor) -> EDMCoefficients:
        """The EDM coefficients at σ for this preconditioner's σ_d."""
        return edm_coefficients(sigma, self.sigma_data)

    def _net_dtype(self, x: Tensor) -> torch.dtype:
        param = next((p for p in self.net.parameters() if p.is_floating_point()), None)
        return x.dtype if param is None else param.dtype

    def forward(self, x: Tensor, sigma: Tensor | float, condition: Tensor | None = None) -> Tensor:
        """D(x, σ); a ``condition`` (clean conditioning inputs, e.g. observed states) is passed to the backbone
        unscaled, as ``net(c_in x, c_noise, condition)``."""
        sigma = per_sample_sigma(sigma, x)
        c = self.coefficients(sigma)
        dtype = self._net_dtype(x)
        inputs = ((broadcast_like(c.c_in, x) * x).to(dtype), c.c_noise.to(dtype))
        f = self.net(*inputs) if condition is None else self.net(*inputs, condition.to(dtype))
        return broadcast_like(c.c_skip, x) * x + broadcast_like(c.c_out, x) * f.to(x.dtype)


def lognormal_sigma_levels(
    num: int, p_mean: float = -1.2, p_std: float = 1.2, dtype: torch.dtype = torch.float64
) -> Tensor:
    """Deterministic σ levels for validation: σ_k = exp(P_mean + P_std Φ⁻¹((k + ½)/num)),
    the midpoint quantiles of the training distribution ln σ ~ N(P_mean, P_std²)."""
    if num < 1:
        raise ValueError(f"num must be >= 1, got {num}")
    q = (torch.arange(num, dtype=torch.float64) + 0.5) / num
    return torch.exp(p_mean + p_std * torch.special.ndtri(q)).to(dtype)


class EDMLossTerms(NamedTuple):
    """What one EDM loss evaluation computes, per sample: the loss, the denoised estimate and σ."""

    loss: Tensor
    """(B,): λ(σ) times the mean squared error of the denoised estimate."""
    denoised: Tensor
    """D(x + n, σ), shaped like x: the posterior-mean (Tweedie) estimate of x given the noisy x + n."""
    sigma: Tensor
    """(B,): the noise level of each sample."""


def edm_loss_terms(
    denoiser: Denoiser,
    x: Tensor,
    p_mean: float = -1.2,
    p_std: float = 1.2,
    sigma_data: float | None = None,
    generator: torch.Generator | None = None,
    sigma: Tensor | float | None = None,
) -> EDMLossTerms:
    """:func:`edm_loss` together with the denoised estimate D(x + n, σ) and σ it was computed from
    (e.g. for a physics loss on the posterior mean, as in PIDM). Arguments and draws as in :func:`edm_loss`."""
    if sigma_data is None:
        sigma_data = getattr(denoiser, "sigma_data", 1.0)
    if sigma is None:
        log_sigma = torch.randn(x.shape[0], generator=generator, dtype=x.dtype, device=x.device)
        sigma = (p_mean + p_std * log_sigma).exp()
    else:
        sigma = per_sample_sigma(sigma, x)
    noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    denoised = denoiser(x + broadcast_like(sigma, x) * noise, sigma)
    sq_err = (denoised - x).square().flatten(1).mean(dim=1)
    return EDMLossTerms(edm_loss_weight(sigma, sigma_data) * sq_err, denoised, sigma)


def edm_loss(
    denoiser: Denoiser,
    x: Tensor,
    p_mean: float = -1.2,
    p_std: float = 1.2,
    sigma_data: float | None = None,
    generator: torch.Generator | None = None,
    sigma: Tensor | float | None = None,
) -> Tensor:
    """Per-sample EDM loss (B,): mean over non-batch dims of λ(σ) (D(x + n, σ) − x)².

    ln σ ~ N(p_mean, p_std²) per sample unless ``sigma`` is given (a scalar or (B,), e.g. from
    :func:`lognormal_sigma_levels`); n = σ ε with ε ~ N(0, I). Draws (σ first, then ε) use
    ``generator``, so a fixed seed together with fixed σ gives a deterministic validation loss.
    ``sigma_data`` defaults to the denoiser's ``sigma_data`` attribute (else 1.0) so the weight
    always matches the preconditioning. :func:`edm_loss_terms` also returns D(x + n, σ) and σ.
    """
    return edm_loss_terms(denoiser, x, p_mean, p_std, sigma_data, generator, sigma).loss
