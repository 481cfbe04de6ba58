"""Physics Informed Distillation: Theorem 1, the schemes' orders, the Gaussian-mixture map, the module."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pdegen.diffusion import (
    Euler,
    GaussianDenoiser,
    GaussianMixtureDenoiser,
    Heun,
    PIDTrajectory,
    get_distance,
    karras_sigmas,
    pid_grid,
    pid_loss,
)
from pdegen.modules import DiffusionTeacher, PIDStudent
from pdegen.nets import NoiseConditionedMLP, UNet
from pdegen.pdes import Darcy, Poisson

L2 = get_distance("l2")


def mixture() -> GaussianMixtureDenoiser:
    means = torch.tensor([[1.0, 1.0], [-1.0, 1.0], [1.0, -1.0], [-1.0, -1.0]])
    return GaussianMixtureDenoiser(means, 0.3, weights=torch.tensor([1.0, 2.0, 1.0, 1.0]))


def noise(n: int, shape=(2,), seed: int = 0, dtype=torch.float64) -> torch.Tensor:
    return 80.0 * torch.randn(n, *shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def grid_losses(states: torch.Tensor, grid: torch.Tensor, denoiser, scheme: str) -> torch.Tensor:
    """PID loss of a tabulated trajectory (N, B, ...) at every grid interval: (N − 1, B)."""
    b = states.shape[1]
    return torch.stack([
        pid_loss(states[i], states[i + 1], grid[i].expand(b), grid[i + 1].expand(b), denoiser, L2, scheme)
        for i in range(len(grid) - 1)
    ])


def implicit_midpoint(gaussian: GaussianDenoiser, x_T: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """The implicit midpoint rule on the Gaussian PF-ODE dx/dt = a(t)(x − μ), a = t/(s² + t²), in closed form."""
    mu, var = gaussian.mean, gaussian.std**2
    states = [x_T]
    for t, t_next in zip(grid[:-1], grid[1:]):
        h, tm = t_next - t, (t + t_next) / 2
        a = tm / (var + tm**2)
        states.append(mu + (states[-1] - mu) * (1 + h * a / 2) / (1 - h * a / 2))
    return torch.stack(states)


# --- Theorem 1 and the two schemes ---------------------------------------------------------------


def test_theorem1_euler_trajectory_has_zero_upwind_loss_and_a_perturbed_one_does_not():
    """Zero upwind PID loss on the grid ⟺ the trajectory is explicit Euler's (Theorem 1), here for the
    nonlinear Gaussian-mixture PF-ODE."""
    gmm, grid = mixture(), pid_grid(12)
    states = [noise(64)]
    Euler()(gmm, states[0], grid, callback=lambda info: states.append(info["x"]))
    states = torch.stack(states)
    assert grid_losses(states, grid, gmm, "upwind").max() < 1e-24
    perturbed = states.clone()
    perturbed[5] += 1e-3 * torch.randn_like(perturbed[5])
    losses = grid_losses(perturbed, grid, gmm, "upwind")
    assert losses[[4, 5]].min() > 1e-10, "both intervals touching the perturbed state feel it"
    assert losses[:4].max() < 1e-24 and losses[6:].max() < 1e-24
    assert grid_losses(states, grid, gmm, "central").max() > 1e-6, "Euler is not the central scheme's solution"


def test_central_scheme_is_zero_exactly_on_the_implicit_midpoint_rule():
    gaussian, grid = GaussianDenoiser(0.3, 0.5), pid_grid(20)
    states = implicit_midpoint(gaussian, noise(16), grid)
    assert grid_losses(states, grid, gaussian, "central").max() < 1e-24
    assert grid_losses(states, grid, gaussian, "upwind").max() > 1e-6


def test_zero_loss_trajectories_converge_at_first_and_second_order():
    """What Theorem 1 buys: at zero loss the upwind student is Euler (O(Δt)), the central one the
    implicit midpoint rule (O(Δt²)), measured against the exact Gaussian flow under grid refinement."""
    gaussian = GaussianDenoiser(0.3, 0.5)
    x_T = noise(8, shape=(2, 4, 4))
    exact = gaussian.flow(x_T, 80.0, 0.002)
    levels = np.array([16, 32, 64, 128])
    errors = {"upwind": [], "central": []}
    for n in levels:
        grid = pid_grid(int(n))
        errors["upwind"].append((Euler()(gaussian, x_T, grid) - exact).abs().max().item())
        errors["central"].append((implicit_midpoint(gaussian, x_T, grid)[-1] - exact).abs().max().item())
    slope = {k: -np.polyfit(np.log(levels - 1), np.log(v), 1)[0] for k, v in errors.items()}
    assert 0.85 <= slope["upwind"] <= 1.2
    assert 1.8 <= slope["central"] <= 2.3


# --- the reference mixture ------------------------------------------------------------------------


def test_mixture_denoiser_is_tweedie_of_the_mixture_density():
    """D(x, σ) = x + σ² ∇ log p_σ(x) with p_σ the mixture smoothed by N(0, σ²I), by autograd."""
    gmm = mixture()
    x = torch.randn(32, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1)).requires_grad_(True)
    for sigma in (0.05, 0.7, 5.0):
        var = gmm.stds**2 + sigma**2
        sq = (x[:, None, :] - gmm.means[None]).square().sum(-1)
        log_p = torch.logsumexp(gmm.weights.log() - math.log(2 * math.pi) - var.log() - 0.5 * sq / var, dim=1)
        (score,) = torch.autograd.grad(log_p.sum(), x)
        assert torch.allclose(gmm(x.detach(), sigma), x.detach() + sigma**2 * score, atol=1e-12)


def test_reference_flow_matches_the_closed_form_for_one_component():
    gmm = GaussianMixtureDenoiser(torch.tensor([[0.3, -0.2]]), 0.5)
    gaussian = GaussianDenoiser(torch.tensor([0.3, -0.2]), 0.5)
    x_T = noise(16)
    assert torch.allclose(gmm(x_T, 3.0), gaussian(x_T, 3.0), atol=1e-12)
    assert torch.allclose(gmm.flow(x_T, 80.0, 0.002), gaussian.flow(x_T, 80.0, 0.002), atol=1e-7)


def test_mixture_samples_have_the_mixture_moments():
    gmm = mixture()
    x = gmm.sample(20000, generator=torch.Generator().manual_seed(0))
    expected_mean = gmm.weights @ gmm.means
    assert torch.allclose(x.mean(0), expected_mean, atol=0.03)
    expected_var = gmm.weights @ (gmm.means - expected_mean).square() + 0.3**2
    assert torch.allclose(x.var(0), expected_var, rtol=0.03)


# --- the trajectory function ----------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_boundary_condition_is_exact_at_T(dtype):
    torch.manual_seed(0)
    net = NoiseConditionedMLP(2, width=16, depth=2)
    with torch.no_grad():
        net.out.bias.fill_(3.0)  # a backbone far from zero
    trajectory = PIDTrajectory(net, sigma_max=80.0)
    z = noise(8, dtype=dtype)
    assert torch.equal(trajectory(z, 80.0), z)
    assert not torch.allclose(trajectory(z, 40.0), z)


def test_pair_shares_dropout_masks():
    torch.manual_seed(0)
    net = UNet(channels=1, base_channels=8, channel_mults=[1], dropout=0.5)
    torch.nn.init.normal_(net.conv_out.weight)  # the output layer starts at zero
    trajectory = PIDTrajectory(net).train()
    z, t = noise(2, shape=(1, 8, 8), dtype=torch.float32), torch.full((2,), 3.0)
    x_hi, x_lo = trajectory.pair(z, t, t)
    assert torch.equal(x_hi, x_lo), "both evaluations must see the same dropout masks"
    assert not torch.equal(trajectory(z, t), trajectory(z, t)), "dropout is active"
    trajectory.eval()
    x_hi, x_lo = trajectory.pair(z, t, t / 2)
    assert torch.allclose(x_hi, trajectory(z, t), atol=1e-6) and torch.allclose(x_lo, trajectory(z, t / 2), atol=1e-6)


# --- distances ------------------------------------------------------------------------------------


def test_distances_closed_forms():
    x = torch.zeros(2, 3, 4, 4)
    y = x.clone()
    y[0] += 0.5
    assert torch.allclose(get_distance("l2")(x, y), torch.tensor([0.25, 0.0]))
    assert torch.allclose(get_distance("l1")(x, y), torch.tensor([0.5, 0.0]))
    huber = get_distance("pseudo_huber", c=0.1)
    assert torch.allclose(huber(x, y), torch.tensor([math.sqrt(48 * 0.25 + 0.01) - 0.1, 0.0]))
    small = get_distance("pseudo_huber", c=10.0)(x, y * 1e-3)[0]  # quadratic regime: ‖d‖²/(2c)
    assert small.item() == pytest.approx(48 * 0.25e-6 / 20, rel=1e-3)
    with pytest.raises(ValueError, match="different shapes"):
        L2(x, y[:, :2])
    with pytest.raises(ValueError, match="unknown distance 'lp'"):
        get_distance("lp")


def test_lpips_distance_needs_its_extra():
    try:
        import lpips  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match=r"pdegen\[lpips\]"):
            get_distance("lpips")
    else:
        pytest.skip("lpips is installed: the missing-extra error cannot be shown")


def test_lpips_distance_on_fields():
    pytest.importorskip("lpips", reason="the optional lpips extra (needs torchvision and VGG weights) is absent")
    d = get_distance("lpips")
    x = torch.randn(2, 2, 16, 16)
    assert d(x, x).abs().max() < 1e-6
    assert (d(x, x + 0.5 * torch.randn_like(x)) > 0).all()


# --- the student on a Gaussian mixture ------------------------------------------------------------


def trained_mixture_student(num_points: int, steps: int, scheme: str = "upwind") -> PIDStudent:
    torch.manual_seed(0)
    student = PIDStudent(mixture(), net=NoiseConditionedMLP(2, width=96, depth=3), num_points=num_points,
                         scheme=scheme)
    optimizer = torch.optim.RAdam(student.trajectory.parameters(), lr=2e-3)
    for _ in range(steps):
        loss = student.loss(torch.randn(256, 2))  # PID's training batches: unit noise, fresh each step
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return student.eval()


def test_student_learns_the_mixture_noise_to_data_map_and_improves_with_N():
    """The one-step map x_θ(z, σ_min) of a trained student approaches the exact PF-ODE map (DOP853
    reference); with few grid points it lands on N-point Euler's answer (Theorem 1), so its error
    falls as N grows, the paper's discretisation trend."""
    gmm, z = mixture(), noise(512, seed=1)
    exact = gmm.flow(z, 80.0, 0.002)

    def rmse(a, b):
        return (a - b).square().sum(1).mean().sqrt().item()

    errors = {}
    for n in (4, 16):
        student = trained_mixture_student(n, steps=800)
        with torch.no_grad():
            one_step = student.generate(z / 80.0)
        euler = Euler()(gmm, z, pid_grid(n))
        errors[n] = rmse(one_step, exact)
        if n == 4:  # discretisation error dominates: the student has learnt N-point Euler's map
            assert rmse(one_step, euler) < 0.25 * rmse(euler, exact)
    assert errors[16] < 0.6 * errors[4]
    assert errors[16] < 0.3, "the 16-point student is close to the exact map (data spread ≈ 1.4)"


