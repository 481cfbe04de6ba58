"""The mixture's exact posterior p(x₀ | x_σ) and the Jensen's-gap tool (tools/jensen_gap.py)."""

from __future__ import annotations

import argparse
import json
import math
import re

import pytest
import torch

from pdegen.diffusion import GaussianMixtureDenoiser


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Small tensors: one torch thread is faster than two competing ones."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def jg(load_tool):
    return load_tool("jensen_gap")


def mixture_2d() -> GaussianMixtureDenoiser:
    means = torch.tensor([[1.0, 0.5], [-1.0, 1.0], [0.3, -1.2], [-0.8, -0.6]])
    stds, weights = torch.tensor([0.2, 0.5, 0.1, 0.3]), torch.tensor([1.0, 2.0, 0.5, 1.5])
    return GaussianMixtureDenoiser(means, stds, weights=weights)


def points(n: int, scale: float = 1.5, seed: int = 0, shape: tuple[int, ...] = (2,)) -> torch.Tensor:
    return scale * torch.randn(n, *shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def total_covariance_trace(posterior) -> torch.Tensor:
    """tr Cov[x₀ | x_σ] = Σ_k r_k (d v_k + |m_k|²) − |Σ_k r_k m_k|²."""
    r, m, v = posterior
    d = m[0, 0].numel()
    second = (r * (d * v + m.flatten(2).square().sum(-1))).sum(1)
    return second - posterior.mean().flatten(1).square().sum(1)


# --- GaussianMixtureDenoiser.posterior ------------------------------------------------------------


@pytest.mark.parametrize("sigma", [0.0, 0.03, 0.4, 2.0, 80.0])
def test_posterior_mean_is_the_denoiser(sigma):
    gmm, x = mixture_2d(), points(64)
    posterior = gmm.posterior(x, sigma)
    assert posterior.responsibilities.shape == (64, 4) and posterior.means.shape == (64, 4, 2)
    assert posterior.variances.shape == (64, 4)
    assert torch.allclose(posterior.responsibilities.sum(1), torch.ones(64, dtype=torch.float64), atol=1e-14)
    assert torch.allclose(posterior.mean(), gmm(x, sigma), atol=1e-12, rtol=0)


def test_posterior_with_per_sample_sigma_and_image_shaped_samples():
    means = torch.randn(3, 1, 2, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    gmm = GaussianMixtureDenoiser(means, torch.tensor([0.3, 0.6, 0.9]))
    x, sigma = points(5, shape=(1, 2, 2)), torch.tensor([0.1, 0.5, 1.0, 3.0, 10.0], dtype=torch.float64)
    posterior = gmm.posterior(x, sigma)
    assert posterior.means.shape == (5, 3, 1, 2, 2)
    assert torch.allclose(posterior.mean(), gmm(x, sigma), atol=1e-12, rtol=0)
    for i in range(5):  # one sample at a time, with a scalar σ, gives the same
        alone = gmm.posterior(x[i : i + 1], float(sigma[i]))
        for batched, single in zip(posterior, alone):
            assert torch.allclose(batched[i : i + 1], single, atol=1e-14)
    expected_var = gmm.stds**2 * sigma[:, None] ** 2 / (gmm.stds**2 + sigma[:, None] ** 2)
    assert torch.allclose(posterior.variances, expected_var, atol=1e-14)


@pytest.mark.parametrize(("x", "sigma"), [(0.4, 0.05), (-1.3, 0.5), (2.5, 1.0), (0.0, 4.0), (7.0, 20.0)])
def test_posterior_is_bayes_rule_on_a_quadrature_grid(x, sigma):
    """Responsibilities, component means and variances against ∫ π_k N(x₀; μ_k, s_k²) N(x; x₀, σ²) dx₀."""
    means, stds, weights = torch.tensor([-2.0, 0.5, 1.5]), torch.tensor([0.4, 0.15, 0.8]), torch.tensor([0.2, 0.5, 0.3])
    gmm = GaussianMixtureDenoiser(means[:, None], stds, weights)
    grid = torch.linspace(-12.0, 12.0, 24_001, dtype=torch.float64)

    def gauss(z, mu, s):
        return torch.exp(-0.5 * ((z - mu) / s) ** 2) / (s * math.sqrt(2 * math.pi))

    joint = weights.double()[:, None] * gauss(grid, means.double()[:, None], stds.double()[:, None]) * gauss(
        x, grid, sigma)  # (K, grid): π_k p_k(x₀) p(x | x₀)
    mass = torch.trapezoid(joint, grid)
    comp_mean = torch.trapezoid(joint * grid, grid) / mass
    comp_var = torch.trapezoid(joint * (grid - comp_mean[:, None]) ** 2, grid) / mass
    posterior = gmm.posterior(torch.tensor([[x]], dtype=torch.float64), sigma)
    assert torch.allclose(posterior.responsibilities[0], mass / mass.sum(), atol=1e-9, rtol=0)
    assert torch.allclose(posterior.means[0, :, 0], comp_mean, atol=1e-7, rtol=0)
    assert torch.allclose(posterior.variances[0], comp_var, rtol=1e-6)
    total_mean = torch.trapezoid(joint.sum(0) * grid, grid) / mass.sum()
    total_var = torch.trapezoid(joint.sum(0) * (grid - total_mean) ** 2, grid) / mass.sum()
    assert torch.allclose(posterior.mean()[0, 0], total_mean, atol=1e-7)
    assert torch.allclose(total_covariance_trace(posterior)[0], total_var, rtol=1e-6)


def test_posterior_moments_agree_with_noised_draws_of_the_mixture():
    """E over (x₀, x_σ) of |x₀ − E[x₀|x_σ]|² is E[tr Cov[x₀|x_σ]], and of x₀ x₀ᵀ is E[E[x₀ x₀ᵀ|x_σ]]."""
    gmm, generator = mixture_2d(), torch.Generator().manual_seed(3)
    x0 = gmm.sample(20_000, generator=generator)
    for sigma in (0.1, 0.7, 3.0):
        x = x0 + sigma * torch.randn(x0.shape, dtype=torch.float64, generator=generator)
        posterior = gmm.posterior(x, sigma)
        error = (x0 - posterior.mean()).square().sum(1)
        predicted = total_covariance_trace(posterior)
        assert abs(error.mean() - predicted.mean()) < 4 * error.std() / math.sqrt(len(x0))
        r, m, v = posterior
        second = torch.einsum("bk,bki,bkj->ij", r, m, m) / len(x0) + torch.eye(2) * (r * v).sum() / len(x0)
        assert torch.allclose(second, x0.T @ x0 / len(x0), atol=0.03)


# --- the residuals and the tool --------------------------------------------------------------------


@pytest.mark.parametrize("sigma", [0.01, 0.3, 1.0, 10.0])
def test_affine_residual_has_no_jensen_gap_and_the_circles_is_the_posterior_trace(jg, sigma):
    x = points(128)
    line = jg.Line(normal=(-0.28, 0.96), offset=0.3)
    gmm = GaussianMixtureDenoiser(line.modes(5), torch.tensor([0.05, 0.1, 0.2, 0.05, 0.3]))
    stats = jg.residual_statistics(line, gmm.posterior(x, sigma))
    assert torch.allclose(stats["expected"], stats["at_posterior_mean"], atol=1e-14, rtol=0)
    assert torch.allclose(line.residual(line.modes(5)), torch.zeros(5, dtype=torch.float64), atol=1e-14)

    circle = jg.Circle(radius=1.3)
    gmm = GaussianMixtureDenoiser(circle.modes(7), 0.1)
    posterior = gmm.posterior(x, sigma)
    stats = jg.residual_statistics(circle, posterior)
    assert torch.allclose(stats["expected"] - stats["at_posterior_mean"], total_covariance_trace(posterior),
                          atol=1e-12, rtol=0)
    assert bool((stats["expected_rms"] >= stats["expected"].abs() - 1e-12).all())  # E[R²] ≥ E[R]²


@pytest.mark.parametrize("name", ["circle", "line"])
def test_residual_moments_of_one_gaussian_against_draws(jg, name):
    constraint = {"circle": jg.Circle(radius=0.8), "line": jg.Line(normal=(0.8, -0.6), offset=0.2)}[name]
    mean, var = torch.tensor([[0.5, -0.3], [0.0, 0.0], [2.0, 1.0]], dtype=torch.float64), torch.tensor([1.0, 0.3, 0.05])
    expected, variance = constraint.moments(mean, var.double())
    generator = torch.Generator().manual_seed(6)
    for k in range(3):
        x0 = mean[k] + var[k].sqrt() * torch.randn(100_000, 2, dtype=torch.float64, generator=generator)
        residual = constraint.residual(x0)
        for predicted, drawn in ((expected[k], residual), (variance[k], (residual - expected[k]).square())):
            assert abs(predicted - drawn.mean()) < 4 * drawn.std() / math.sqrt(len(x0))


@pytest.mark.parametrize("name", ["circle", "line"])
def test_residual_moments_are_the_mixtures(jg, name):
    """Averaged over x_σ ~ p_σ, E[R(x₀)|x_σ] and E[R(x₀)²|x_σ] are the data's E[R] and E[R²] (tower rule)."""
    constraint = {"circle": jg.Circle(radius=0.8), "line": jg.Line()}[name]
    gmm, generator = GaussianMixtureDenoiser(constraint.modes(5), 0.2), torch.Generator().manual_seed(4)
    x0 = gmm.sample(20_000, generator=generator)
    x = x0 + 0.5 * torch.randn(x0.shape, dtype=torch.float64, generator=generator)
    stats, residual = jg.residual_statistics(constraint, gmm.posterior(x, 0.5)), constraint.residual(x0)
    for predicted, drawn in ((stats["expected"], residual), (stats["expected_rms"].square(), residual.square())):
        assert abs(predicted.mean() - drawn.mean()) < 4 * drawn.std() / math.sqrt(len(x0))


def test_nonlinear_gap_is_large_at_intermediate_sigma_and_vanishes_at_the_end(jg):
    args = argparse.Namespace(modes=6, std=0.05, num_steps=512, num_samples=64, seed=0)
    noise = points(64, scale=1.0, seed=5)
    circle = jg.evaluate(jg.Circle(), noise, args)
    line = jg.evaluate(jg.Line(), noise, args)
    sigma = torch.tensor(circle["sigma"], dtype=torch.float64)
    assert sigma[0] == 80.0 and math.isclose(sigma[-1], 0.002)
    mid = int((sigma - 1.0).abs().argmin())
    gap, at_mean, rms = (torch.tensor(circle[k], dtype=torch.float64) for k in ("jensen_gap", "posterior_mean_residual",
                                                             "expected_rms_residual"))
    assert gap[mid] > 0.5 and at_mean[mid] > 5 * rms[mid]  # R(E[x₀|x_σ]) ≈ −r² while the data have |R| ≈ 0.1
    assert gap[-1] < 1e-4 and gap[-1] < 1e-3 * gap[mid]
    assert abs(at_mean[-1] - rms[-1]) < 0.02 * rms[-1]
    assert 0.05 < rms[-1] < 0.15  # the data's level: |R| ≈ 2 r std |ε|
    assert max(line["jensen_gap"]) < 1e-14
    for result in (circle, line):
        assert result["heun_vs_dop853_max_error"] < 1e-2  # near a separatrix between modes it is the largest
        # E[x₀|x_σ] − x_σ = σ²/(s² + σ²)(μ_k − x_σ): ~1e-4 at σ = 0.002, ~100 at σ = 80
        assert torch.allclose(result["posterior_means"][-1], result["states"][-1], atol=1e-3)
        assert (result["posterior_means"][0] - result["states"][0]).norm(dim=1).median() > 30


def test_main_writes_the_table_the_curves_and_the_figure(jg, tmp_path, capsys):
    threads = torch.get_num_threads()
    results = jg.main(["--output-dir", str(tmp_path), "--num-samples", "16", "--num-steps", "48"])
    assert torch.get_num_threads() == threads
    names = [r["name"] for r in results]
    assert names == ["circle", "line"]
    data = json.loads((tmp_path / "jensen_gap.json").read_text())
    assert [c["name"] for c in data["constraints"]] == names
    for curve in data["constraints"]:
        assert len(curve["sigma"]) == 48 == len(curve["posterior_mean_residual"]) == len(curve["jensen_gap"])
    lines = [line for line in (tmp_path / "jensen_gap.md").read_text().splitlines() if line.startswith("| ")]
    cells = [[cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]] for line in lines]
    assert all(len(row) == 7 for row in cells)  # σ and three columns per constraint: no stray "|" in the header
    rows = [[float(cell) for cell in row] for row in cells[1:]]
    sigmas = [row[0] for row in rows]
    assert len(rows) >= 10 and sigmas[0] == 80.0 and sigmas[-1] == 0.002 and sigmas == sorted(sigmas, reverse=True)
    circle, line = data["constraints"]
    i = min(range(48), key=lambda j: abs(circle["sigma"][j] - sigmas[0]))
    assert rows[0][1:] == pytest.approx([circle["posterior_mean_residual"][i], circle["expected_rms_residual"][i],
                                         circle["jensen_gap"][i], line["posterior_mean_residual"][i],
                                         line["expected_rms_residual"][i], line["jensen_gap"][i]], rel=1e-3)
    assert (tmp_path / "jensen_gap.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| 80 |" in capsys.readouterr().out
