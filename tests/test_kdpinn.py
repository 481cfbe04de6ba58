"""PINN and KD-PINN: the distillation loss, the coordinate MLP, teacher training and distillation on tiny runs."""

from __future__ import annotations

import importlib.util
import json
import math
import pickle
from pathlib import Path

import lightning as L
import pytest
import torch
from torch.distributions import Normal, kl_divergence

import pdegen
from pdegen.callbacks import LatencyCallback
from pdegen.cli import main
from pdegen.export import onnx_runner, save_onnx, save_torchscript, to_torchscript
from pdegen.modules.kdpinn import PINNDistillation, coordinate_jacobian, distillation_loss, gaussian_kl, load_pinn
from pdegen.modules.pinn import PINN, Causal, Collocation, Stages, causal_mean, reference_errors
from pdegen.nets import CoordinateMLP
from pdegen.pdes.pointwise import AllenCahnPINN, BurgersPINN, KovasznayFlow, TaylorGreenVortex


def test_gaussian_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    mean_p, mean_q, var_p, var_q = torch.randn(4, 50, generator=g, dtype=torch.float64)
    var_p, var_q = var_p.abs() + 0.1, var_q.abs() + 0.1
    expected = kl_divergence(Normal(mean_p, var_p.sqrt()), Normal(mean_q, var_q.sqrt()))
    torch.testing.assert_close(gaussian_kl(mean_p, var_p, mean_q, var_q), expected)


@pytest.mark.parametrize("variance", [1.0, 0.25, torch.tensor([0.5, 2.0, 0.1])])
def test_distillation_loss_is_the_equal_variance_gaussian_kl(variance):
    g = torch.Generator().manual_seed(1)
    student, teacher = torch.randn(2, 40, 3, generator=g, dtype=torch.float64)
    std = torch.as_tensor(variance, dtype=torch.float64).sqrt().expand(3)
    kl = kl_divergence(Normal(teacher, std), Normal(student, std)).sum(1).mean()
    torch.testing.assert_close(distillation_loss(student, teacher, variance), kl)
    assert distillation_loss(teacher, teacher, variance) == 0


def test_coordinate_mlp_scales_its_domain_to_the_unit_box():
    net = CoordinateMLP(2, 1, width=8, depth=2)
    net.set_domain((0.0, -1.0), (4.0, 1.0))
    first = net.hidden[0]
    seen = []
    first.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0]))
    net(torch.tensor([[0.0, -1.0], [4.0, 1.0], [2.0, 0.0]]))
    torch.testing.assert_close(seen[0], torch.tensor([[-1.0, -1.0], [1.0, 1.0], [0.0, 0.0]]))
    with pytest.raises(ValueError, match="lower < upper"):
        net.set_domain((0.0, 1.0), (4.0, 1.0))
    with pytest.raises(ValueError, match=r"expected coordinates \(N, 2\)"):
        net(torch.zeros(5, 3))
    with pytest.raises(ValueError, match="unknown activation"):
        CoordinateMLP(2, 1, activation="relu6")


def test_periodic_inputs_make_the_allen_cahn_boundary_condition_hold_exactly():
    problem = AllenCahnPINN(reference_resolution=64)
    torch.manual_seed(0)
    net = CoordinateMLP(2, 1, width=16, depth=2, periodic=[0]).double()
    net.set_domain(problem.lower, problem.upper)
    points = problem.sample_points(num_interior=4, num_condition=64, seed=0)["bc"].double()
    bc = problem.condition_residual("bc", points, net)  # u and u_x at x = -1 against x = 1
    assert bc.abs().max() < 1e-12
    plain = CoordinateMLP(2, 1, width=16, depth=2).double()
    plain.set_domain(problem.lower, problem.upper)
    assert problem.condition_residual("bc", points, plain).abs().max() > 1e-3
    with pytest.raises(ValueError, match="distinct input indices"):
        CoordinateMLP(2, 1, periodic=[2])


ROOT = Path(__file__).resolve().parents[1]
KDPINN_CONFIGS = ROOT / "lightning_configs/kdpinn"
TINY_RUN = ["--trainer.max_steps=12", "--model.init_args.stages.adam_steps=8",
            "--model.init_args.stages.lbfgs_max_iter=3", "--model.init_args.stages.steps_per_epoch=5",
            "--model.init_args.collocation.num_interior=128", "--model.init_args.collocation.num_condition=32",
            "--model.init_args.num_eval_points=400", "--trainer.enable_progress_bar=false"]
FEW_DISTILLATION_POINTS = "--model.init_args.distillation.num_points=128"




