"""EDM preconditioning, loss, σ schedule and PF-ODE samplers against closed forms."""

import math

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from pdegen.diffusion import (
    EDMPreconditioner,
    Euler,
    GaussianDenoiser,
    Heun,
    Sampler,
    as_sampler,
    check_sigma_range,
    edm_coefficients,
    edm_loss,
    edm_loss_weight,
    karras_sigmas,
    lognormal_sigma_levels,
)

SIGMAS = torch.logspace(-4, 3, 50, dtype=torch.float64)


class SpyNet(nn.Module):
    """F ≡ 0 backbone with one float32 parameter; records what it was called with."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(()))
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor) -> torch.Tensor:
        self.calls.append((x, c_noise))
        return self.weight * x


def gaussian(shape=(2, 8, 8), seed=0) -> GaussianDenoiser:
    g = torch.Generator().manual_seed(seed)
    mean = torch.randn(shape, generator=g, dtype=torch.float64)
    std = 0.3 + 1.7 * torch.rand(shape, generator=g, dtype=torch.float64)
    return GaussianDenoiser(mean, std)


# --- preconditioning ---------------------------------------------------------------------------


@pytest.mark.parametrize("sigma_data", [0.5, 1.0, 2.0])
def test_coefficient_identities(sigma_data):
    c = edm_coefficients(SIGMAS, sigma_data)
    ones = torch.ones_like(SIGMAS)
    torch.testing.assert_close(c.c_skip + c.c_out**2 / sigma_data**2, ones)
    torch.testing.assert_close(c.c_in**2 * (SIGMAS**2 + sigma_data**2), ones)
    torch.testing.assert_close(edm_loss_weight(SIGMAS, sigma_data) * c.c_out**2, ones)
    torch.testing.assert_close(c.c_noise, SIGMAS.log() / 4)
    tiny, huge = edm_coefficients(torch.tensor([1e-9, 1e9], dtype=torch.float64), sigma_data)[:2]
    torch.testing.assert_close(tiny, torch.tensor([1.0, 0.0], dtype=torch.float64), atol=1e-8, rtol=0)
    torch.testing.assert_close(huge, torch.tensor([1e-9, sigma_data], dtype=torch.float64), atol=1e-8, rtol=0)


def test_zero_backbone_gives_c_skip_x_which_is_the_exact_denoiser_of_centred_data():
    sigma_data = 0.7
    precond = EDMPreconditioner(SpyNet(), sigma_data)
    x = torch.randn(4, 2, 8, 8, dtype=torch.float64)
    sigma = torch.tensor([0.01, 0.5, 3.0, 80.0], dtype=torch.float64)
    c_skip = edm_coefficients(sigma, sigma_data).c_skip
    out = precond(x, sigma)
    torch.testing.assert_close(out, c_skip[:, None, None, None] * x)
    torch.testing.assert_close(out, GaussianDenoiser(0.0, sigma_data)(x, sigma))


def test_preconditioner_scales_input_and_keeps_float64():
    net = SpyNet()
    precond = EDMPreconditioner(net, sigma_data=0.5)
    x = torch.randn(3, 2, 4, 4, dtype=torch.float64)
    out = precond(x, 2.0)  # a scalar σ is broadcast to the batch
    net_in, c_noise = net.calls[-1]
    assert net_in.dtype == c_noise.dtype == torch.float32 and out.dtype == torch.float64
    assert c_noise.shape == (3,)
    c = edm_coefficients(torch.tensor(2.0, dtype=torch.float64), 0.5)
    torch.testing.assert_close(net_in, (c.c_in * x).float())
    torch.testing.assert_close(c_noise, torch.full((3,), math.log(2.0) / 4))
    torch.testing.assert_close(precond(x, torch.full((3,), 2.0)), out)
    with pytest.raises(ValueError, match="one per sample"):
        precond(x, torch.ones(2))


# --- σ schedule --------------------------------------------------------------------------------


@pytest.mark.parametrize("rho", [1.0, 7.0])
def test_karras_sigmas(rho):
    s = karras_sigmas(10, sigma_min=0.002, sigma_max=80.0, rho=rho)
    assert s.dtype == torch.float64 and s.shape == (11,)
    assert s[0].item() == pytest.approx(80.0) and s[-2].item() == pytest.approx(0.002) and s[-1] == 0
    assert bool((s[1:] < s[:-1]).all())
    root = s[:-1] ** (1 / rho)  # σ^(1/ρ) is linear in i
    torch.testing.assert_close(root[2:] - 2 * root[1:-1] + root[:-2], torch.zeros(8, dtype=torch.float64))
    no_zero = karras_sigmas(10, rho=rho, append_zero=False)
    torch.testing.assert_close(no_zero, s[:-1])
    assert karras_sigmas(1, append_zero=False).tolist() == [80.0]
    assert [karras_sigmas(5, sigma_max=m)[0].item() for m in (10.0, 20.0, 40.0)] == [10.0, 20.0, 40.0], (
        "σ_0 is σ_max exactly: it scales the unit noise (a rounded (σ_max^(1/ρ))^ρ is off by an ulp)")


@pytest.mark.parametrize(
    "kwargs", [{"num_steps": 0}, {"num_steps": 5, "sigma_min": 0.0}, {"num_steps": 5, "sigma_min": 100.0}]
)
def test_karras_sigmas_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        karras_sigmas(**kwargs)


def test_one_sigma_range_check_serves_schedules_and_teachers():
    from pdegen.modules import FrozenTeacher

    check_sigma_range(0.002, 80.0)
    check_sigma_range(1.0, 1.0, equal=True)  # a one-level schedule
    for low, high in ((1.0, 1.0), (0.0, 80.0), (90.0, 80.0)):
        with pytest.raises(ValueError, match="need 0 < sigma_min < sigma_max"):
            check_sigma_range(low, high)
    with pytest.raises(ValueError, match=r"sigma_min=90.0, sigma_max=80.0"):
        FrozenTeacher(GaussianDenoiser(torch.zeros(2), torch.ones(2)), sigma_min=90.0, sigma_max=80.0)


# --- loss --------------------------------------------------------------------------------------


def test_loss_of_exact_denoiser_matches_closed_form():
    """E λ(σ)(D(x+n,σ) − x)² = λ(σ) s²σ²/(s²+σ²) per element for x ~ N(μ, s²): the posterior variance."""
    denoiser, sigma_data = gaussian(), 0.5
    x = denoiser.sample((2048, 2, 8, 8), generator=torch.Generator().manual_seed(1))
    g = torch.Generator().manual_seed(2)
    for sigma in lognormal_sigma_levels(5).tolist():
        loss = edm_loss(denoiser, x, sigma_data=sigma_data, generator=g, sigma=sigma)
        posterior_var = (denoiser.std**2 * sigma**2 / (denoiser.std**2 + sigma**2)).mean()
        expected = edm_loss_weight(torch.tensor(sigma), sigma_data) * posterior_var
        assert loss.shape == (2048,)
        assert loss.mean().item() == pytest.approx(expected.item(), rel=0.02)


def test_loss_is_unit_for_standardised_gaussian_data():
    denoiser = GaussianDenoiser(0.0, 1.3)
    denoiser.sigma_data = 1.3  # edm_loss takes σ_d from the denoiser by default
    x = denoiser.sample((4096, 1, 4, 4), generator=torch.Generator().manual_seed(0))
    loss = edm_loss(denoiser, x, generator=torch.Generator().manual_seed(1))
    assert loss.mean().item() == pytest.approx(1.0, abs=0.03)


def test_exact_denoiser_beats_perturbed_ones():
    exact = gaussian()
    x = exact.sample((512, 2, 8, 8), generator=torch.Generator().manual_seed(3))

    def expected_loss(denoiser):  # common random numbers: same σ and noise for every denoiser
        return edm_loss(denoiser, x, generator=torch.Generator().manual_seed(4)).mean().item()

    best = expected_loss(exact)
    for mean_shift, std_scale in [(0.1, 1.0), (-0.1, 1.0), (0.0, 1.1), (0.0, 0.9)]:
        assert best < expected_loss(GaussianDenoiser(exact.mean + mean_shift, exact.std * std_scale))


def test_loss_is_deterministic_with_a_seed_and_sigma_levels():
    denoiser = gaussian()
    x = denoiser.sample((6, 2, 8, 8), generator=torch.Generator().manual_seed(0))
    levels = lognormal_sigma_levels(6)

    def run(seed):
        return edm_loss(denoiser, x, sigma=levels, generator=torch.Generator().manual_seed(seed))

    torch.testing.assert_close(run(0), run(0))
    assert not torch.equal(run(0), run(1))
    assert lognormal_sigma_levels(3, p_mean=-1.2)[1].item() == pytest.approx(math.exp(-1.2))


# --- samplers ----------------------------------------------------------------------------------


def convergence_slope(sampler: Sampler) -> float:
    """log-log slope of the error at σ_min against the exact Gaussian PF-ODE flow from σ_max."""
    denoiser = gaussian()
    x_T = 80.0 * torch.randn(4, 2, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    exact = denoiser.flow(x_T, 80.0, 0.002)
    levels = np.array([16, 32, 64, 128])
    schedules = [karras_sigmas(n, append_zero=False) for n in levels]
    errors = [(sampler(denoiser, x_T, s) - exact).abs().max().item() for s in schedules]
    return -np.polyfit(np.log(levels - 1), np.log(errors), 1)[0]


def test_euler_is_first_order():
    assert 0.85 <= convergence_slope(Euler()) <= 1.2


def test_heun_is_second_order():
    assert 1.8 <= convergence_slope(Heun()) <= 2.3


class CountingDenoiser(GaussianDenoiser):
    def __init__(self) -> None:
        super().__init__(0.5, 1.5)
        self.calls = 0
        self.dtypes: set[torch.dtype] = set()

    def forward(self, x, sigma):
        self.calls += 1
        self.dtypes.add(x.dtype)
        return super().forward(x, sigma)


def trajectory(sampler: Sampler, denoiser, x_T: Tensor, sigmas: Tensor, **kwargs) -> tuple[Tensor, Tensor]:
    """The final state and every state from x_T on, ``(len(sigmas), ...)``, collected by the step callback."""
    states = [x_T.double()]
    final = sampler(denoiser, x_T, sigmas, callback=lambda info: states.append(info["x"]), **kwargs)
    return final, torch.stack(states)


@pytest.mark.parametrize("sampler", [Euler(), Heun()], ids=repr)
@pytest.mark.parametrize("append_zero", [True, False])
def test_nfe_trajectory_and_float64_state(sampler, append_zero):
    denoiser = CountingDenoiser()
    x_T = 80.0 * torch.randn(3, 1, 4, 4)  # float32 in, float64 state and result
    sigmas = karras_sigmas(6, append_zero=append_zero)
    final, traj = trajectory(sampler, denoiser, x_T, sigmas)
    assert denoiser.calls == sampler.nfe(len(sigmas) - 1, ends_at_zero=append_zero)
    assert denoiser.dtypes == {torch.float64} and final.dtype == torch.float64
    assert traj.shape == (len(sigmas), 3, 1, 4, 4)
    torch.testing.assert_close(traj[0], x_T.double())
    torch.testing.assert_close(traj[-1], final)


def test_final_step_to_zero_is_euler_and_returns_the_denoised_state():
    """x + (0 − σ)(x − D(x, σ))/σ = D(x, σ): the last step lands on the denoiser output."""
    denoiser = gaussian()
    x_T = 80.0 * torch.randn(2, 2, 8, 8, dtype=torch.float64)
    sigmas = karras_sigmas(5)
    final, traj = trajectory(Heun(), denoiser, x_T, sigmas)
    torch.testing.assert_close(final, denoiser(traj[-2], sigmas[-2]))
    assert Heun().nfe(5) == 9 and Euler().nfe(5) == 5 and Heun().nfe(5, ends_at_zero=False) == 10


@pytest.mark.parametrize("sampler", [Euler(), Heun()], ids=repr)
def test_gradients_flow_only_when_enabled(sampler):
    denoiser = gaussian()
    x_T = (80.0 * torch.randn(2, 2, 8, 8, dtype=torch.float64)).requires_grad_()
    sigmas = karras_sigmas(64, append_zero=False)
    assert not sampler(denoiser, x_T, sigmas).requires_grad
    with torch.no_grad():  # an explicit request wins over an outer no_grad
        out = sampler(denoiser, x_T, sigmas, enable_grad=True)
    out.sum().backward()
    # for a diagonal Gaussian the discrete map is elementwise affine, so a unit shift of x_T gives
    # the exact derivative of the scheme; it approximates the exact flow's sqrt((s²+σ_min²)/(s²+σ_max²))
    slope = sampler(denoiser, x_T.detach() + 1, sigmas) - sampler(denoiser, x_T.detach(), sigmas)
    torch.testing.assert_close(x_T.grad, slope, rtol=1e-9, atol=0)
    var = denoiser.std**2
    torch.testing.assert_close(slope[0], ((var + 0.002**2) / (var + 80.0**2)).sqrt(), rtol=0.05, atol=0)


def test_a_new_sampler_is_one_class_and_bad_samplers_and_schedules_are_rejected():
    """A subclass writing ``step`` and ``step_nfe`` gets the loop, the NFE and guidance: here the explicit midpoint
    rule (second order, 2 evaluations a step)."""

    class Midpoint(Sampler):
        name = "midpoint"

        def step(self, denoiser, x, denoised, sigma, sigma_next, to_zero):
            mid = (sigma * sigma_next).sqrt() if not to_zero else sigma / 2
            x_mid = x + (mid - sigma) * (x - denoised) / sigma
            return x + (sigma_next - sigma) * (x_mid - denoiser(x_mid, mid)) / mid

        def step_nfe(self, to_zero):
            return 2

    assert 1.8 <= convergence_slope(Midpoint()) <= 2.3
    counting = CountingDenoiser()
    Midpoint()(counting, torch.zeros(1, 1, 2, 2), karras_sigmas(4))
    assert counting.calls == Midpoint().nfe(4) == 8
    with pytest.raises(TypeError, match="abstract"):
        type("Incomplete", (Sampler,), {})()
    with pytest.raises(TypeError, match="teacher_sampler must be a pdegen.diffusion.Sampler.*Heun.*'rk4'"):
        as_sampler("rk4", Euler, "teacher_sampler")
    assert isinstance(as_sampler(None, Euler, "sampler"), Euler)
    with pytest.raises(ValueError, match="num_steps must be an integer >= 1"):
        Heun().nfe(0)
    denoiser, x_T = gaussian(), torch.zeros(1, 2, 8, 8)
    with pytest.raises(ValueError, match="decreasing"):
        Heun()(denoiser, x_T, karras_sigmas(3).flip(0)[1:])
    with pytest.raises(ValueError, match="positive"):
        Euler()(denoiser, x_T, torch.tensor([1.0, 0.0, -1.0]))
