"""ForecastStudent: plain distillation of the exact AR(1) teacher reaches the closed form, the residual term
lowers the forecasts' residual on KS, one network evaluation a window with the given states kept, data
assimilation by ε, bad input, and fit/test/predict through the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from datamodules import TensorSamples, TrajectoryWindows
from pdegen.cli import main
from pdegen.diffusion import AR1Process, Heun, num_windows
from pdegen.modules import ConditionalDiffusion, ForecastStudent
from pdegen.nets import UNet
from tests.test_conditional import TINY_KS, ExactAmortised, R, _module, _predict_from_a_users_file


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
    pairs = student.training_data(TensorSamples(trajectories))
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


def test_the_residual_term_lowers_the_forecasts_residual_below_the_teachers_on_ks(tmp_path):
    """On a small KS run (L = 22 on 32 points, a briefly trained universal teacher): students distilled with λ = 0
    and λ > 0 from the same pairs for the same steps; with λ > 0 the forecasts' PDE residual falls below both the
    teacher's and the plain student's, and not by flattening the field."""
    from pdegen.pdes import KuramotoSivashinsky

    torch.manual_seed(0)
    pde = KuramotoSivashinsky(resolution=32, length=22.0, burn_in=20.0, ic_modes=8, num_states=16)
    data = pde.generate(40, torch.Generator().manual_seed(0)).float()
    train, test = data[:32], data[32:]
    teacher = ConditionalDiffusion(_net(5, base=16), window=5, history=1, variant="universal", num_steps=4)
    teacher.attach_pde(pde)
    teacher.normalizer.set_stats(train.double().mean().reshape(1), train.double().std().reshape(1))
    windows = TrajectoryWindows(train, 5)
    optimizer = torch.optim.Adam(teacher.parameters(), lr=2e-3)
    draw = torch.Generator().manual_seed(1)
    for _ in range(150):
        batch = torch.stack([windows[int(i)] for i in torch.randint(0, len(windows), (32,), generator=draw)])
        optimizer.zero_grad()
        teacher.loss(batch, draw).backward()
        optimizer.step()
    teacher.eval()
    forecast_pde = pde.replace(num_states=12)

    def residual(model) -> float:
        forecasts = model.forecast(test[:, :, :1].double(), 1, 12, torch.Generator().manual_seed(2))[:, 0]
        return float(forecast_pde.residual(forecasts).square().mean().sqrt()), forecasts

    students = {weight: ForecastStudent(teacher, residual_weight=weight, num_pairs=512, pair_dir=str(tmp_path))
                for weight in (0.0, 1e-2)}
    for student in students.values():
        _distil(student, train, steps=100, lr=1e-3, batch=64)
    (teacher_residual, _), (plain, _), (physical, forecasts) = (
        residual(m) for m in (teacher, *students.values()))
    assert physical < 0.5 * teacher_residual and physical < 0.5 * plain  # measured: 4.0 against 413 and 187
    # not by flattening the field (a constant has no residual): the forecasts keep the data's amplitude
    assert float(forecasts[:, :, 1:].std()) > 0.5 * float(test.std())


def test_fit_test_and_predict_through_the_cli(workdir):
    """pdegen fit of a teacher then of its student, pdegen test (forecast scores, one evaluation a window, the
    latency of a forecast against the teacher's) and pdegen predict on a user's file (forecasts and assimilation)."""
    root = Path(__file__).resolve().parents[1] / "lightning_configs"
    lengths = ["--data.init_args.pde.init_args.num_states=20", "--data.init_args.test_pde.init_args.num_states=30"]
    main(["fit", "--config", str(root / "conditional/ks_cpu.yaml"), *TINY_KS, *lengths])
    config = ["--config", str(root / "forecast_student/ks_cpu.yaml"), *lengths,
              *[arg for arg in TINY_KS if arg.startswith(("--data.", "--trainer."))],
              "--model.init_args.num_pairs=32", "--model.init_args.latency_states=20",
              "--model.init_args.ensemble_size=2", "--model.init_args.task_steps=2"]
    fit = main(["fit", *config])
    assert fit.model.window_teacher.sigmas.numel() == 4  # the teacher's own Heun-3 made the pairs
    checkpoint = f"--ckpt_path={fit.trainer.checkpoint_callback.last_model_path}"
    main(["test", *config, checkpoint])
    report = workdir / "runs/forecast_student_ks_cpu/report"
    scores = json.loads((report / "forecast_scores.json").read_text())
    assert scores["variant"] == "one-step student" and scores["members"] == 2
    assert scores["nfe_per_trajectory"] == num_windows(30, 9, 1) == 4  # 29 new states, 8 a window
    assert scores["correlation_curve"][0] == pytest.approx(1.0)
    latency = json.loads((report / "latency.json").read_text())
    assert latency["nfe"] == {"model": 3, "teacher": 3 * Heun().nfe(3)}  # 19 new states: 3 windows
    assert {row["target"] for row in latency["rows"]} == {"model", "teacher"}
    _predict_from_a_users_file(workdir, [*config, checkpoint], fit.model.pde, ForecastStudent)


@pytest.mark.parametrize("name", ["ks", "kolmogorov", "kolmogorov_cpu"])
def test_the_other_configs_parse(name, capsys):
    """The configs the CLI test does not run (they need a trained teacher of their size): every class and argument
    they name resolves (jsonargparse validates them without building the model)."""
    config = Path(__file__).resolve().parents[1] / f"lightning_configs/forecast_student/{name}.yaml"
    with pytest.raises(SystemExit) as exit_:
        main(["fit", "--config", str(config), "--print_config"])
    assert exit_.value.code in (0, None)
    assert "pdegen.modules.ForecastStudent" in capsys.readouterr().out
