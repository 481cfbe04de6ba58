"""Exact reference for Gaussian data x ~ N(μ, diag(s²)): denoiser and PF-ODE flow in closed form.

With x_σ = x + σ ε the posterior mean is D(x, σ) = μ + s²/(s² + σ²)(x − μ), so the PF-ODE
dx/dσ = (x − D)/σ = σ (x − μ)/(s² + σ²) has the solution

    x(σ) = μ + sqrt(s² + σ²)/sqrt(s² + σ₀²) (x(σ₀) − μ).

For s = σ_d and every σ, λ(σ) E‖D(x + n, σ) − x‖²/dim = 1 (the EDM weighting's design point).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor, nn

from .edm import broadcast_like, per_sample_sigma


class GaussianDenoiser(nn.Module):
    """The exact denoiser of N(μ, diag(s²)); ``mean``/``std`` broadcast to one sample's shape
    (scalars, or per-element tensors such as (C, H, W))."""

    def __init__(self, mean: Tensor | float, std: Tensor | float) -> None:
        super().__init__()
        std = torch.as_tensor(std, dtype=torch.float64)
        if not bool((std > 0).all()):
            raise ValueError("std must be positive")
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float64))
        self.register_buffer("std", std)

    def forward(self, x: Tensor, sigma: Tensor | float) -> Tensor:
        """D(x, σ) = μ + s²/(s² + σ²)(x − μ), σ a scalar or (B,)."""
        sigma = broadcast_like(per_sample_sigma(sigma, x), x)
        var = self.std.to(x.dtype) ** 2
        mean = self.mean.to(x.dtype)
        return mean + var / (var + sigma**2) * (x - mean)

    def flow(self, x0: Tensor, sigma0: float, sigma: float) -> Tensor:
        """Exact PF-ODE map from σ₀ to σ: μ + sqrt(s² + σ²)/sqrt(s² + σ₀²)(x₀ − μ)."""
        var = self.std.to(x0.dtype) ** 2
        mean = self.mean.to(x0.dtype)
        return mean + ((var + sigma**2) / (var + sigma0**2)).sqrt() * (x0 - mean)

    def sample(self, shape: tuple[int, ...], generator: torch.Generator | None = None) -> Tensor:
        """Draw float64 data x ~ N(μ, diag(s²)) of the given (B, ...) shape."""
        eps = torch.randn(shape, generator=generator, dtype=torch.float64, device=self.std.device)
        return self.mean + self.std * eps


class MixturePosterior(NamedTuple):
    """p(x₀ | x_σ) = Σ_k r_k N(m_k, v_k I) for each of B samples (float64)."""

    responsibilities: Tensor  # r, (B, K), rows sum to 1
    means: Tensor  # m, (B, K, *shape)
    variances: Tensor  # v, (B, K): per-element variance of each component

    def mean(self) -> Tensor:
        """E[x₀ | x_σ] = Σ_k r_k m_k, (B, *shape)."""
        r = self.responsibilities.reshape(*self.responsibilities.shape, *([1] * (self.means.ndim - 2)))
        return (r * self.means).sum(1)


class GaussianMixtureDenoiser(nn.Module):
    """The exact denoiser of a mixture Σ_k π_k N(μ_k, s_k² I) of isotropic Gaussians.

    With x = x₀ + σ ε each component stays Gaussian, N(μ_k, (s_k² + σ²) I), so

        D(x, σ) = Σ_k r_k(x, σ) [μ_k + s_k²/(s_k² + σ²)(x − μ_k)],
        r_k ∝ π_k N(x; μ_k, (s_k² + σ²) I)   (responsibilities, by log-sum-exp).

    ``means`` is (K, *shape) with shape one sample's shape, ``stds`` (K,), ``weights`` (K,)
    (normalised here; uniform by default). :meth:`posterior` gives the whole p(x₀ | x_σ = x), a mixture
    of isotropic Gaussians again; ``forward`` its mean. :meth:`flow` solves the PF-ODE to high accuracy with
    scipy's DOP853: the reference noise→data map for distillation tests.
    """

    def __init__(self, means: Tensor, stds: Tensor | float, weights: Tensor | None = None) -> None:
        super().__init__()
        means = torch.as_tensor(means, dtype=torch.float64)
        k = means.shape[0]
        stds = torch.as_tensor(stds, dtype=torch.float64).expand(k).clone()
        weights = torch.ones(k) if weights is None else torch.as_tensor(weights)
        weights = weights.to(torch.float64)
        if weights.shape != (k,) or not bool((weights > 0).all()):
            raise ValueError(f"weights must be {k} positive numbers, one per component")
        if not bool((stds > 0).all()):
            raise ValueError("component stds must be positive")
        self.register_buffer("means", means)
        self.register_buffer("stds", stds)
        self.register_buffer("weights", weights / weights.sum())

    @property
    def _flat_means(self) -> Tensor:
        return self.means.reshape(self.means.shape[0], -1)

    def _responsibilities(self, x: Tensor, sigma: Tensor | float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(x flattened to (B, D) float64, σ (B,), responsibilities r (B, K), shrinkages s_k²/(s_k² + σ²) (B, K))."""
        sigma = per_sample_sigma(sigma, x).double()
        flat = x.reshape(x.shape[0], -1).double()
        mu = self._flat_means
        var = self.stds**2 + sigma[:, None] ** 2  # (B, K)
        sq = (flat.square().sum(1, keepdim=True) - 2 * flat @ mu.T + mu.square().sum(1)).clamp_min(0)
        log_r = self.weights.log() - 0.5 * flat.shape[1] * var.log() - 0.5 * sq / var
        return flat, sigma, torch.softmax(log_r, dim=1), self.stds**2 / var

    def posterior(self, x: Tensor, sigma: Tensor | float) -> MixturePosterior:
        """The exact p(x₀ | x_σ = x) for x_σ = x₀ + σ ε (EDM convention), σ a scalar or (B,), float64:
        Σ_k r_k N((s_k² x + σ² μ_k)/(s_k² + σ²), s_k²σ²/(s_k² + σ²) I), r_k ∝ π_k N(x; μ_k, (s_k² + σ²) I)."""
        flat, sigma, r, shrink = self._responsibilities(x, sigma)
        means = shrink[..., None] * flat[:, None] + (1 - shrink[..., None]) * self._flat_means
        return MixturePosterior(r, means.reshape(r.shape + self.means.shape[1:]), shrink * sigma[:, None] ** 2)

    def forward(self, x: Tensor, sigma: Tensor | float) -> Tensor:
        """D(x, σ) = E[x₀ | x_σ = x] (the mean of :meth:`posterior`, without its (B, K, *shape) means), in x's dtype."""
        flat, _, r, shrink = self._responsibilities(x, sigma)
        denoised = (r * shrink).sum(1, keepdim=True) * flat + (r * (1 - shrink)) @ self._flat_means
        return denoised.reshape(x.shape).to(x.dtype)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` float64 draws (n, *shape) from the mixture."""
        component = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        eps = torch.randn((n, *self.means.shape[1:]), generator=generator, dtype=torch.float64)
        return self.means[component] + broadcast_like(self.stds[component], eps) * eps

    @torch.no_grad()
    def flow(self, x0: Tensor, sigma0: float, sigma: float, rtol: float = 1e-10, atol: float = 1e-10) -> Tensor:
        """The PF-ODE dx/dσ = (x − D(x, σ))/σ from σ₀ to σ, by DOP853 (adaptive 8th order) at the
        given tolerances; all samples are integrated together (float64)."""
        from scipy.integrate import solve_ivp

        shape = x0.shape

        def rhs(s: float, y):
            state = torch.from_numpy(y).reshape(shape)
            return ((state - self(state, s)) / s).reshape(-1).numpy()

        solution = solve_ivp(rhs, (sigma0, sigma), x0.double().reshape(-1).cpu().numpy(), method="DOP853",
                             rtol=rtol, atol=atol)
        if not solution.success:
            raise RuntimeError(f"the reference PF-ODE solve failed: {solution.message}")
        return torch.from_numpy(solution.y[:, -1]).reshape(shape)


class CorrelatedGaussianDenoiser(nn.Module):
    """The exact denoiser of N(μ, Σ) with a full covariance Σ over a sample's ``d`` entries (flattened in
    C order), from its eigendecomposition Σ = Q Λ Qᵀ:

        D(x, σ) = μ + Σ (Σ + σ² I)⁻¹ (x − μ),     Cov[x₀ | x_σ] = σ² Σ (Σ + σ² I)⁻¹ (= σ² ∂D/∂x).

    ``shape`` is one sample's shape (its size must be d); ``mean`` broadcasts to it (default 0).
    """

    def __init__(self, covariance: Tensor, shape: tuple[int, ...], mean: Tensor | float = 0.0) -> None:
        super().__init__()
        covariance = torch.as_tensor(covariance, dtype=torch.float64)
        size = math.prod(shape)
        if covariance.shape != (size, size):
            raise ValueError(f"covariance must be ({size}, {size}) for samples of shape {tuple(shape)}, "
                             f"got {tuple(covariance.shape)}")
        eigenvalues, eigenvectors = torch.linalg.eigh((covariance + covariance.T) / 2)
        if not bool(eigenvalues.min() > 0):
            raise ValueError(f"covariance must be positive definite (smallest eigenvalue {eigenvalues.min():.3g})")
        self.shape = tuple(shape)
        self.register_buffer("covariance", covariance)
        self.register_buffer("eigenvalues", eigenvalues)
        self.register_buffer("eigenvectors", eigenvectors)
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float64).expand(self.shape).clone())

    def _filter(self, x: Tensor, weights: Tensor) -> Tensor:
        """Q diag(weights) Qᵀ applied to each sample of x (B, *shape), weights (B, d)."""
        q = self.eigenvectors.to(x.dtype)
        return ((x.reshape(len(x), -1) @ q) * weights.to(x.dtype)) @ q.T

    def forward(self, x: Tensor, sigma: Tensor | float) -> Tensor:
        """D(x, σ) = μ + Σ (Σ + σ² I)⁻¹ (x − μ), σ a scalar or (B,)."""
        sigma = per_sample_sigma(sigma, x)[:, None]
        mean = self.mean.to(x.dtype)
        shrink = self.eigenvalues / (self.eigenvalues + sigma.double() ** 2)
        return mean + self._filter(x - mean, shrink).reshape(x.shape)

    def posterior_covariance(self, sigma: float) -> Tensor:
        """Cov[x₀ | x_σ] = σ² Σ (Σ + σ² I)⁻¹, (d, d) float64 (the same for every x_σ)."""
        q, lam = self.eigenvectors, self.eigenvalues
        return (q * (sigma**2 * lam / (lam + sigma**2))) @ q.T

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` float64 draws (n, *shape) of N(μ, Σ)."""
        eps = torch.randn((n, len(self.eigenvalues)), generator=generator, dtype=torch.float64,
                          device=self.eigenvalues.device)
        return self.mean + ((eps * self.eigenvalues.sqrt()) @ self.eigenvectors.T).reshape(n, *self.shape)

    def condition(self, mask: Tensor, observed: Tensor, noise_std: float) -> tuple[Tensor, Tensor]:
        """The exact (Kalman) conditional of x given y = x[mask] + σ_y ξ, ξ ~ N(0, I), σ_y = ``noise_std``:
        its mean (*shape) and covariance (d, d),

            m = μ + Σ Aᵀ (A Σ Aᵀ + σ_y² I)⁻¹ (y − A μ),    P = Σ − Σ Aᵀ (A Σ Aᵀ + σ_y² I)⁻¹ A Σ,

        A the selection of the ``mask`` entries (bool, *shape), ``observed`` the values there (*shape)."""
        index = mask.reshape(-1).nonzero().squeeze(1)
        sigma, mu = self.covariance, self.mean.reshape(-1)
        gain = torch.linalg.solve(sigma[index][:, index] + noise_std**2 * torch.eye(len(index), dtype=sigma.dtype),
                                  sigma[index]).T  # Σ Aᵀ (A Σ Aᵀ + σ_y² I)⁻¹
        innovation = observed.double().reshape(-1)[index] - mu[index]
        return (mu + gain @ innovation).reshape(self.shape), sigma - gain @ sigma[index]


class AR1Process:
    """A stationary linear-Gaussian process in time over a periodic 1-D grid of R points, in pdegen's
    trajectory layout (B, 1, T, R):

        x₀ ~ N(0, S),   x_{n+1} = a x_n + sqrt(1 − a²) ξ_n,   ξ_n ~ N(0, S) i.i.d.,

    S circulant with eigenvalues ∝ exp(−(m/ℓ)²) for the Fourier wavenumbers m, scaled to unit marginal
    variance. Every state is N(0, S), Cov(x_i, x_j) = a^|i−j| S, so a window of k states is
    N(0, T_k ⊗ S) with (T_k)_ij = a^|i−j|, whose denoiser is exact (:meth:`window_denoiser`); the
    h-step forecast from x₀ is N(a^h x₀, (1 − a^{2h}) S). The closed-form reference of the conditional
    diffusion tests.
    """

    def __init__(self, a: float = 0.9, resolution: int = 8, length_scale: float = 2.0) -> None:
        if not 0 < abs(a) < 1:
            raise ValueError(f"the AR(1) coefficient must satisfy 0 < |a| < 1, got {a}")
        self.a, self.resolution = float(a), int(resolution)
        m = torch.fft.fftfreq(self.resolution, 1 / self.resolution, dtype=torch.float64)
        spectrum = torch.exp(-((m / length_scale) ** 2))
        spectrum = spectrum * self.resolution / spectrum.sum()  # unit marginal variance
        first_row = torch.fft.ifft(spectrum).real
        index = torch.arange(self.resolution)
        self.spatial_covariance = first_row[(index[None, :] - index[:, None]) % self.resolution]

    def time_covariance(self, num_states: int) -> Tensor:
        """(T_k)_ij = a^|i−j|, (k, k)."""
        index = torch.arange(num_states, dtype=torch.float64)
        return self.a ** (index[:, None] - index[None, :]).abs()

    def window_covariance(self, num_states: int) -> Tensor:
        """Cov of a window of ``num_states`` states flattened as (1, k, R): T_k ⊗ S."""
        return torch.kron(self.time_covariance(num_states), self.spatial_covariance)

    def window_denoiser(self, num_states: int) -> CorrelatedGaussianDenoiser:
        """The exact denoiser of windows (B, 1, k, R)."""
        return CorrelatedGaussianDenoiser(self.window_covariance(num_states), (1, num_states, self.resolution))

    def sample(self, n: int, num_states: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` trajectories (n, 1, T, R) float64 started in the stationary distribution."""
        root = torch.linalg.cholesky(self.spatial_covariance)
        draws = torch.randn((n, num_states, self.resolution), generator=generator, dtype=torch.float64) @ root.T
        states = [draws[:, 0]]
        for n_ in range(1, num_states):
            states.append(self.a * states[-1] + math.sqrt(1 - self.a**2) * draws[:, n_])
        return torch.stack(states, dim=1).unsqueeze(1)

    def forecast_moments(self, state: Tensor, steps: int) -> tuple[Tensor, Tensor]:
        """Mean a^h x₀ (shaped like ``state``) and covariance (1 − a^{2h}) S (R, R) of the state h = ``steps``
        steps after ``state``."""
        return self.a**steps * state.double(), (1 - self.a ** (2 * steps)) * self.spatial_covariance
