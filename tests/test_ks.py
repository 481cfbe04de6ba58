"""Kuramoto–Sivashinsky: exact linear growth/decay of a single small mode, ETDRK4 step refinement,
the residual's time-stencil order on a manufactured solution and on solver data, the residual
level of attractor data, per-sample domains, reproducibility, validation, differentiability."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from pdegen.metrics import PDEResidualNorm
from pdegen.pdes.finite_difference import fd_weights, time_derivative
from pdegen.pdes.ks import KuramotoSivashinsky


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def fitted_order(steps: list[float], errors: list[float]) -> float:
    """Slope of log(error) against log(step), least squares."""
    return float(np.polyfit(np.log(steps), np.log(errors), 1)[0])


def relative_residual(pde: KuramotoSivashinsky, x: torch.Tensor) -> float:
    metric = PDEResidualNorm(pde)
    metric.update(x)
    return float(metric.compute()["interior_rel"])


@pytest.fixture(scope="module")
def chaotic_state() -> torch.Tensor:
    """Two states ``(2, 1, 256)`` on the attractor (40 time units after small initial data)."""
    pde = KuramotoSivashinsky(burn_in=40.0, num_states=3)
    return pde.solve(pde.sample_inputs(2, seeded(1)))[:, :, -1]


@pytest.fixture(scope="module")
def default_data() -> tuple[KuramotoSivashinsky, torch.Tensor]:
    """Two default training trajectories (burn-in 100, 140 states)."""
    pde = KuramotoSivashinsky()
    return pde, pde.generate(2, seeded(0))


# ----------------------------------------------------------------------------- the solver


@pytest.mark.parametrize("vary_domain", [False, True])
@pytest.mark.parametrize("mode", [3, 12])  # at L = 64: k = 0.29 grows, k = 1.18 decays
def test_a_small_single_mode_evolves_at_the_linear_rate(mode: int, vary_domain: bool) -> None:
    """u0 = ε sin(k x), ε = 1e-8, stays ε exp((k² - k⁴) t) sin(k x) up to O(ε) relative (the
    nonlinearity); the mode's growth rate is exact up to O(ε²) (ETDRK4 is exact on the linear part)."""
    pde = KuramotoSivashinsky(burn_in=0.0, num_states=21, vary_domain=vary_domain)
    size, eps = pde.resolution, 1e-8
    phase = torch.arange(size, dtype=torch.float64) * (2 * math.pi * mode / size)
    inputs = pde.sample_inputs(3, seeded(mode))
    inputs[:, 0] = eps * torch.sin(phase)
    x = pde.solve(inputs)
    length, dt = (x[:, 1, 0, :1], x[:, 2, 0, :1]) if vary_domain else (pde.length, pde.dt)
    k = 2 * math.pi * mode / torch.as_tensor(length, dtype=torch.float64)
    rate = (k**2 - k**4).reshape(-1, 1)  # (B or 1, 1)
    t = torch.arange(pde.num_states, dtype=torch.float64) * torch.as_tensor(dt, dtype=torch.float64).reshape(-1, 1)
    amplitude = torch.fft.rfft(x[:, 0], dim=-1)[..., mode].abs() * (2 / size)  # (B, T)
    for times, log_amplitude, expected in zip(t.expand(3, -1), amplitude.log(), rate.expand(3, 1)):
        measured = np.polyfit(times.numpy(), log_amplitude.numpy(), 1)[0]
        assert abs(measured - expected.item()) < 1e-9 * abs(expected.item()), (measured, expected)
    exact = eps * torch.exp(rate * t)[..., None] * torch.sin(phase)
    assert (x[:, 0] - exact).abs().max() < 1e-7 * exact.abs().max()


def test_stored_trajectory_agrees_with_a_four_times_finer_step(chaotic_state: torch.Tensor) -> None:
    """Default internal step Δt/8 against Δt/32 over 5 time units from an attractor state (much
    longer horizons separate any two runs: the dynamics are chaotic)."""
    coarse = KuramotoSivashinsky(burn_in=0.0, num_states=26).solve(chaotic_state)
    fine = KuramotoSivashinsky(burn_in=0.0, num_states=26, substeps=32).solve(chaotic_state)
    assert (coarse - fine).abs().max() < 2e-6 * coarse.abs().max()