TRAINER = {"accelerator": "cpu", "logger": False, "enable_progress_bar": False, "enable_model_summary": False,
           "enable_checkpointing": False, "num_sanity_val_steps": 0}


def adam(lr: float):
    return lambda params: torch.optim.Adam(params, lr=lr)


def tiny_pinn(problem=None, **kwargs) -> PINN:
    problem = problem or KovasznayFlow()
    settings = {"collocation": Collocation(num_interior=256, num_condition=64),
                "stages": Stages(adam_steps=60, lbfgs_max_iter=5, steps_per_epoch=10), "num_eval_points": 400,
                "optimizer": adam(1e-2), **kwargs}
    return PINN(CoordinateMLP(len(problem.inputs), len(problem.outputs), width=24, depth=2), problem, **settings)


def test_pinn_trains_with_adam_then_lbfgs_and_approaches_the_reference():
    torch.manual_seed(0)
    pinn = tiny_pinn()
    before = pinn.reference_errors()["rel_l2"]
    losses = []

    class Record(L.Callback):
        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            metrics = trainer.callback_metrics
            losses.append((float(metrics["train/loss"]), bool(metrics["train/lbfgs"])))

    L.Trainer(max_epochs=8, callbacks=[Record()], **TRAINER).fit(pinn)
    assert [stage for _, stage in losses] == [False] * 60 + [True] * 20, "Adam for adam_steps, then L-BFGS"
    assert losses[-1][0] < 0.25 * losses[0][0]
    assert losses[-1][0] < 0.5 * losses[59][0], "the L-BFGS stage lowers the loss further"
    after = pinn.reference_errors()
    assert after["rel_l2"] < 0.5 * before and set(after) == {"rel_l2", "rmse", "rel_l2/u", "rel_l2/v", "rel_l2/p"}


def test_pinn_rejects_bad_settings():
    with pytest.raises(ValueError, match="condition_weights names"):
        tiny_pinn(condition_weights={"ic": 1.0})
    with pytest.raises(ValueError, match="out_features is 1 but kovasznay has 3"):
        PINN(CoordinateMLP(2, 1), KovasznayFlow())
    with pytest.raises(ValueError, match="unknown sampling"):
        Collocation(sampling="halton")
    with pytest.raises(ValueError, match="steps_per_epoch >= 1"):
        Stages(steps_per_epoch=0)
    with pytest.raises(ValueError, match="needs its `problem`"):
        PINN(CoordinateMLP(2, 1))


def save_teacher(problem: str = "kovasznay") -> str:
    """A briefly trained teacher PINN from its config (run inside ``workdir``); its checkpoint."""
    cli = main(["fit", "--config", str(KDPINN_CONFIGS / f"{problem}_teacher.yaml"), *TINY_RUN])
    return cli.trainer.checkpoint_callback.last_model_path


def test_student_with_zero_physics_weight_converges_to_the_teacher(workdir):
    torch.manual_seed(0)
    path = save_teacher()
    distillation = PINNDistillation(path, physics_weights=(0.0, 0.0), distill_weights=(1.0, 1.0), num_points=512,
                                    variance="output")
    student = PINN(CoordinateMLP(2, 3, width=16, depth=2, periodic=[1], harmonics=2), distillation=distillation,
                   collocation=Collocation(num_interior=64, num_condition=16),
                   stages=Stages(adam_steps=150, lbfgs_max_iter=10, steps_per_epoch=50), num_eval_points=400,
                   optimizer=adam(1e-2))
    coords = student.evaluation_points()[0].float()
    teacher_values = student.distillation.teacher(coords)
    gap = lambda: ((student.net(coords) - teacher_values).norm() / teacher_values.norm()).item()  # noqa: E731
    start = gap()
    L.Trainer(max_epochs=4, **TRAINER).fit(student)
    assert gap() < 0.02 and gap() < 0.05 * start
    assert student.problem.params == KovasznayFlow().params