# --- the Lightning module -------------------------------------------------------------------------


def tiny_teacher(pde=None, dropout: float = 0.0) -> DiffusionTeacher:
    torch.manual_seed(0)
    pde = pde or Darcy(resolution=8)
    net = UNet(channels=pde.num_channels, base_channels=8, channel_mults=[1, 2], dropout=dropout)
    torch.nn.init.normal_(net.conv_out.weight, std=0.1)
    teacher = DiffusionTeacher(net)
    teacher.attach_pde(pde)
    teacher.normalizer.set_stats(torch.tensor([7.5, 0.02]), torch.tensor([4.5, 0.01]))
    return teacher


def test_gradients_never_reach_the_teacher():
    student = PIDStudent(tiny_teacher(dropout=0.3), num_points=10, dropout=None).train()
    assert student.trajectory.net.down[0].dropout.p == 0.3, "dropout=None keeps the backbone's"
    assert PIDStudent(tiny_teacher(dropout=0.3), num_points=10).trajectory.net.down[0].dropout.p == 0
    assert not student.teacher.training, "the teacher stays in eval mode"
    loss = student.loss(torch.zeros(4, 2, 8, 8), generator=torch.Generator().manual_seed(0))
    loss.backward()
    assert all(p.grad is None and not p.requires_grad for p in student.teacher.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.trajectory.parameters())
    assert {id(p) for p in student.configure_optimizers().param_groups[0]["params"]} == {
        id(p) for p in student.trajectory.parameters()}