@pytest.mark.parametrize(("resolution", "low", "high"), [(256, 3.2, 4.2), (64, 3.75, 4.15)])
def test_etdrk4_order_under_step_refinement(resolution: int, low: float, high: float) -> None:
    """Errors after 1 time unit from an attractor state with 4..32 steps per Δt, against 128.  At
    R = 256 (k_max⁴ ≈ 2.5e4) ETDRK4 shows its known stiff order reduction (fitted order ≈ 3.45,
    local orders 3.3 → 3.6); on the less stiff R = 64 grid it is fourth order (≈ 3.92)."""
    start = KuramotoSivashinsky(resolution=resolution, burn_in=40.0, num_states=3)
    state = start.solve(start.sample_inputs(2, seeded(1)))[:, :, -1]

    def run(substeps: int) -> torch.Tensor:
        return KuramotoSivashinsky(resolution=resolution, burn_in=0.0, num_states=6, substeps=substeps).solve(state)

    reference = run(128)
    substeps = [4, 8, 16, 32]
    errors = [(run(s) - reference).abs().max().item() for s in substeps]
    order = fitted_order([1 / s for s in substeps], errors)
    assert low < order < high, (errors, order)


# ----------------------------------------------------------------------------- the residual


def test_time_derivative_is_exact_for_polynomials_of_its_order() -> None:
    t = torch.linspace(0.0, 1.4, 8, dtype=torch.float64)
    for order in (2, 4):
        u = (1 + t) ** order
        du = time_derivative(u[None], t[1] - t[0], order, dim=-1)[0]
        torch.testing.assert_close(du, order * (1 + t) ** (order - 1), rtol=1e-12, atol=0)
    assert fd_weights((-1, 0, 1)) == pytest.approx((-0.5, 0.0, 0.5), abs=1e-15)
    with pytest.raises(ValueError, match="at least order"):
        time_derivative(torch.zeros(4), 0.1, order=4, dim=0)


def manufactured(pde: KuramotoSivashinsky) -> tuple[torch.Tensor, torch.Tensor]:
    """u = sin(a x - ω t) + ½ cos(b x) exp(-t/2) and f = u_t + u u_x + u_xx + u_xxxx in closed form."""
    t, x = pde.grid.meshgrid()
    a, b, omega = 2 * math.pi * 3 / pde.length, 2 * math.pi * 5 / pde.length, 1.3
    theta, decay = a * x - omega * t, 0.5 * torch.exp(-t / 2)
    u = torch.sin(theta) + decay * torch.cos(b * x)
    u_t = -omega * torch.cos(theta) - 0.5 * decay * torch.cos(b * x)
    u_x = a * torch.cos(theta) - b * decay * torch.sin(b * x)
    u_xx = -(a**2) * torch.sin(theta) - b**2 * decay * torch.cos(b * x)
    u_xxxx = a**4 * torch.sin(theta) + b**4 * decay * torch.cos(b * x)
    return u[None, None], u_t + u * u_x + u_xx + u_xxxx


@pytest.mark.parametrize("time_order", [2, 4])
def test_residual_converges_at_its_time_order_on_a_manufactured_solution(time_order: int) -> None:
    steps, errors = [0.2, 0.1, 0.05, 0.025], []
    for dt in steps:
        pde = KuramotoSivashinsky(dt=dt, num_states=round(2.0 / dt) + 1, time_order=time_order)
        u, f = manufactured(pde)
        errors.append((pde.residual(u)[0, 0] - f).abs().max().item())
    order = fitted_order(steps, errors)
    assert time_order - 0.2 < order < time_order + 0.25, (errors, order)


def test_data_residual_converges_at_second_order_under_dt_refinement(chaotic_state: torch.Tensor) -> None:
    """The same trajectory (internal step 0.025 throughout) stored every Δt = 0.2 .. 0.025."""
    steps, norms = [0.2, 0.1, 0.05, 0.025], []
    for dt in steps:
        pde = KuramotoSivashinsky(dt=dt, num_states=round(4.0 / dt) + 1, burn_in=0.0, substeps=round(dt / 0.025))
        norms.append(pde.residual(pde.solve(chaotic_state)).square().mean().sqrt().item())
    order = fitted_order(steps, norms)
    assert 1.8 < order < 2.2, (norms, order)


