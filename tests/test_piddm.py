"""PIDDM: residual loss, tasks, guidance and noise optimisation, the student and its baselines."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torch.utils.data import DataLoader

from pdegen.diffusion import Euler, GaussianDenoiser, Heun, karras_sigmas, optimize_noise, project_to_shell
from pdegen.metrics import PDEResidualNorm, reference_residual_scales, residual_loss
from pdegen.modules import DiffusionTeacher, GuidedDiffusion, PIDDMStudent
from pdegen.nets import UNet
from pdegen.pdes import Burgers, Darcy, Poisson
from pdegen.tasks import ObservationTask, impose, misfit, relative_error

# --- the residual loss -------------------------------------------------------------------------------------


def test_residual_loss_is_the_squared_relative_residual_norm_and_smooth_at_zero():
    pde = Darcy(resolution=12)
    x = pde.generate(3, torch.Generator().manual_seed(0))
    noisy = x + 1e-3 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    metric = PDEResidualNorm(pde)
    metric.update(noisy[:1])
    values = metric.compute()
    assert residual_loss(pde, noisy[:1]).item() == pytest.approx(
        values["interior_rel"].item() ** 2 + values["boundary_rel"].item() ** 2, rel=1e-10)
    exact = x.clone().requires_grad_(True)  # zero boundary residual: a norm would have an infinite gradient
    residual_loss(pde, exact).sum().backward()
    assert torch.isfinite(exact.grad).all() and residual_loss(pde, x).max() < 1e-20


def test_residual_loss_is_resolution_independent_for_a_smooth_field():
    """The same continuous u with a fixed perturbation: the discrete norms converge, so the loss agrees."""
    values = []
    for resolution in (33, 65):
        pde = Poisson(resolution=resolution)
        xs, ys = pde.grid.meshgrid()
        u = torch.sin(math.pi * xs) * torch.sin(2 * math.pi * ys)
        f = -5 * math.pi**2 * u + 20.0 * xs * (1 - xs)  # a consistent source plus an O(1) defect
        values.append(residual_loss(pde, torch.stack([f, u])[None]).item())
    assert values[1] == pytest.approx(values[0], rel=0.1), "unweighted sums would differ 4×"


def test_reference_scales_make_the_loss_absolute_in_data_units():
    """Per-sample scales make R scale-free, so a generated sample with a tiny source has a huge R (and
    gradient); fixed reference scales (the data's) give the residual in units of the data's source size."""
    pde = Poisson(resolution=16)
    x = pde.generate(4, torch.Generator().manual_seed(0))
    noisy = x + 0.05 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1)).double()
    scales = reference_residual_scales(pde, noisy[:1])
    own = residual_loss(pde, noisy[:1]).item()
    assert residual_loss(pde, noisy[:1], scales).item() == pytest.approx(own, rel=1e-12)
    data_scales = reference_residual_scales(pde, x)
    shrunk = 1e-3 * noisy
    assert residual_loss(pde, shrunk).numpy() == pytest.approx(residual_loss(pde, noisy).numpy(), rel=1e-9)
    assert residual_loss(pde, shrunk, data_scales).numpy() == pytest.approx(
        1e-6 * residual_loss(pde, noisy, data_scales).numpy(), rel=1e-9), "quadratic in the residual"


# --- observation tasks -------------------------------------------------------------------------------------


def test_task_masks():
    pde = Darcy(resolution=10)
    forward, inverse = ObservationTask("forward").mask(pde, 2), ObservationTask("inverse").mask(pde, 2)
    assert forward[:, 0].all() and not forward[:, 1].any(), "forward observes the coefficient a"
    assert torch.equal(inverse, ~forward)
    reconstruction = ObservationTask("reconstruction", num_points=7, seed=3)
    mask = reconstruction.mask(pde, 4)
    assert (mask.flatten(2).sum(2) == 7).all(), "7 points per sample, in every channel"
    assert torch.equal(mask[:, 0], mask[:, 1]) and not torch.equal(mask[0], mask[1])
    assert torch.equal(mask, reconstruction.mask(pde, 4)), "seeded: every method sees the same points"
    assert reconstruction.target(pde, 4).all()
    burgers = ObservationTask("forward").mask(Burgers(resolution=8, num_times=5), 1)
    assert burgers[0, 0, 0].all() and not burgers[0, 0, 1:].any(), "Burgers' input is its initial state"
    with pytest.raises(ValueError, match="unknown task"):
        ObservationTask("denoise")
    with pytest.raises(ValueError, match="lower num_points"):
        ObservationTask("reconstruction", num_points=101).mask(pde, 1)


def test_task_objectives():
    x, y = torch.zeros(2, 1, 3), torch.ones(2, 1, 3)
    mask = torch.tensor([[[True, False, False]], [[True, True, True]]])
    assert misfit(x, y, mask).tolist() == [1.0, 1.0]
    assert torch.equal(impose(x, y, mask), mask.double())
    truth = torch.tensor([[[3.0, 4.0]]])
    assert relative_error(torch.zeros_like(truth), truth, torch.ones_like(truth, dtype=torch.bool)).item() == 1.0


# --- guidance and noise optimisation -----------------------------------------------------------------------


def test_guidance_that_does_not_depend_on_the_sample_is_plain_heun_and_guidance_pulls_to_observations():
    denoiser = GaussianDenoiser(torch.zeros(6, dtype=torch.float64), torch.ones(6, dtype=torch.float64))
    x_T = 80 * torch.randn(5, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    sigmas = karras_sigmas(12)
    plain = Heun()(denoiser, x_T, sigmas, guidance=lambda d, i: (0 * d).sum(1))
    assert torch.allclose(plain, Heun()(denoiser, x_T, sigmas), atol=1e-12)
    target, mask = torch.full((5, 6), 2.0, dtype=torch.float64), torch.zeros(5, 6, dtype=torch.bool)
    mask[:, :2] = True
    guided = Heun()(denoiser, x_T, sigmas, guidance=lambda d, i: ((d - target) * mask).norm(dim=1))
    assert misfit(guided, target, mask).mean() < 0.1 * misfit(plain, target, mask).mean()


def test_optimize_noise_solves_a_least_squares_problem_and_keeps_noise_on_the_shell():
    torch.manual_seed(0)
    matrix = torch.randn(8, 8, dtype=torch.float64) + 4 * torch.eye(8, dtype=torch.float64)
    target = torch.randn(3, 8, dtype=torch.float64)
    solution = torch.linalg.solve(matrix, target.T).T
    result = optimize_noise(lambda e: e @ matrix.T, torch.zeros(3, 8, dtype=torch.float64),
                            lambda x: (x - target).square().sum(1), steps=50, optimizer="lbfgs")
    assert torch.allclose(result.noise, solution, atol=1e-4) and result.evaluations >= 2
    start = project_to_shell(torch.randn(3, 8, dtype=torch.float64))
    adam = optimize_noise(lambda e: e, start, lambda x: x[:, 0], steps=5)
    assert torch.allclose(adam.noise.norm(dim=1), torch.full((3,), math.sqrt(8), dtype=torch.float64))
    assert (adam.noise[:, 0] < start[:, 0]).all() and adam.evaluations == 5
    assert torch.allclose(project_to_shell(2 * start), project_to_shell(start))
    with pytest.raises(ValueError, match="unknown noise optimizer"):
        optimize_noise(lambda e: e, start, lambda x: x[:, 0], steps=1, optimizer="sgd")


# --- the student -------------------------------------------------------------------------------------------


def tiny_teacher(pde) -> DiffusionTeacher:
    torch.manual_seed(0)
    net = UNet(channels=pde.num_channels, base_channels=8, channel_mults=[1, 2])
    torch.nn.init.normal_(net.conv_out.weight, std=0.1)
    teacher = DiffusionTeacher(net, num_steps=4)
    teacher.attach_pde(pde)
    data = pde.generate(16, torch.Generator().manual_seed(0))
    teacher.normalizer.set_stats(*teacher.normalizer.stats_of(data))
    teacher.residual_scales = reference_residual_scales(pde, data)  # as a DataModule gives them
    return teacher


def student_for(pde, tmp_path, **kwargs) -> PIDDMStudent:
    settings = {"num_pairs": 16, "num_val_pairs": 4, "teacher_steps": 4, "pair_dir": str(tmp_path)} | kwargs
    return PIDDMStudent(tiny_teacher(pde), **settings)


def train(student: PIDDMStudent, steps: int, lr: float = 3e-3) -> PIDDMStudent:
    """``steps`` Adam steps on batches of 16 of the student's training pairs, as the DataModule serves them."""
    optimizer = torch.optim.Adam(student.student.parameters(), lr=lr)
    pairs = DataLoader(student.training_data([]), batch_size=16, shuffle=True,
                       generator=torch.Generator().manual_seed(0))
    for _ in range(steps):
        optimizer.zero_grad()
        student.loss(next(iter(pairs))).backward()
        optimizer.step()
    return student.eval()


def test_pairs_are_the_teachers_samples_cached_and_reused(tmp_path):
    student = student_for(Darcy(resolution=8), tmp_path)
    pairs = student.training_data([])
    assert len(pairs) == 16 and pairs.noise.shape == pairs.sample.shape == (16, 2, 8, 8)
    noise, sample = pairs[2]
    assert torch.equal(noise, pairs.noise[2]) and torch.equal(sample, pairs.sample[2])
    direct = student.grid_teacher_generate(pairs.noise[:3].double(), Euler())
    assert torch.allclose(pairs.sample[:3].double(), direct, atol=1e-5)
    assert [f.name for f in tmp_path.glob("*.h5")] == ["pairs_rank0_round0.h5"]
    again = student_for(Darcy(resolution=8), tmp_path).training_data([])
    assert torch.equal(again.noise, pairs.noise), "same settings: the cached pairs are reused"
    other = student_for(Darcy(resolution=8), tmp_path, teacher_steps=5).training_data([])
    assert not torch.equal(other.sample, pairs.sample), "other settings: made again"
    held_out = student.val_pairs
    assert len(held_out) == 4 and not torch.equal(held_out.noise, pairs.noise[:4]), "drawn apart from training pairs"


def test_pairs_refresh_by_epoch_and_rounds_are_cached(tmp_path):
    pairs = student_for(Darcy(resolution=8), tmp_path, refresh_every_n_epochs=2).training_data([])
    first = pairs.noise.clone()
    pairs.set_epoch(1)
    assert torch.equal(pairs.noise, first), "round 0 spans epochs 0 and 1"
    pairs.set_epoch(2)
    assert not torch.equal(pairs.noise, first) and (tmp_path / "pairs_rank0_round1.h5").is_file()
    pairs.set_epoch(0)
    assert torch.equal(pairs.noise, first), "a resumed run reads the round it needs"


def test_zero_residual_weight_is_plain_distillation(tmp_path):
    student = student_for(Darcy(resolution=8), tmp_path, residual_weight=0.0)
    pairs = student.training_data([])
    noise, sample = pairs.noise[:6], pairs.sample[:6]
    loss = student.loss((noise, sample))
    expected = (student.d(noise) - sample).square().mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    before = (student.d(pairs.noise) - pairs.sample).square().mean().item()
    train(student.train(), 150)
    with torch.no_grad():
        after = (student.d(pairs.noise) - pairs.sample).square().mean().item()
    assert after < 0.1 * before, "the student regresses the teacher's pairs"
    student.eval()
    with torch.no_grad():
        held_out = (student.d(student.val_pairs.noise) - student.val_pairs.sample).square().mean()
        assert student.loss(torch.zeros(3, 2, 8, 8)).item() == pytest.approx(held_out.item(), rel=1e-6), \
            "the val/test loss is on the held-out pairs, whatever the held-out batch"


def test_the_residual_term_lowers_the_students_residual_below_the_teachers_on_poisson(tmp_path):
    """Poisson's residual is linear in (f, u): λ_train trades data fit for physics monotonically.
    (Over λ where the data term still competes: beyond λ ≈ 1 the residual reaches this tiny net's
    optimisation floor, ~0.05-0.1, and the order among larger λ is noise. Here the margins are
    ~8×, steady from 120 to 300 steps and lr 1e-3 to 3e-3.)"""
    pde = Poisson(resolution=8)
    residuals = {}
    for weight in (0.0, 0.1, 1.0):
        student = train(student_for(pde, tmp_path, residual_weight=weight), 200)
        with torch.no_grad():
            pairs = student.training_data([])
            residuals[weight] = student.physics_loss(student.d(pairs.noise)).mean().item()
    teacher = student.physics_loss(pairs.sample).mean().item()
    assert residuals[1.0] < residuals[0.1] < residuals[0.0], residuals
    assert residuals[1.0] < 0.2 * teacher, (residuals, teacher)


def test_students_samples_refinement_and_teacher_reference(tmp_path):
    student = student_for(Darcy(resolution=8), tmp_path)
    generator = torch.Generator().manual_seed(0)
    one_step = student.sample(3, generator=generator)
    noise = torch.randn(3, *student.sample_shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert torch.allclose(one_step, student.normalizer.decode(student.d(noise.float()).double()))
    assert student.nfe == 1 and student.grid_teacher_nfe(Heun()) == 7
    refined = student_for(Darcy(resolution=8), tmp_path, noise_steps=10, noise_lr=0.1)
    polished = refined.sample(3, generator=torch.Generator().manual_seed(0))
    assert refined.nfe == 11
    assert residual_loss(refined.pde, polished).mean() < residual_loss(refined.pde, one_step).mean()


@pytest.mark.parametrize("hard", [True, False])
def test_student_tasks_honour_the_observations(tmp_path, hard):
    pde = Darcy(resolution=8)
    student = student_for(pde, tmp_path, task_steps=40, task_lr=0.1)
    truth = pde.generate(2, torch.Generator().manual_seed(9))
    task = ObservationTask("forward", hard=hard)
    mask = task.mask(pde, 2)
    observed = torch.where(mask, truth, torch.zeros_like(truth))
    solution = student.solve_task(observed, mask, task, torch.Generator().manual_seed(0))
    free = student.sample(2, generator=torch.Generator().manual_seed(0))
    encode = student.normalizer.encode
    if hard:
        assert torch.allclose(solution[mask], truth[mask], atol=1e-5), "the observations hold exactly"
    else:
        fitted, unfitted = (misfit(encode(x), encode(truth), mask).mean() for x in (solution, free))
        assert fitted < 0.5 * unfitted
    assert student.task_nfe(task) == 41


def test_residual_warmup_ramps_the_weight_from_plain_distillation(tmp_path):
    student = student_for(Darcy(resolution=8), tmp_path, residual_weight=4.0, residual_warmup_steps=8)
    pairs = student.training_data([])
    batch = pairs.noise[:6], pairs.sample[:6]
    plain = student_for(Darcy(resolution=8), tmp_path, residual_weight=0.0)
    first = student.train().loss(batch)
    assert first.item() == pytest.approx(plain.train().loss(batch).item())
    with pytest.raises(TypeError, match="trains on batches of its teacher's"):
        student.loss(pairs.sample[:6])
    steps = []
    for step in (2, 8, 20):
        student._trainer = SimpleNamespace(global_step=step)
        steps.append(student.ramp(student.residual_weight, 8))
    student._trainer = None
    assert steps == [1.0, 4.0, 4.0], "linear ramp to λ_train over the warm-up, then constant"
    assert student.eval().ramp(student.residual_weight, 8) == 4.0, "validation and test use the full weight"


def test_bad_student_arguments(tmp_path):
    teacher = tiny_teacher(Darcy(resolution=8))
    with pytest.raises(ValueError, match="residual_weight must be >= 0"):
        PIDDMStudent(teacher, residual_weight=-1)
    with pytest.raises(ValueError, match="num_pairs must be an integer >= 1"):
        PIDDMStudent(teacher, num_pairs=0)
    with pytest.raises(TypeError, match="teacher_sampler must be a pdegen.diffusion.Sampler"):
        PIDDMStudent(teacher, teacher_sampler="rk4")
    with pytest.raises(ValueError, match="residual_warmup_steps must be >= 0"):
        PIDDMStudent(teacher, residual_warmup_steps=-1)
    with pytest.raises(ValueError, match="differs from the teacher's"):
        PIDDMStudent(teacher).attach_pde(Darcy(resolution=8, a_high=10.0))


# --- the baselines -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["heun", "diffusionpde", "dflow"])
def test_guided_teacher_samples_and_tasks(method):
    pde = Poisson(resolution=8)
    teacher = tiny_teacher(pde)
    guided = GuidedDiffusion(teacher, method=method, num_steps=4, pde_start=0.5, dflow_steps=3, dflow_iterations=4)
    samples = guided.sample(2, generator=torch.Generator().manual_seed(0))
    plain = teacher.sample(2, generator=torch.Generator().manual_seed(0))
    assert samples.shape == plain.shape and torch.isfinite(samples).all()
    if method == "heun":
        assert torch.allclose(samples, plain), "the teacher alone"
        with pytest.raises(NotImplementedError, match="does not solve observation tasks"):
            guided.solve_task(plain, torch.ones_like(plain, dtype=torch.bool), ObservationTask())
        return
    assert residual_loss(pde, samples).mean() < residual_loss(pde, plain).mean(), "guided towards the PDE"
    truth = pde.generate(2, torch.Generator().manual_seed(4))
    task = ObservationTask("inverse", hard=True)
    mask = task.mask(pde, 2)
    solution = guided.solve_task(torch.where(mask, truth, 0 * truth), mask, task, torch.Generator().manual_seed(0))
    assert torch.allclose(solution[mask], truth[mask], atol=1e-10)
    with pytest.raises(RuntimeError, match="nothing to train"):
        guided.configure_optimizers()
    with pytest.raises(ValueError, match="unknown method"):
        GuidedDiffusion(teacher, method="dps")


def test_every_residual_objective_uses_the_teachers_fixed_data_scales(tmp_path):
    """PIDDM, DiffusionPDE and D-Flow normalise R by the same fixed scales (the teacher's training data's), so
    the objective D-Flow's L-BFGS sees has the gradient of its value (per-sample scales held constant do not)."""
    pde = Poisson(resolution=8)
    teacher = tiny_teacher(pde)
    guided, student = GuidedDiffusion(teacher, method="dflow"), PIDDMStudent(teacher, pair_dir=str(tmp_path))
    assert guided.residual_scales == student.residual_scales == teacher.residual_scales is not None
    x = teacher.normalizer.encode(pde.generate(2, torch.Generator().manual_seed(1)))
    x = (x + 0.3 * torch.randn(x.shape, generator=torch.Generator().manual_seed(2), dtype=x.dtype)).requires_grad_()
    direction = torch.randn(x.shape, generator=torch.Generator().manual_seed(3), dtype=x.dtype)
    (gradient,) = torch.autograd.grad(guided.physics_loss(x).sum(), x)
    step = 1e-6
    numeric = (guided.physics_loss(x + step * direction) - guided.physics_loss(x - step * direction)).sum() / (2 * step)
    assert float((gradient * direction).sum()) == pytest.approx(float(numeric), rel=1e-5)

    teacher.residual_scales = None
    with pytest.raises(RuntimeError, match="needs fixed residual_scales"):
        GuidedDiffusion(teacher, method="dflow").physics_loss(x)


def test_dflow_optimises_each_samples_noise_on_its_own():
    """D-Flow lowers its objective below the unoptimised Euler solve from the same noise (a no-op optimiser fails
    here), gives a sample independent of the batch it is drawn in, and reports the mean NFE over samples."""
    pde = Poisson(resolution=8)
    guided = GuidedDiffusion(tiny_teacher(pde), method="dflow", dflow_steps=3, dflow_iterations=4,
                           dflow_residual_weight=1.0)
    noise = torch.randn(3, *guided.sample_shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    together = guided.sample_with(guided.generate, 3, noise=noise, batch_size=3)
    nfe = guided.nfe
    alone = guided.sample_with(guided.generate, 3, noise=noise, batch_size=1)
    torch.testing.assert_close(alone, together, rtol=1e-9, atol=1e-9)
    assert nfe == guided.nfe and nfe == sum(guided._dflow_nfe) / 3 and nfe >= 2 * 3
    plain = guided.sample_with(lambda e: guided.teacher.solve(e, guided.teacher.schedule(3), Euler()), 3, noise=noise)
    optimised, unoptimised = (residual_loss(pde, x, guided.residual_scales) for x in (together, plain))
    assert (optimised < 0.5 * unoptimised).all(), "L-BFGS on ε lowers every sample's residual"


def test_diffusionpde_with_the_configured_weights_follows_its_observations():
    """With the exact denoiser of the normalised data N(0, I) and the teacher's 32 Heun steps, DiffusionPDE at the
    committed Darcy weights brings the observed entries of the forward task close to the observations; without
    observation guidance they stay where unconditional samples are (the old default ζ_obs = 1 barely moved them)."""
    import yaml

    from pdegen.diffusion import GaussianDenoiser

    config = yaml.safe_load(open("lightning_configs/piddm/darcy_guided.yaml"))["model"]["init_args"]
    pde = Darcy(resolution=16)
    teacher = tiny_teacher(pde)
    teacher.denoiser = GaussianDenoiser(0.0, 1.0)
    truth = pde.generate(4, torch.Generator().manual_seed(5))
    task = ObservationTask("forward")
    mask = task.mask(pde, 4)
    observed = torch.where(mask, truth, 0 * truth)

    def misfit_rms(**weights) -> float:
        guided = GuidedDiffusion(teacher, method="diffusionpde", num_steps=32, **weights)
        solution = guided.solve_task(observed, mask, task, torch.Generator().manual_seed(0))
        gap = teacher.normalizer.encode(solution) - teacher.normalizer.encode(truth)
        return float(gap[mask].square().mean().sqrt())

    tuned = misfit_rms(observation_weight=config["observation_weight"], pde_weight=config["pde_weight"])
    unguided = misfit_rms(observation_weight=0.0, pde_weight=0.0)
    assert unguided > 0.5 and tuned < 0.1 * unguided