def test_student_schedule_moves_from_distillation_to_physics(workdir):
    distillation = PINNDistillation(save_teacher(), schedule_steps=100, distill_weights=(1.0, 0.1),
                                    physics_weights=(0.01, 1.0), num_points=32)
    student = PINN(CoordinateMLP(2, 3, width=8, depth=1), distillation=distillation,
                   collocation=Collocation(num_interior=32, num_condition=8))
    weights = [student.weights_at(step) for step in (0, 50, 100, 400)]
    assert weights[0]["distill"] == 1.0 and weights[0]["pde"] == pytest.approx(0.01)
    assert weights[1]["distill"] == pytest.approx(0.55) and weights[1]["bc"] == pytest.approx(0.505)
    assert weights[2] == weights[3] and weights[3]["distill"] == pytest.approx(0.1) and weights[3]["pde"] == 1.0
    with pytest.raises(FileNotFoundError, match="train the teacher first"):
        PINNDistillation(str(workdir / "missing.ckpt"))
    with pytest.raises(ValueError, match="not the teacher's"):
        PINN(CoordinateMLP(2, 3, width=8, depth=1), KovasznayFlow(reynolds=40.0), distillation=distillation)


PROBLEMS = sorted(p.stem.removesuffix("_teacher") for p in KDPINN_CONFIGS.glob("*_teacher.yaml"))


@pytest.mark.parametrize("problem", PROBLEMS)
def test_every_problem_trains_teacher_and_student_through_the_cli(problem, workdir):
    teacher = main(["fit", "--config", str(KDPINN_CONFIGS / f"{problem}_teacher.yaml"), *TINY_RUN])
    assert isinstance(teacher.model, PINN) and teacher.trainer.global_step == 12
    assert teacher.model.problem.name == problem
    last = torch.load(workdir / f"runs/kdpinn/{problem}_teacher/checkpoints/last.ckpt", weights_only=True)
    assert last["global_step"] == 12, "the checkpoint holds the end of training (12 steps end mid-epoch)"
    student_config = str(KDPINN_CONFIGS / f"{problem}_student.yaml")
    student = main(["fit", "--config", student_config, *TINY_RUN, FEW_DISTILLATION_POINTS])
    assert isinstance(student.model.distillation, PINNDistillation)
    size = lambda cli: sum(p.numel() for p in cli.model.net.parameters())  # noqa: E731
    assert size(student) < size(teacher) / 10
    tested = main(["test", "--config", student_config, "--ckpt_path", "last", FEW_DISTILLATION_POINTS,
                   "--model.init_args.num_eval_points=400", "--trainer.callbacks.init_args.repeats=3",
                   "--trainer.callbacks.init_args.warmup=1"])
    metrics, model = tested.trainer.callback_metrics, tested.model
    coords, reference = model.evaluation_points()
    ours = reference_errors(model.problem, coords, model.predict_points(coords), reference)["rel_l2"]
    with torch.no_grad():
        teacher = model.distillation.teacher
        teacher_prediction = teacher(coords.to(next(teacher.parameters()).dtype)).double()
    assert float(metrics["test/rel_l2"]) == pytest.approx(float(ours), rel=1e-5), "the student's error is logged"
    assert (model.predict_points(coords) - teacher_prediction).abs().max() > 1e-4, "a network other than its teacher"
    targets, points = model.latency_targets(7), model.latency_points(7)
    with torch.no_grad():
        torch.testing.assert_close(targets["teacher"](), model.distillation.teacher(points), rtol=0, atol=0)
        torch.testing.assert_close(targets["model"](), model.net(points), rtol=0, atol=0)
    assert {f"test/latency/speedup/b{b}_t{t}" for b in (1, 1000, 10000) for t in (1, 0)} <= set(metrics)
    rows = json.loads((workdir / f"runs/kdpinn/{problem}_student/report/latency.json").read_text())["rows"]
    assert len(rows) == 12 and all(row["p90_ms"] >= row["median_ms"] > 0 for row in rows)


def test_exported_student_returns_the_eager_values(tmp_path):
    torch.manual_seed(0)
    net = CoordinateMLP(3, 3, width=16, depth=2, periodic=[0, 1])
    net.set_domain((0.0, 0.0, 0.0), (6.28, 6.28, 1.0))
    example, queries = torch.rand(64, 3), torch.rand(1000, 3) * torch.tensor([6.28, 6.28, 1.0])
    with torch.no_grad():
        eager = net(queries)
        torch.testing.assert_close(to_torchscript(net, example)(queries), eager, atol=1e-5, rtol=1e-5)
        saved = torch.jit.load(save_torchscript(net, example, tmp_path / "student.pt"))
        torch.testing.assert_close(saved(queries), eager, atol=1e-5, rtol=1e-5)
    pytest.importorskip("onnxruntime", reason='ONNX Runtime is the optional extra pip install "pdegen[onnx]"')
    exported = tmp_path / "onnx" / "student.onnx"
    run = onnx_runner(save_onnx(net, example, exported), threads=1)
    torch.testing.assert_close(run(queries), eager, atol=1e-5, rtol=1e-5)
    assert [p.name for p in exported.parent.iterdir()] == ["student.onnx"], "one deployable file, no side files"