def test_default_data_is_on_the_attractor_with_a_small_residual(default_data) -> None:
    pde, x = default_data
    assert x.shape == (2, 1, 140, 256) and x.dtype == torch.float64
    assert pde.grid.shape == (140, 256) and pde.grid.boundary == ("time", "periodic")
    assert pde.grid.spacing == pytest.approx((0.2, 0.25))
    assert not pde.boundary_mask.any()
    u = x[:, 0]
    assert u.mean(dim=-1).abs().max() < 1e-12  # the spatial mean is conserved (0)
    rms = u.square().mean().sqrt().item()
    assert 1.0 < rms < 1.7, rms  # the L = 64 attractor has RMS ≈ 1.3; the initial data 0.1
    second = relative_residual(pde, x)
    fourth = relative_residual(KuramotoSivashinsky(time_order=4), x)
    print(f"\nKS default data relative residual: time_order=2 {second:.2e}, time_order=4 {fourth:.2e}")
    assert second < 2e-3 and fourth < 1e-4 and fourth < second / 10


def test_residual_scale_is_the_largest_spatial_term(default_data) -> None:
    pde, x = default_data
    scale = pde.residual_scale(x)
    assert scale.shape == pde.residual(x).shape
    assert torch.all(scale == scale[:, :, :1, :1])
    k = 2 * math.pi / pde.length * torch.fft.rfftfreq(256, 1 / 256, dtype=torch.float64)
    u_xxxx = torch.fft.irfft(k**4 * torch.fft.rfft(x[:, 0]), n=256)
    torch.testing.assert_close(scale[:, 0, 0, 0], u_xxxx.square().mean(dim=(-2, -1)).sqrt())


def test_residual_in_float32_matches_float64(default_data) -> None:
    pde, x = default_data
    r32 = pde.residual(x.float())  # evaluated in float64: only the storage round-off of x enters
    assert r32.dtype == torch.float32
    assert (r32.double() - pde.residual(x)).abs().max() < 1e-3 * pde.residual_scale(x).max()


@pytest.mark.parametrize("vary_domain", [False, True])
@pytest.mark.parametrize("time_order", [2, 4])
def test_residual_is_differentiable(vary_domain: bool, time_order: int) -> None:
    pde = KuramotoSivashinsky(resolution=8, num_states=5, dt=0.1, ic_modes=2, vary_domain=vary_domain,
                              time_order=time_order)
    x = torch.randn(1, *pde.sample_shape, dtype=torch.float64, generator=seeded(0))
    if vary_domain:
        x[:, 1:] = x[:, 1:] * 0.05 + torch.tensor([4.0, 0.1], dtype=torch.float64)[:, None, None]
    x.requires_grad_(True)
    assert torch.autograd.gradcheck(pde.residual, (x,))


# ----------------------------------------------------------------------------- per-sample domains


def test_vary_domain_samples_carry_their_length_and_step() -> None:
    pde = KuramotoSivashinsky(burn_in=30.0, num_states=21, vary_domain=True)
    assert pde.channels == ("u", "L", "dt") and pde.sample_shape == (3, 21, 256)
    assert KuramotoSivashinsky.channels == ("u",)  # the class attribute is untouched
    x = pde.generate(4, seeded(2))
    assert x.shape == (4, 3, 21, 256)
    length, dt = x[:, 1], x[:, 2]
    assert torch.all(length == length[:, :1, :1]) and torch.all(dt == dt[:, :1, :1])
    assert torch.all((length - 64.0).abs() <= 6.4) and torch.all((dt - 0.2).abs() <= 0.02)
    assert length[:, 0, 0].unique().numel() == 4 and dt[:, 0, 0].unique().numel() == 4
    own = relative_residual(pde, x)
    nominal = x.clone()
    nominal[:, 1], nominal[:, 2] = 64.0, 0.2
    wrong = relative_residual(pde, nominal)
    assert own < 2e-3 and wrong > 20 * own, (own, wrong)
    with pytest.raises(ValueError, match="constant along x"):
        bad = pde.sample_inputs(1, seeded(0))
        bad[0, 1, 3] += 1.0
        pde.solve(bad)


# ----------------------------------------------------------------------------- inputs, seeds, validation