def test_student_starts_from_the_teacher_weights_and_normaliser():
    teacher = tiny_teacher()
    student = PIDStudent(teacher, num_points=10)
    for ours, theirs in zip(student.trajectory.net.parameters(), teacher.denoiser.net.parameters()):
        assert torch.equal(ours, theirs) and ours is not theirs
    assert torch.equal(student.normalizer.std, teacher.normalizer.std)
    assert student.pde is teacher.pde
    assert (student.sigma_min, student.sigma_max, student.rho) == (0.002, 80.0, 7.0)


def test_reference_samples_are_the_teachers_euler_solve_from_the_same_noise():
    teacher = tiny_teacher()
    student = PIDStudent(teacher, num_points=6)
    draws = student.sample_with(lambda x: x, 3, generator=torch.Generator().manual_seed(4))
    eps = teacher.normalizer.encode(draws)
    reference = student.grid_teacher_sample(3, generator=torch.Generator().manual_seed(4), sampler=Euler())
    expected = teacher.normalizer.decode(Euler()(teacher.denoiser, 80.0 * eps, pid_grid(6)))
    assert torch.allclose(reference, expected, atol=1e-10)
    assert student.grid_teacher_nfe(Euler()) == 5 and student.grid_teacher_nfe(Heun()) == 10
    one_step = student.sample(3, generator=torch.Generator().manual_seed(4))
    assert one_step.shape == (3, 2, 8, 8) and one_step.dtype == torch.float64 and student.nfe == 1