def test_latency_callback_rejects_bad_settings_and_modules_without_targets():
    with pytest.raises(ValueError, match="batch sizes >= 1"):
        LatencyCallback(batch_sizes=[0])
    with pytest.raises(ValueError, match="repeats >= 1"):
        LatencyCallback(repeats=0)
    with pytest.raises(TypeError, match="has no latency_targets"):
        LatencyCallback(repeats=1).measure(L.LightningModule())


def test_bench_latency_tool_times_teacher_and_student_and_reports_their_errors(workdir, load_tool):
    save_teacher("black_scholes")
    main(["fit", "--config", str(KDPINN_CONFIGS / "black_scholes_student.yaml"), *TINY_RUN,
          FEW_DISTILLATION_POINTS])
    tool = load_tool("bench_latency")
    backends = ["eager", "torchscript"] + (["onnx"] if importlib.util.find_spec("onnxruntime") else [])
    results = tool.main(["--repeats", "2", "--warmup", "0", "--batch-sizes", "1", "100", "--threads", "1",
                         "--backends", *backends, "--out", "latency"])
    (result,) = results
    assert result["problem"] == "black_scholes" and len(result["rows"]) == 2 * len(backends)
    assert all(row["speedup"] == row["teacher_median_ms"] / row["student_median_ms"] for row in result["rows"])
    assert all(diff < 1e-4 for diff in result["export_max_abs_diff"].values())
    accuracy = result["accuracy"]
    assert accuracy["student"]["parameters"] < accuracy["teacher"]["parameters"] and accuracy["teacher"]["rel_l2"] > 0
    table = (workdir / "latency/latency.md").read_text()
    assert "| black_scholes | eager | 1 | 100 |" in table
    rows = {(row["backend"], row["batch_size"]): row["student_median_ms"] for row in result["rows"]}
    best = min(backends, key=lambda b: rows[b, 100])
    assert result["summary"]["best_backend"] == best and result["summary"]["best_ms"] == rows[best, 100]
    assert result["summary"]["eager_speedup"] == next(r["speedup"] for r in result["rows"]
                                                      if r["backend"] == "eager" and r["batch_size"] == 100)
    assert f"{best} at 100 |" in table
    with pytest.raises(SystemExit):
        tool.main(["--problems", "burgers"])  # no checkpoints: a clear parser error


def test_causal_mean_weights_each_time_slice_by_the_loss_before_it():
    t = torch.tensor([0.05, 0.1, 0.4, 0.5, 0.7, 0.9])  # slices of [0, 1] in thirds: 2, 2, 2 points
    squared = torch.tensor([1.0, 3.0, 2.0, 2.0, 4.0, 0.0], requires_grad=True)
    loss, weights = causal_mean(squared, t, (0.0, 1.0), chunks=3, epsilon=0.5)
    slice_losses = torch.tensor([2.0, 2.0, 2.0])
    expected = torch.exp(-0.5 * torch.tensor([0.0, 2.0, 4.0]))
    torch.testing.assert_close(weights, expected)
    torch.testing.assert_close(loss, (expected * slice_losses).mean())
    loss.backward()  # the weights are constants: d loss / d squared_j = w_slice(j) / (3 · points in slice)
    torch.testing.assert_close(squared.grad, expected.repeat_interleave(2) / 6)
    plain, _ = causal_mean(squared.detach(), t, (0.0, 1.0), chunks=3, epsilon=0.0)
    torch.testing.assert_close(plain, squared.detach().mean())


def test_causal_training_needs_a_time_input():
    with pytest.raises(ValueError, match="has no time input"):
        tiny_pinn(causal=Causal(epsilon=1.0))
    with pytest.raises(ValueError, match="epsilon >= 0"):
        Causal(epsilon=-1.0)
    torch.manual_seed(0)
    causal = tiny_pinn(TaylorGreenVortex(), causal=Causal(epsilon=1.0, chunks=4))
    torch.manual_seed(0)
    plain = tiny_pinn(TaylorGreenVortex())
    assert causal.loss_terms()["pde"] < plain.loss_terms()["pde"], "later slices are down-weighted"