def test_inputs_are_small_smooth_and_reproducible() -> None:
    pde = KuramotoSivashinsky(ic_modes=8, ic_amplitude=0.1)
    u0 = pde.sample_inputs(512, seeded(0))
    assert u0.shape == (512, 1, 256) and u0.dtype == torch.float64
    assert u0.mean(dim=-1).abs().max() < 1e-15
    assert 0.09 < u0.square().mean().sqrt().item() < 0.11
    assert torch.fft.rfft(u0, dim=-1)[..., 9:].abs().max() < 1e-12  # modes 1..8 only
    assert torch.equal(u0, pde.sample_inputs(512, seeded(0)))
    small = KuramotoSivashinsky(burn_in=5.0, num_states=6)
    x = small.generate(2, seeded(4))
    assert torch.equal(x, small.generate(2, seeded(4)))
    assert not torch.equal(x, small.generate(2, seeded(5)))


def test_params_round_trip_and_solver_params_stay_out_of_physics() -> None:
    pde = KuramotoSivashinsky(num_states=640, vary_domain=True, substeps=16, time_order=4)
    params = json.loads(json.dumps(pde.params()))
    assert KuramotoSivashinsky(**params).params() == pde.params()
    physics = pde.physics()
    assert physics["name"] == "ks" and physics["num_states"] == 640 and physics["vary_domain"] is True
    assert "substeps" not in physics and "time_order" not in physics
    assert pde.grid.extent == pytest.approx((639 * 0.2, 64.0))


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"resolution": 255}, "even integer"),
    ({"length": -1.0}, "domain length"),
    ({"dt": 0.0}, "stored time step"),
    ({"num_states": 2}, "too few"),
    ({"num_states": 4, "time_order": 4}, "too few"),
    ({"time_order": 3}, "time_order"),
    ({"burn_in": -1.0}, "burn_in"),
    ({"ic_modes": 100}, "ic_modes"),
    ({"ic_amplitude": 0.0}, "ic_amplitude"),
    ({"variation": 1.5}, "variation"),
    ({"vary_domain": True, "variation": 0.0}, "vary_domain=False"),
    ({"substeps": 0}, "substeps"),
])
def test_bad_parameters_are_rejected(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        KuramotoSivashinsky(**kwargs)


def test_bad_inputs_are_rejected() -> None:
    pde = KuramotoSivashinsky(num_states=5, burn_in=0.0)
    with pytest.raises(ValueError, match=r"shape \(n, 1, 256\)"):
        pde.solve(torch.zeros(2, 1, 128))
    with pytest.raises(ValueError, match="non-finite"):
        pde.solve(torch.full((1, 256), float("nan")))
    with pytest.raises(ValueError, match="expected samples of shape"):
        pde.residual(torch.zeros(1, 1, 6, 256))
    with pytest.raises(ValueError, match=r"shape \(n, 3, 256\)"):
        KuramotoSivashinsky(vary_domain=True).solve(torch.zeros(2, 1, 256))
    assert pde.solve(torch.zeros(2, 256)).shape == (2, 1, 5, 256)  # (n, R) is accepted too


@pytest.mark.parametrize("vary_domain", [False, True])
def test_dataset_generation_writes_one_dataset_per_channel(tmp_path, vary_domain: bool) -> None:
    """The datagen path: block-seeded inputs concatenated, solved, checked and written."""
    import h5py

    from pdegen.datagen import generate_dataset

    pde = KuramotoSivashinsky(resolution=32, length=16.0, ic_modes=4, burn_in=1.0, num_states=5,
                              vary_domain=vary_domain)
    path = tmp_path / "ks.h5"
    generate_dataset(pde, 70, seed=1, output=path, batch_size=64, progress=False)
    with h5py.File(path, "r") as f:
        assert set(f.keys()) == set(pde.channels) | {"sample", "time", "x"}  # the channels and their dimensions
        assert all(f[name].shape == (70, 5, 32) for name in pde.channels)
        assert json.loads(f.attrs["pde_params"]) == pde.params()
        x = torch.stack([torch.from_numpy(f[name][()]) for name in pde.channels], dim=1)
    assert relative_residual(pde, x) < 1e-2


def test_cpu_threads_follow_the_batch_size_and_are_restored() -> None:
    pde = KuramotoSivashinsky(burn_in=0.0, num_states=3)
    assert pde.cpu_threads(64) == 1
    assert pde.cpu_threads(1024) == min(torch.get_num_threads(), 8)
    assert KuramotoSivashinsky(num_threads=3).cpu_threads(1) == 3
    before = torch.get_num_threads()
    pde.solve(pde.sample_inputs(2, seeded(0)))
    assert torch.get_num_threads() == before