def test_few_step_sampling_hands_over_to_the_teacher():
    teacher = tiny_teacher()
    student = PIDStudent(teacher, num_points=6, sample_sigma=2.0, refine_steps=3, refine_sampler=Heun())
    assert student.nfe == 1 + 5
    eps = torch.randn(2, 2, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    x = student.trajectory(80.0 * eps, 2.0)
    expected = Heun()(teacher.denoiser, x, karras_sigmas(3, 0.002, 2.0))
    assert torch.allclose(student.generate(eps), expected, atol=1e-12)


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"scheme": "backward"}, ValueError, "unknown PID scheme"),
    ({"distance": "cosine"}, ValueError, "unknown distance"),
    ({"num_points": 1}, ValueError, "at least 2 points"),
    ({"sample_sigma": 100.0}, ValueError, "outside the distilled range"),
    ({"refine_steps": 2}, ValueError, "sample_sigma above sigma_min"),
    ({"refine_steps": 2, "sample_sigma": 1.0, "refine_sampler": "rk4"}, TypeError, "refine_sampler must be a pdegen"),
])
def test_bad_arguments_are_clear_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        PIDStudent(tiny_teacher(), **kwargs)


def test_missing_teacher_and_wrong_data_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="train a teacher first"):
        PIDStudent(str(tmp_path / "nope.ckpt"))
    with pytest.raises(ValueError, match="net is required"):
        PIDStudent(mixture())
    student = PIDStudent(tiny_teacher(), num_points=4)
    with pytest.raises(ValueError, match="differs from the teacher's"):
        student.attach_pde(Darcy(resolution=16))
    with pytest.raises(ValueError, match="differs from the teacher's"):
        student.attach_pde(Poisson(resolution=8))


def test_training_draws_differ_between_ranks_and_repeat_on_resume():
    """Data-free training draws all its randomness. Its batches are unit noise, as many per epoch as the
    data's training split, fresh each epoch and the same again for the same epoch (a resumed run, another
    batching); the grid indices are seeded by (seed, rank, step): DDP ranks draw their own, a resumed run
    those of the uninterrupted one."""
    from types import SimpleNamespace

    student = PIDStudent(tiny_teacher(), num_points=10)
    noise = student.training_data(list(range(6)))
    assert len(noise) == 6
    first = torch.stack([noise[i] for i in range(6)])
    assert first.shape == (6, 2, 8, 8) and abs(first.mean()) < 0.15 and abs(first.std() - 1) < 0.1
    assert torch.equal(noise[4], first[4])
    noise.set_epoch(1)
    assert not torch.equal(noise[4], first[4]), "fresh noise each epoch"
    noise.set_epoch(0)
    assert torch.equal(noise[4], first[4])
    batch = first[:4]

    def loss_at(rank: int, step: int) -> float:
        student._trainer = SimpleNamespace(global_rank=rank, global_step=step)
        with torch.no_grad():
            return student.loss(batch, generator=student.training_generator()).item()

    assert loss_at(0, 3) == loss_at(0, 3)
    assert loss_at(1, 3) != loss_at(0, 3) and loss_at(0, 4) != loss_at(0, 3)


def test_a_smaller_fresh_student_backbone_compresses_the_teacher():
    student = PIDStudent(tiny_teacher(), net=UNet(channels=2, base_channels=4, channel_mults=[1]), num_points=10)
    teacher_size = sum(p.numel() for p in student.teacher.parameters())
    assert sum(p.numel() for p in student.trajectory.parameters()) < teacher_size / 2
    loss = student.loss(torch.zeros(2, 2, 8, 8))
    loss.backward()
    assert torch.isfinite(loss) and student.sample(2).shape == (2, 2, 8, 8)