def test_checkpoints_load_weights_only_and_an_untrusted_pickle_is_refused_loudly(workdir, monkeypatch):
    path = save_teacher("burgers")
    assert torch.load(path, weights_only=True)["global_step"] == 12, "pdegen checkpoints need no pickled objects"
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["hyper_parameters"]["smuggled"] = Path("anything")  # an arbitrary pickled object
    torch.save(checkpoint, workdir / "untrusted.ckpt")
    with pytest.raises(pickle.UnpicklingError, match="so it was not loaded.*PDEGEN_TRUSTED_CHECKPOINTS="):
        load_pinn(workdir / "untrusted.ckpt")
    with pytest.raises(pickle.UnpicklingError, match="so it was not loaded"):
        pdegen.load(workdir / "untrusted.ckpt")
    assert isinstance(load_pinn(path), PINN)
    loaded = pdegen.load(path)  # the class read from the checkpoint
    assert type(loaded) is PINN and not loaded.training
    points = torch.rand(5, 2)
    torch.testing.assert_close(loaded(points), load_pinn(path)(points))
    monkeypatch.setenv("PDEGEN_TRUSTED_CHECKPOINTS", str(workdir / "untrusted.ckpt"))  # on purpose
    assert isinstance(load_pinn(workdir / "untrusted.ckpt"), PINN)


def test_kdpinn_benchmark_trains_both_stages_through_the_cli_then_reuses_them(tmp_path, load_tool):
    tool = load_tool("kdpinn_benchmark")
    out = tmp_path / "bench"
    argv = ["--problems", "black_scholes", "--out", str(out), "--repeats", "2", "--warmup", "0", "--jobs", "1",
            "--backends", "eager", "torchscript", "--", *TINY_RUN]  # compile and aoti: seconds of compiling each
    (result,) = tool.main(argv)
    assert result["problem"] == "black_scholes" and result["accuracy"]["student"]["rel_l2"] > 0
    done = out / "logs/black_scholes_student.done"
    assert "--model.init_args.distillation.schedule_steps=1500" in done.read_text(), "the cpu scale's student schedule"
    assert "--trainer.max_steps=12" in done.read_text(), "arguments after -- override the scale's"
    stamp = done.stat().st_mtime_ns
    tool.main(argv)
    assert done.stat().st_mtime_ns == stamp, "finished stages are reused"
    assert (out / "latency/latency.md").read_text().count("| black_scholes |") >= 2


def test_pinns_refuse_16_bit_precision(workdir):
    with pytest.raises(ValueError, match="second derivatives by autograd.*precision 32"):
        main(["fit", "--config", str(KDPINN_CONFIGS / "burgers_teacher.yaml"), *TINY_RUN,
              "--config", str(ROOT / "lightning_configs/trainer/bf16.yaml")])


def test_pt2_export_of_a_periodic_student_returns_the_eager_values_at_any_number_of_points(tmp_path):
    from pdegen.export import load_exported, save_exported

    torch.manual_seed(0)
    net = CoordinateMLP(3, 3, width=16, depth=2, periodic=[0, 1])
    net.set_domain((0.0, 0.0, 0.0), (6.28, 6.28, 1.0))
    program = load_exported(save_exported(net, torch.rand(64, 3), tmp_path / "student.pt2"))
    with torch.no_grad():
        for n in (1, 1000):
            queries = torch.rand(n, 3) * torch.tensor([6.28, 6.28, 1.0])
            torch.testing.assert_close(program(queries), net(queries), rtol=1e-6, atol=1e-7)
    assert [p.name for p in tmp_path.iterdir()] == ["student.pt2"], "one deployable file, no side files"


@pytest.fixture(scope="module")
def kovasznay_teacher(tmp_path_factory) -> str:
    """A Kovasznay teacher checkpoint from its config, briefly trained (its values only need to be a fixed
    smooth field)."""
    folder = tmp_path_factory.mktemp("teacher")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        return str(folder / save_teacher())


def test_coordinate_jacobian_of_a_linear_map_is_its_matrix_and_of_sine_its_cosine():
    linear = torch.nn.Linear(3, 2).double()
    coords = torch.randn(5, 3, dtype=torch.float64)
    values, slopes = coordinate_jacobian(linear, coords, create_graph=False)
    torch.testing.assert_close(values, linear(coords))
    torch.testing.assert_close(slopes, linear.weight.expand(5, 2, 3))
    values, slopes = coordinate_jacobian(lambda c: torch.sin(c[:, :1] * c[:, 1:]), coords[:, :2], True)
    x, t = coords[:, 0], coords[:, 1]
    torch.testing.assert_close(slopes[:, 0], torch.stack([t * torch.cos(x * t), x * torch.cos(x * t)], 1))
    assert slopes.requires_grad and values.shape == (5, 1)  # create_graph: differentiable


