"""ForecastStudent: plain distillation of the exact AR(1) teacher reaches the closed form, the residual term
lowers the forecasts' residual on KS, one network evaluation a window with the given states kept, data
assimilation by ε, bad input, and fit/test/predict through the CLI."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from pdegen.diffusion import AR1Process
from pdegen.modules import ConditionalDiffusion, ForecastStudent
from pdegen.nets import UNet
from tests.test_conditional import ExactAmortised, R, _module


def _net(window: int = 3, base: int = 16) -> UNet:
    return UNet(window, base_channels=base, channel_mults=[1], dims=1, padding_mode="circular",
                cond_channels=2 * window)


def _exact_teacher(process: AR1Process) -> ConditionalDiffusion:
    teacher = _module("amortised", window=3, history=1, num_steps=24)
    teacher.denoiser = ExactAmortised(process, 3)
    return teacher


def _distil(student: ForecastStudent, trajectories: torch.Tensor, steps: int, lr: float = 3e-3,
            batch: int = 128) -> None:
    """``steps`` Adam steps of the student's loss on its teacher's pairs (the training loop, without a trainer)."""
    pairs = student.training_data(SimpleNamespace(data=trajectories))
    optimizer = torch.optim.Adam(student.student.parameters(), lr=lr)
    draw = torch.Generator().manual_seed(3)
    student.train()
    for _ in range(steps):
        index = torch.randint(0, len(pairs), (batch,), generator=draw)
        optimizer.zero_grad()
        student.loss((pairs.noise[index], pairs.sample[index])).backward()
        optimizer.step()
    student.eval()


@pytest.fixture(scope="module")
def ar1_student(tmp_path_factory) -> tuple[AR1Process, ForecastStudent]:
    """A student distilled (λ = 0) from the exact AR(1) teacher of 3-state windows, P|C = 2|1."""
    torch.manual_seed(0)
    process = AR1Process(0.8, R)
    student = ForecastStudent(_exact_teacher(process), net=_net(), residual_weight=0.0, num_pairs=2048,
                              pair_dir=str(tmp_path_factory.mktemp("pairs")))
    _distil(student, process.sample(64, 12, torch.Generator().manual_seed(1)).float(), steps=400)
    return process, student


def test_plain_distillation_of_the_exact_teacher_forecasts_the_ar1_closed_form(ar1_student):
    """λ = 0 is conditional distillation: the student learns the teacher's (ε, h) → window map, so its ensemble
    takes the AR(1)'s forecast mean aʰ·x₀ and covariance (1 − a²ʰ)·S (an untrained one: 0.77 and 1.0)."""
    process, student = ar1_student
    x0 = process.sample(1, 1, torch.Generator().manual_seed(2))
    members = 800
    forecasts = student.forecast(x0, members=members, num_states=6, generator=torch.Generator().manual_seed(4))
    assert torch.equal(forecasts[0, :, :, :1], x0.expand(members, -1, -1, -1))  # the given state, exactly
    for h in (1, 2, 5):  # within the first window, and after rolling out on its own forecasts
        mean, cov = process.forecast_moments(x0[0, 0, 0], h)
        states = forecasts[0, :, 0, h]
        spread = math.sqrt(float(cov.trace()))
        assert float((states.mean(0) - mean).norm()) < 0.1 * spread, h
        assert float((torch.cov(states.T) - cov).norm() / cov.norm()) < 0.2, h


def test_one_evaluation_a_window_and_assimilation_by_the_noise(ar1_student):
    """A forecast costs one network evaluation a window (counted on the network); assimilating observations
    costs task_steps + 1 a window and pulls the trajectory to them (the free forecast does not)."""
    process, student = ar1_student
    calls = []
    hook = student.student.register_forward_hook(lambda *args: calls.append(1))
    truth = process.sample(4, 12, torch.Generator().manual_seed(5))
    try:
        free = student.forecast(truth[:, :, :1], 1, 12, torch.Generator().manual_seed(6))[:, 0]
        assert len(calls) == student.forecast_nfe(12, 1) == 6  # 11 new states, 2 a window
        mask = torch.rand(truth.shape, generator=torch.Generator().manual_seed(7)) < 0.5
        calls.clear()
        assimilated = student.forecast(truth[:, :, :1], 1, generator=torch.Generator().manual_seed(6),
                                       observed=truth, mask=mask)[:, 0]
        assert len(calls) == student.forecast_nfe(12, 1, assimilating=True) == 6 * (student.hparams.task_steps + 1)
    finally:
        hook.remove()
    assert torch.equal(assimilated[:, :, :1], truth[:, :, :1])

    def rmsd(x: torch.Tensor, where: torch.Tensor) -> float:
        return float((x - truth)[where].square().mean().sqrt())

    later = torch.zeros_like(mask)
    later[:, :, 1:] = True
    assert rmsd(assimilated, mask & later) < 0.5 * rmsd(free, mask & later)  # at the observed entries
    assert rmsd(assimilated, ~mask & later) < rmsd(free, ~mask & later)  # and between them (the AR(1)'s
    # spatial correlation carries the observations to their neighbours)


def test_bad_teachers_and_splits_are_refused(tmp_path, ar1_student):
    process, student = ar1_student
    with pytest.raises(FileNotFoundError, match="train a universal conditional model first"):
        ForecastStudent(str(tmp_path / "missing.ckpt"))
    for variant in ("joint", "mse"):
        with pytest.raises(ValueError, match=f"a {variant} teacher cannot be distilled"):
            ForecastStudent(_module(variant, window=3), net=_net())
    with pytest.raises(ValueError, match="serves only its trained split history=1"):
        ForecastStudent(_exact_teacher(process), net=_net(), history=2)
    with pytest.raises(ValueError, match="it cannot condition on 2 states"):
        student.sample_window(torch.zeros(1, 1, 2, R), torch.zeros(1, 1, 3, R))
    with pytest.raises(TypeError, match="cannot start a trajectory from nothing"):
        student.sample(1)
    universal = ForecastStudent(_module("universal", window=3), net=_net(), history=2)
    assert universal.history == 2 and universal.window_teacher.history == 2  # a universal teacher: any split
    with pytest.raises(ValueError, match=r"split 2\|1 \(history=1\); it cannot forecast with history=2"):
        universal.on_load_checkpoint({"pdegen": {"history": 1}, "hyper_parameters": {"history": None}})