def test_derivative_matching_adds_the_gaussian_kl_of_the_slopes(kovasznay_teacher):
    """A student equal to the teacher plus a small fast ripple: the value term barely sees it, the slope term
    is (a·k)² / (2 v) per point; at derivative_weight 0 only the values count."""
    distillation = PINNDistillation(kovasznay_teacher, num_points=4096, derivative_weight=2.0)
    distillation.draw_points("sobol", seed=1)  # a student PINN does this
    teacher = distillation.teacher
    amplitude, k = 1e-3, 40.0
    student = lambda c: teacher(c) + amplitude * torch.sin(k * c[:, :1])  # noqa: E731
    coords, target, slopes = distillation.coords, distillation.target, distillation.target_slopes
    assert slopes.shape == (4096, 3, 2) and distillation.slope_variance.shape == (3, 2)
    pointwise = distillation.pointwise(student, coords, target, slopes, create_graph=False)
    x = coords[:, 0].double()
    values = 3 * (amplitude * torch.sin(k * x)) ** 2 / 2
    ripple = (amplitude * k * torch.cos(k * x)) ** 2 / 2 * 3  # ∂x of every output, variance τ² = 1
    torch.testing.assert_close(pointwise.double(), values + 2.0 * ripple, rtol=1e-3, atol=1e-9)
    distillation.derivative_weight = 0.0
    torch.testing.assert_close(distillation.pointwise(student, coords, target, slopes).double(), values,
                               rtol=1e-3, atol=1e-12)


def test_adaptive_points_gather_where_the_student_is_far_from_the_teacher(kovasznay_teacher):
    distillation = PINNDistillation(kovasznay_teacher, num_points=2000, points="adaptive", resample_every=5,
                                    pool=4)
    distillation.draw_points("sobol", seed=1)
    teacher = distillation.teacher
    far = lambda c: (c[:, :1] > 0.7).to(c.dtype)  # noqa: E731  x in (0.7, 1]: a fifth of [-0.5, 1]
    student = lambda c: teacher(c) + 0.5 * far(c)  # noqa: E731
    first = distillation.coords.clone()
    distillation.loss(student, step=3)
    assert torch.equal(distillation.coords, first), "redrawn only every resample_every steps"
    distillation.loss(student, step=5, frozen=True)
    assert torch.equal(distillation.coords, first), "frozen (L-BFGS): the points stay"
    distillation.loss(student, step=5)
    share = float(far(distillation.coords).mean())
    assert 0.45 < share < 0.75 and float(far(first).mean()) == pytest.approx(0.2, abs=0.02)
    torch.testing.assert_close(distillation.target, teacher(distillation.coords))
    distillation.points = "resampled"
    distillation.loss(student, step=10)
    assert float(far(distillation.coords).mean()) == pytest.approx(0.2, abs=0.03)
    with pytest.raises(ValueError, match="unknown distillation points"):
        PINNDistillation(kovasznay_teacher, points="rad")
    with pytest.raises(ValueError, match="derivative_weight must be >= 0"):
        PINNDistillation(kovasznay_teacher, derivative_weight=-1.0)


def test_coordinate_mlp_embeddings_and_the_modified_mlp():
    """Harmonics keep the periodic condition exact; Fourier features are seeded and periodic in their own
    projection; the modified MLP gates each layer between its two encoders."""
    problem = AllenCahnPINN(reference_resolution=64)
    torch.manual_seed(0)
    net = CoordinateMLP(2, 1, width=16, depth=2, periodic=[0], harmonics=4, fourier_features=8,
                        fourier_scale=2.0, architecture="modified").double()
    net.set_domain(problem.lower, problem.upper)
    points = problem.sample_points(num_interior=4, num_condition=64, seed=0)["bc"].double()
    assert problem.condition_residual("bc", points, net).abs().max() < 1e-12
    assert net.embed(points).shape == (64, 1 + 2 * 4 + 2 * 8)
    again = CoordinateMLP(2, 1, width=16, depth=2, periodic=[0], fourier_features=8, fourier_scale=2.0)
    assert torch.equal(again.fourier, CoordinateMLP(2, 1, periodic=[0], fourier_features=8, fourier_scale=2.0).fourier)
    coords = torch.rand(7, 2, dtype=torch.float64)
    e = net.embed(coords)
    u, v = torch.tanh(net.encoders[0](e)), torch.tanh(net.encoders[1](e))
    h = e
    for layer in net.hidden:
        gate = torch.tanh(layer(h))
        h = (1 - gate) * u + gate * v
    torch.testing.assert_close(net(coords), net.output(h))
    with pytest.raises(ValueError, match="unknown architecture"):
        CoordinateMLP(2, 1, architecture="resnet")
    fresh = CoordinateMLP(2, 1, width=16, depth=2, periodic=[0], harmonics=4, fourier_features=8,
                          fourier_scale=2.0, architecture="modified").double()
    fresh.load_state_dict(net.state_dict())  # the folded embedding follows the loaded domain
    torch.testing.assert_close(fresh(coords), net(coords))


def test_coordinate_mlp_folded_embedding_is_the_scaled_coordinates_and_their_cosines_and_sines():
    net = CoordinateMLP(3, 2, periodic=[1], harmonics=2, fourier_features=3, fourier_scale=0.5)
    net.set_domain((-1.0, 0.0, 2.0), (3.0, 2 * math.pi, 4.0))
    net.double()  # refolds in float64 (float32 maps cast up would be off by ~1e-8)
    coords = torch.rand(5, 3, dtype=torch.float64) * torch.tensor([4.0, 2 * math.pi, 2.0]) + torch.tensor([-1.0, 0, 2])
    z = (coords - net.center) / net.half_width
    angle = math.pi * z[:, 1:2] * torch.tensor([1.0, 2.0], dtype=torch.float64)
    projected = z[:, [0, 2]] @ net.fourier
    expected = torch.cat([z[:, [0, 2]], angle.cos(), angle.sin(), projected.cos(), projected.sin()], dim=1)
    torch.testing.assert_close(net.embed(coords), expected, rtol=1e-12, atol=1e-12)


def test_hard_initial_condition_holds_exactly_and_needs_a_time_input_and_a_closed_form():
    for problem in (AllenCahnPINN(reference_resolution=64), BurgersPINN()):
        torch.manual_seed(0)
        pinn = PINN(CoordinateMLP(2, 1, width=8, depth=2), problem, hard_initial_condition=True,
                    collocation=Collocation(num_interior=64, num_condition=256))
        ic = problem.condition_residual("ic", pinn.points["ic"], pinn.net)
        assert ic.abs().max() < 1e-6 and pinn.physics_terms()["pde"] > 0, problem.name
        late = pinn.points["pde"]
        assert (pinn.net(late) - problem.initial_state(late)).abs().max() > 1e-3, "the network acts for t > 0"
    with pytest.raises(ValueError, match="needs a time input"):
        PINN(CoordinateMLP(2, 3), KovasznayFlow(), hard_initial_condition=True)
    with pytest.raises(NotImplementedError, match="hard_initial_condition: false"):
        PINN(CoordinateMLP(3, 3), TaylorGreenVortex(), hard_initial_condition=True)


@pytest.mark.slow
def test_aoti_package_returns_the_eager_values(tmp_path):
    """The AOTInductor-compiled .pt2 (bench_latency's ``aoti`` backend) at point counts other than the traced."""
    from pdegen.export import load_compiled, save_compiled

    torch.manual_seed(0)
    net = CoordinateMLP(2, 1, width=8, depth=2, periodic=[0]).eval()
    run = load_compiled(save_compiled(net, torch.rand(16, 2), tmp_path / "net.pt2"))
    for n in (1, 300):
        coords = torch.rand(n, 2)
        torch.testing.assert_close(run(coords), net(coords), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"named \*.pt2"):
        save_compiled(net, torch.rand(4, 2), tmp_path / "net.so")


def test_pareto_front_keeps_the_rows_no_other_beats_in_both(load_tool):
    pareto_front = load_tool("kdpinn_sweep").pareto_front
    rows = [{"n": "a", "rel_l2": 1e-2, "best_ms": 0.2}, {"n": "b", "rel_l2": 5e-3, "best_ms": 0.5},
            {"n": "c", "rel_l2": 6e-3, "best_ms": 0.6}, {"n": "d", "rel_l2": 1e-2, "best_ms": 0.3},
            {"n": "e", "rel_l2": 2e-3, "best_ms": 2.0}]
    assert [r["n"] for r in pareto_front(rows)] == ["a", "b", "e"]  # c: b beats it; d: a is as good and faster


def test_kdpinn_sweep_trains_each_size_scores_it_and_draws_the_front(workdir, load_tool, capsys):
    teacher = workdir / save_teacher("black_scholes")
    tool = load_tool("kdpinn_sweep")
    arguments = ["--problem", "black_scholes", "--teacher", str(teacher), "--depths", "1", "--widths", "4", "8",
                 "--activations", "tanh", "--backends", "eager", "--repeats", "2", "--warmup", "0", "--points", "100",
                 "--jobs", "1", "--out", "sweep", "--", *TINY_RUN, FEW_DISTILLATION_POINTS]
    result = tool.main(arguments)
    rows = {(r["depth"], r["width"]): r for r in result["rows"]}
    assert set(rows) == {(1, 4), (1, 8)} and rows[1, 4]["parameters"] < rows[1, 8]["parameters"]
    student = load_pinn(workdir / "sweep/d1_w8_tanh/checkpoints/last.ckpt", teacher=teacher)
    assert student.net.hidden[0].out_features == 8 and rows[1, 8]["rel_l2"] == float(
        student.reference_errors()["rel_l2"])
    assert result["front"] == [tool.name(r["depth"], r["width"], "tanh") for r in tool.pareto_front(result["rows"])]
    assert (workdir / "sweep/sweep.png").stat().st_size > 0
    assert "| d1_w8_tanh |" in (workdir / "sweep/sweep.md").read_text()
    capsys.readouterr()
    tool.main(arguments)
    assert "d1_w4_tanh: reused\nd1_w8_tanh: reused" in capsys.readouterr().out


def test_oscillation_counts_zigzags_and_not_a_smooth_decrease(load_tool):
    tool = load_tool("kdpinn_experiments")
    oscillation, physics_loss = tool.oscillation, tool.physics_loss
    smooth = [(s, 10 ** (-s / 1000)) for s in range(3000)]
    zigzag = [(s, 10 ** (-s / 1000) * (2.0 if s % 2 else 1.0)) for s in range(3000)]
    assert oscillation(smooth)["mean_abs_dlog10"] == pytest.approx(1e-3) and oscillation(smooth)["rises"] == 0
    assert oscillation(zigzag)["mean_abs_dlog10"] > 0.25 and oscillation(zigzag)["rises"] == pytest.approx(0.5, 0.01)
    series = {"train/pde": [(0, 1.0), (1, 0.5)], "train/ic": [(0, 2.0), (1, 1.0), (2, 0.1)]}
    assert physics_loss(series, ["pde", "ic"], {"ic": 10.0}) == [(0, 21.0), (1, 10.5)]


def test_kdpinn_experiments_ablation_and_extrapolation(workdir, load_tool):
    teacher = workdir / save_teacher("burgers")
    tool = load_tool("kdpinn_experiments")
    result = tool.main(["ablation", "--problem", "burgers", "--teacher", str(teacher), "--out", "experiments", "--",
                        *TINY_RUN, FEW_DISTILLATION_POINTS])
    plain, distilled = result["variants"]["w_kd_0"], result["variants"]["w_kd_schedule"]
    assert len(plain["physics_loss"]) == len(distilled["physics_loss"]) == 12, "every step's physics loss"
    hparams = (workdir / "experiments/ablation/burgers/w_kd_0/logs/version_0/hparams.yaml").read_text()
    assert "distill_weights:\n    - 0.0\n    - 0.0" in hparams
    assert (workdir / "experiments/ablation/burgers/ablation.png").stat().st_size > 0
    main(["fit", "--config", str(KDPINN_CONFIGS / "burgers_student.yaml"), *TINY_RUN, FEW_DISTILLATION_POINTS])
    (row,) = tool.main(["ood", "--runs", "runs/kdpinn", "--problems", "burgers", "--out", "experiments"])
    problem = BurgersPINN()
    coords = tool.slab(problem, 0.5, points_per_axis=10)
    assert coords[:, 1].min() == 1.0 and coords[:, 1].max() == 1.5 and coords[:, 0].min() == -1.0
    assert row["extended"] == "t" and 0 < row["mild"]["student"] and 0 < row["hard"]["teacher"]
    assert "| burgers | t |" in (workdir / "experiments/ood/ood.md").read_text()
    coords = tool.slab(AllenCahnPINN(), 0.1, points_per_axis=4)
    with pytest.raises(ValueError, match="t in"):
        AllenCahnPINN(reference_resolution=64).reference(coords)
    covering = AllenCahnPINN(reference_resolution=64).covering(tuple(coords.max(0).values.tolist()))
    assert covering.final_time == 1.1 and torch.isfinite(covering.reference(coords)).all()
    assert covering.covering((1.0, 0.5)) is covering and KovasznayFlow().covering((9.0, 9.0)).upper == (1.0, 1.5)
    assert tool.slab(KovasznayFlow(), 0.5, points_per_axis=3)[:, 0].min() == 1.0  # steady: x, streamwise
