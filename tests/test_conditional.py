"""ConditionalDiffusion: the module's forecasts against the AR(1) closed form (exact window denoisers plugged
in), its loss and conditioning bookkeeping, bad input, and a forecast through the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from datamodules import PDEDataModule, TrajectoryWindows, random_windows
from pdegen.cli import main
from pdegen.diffusion import AR1Process, CorrelatedGaussianDenoiser, Heun
from pdegen.modules import ConditionalDiffusion
from pdegen.nets import UNet
from pdegen.pdes import KolmogorovFlow, KuramotoSivashinsky

R = 8


def _pde(num_states: int = 12) -> KuramotoSivashinsky:
    """A KS layout (1, T, 8) to carry the AR(1) process's trajectories."""
    return KuramotoSivashinsky(resolution=R, num_states=num_states, ic_modes=2, burn_in=0.0)


def _module(variant: str = "amortised", window: int = 3, history: int = 1, **kwargs) -> ConditionalDiffusion:
    cond = 0 if variant == "joint" else 2 * window
    net = UNet(window, base_channels=8, channel_mults=[1], dims=1, padding_mode="circular", cond_channels=cond)
    module = ConditionalDiffusion(net, window=window, history=history, variant=variant, **kwargs)
    module.attach_pde(_pde())
    module.normalizer.set_stats(torch.zeros(1, dtype=torch.float64), torch.ones(1, dtype=torch.float64))
    return module


class ExactAmortised(nn.Module):
    """The exact denoiser of an AR(1) window given the states its condition marks (values, then the mask)."""

    def __init__(self, process: AR1Process, window: int) -> None:
        super().__init__()
        self.prior, self.window, self.calls = process.window_denoiser(window), window, 0
        self.sigma_data = 1.0
        self.conditionals = {}

    def conditional(self, mask: torch.Tensor) -> tuple[torch.Tensor, CorrelatedGaussianDenoiser]:
        """The gain (conditional mean = gain @ window values) and the centred conditional's denoiser given the
        entries of the bool ``mask`` (the window's shape)."""
        key = tuple(mask.flatten().tolist())
        if key not in self.conditionals:
            columns = [self.prior.condition(mask, e.reshape(self.prior.shape), 1e-6)[0].reshape(-1)
                       for e in torch.eye(math.prod(self.prior.shape), dtype=torch.float64)]
            _, cov = self.prior.condition(mask, torch.zeros(self.prior.shape), 1e-6)
            self.conditionals[key] = (torch.stack(columns, dim=1), CorrelatedGaussianDenoiser(
                cov + 1e-9 * torch.eye(len(cov), dtype=torch.float64), self.prior.shape))
        return self.conditionals[key]

    def forward(self, x: torch.Tensor, sigma, condition: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        gain, centred = self.conditional(condition[0, 1:].bool().reshape(self.prior.shape))
        means = (condition[:, :1].double().flatten(1) @ gain.T).reshape(x.shape)
        return means + centred(x.double() - means, sigma)


def test_amortised_forecast_is_the_ar1_closed_form_and_keeps_the_given_states():
    process = AR1Process(0.8, R)
    module = _module("amortised", num_steps=24)
    module.denoiser = ExactAmortised(process, 3)
    x0 = process.sample(1, 1, torch.Generator().manual_seed(0))
    members = 500
    forecasts = module.forecast(x0, members=members, generator=torch.Generator().manual_seed(1))
    assert forecasts.shape == (1, members, 1, 12, R)
    assert torch.equal(forecasts[0, :, :, :1], x0.expand(members, -1, -1, -1))
    for h in (1, 2, 6, 11):  # within the first window, and windows later
        mean, cov = process.forecast_moments(x0[0, 0, 0], h)
        states = forecasts[0, :, 0, h]
        assert float((states.mean(0) - mean).norm()) < 4 * math.sqrt(float(cov.trace()) / members), h
        assert float((torch.cov(states.T) - cov).norm() / cov.norm()) < 0.2, h
    # network evaluations: 6 windows (11 new states, 2 a window), Heun with 24 steps: 47 each
    module.denoiser.calls = 0
    module.forecast(x0, generator=torch.Generator().manual_seed(2))
    assert module.denoiser.calls == module.forecast_nfe(12, 1) == 6 * Heun().nfe(24)


def test_the_loss_counts_only_predicted_states_and_universal_draws_every_split():
    module = _module("universal", window=4)
    z = torch.randn(64, 1, 4, R)
    drawn = module._draw_history(4000, torch.Generator().manual_seed(0))
    assert set(drawn.tolist()) == {0, 1, 2, 3} and abs(float(drawn.float().mean()) - 1.5) < 0.1
    module.hparams.history_draw = "batch"
    assert len(set(module._draw_history(64, torch.Generator().manual_seed(0)).tolist())) == 1
    history = torch.tensor([0, 1, 2, 3]).repeat(16)
    mask = module.state_mask(history, z)
    with torch.no_grad():
        module.denoiser.net.net.conv_out.weight.normal_()  # a network that changes every state
        denoised = module.denoise(z + torch.randn_like(z), torch.full((64,), 1.0), z, mask)
    given = mask.expand_as(z)
    assert torch.equal(denoised[given], z[given]) and not torch.allclose(denoised[~given], z[~given])
    # the condition reaches the network: other given values change the predicted states
    other = module.denoise(z, torch.full((64,), 1.0), z + 1, mask).detach()
    assert not torch.allclose(other[~given & (history > 0).reshape(-1, 1, 1, 1)],
                              module.denoise(z, torch.full((64,), 1.0), z, mask).detach()[
                                  ~given & (history > 0).reshape(-1, 1, 1, 1)])


def test_joint_forecast_with_reconstruction_guidance_follows_the_ar1():
    """The joint variant conditions by reconstruction guidance (γ approximation, σ_y = 0.01): close to the closed
    form (the approximation's own error: 13 % in the mean, 26 % in the covariance, converged in the steps), and
    exactly the given first state. Guidance makes the PF-ODE stiff (its drift gains eigenvalues up to ~1/γ):
    Heun with 16 steps diverges here, 32 are stable."""
    process = AR1Process(0.8, R)
    module = _module("joint", num_steps=48)
    module.denoiser = process.window_denoiser(3)
    x0 = process.sample(1, 1, torch.Generator().manual_seed(3))
    members = 300
    with torch.inference_mode():  # as under `pdegen test`: guidance still gets its gradients
        forecasts = module.forecast(x0, members=members, generator=torch.Generator().manual_seed(4))
    assert torch.equal(forecasts[0, :, :, :1], x0.expand(members, -1, -1, -1))
    mean, cov = process.forecast_moments(x0[0, 0, 0], 1)
    assert float((forecasts[0, :, 0, 1].mean(0) - mean).norm() / mean.norm()) < 0.2
    assert float((torch.cov(forecasts[0, :, 0, 1].T) - cov).norm() / cov.norm()) < 0.35


def test_offline_assimilation_pulls_the_hybrid_forecast_to_the_kalman_smoother():
    """The amortised model (exact conditional windows) with reconstruction guidance on a fully observed state 6:
    the observed state and the one after it take the Kalman smoother's mean given x₀ and x₆ (the plain forecast
    does not). An autoregressive rollout cannot look ahead: states before the window holding the observation
    (state 4 here) do not see it, and state 5 sees it only beside a sampled state 4 (30 % off the smoother)."""
    process = AR1Process(0.8, R)
    module = _module("universal", num_steps=64)  # σ_y = 0.01 on a whole state: 32 Heun steps diverge
    module.denoiser = ExactAmortised(process, 3)
    truth = process.sample(1, 12, torch.Generator().manual_seed(8))
    mask = torch.zeros_like(truth, dtype=torch.bool)
    mask[:, :, 6] = True
    members = 200
    kwargs = {"members": members, "generator": torch.Generator().manual_seed(9)}
    plain = module.forecast(truth[:, :, :1], **kwargs)[0].mean(0)
    assimilated = module.forecast(truth[:, :, :1], observed=truth, mask=mask, **kwargs)[0].mean(0)
    smoother = CorrelatedGaussianDenoiser(process.window_covariance(12), (1, 12, R))
    both = torch.zeros_like(truth[0], dtype=torch.bool)
    both[:, [0, 6]] = True
    expected, _ = smoother.condition(both, truth[0], noise_std=0.01)
    for state in (6, 7):
        error = float((assimilated[:, state] - expected[:, state]).norm() / expected[:, state].norm())
        assert error < 0.1 < 0.5 < float((plain[:, state] - expected[:, state]).norm() / expected[:, state].norm())


def test_online_forecasts_continue_from_the_last_assimilated_state():
    """Online assimilation: after each window of assimilated states (stage ends 3, 5, 7, ... for P|C = 2|1), the
    h-step forecast from the last assimilated state x_e is the AR(1)'s, mean aʰ·x_e and covariance (1 − a²ʰ)·S."""
    process = AR1Process(0.8, R)
    module = _module("universal", num_steps=24, observation_training=True, assimilation="input")
    module.denoiser = ExactAmortised(process, 3)
    truth = process.sample(1, 12, torch.Generator().manual_seed(3))
    mask = torch.rand(truth.shape, generator=torch.Generator().manual_seed(4)) < 0.3
    members = 300
    analysis = module.forecast(truth[:, :, :1], members, observed=truth, mask=mask,
                               generator=torch.Generator().manual_seed(5))[0]
    forecasts, ends = module.online_forecasts(analysis, 3, torch.Generator().manual_seed(6))
    assert ends == [3, 5, 7, 9] and forecasts.shape == (members, 4, 1, 3, R)
    covariance = process.window_covariance(1)
    for stage, end in enumerate(ends):
        for h in (1, 3):
            residual = forecasts[:, stage, 0, h - 1] - 0.8 ** h * analysis[:, 0, end - 1]
            expected = (1 - 0.8 ** (2 * h)) * covariance
            assert float(residual.mean(0).norm()) < 4 * math.sqrt(float(expected.trace()) / members), (stage, h)
            assert _relative_error(torch.cov(residual.T), expected) < 0.25, (stage, h)
    with pytest.raises(ValueError, match="longer than 5 states"):
        module.online_forecasts(analysis[:, :, :4], 3)
    with pytest.raises(ValueError, match="window by window"):
        _module("joint", scheme="aao", online_lead=4)


def _relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


class Constant(nn.Module):
    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def forward(self, x: torch.Tensor, sigma, condition=None) -> torch.Tensor:
        return torch.full_like(x, self.value)


def test_observations_through_the_network_input_take_the_kalman_smoother(monkeypatch):
    """Architecture-only assimilation: a network trained with sparse observations in its input (here the exact
    conditional of the AR(1) window given any observed entries) and no guidance; the observed state and the next
    take the smoother's mean. Training draws such masks for half the windows and the loss is the mean over the
    entries left to predict."""
    process = AR1Process(0.8, R)
    module = _module("universal", num_steps=24, observation_training=True, assimilation="input")
    module.denoiser = ExactAmortised(process, 3)
    truth = process.sample(1, 12, torch.Generator().manual_seed(8))
    mask = torch.zeros_like(truth, dtype=torch.bool)
    mask[:, :, 6] = True
    assimilated = module.forecast(truth[:, :, :1], 200, observed=truth, mask=mask,
                                  generator=torch.Generator().manual_seed(9))[0].mean(0)
    both = torch.zeros_like(truth[0], dtype=torch.bool)
    both[:, [0, 6]] = True
    expected, _ = CorrelatedGaussianDenoiser(process.window_covariance(12), (1, 12, R)).condition(both, truth[0], 1e-6)
    for state in (6, 7):  # (state 5 sits beside a state 4 sampled before the observation: not the smoother's)
        assert float((assimilated[:, state] - expected[:, state]).norm() / expected[:, state].norm()) < 0.1, state
    assert max(sum(key) for key in module.denoiser.conditionals) == 2 * R  # the observed state reached the input

    trained = _module("universal", window=4, observation_training=True)
    observed = trained._training_observations(torch.zeros(4000, 1, 4, 256), torch.Generator().manual_seed(0))
    rates = observed.flatten(1).float().mean(1)
    assert 0.45 < float((rates == 0).float().mean()) < 0.6  # half the windows observe nothing (a few by chance)
    assert float(rates.max()) > 0.9 and 0 < float(rates[rates > 0].min()) < 0.003  # p from 1e-3 to 1
    # the loss is the mean over the entries left to predict: a unit error on each of them gives exactly 1
    monkeypatch.setattr("pdegen.modules.conditional.edm_loss_weight", lambda sigma, sigma_data: torch.ones_like(sigma))
    trained.denoiser = Constant(1.0)
    with torch.no_grad():
        assert float(trained.loss(torch.zeros(256, 1, 4, R), torch.Generator().manual_seed(1))) == pytest.approx(1.0)


def test_bad_input_is_refused_with_the_fix():
    module = _module("amortised", window=3, history=1)
    with pytest.raises(ValueError, match="cannot condition on 2"):
        module.sample_window(torch.zeros(1, 1, 2, R), torch.zeros(1, 1, 3, R))
    with pytest.raises(ValueError, match="conditions on history=2 states but 1 were given"):
        _module("universal", window=3, history=2).forecast(torch.zeros(1, 1, 1, R))
    with pytest.raises(ValueError, match="not finite"):
        module.forecast(torch.full((1, 1, 1, R), float("nan")))
    with pytest.raises(ValueError, match=r"initial states must be \(B, 1, C0, 8\)"):
        module.forecast(torch.zeros(1, 1, 1, 16))
    observed, observed_mask = torch.zeros(1, 1, 12, R), torch.ones(1, 1, 12, R, dtype=torch.bool)
    with pytest.raises(ValueError, match=r"must both be \(1, 1, 12, 8\)"):
        module.forecast(torch.zeros(1, 1, 1, R), observed=observed, mask=observed_mask[:, :, :5])
    with pytest.raises(ValueError, match="not finite"):
        module.forecast(torch.zeros(1, 1, 1, R), observed=observed / 0, mask=observed_mask)
    with pytest.raises(ValueError, match="cannot assimilate"):
        _module("mse").forecast(torch.zeros(1, 1, 1, R), observed=observed, mask=observed_mask)
    with pytest.raises(TypeError, match="cannot start a trajectory from nothing"):
        module.sample(1)
    net = UNet(3, base_channels=8, channel_mults=[1], dims=1, cond_channels=0)
    with pytest.raises(ValueError, match="set `cond_channels: 6` on the net"):
        ConditionalDiffusion(net, window=3, variant="universal").attach_pde(_pde())
    with pytest.raises(ValueError, match="needs cond_channels=1 .*static field"):  # Kolmogorov's forcing
        ConditionalDiffusion(UNet(3, base_channels=8, channel_mults=[1]), window=3,
                             variant="joint").attach_pde(KolmogorovFlow(resolution=16, sim_resolution=16))
    with pytest.raises(ValueError, match="variant joint and an odd window"):
        ConditionalDiffusion(net, window=3, variant="universal", scheme="aao")
    with pytest.raises(ValueError, match="was not trained on .*observation_training: true"):
        ConditionalDiffusion(net, window=3, assimilation="input")
    with pytest.raises(ValueError, match="the joint variant has no such input"):
        ConditionalDiffusion(net, window=3, variant="joint", observation_training=True)
    with pytest.raises(ValueError, match="condition on 0 to 2 states"):
        ConditionalDiffusion(net, window=3, history=3)
    with pytest.raises(ValueError, match="may differ from pde only in num_states"):
        PDEDataModule(_pde(), test_pde=KuramotoSivashinsky(resolution=16, ic_modes=2), splits=(0.9, 0.1, 0.0))
    with pytest.raises(ValueError, match=r"splits: \[0.9, 0.1, 0\]"):
        PDEDataModule(_pde(), test_pde=_pde(40), splits=(0.8, 0.1, 0.1))


def test_windows_cover_every_start():
    trajectories = torch.arange(2 * 5, dtype=torch.float64).reshape(2, 1, 5, 1)
    windows = TrajectoryWindows(trajectories, 3)
    assert len(windows) == 6 and windows[4][0, :, 0].tolist() == [6.0, 7.0, 8.0]
    drawn = random_windows(trajectories.expand(-1, -1, -1, 2), 3, torch.Generator().manual_seed(0))
    assert drawn.shape == (2, 1, 3, 2) and bool((drawn[:, 0, 1:, 0] - drawn[:, 0, :-1, 0] == 1).all())
    with pytest.raises(ValueError, match="does not fit"):
        TrajectoryWindows(trajectories, 6)


TINY_KS = ["--data.init_args.num_samples=16", "--data.init_args.batch_size=16", "--data.init_args.test_num_samples=2",
           "--trainer.max_epochs=1", "--trainer.limit_train_batches=3", "--trainer.enable_progress_bar=false",
           "--model.init_args.net.init_args.base_channels=8", "--model.init_args.net.init_args.channel_mults=[1, 2]",
           "--model.init_args.num_steps=3", "--model.init_args.ensemble_size=2"]
for _pde_key in ("pde", "test_pde"):
    TINY_KS += [f"--data.init_args.{_pde_key}.init_args.{k}"
                for k in ("resolution=32", "length=22.0", "burn_in=4.0", "ic_modes=8")]


def test_forecast_through_the_cli(workdir):
    config = str(Path(__file__).resolve().parents[1] / "lightning_configs/conditional/ks.yaml")
    fit = main(["fit", "--config", config, *TINY_KS, "--trainer.accelerator=cpu",
                "--data.init_args.pde.init_args.num_states=20", "--data.init_args.test_pde.init_args.num_states=30"])
    checkpoint = fit.trainer.checkpoint_callback.last_model_path
    tested = main(["test", "--config", config, *TINY_KS, "--trainer.accelerator=cpu", f"--ckpt_path={checkpoint}",
                   "--data.init_args.pde.init_args.num_states=20", "--data.init_args.test_pde.init_args.num_states=30"])
    scores = json.loads((workdir / "runs/conditional_ks/report/forecast_scores.json").read_text())
    assert scores["trajectories"] == 2 and scores["members"] == 2 and len(scores["correlation_curve"]) == 30
    assert scores["correlation_curve"][0] == pytest.approx(1.0)  # the given state
    assert scores["nfe_per_trajectory"] == 4 * Heun().nfe(3)  # 29 new states, 8 a window
    assert tested.trainer.callback_metrics["test/high_correlation_time"] >= 0
    assert scores["data_residual"] < scores["residual"]  # an untrained model's forecasts break the PDE
    floors = scores["floors"]
    assert floors["persistence"]["rmsd"] > 0 and floors["climatology"]["rmsd"] > 0
    assert scores["persistence_correlation_curve"][1] > 0.5  # the last given state, one Δt later
    assert all((workdir / "runs/conditional_ks/report" / f).stat().st_size > 0
               for f in ("forecast.png", "correlation.png"))
    main(["test", "--config", config, *TINY_KS, "--trainer.accelerator=cpu", f"--ckpt_path={checkpoint}",
          "--data.init_args.pde.init_args.num_states=20", "--data.init_args.test_pde.init_args.num_states=30",
          "--model.init_args.observation_probability=0.5", "--model.init_args.num_steps=32",
          "--model.init_args.online_lead=4"])
    assimilated = json.loads((workdir / "runs/conditional_ks/report/forecast_scores.json").read_text())
    # the config's evaluation settings win over the checkpoint's (Lightning would silently take the checkpoint's)
    assert assimilated["observation_probability"] == 0.5
    assert assimilated["nfe_per_trajectory"] == 4 * Heun().nfe(32) and assimilated["rmsd"] != scores["rmsd"]
    assert len(assimilated["online"]["rmsd_curve"]) == 4 and assimilated["online_rmsd"] > 0
    _predict_from_a_users_file(workdir, ["--config", config, *TINY_KS, "--trainer.accelerator=cpu",
                                         f"--ckpt_path={checkpoint}"], fit.model.pde)


def _write_trajectories(path: Path, pde, values: torch.Tensor, mask: torch.Tensor | None = None) -> Path:
    import h5py

    from pdegen.io import DatasetWriter

    with DatasetWriter(path, pde.replace(num_states=values.shape[2]), len(values)) as writer:
        writer.write(0, torch.nan_to_num(values))
    with h5py.File(path, "a") as f:
        f["u"][...] = values[:, 0].numpy()  # NaN where nothing is known
        if mask is not None:
            f["mask"] = mask.numpy()
    return path


def _predict_from_a_users_file(workdir: Path, config: list[str], pde, module_class=ConditionalDiffusion) -> None:
    """``pdegen predict`` with a ForecastRequest: forecasts from a file of initial conditions (members seeded by
    their index alone), an assimilation of a user's sparse observations, and a file of another grid refused."""
    from pdegen.io import load_samples

    truth = pde.replace(num_states=12).generate(2, torch.Generator().manual_seed(3))
    initial = torch.cat([truth[:, :, :1], torch.full_like(truth[:, :, :2], float("nan"))], dim=2)
    _write_trajectories(workdir / "initial.h5", pde, initial)  # the first state; the rest unknown
    writer = ["--trainer.callbacks+=pdegen.callbacks.SampleWriter", "--trainer.callbacks.path=forecasts.h5"]
    main(["predict", *config, "--data=datamodules.ForecastRequest", "--data.file=initial.h5", "--data.members=2",
          "--data.num_states=12", "--data.batch_size=3", *writer])
    forecasts, info = load_samples(workdir / "forecasts.h5", dtype=torch.float64)
    assert forecasts.shape == (4, 1, 12, 32) and info.pde.num_states == 12
    assert torch.equal(forecasts[:, :, :1], truth[:, :, :1].repeat_interleave(2, 0))  # the given state, kept
    assert not torch.allclose(forecasts[2], forecasts[3])  # two members of trajectory 1
    assert json.loads(info.attrs["request"]) == {"file": "initial.h5", "members": 2, "seed": 0,
                                                 "initial_states": "the model's history"}
    module = module_class.load_from_checkpoint(config[-1].split("=", 1)[1])
    alone = module.forecast(truth[1:2, :, :1], 1, 12, noise=module.indexed_noise([3], shape=(1, 12, 32)))
    torch.testing.assert_close(forecasts[3:], alone[:, 0], rtol=1e-5, atol=1e-5)  # whatever its batch

    mask = torch.rand(2, 12, 32, generator=torch.Generator().manual_seed(4)) < 0.3
    mask[:, :2] = True  # the first states observed everywhere: the initial states
    _write_trajectories(workdir / "observed.h5", pde, torch.where(mask[:, None], truth, float("nan")), mask)
    main(["predict", *config, "--data=datamodules.ForecastRequest", "--data.file=observed.h5", *writer[:1],
          "--trainer.callbacks.path=analysis.h5"])
    analysis, info = load_samples(workdir / "analysis.h5", dtype=torch.float64)
    assert analysis.shape == (2, 1, 12, 32) and json.loads(info.attrs["request"])["initial_states"] == 2
    assert torch.equal(analysis[:, :, :2], truth[:, :, :2])
    noise = module.indexed_noise([0, 1], shape=(1, 12, 32))
    direct = module.forecast(truth[:, :, :2], 1, observed=truth, mask=mask[:, None], noise=noise)[:, 0]
    torch.testing.assert_close(analysis, direct, rtol=1e-5, atol=1e-5)  # the file's observations, assimilated
    assert not torch.allclose(analysis, module.forecast(truth[:, :, :2], 1, 12, noise=noise)[:, 0])

    _write_trajectories(workdir / "longer.h5", pde.replace(length=30.0), truth[:, :, :3])  # another domain
    with pytest.raises(ValueError, match="differ in {'length': \\(22.0, 30.0\\)}"):
        main(["predict", *config, "--data=datamodules.ForecastRequest", "--data.file=longer.h5", *writer[:1],
              "--trainer.callbacks.path=longer_forecasts.h5"])
    assert not (workdir / "longer_forecasts.h5").exists()


def test_a_forecast_request_reads_a_users_file_and_refuses_one_that_contradicts_itself(tmp_path):
    from datamodules import ForecastRequest

    pde, values = _pde(6), torch.randn(3, 1, 6, R, dtype=torch.float64)
    request = ForecastRequest(str(_write_trajectories(tmp_path / "plain.h5", pde, values)), members=2, num_states=9)
    request.setup("predict")
    items = list(request.predict_dataloader())[0]
    assert items["trajectory"].shape == (6, 1, 6, R) and items["index"].tolist() == list(range(6))
    assert torch.equal(items["trajectory"][3], values[1]) and items["num_states"].tolist() == [9] * 6
    assert "initial_states" not in items  # the model's history
    mask = torch.zeros(3, 6, R, dtype=torch.bool)
    mask[:, :2], mask[:, 4, :3] = True, True
    sparse = torch.where(mask[:, None], values, float("nan"))
    request = ForecastRequest(str(_write_trajectories(tmp_path / "sparse.h5", pde, sparse, mask)))
    request.setup("predict")
    item = request.predict_dataloader().dataset[1]
    assert int(item["initial_states"]) == 2 and torch.equal(item["mask"][0], mask[1])  # leading whole states
    assert torch.equal(item["observed"], torch.where(mask[1], values[1], 0.0))
    bad = {"count": (mask[:2], "'mask' holds 2 trajectories but the values hold 3"),
           "shape": (mask[:, :5], r"'mask' has shape \(3, 5, 8\).*give it shape \(3, 6, 8\)"),
           "values": (mask.int() * 2, "bool or 0/1")}
    for name, (wrong, message) in bad.items():
        with pytest.raises(ValueError, match=message):
            ForecastRequest(str(_write_trajectories(tmp_path / f"{name}.h5", pde, sparse, wrong))).setup("predict")
    unmarked = mask.clone()
    unmarked[2, 5, 0] = True  # observed, but NaN in the file
    with pytest.raises(ValueError, match="trajectory 2 has NaN or inf values where its mask says observed"):
        ForecastRequest(str(_write_trajectories(tmp_path / "nan.h5", pde, sparse, unmarked))).setup("predict")
    with pytest.raises(ValueError, match="initial states .* of trajectory 0 are not finite"):
        ForecastRequest(str(tmp_path / "sparse.h5"), initial_states=3).setup("predict")
    with pytest.raises(ValueError, match="leave num_states out"):
        ForecastRequest(str(tmp_path / "sparse.h5"), num_states=9).setup("predict")
    with pytest.raises(ValueError, match="members must be an integer >= 1"):
        ForecastRequest(str(tmp_path / "sparse.h5"), members=0)
    with pytest.raises(ValueError, match=r"trained on the P\|C split 2\|1 .*set `history: 1`"):
        _module("amortised", window=3, history=2).on_load_checkpoint({"hyper_parameters": {"history": 1}})


def test_kolmogorov_forecast_through_the_cli_takes_the_forcing_and_draws_snapshots(workdir):
    """The 2-D path: a circular 2-D U-Net on 5-state windows of vorticity with the forcing's shape as a channel."""
    config = str(Path(__file__).resolve().parents[1] / "lightning_configs/conditional/kolmogorov_cpu.yaml")
    tiny = ["--data.init_args.num_samples=8", "--data.init_args.batch_size=8", "--data.init_args.test_num_samples=2",
            "--trainer.max_epochs=1", "--trainer.limit_train_batches=2", "--trainer.enable_progress_bar=false",
            "--model.init_args.net.init_args.base_channels=8", "--model.init_args.num_steps=2",
            *[f"--data.init_args.{pde}.init_args.{k}" for pde in ("pde", "test_pde")
              for k in ("resolution=16", "sim_resolution=64", "burn_in=0.4", "num_states=9")]]
    fit = main(["fit", "--config", config, *tiny])
    module = fit.model
    assert module.denoiser.net.static.shape == (1, 16, 16)  # -cos(4y), the forcing's shape
    main(["test", "--config", config, *tiny, f"--ckpt_path={fit.trainer.checkpoint_callback.last_model_path}"])
    report = workdir / "runs/conditional_kolmogorov_cpu/report"
    scores = json.loads((report / "forecast_scores.json").read_text())
    assert len(scores["correlation_curve"]) == 9 and scores["nfe_per_trajectory"] == 2 * Heun().nfe(2)
    assert (report / "forecast.png").stat().st_size > 0


def test_the_mse_forecaster_learns_the_conditional_mean_in_one_evaluation_a_window():
    """Trained on AR(1) windows, the MSE forecaster's next state approaches the conditional mean a·x₀ (its error
    falls well below the data's own spread, 1 − a² of the variance), deterministically, one evaluation a window."""
    torch.manual_seed(0)
    process = AR1Process(0.9, R)
    module = _module("mse", window=3, history=1)
    optimizer = torch.optim.Adam(module.parameters(), lr=3e-3)
    data = process.sample(512, 3, torch.Generator().manual_seed(5)).float()
    for _ in range(150):
        batch = data[torch.randint(0, len(data), (64,))]
        optimizer.zero_grad()
        module.loss(batch).backward()
        optimizer.step()
    x0 = process.sample(64, 1, torch.Generator().manual_seed(6))
    forecasts = module.forecast(x0, members=2, num_states=3, generator=torch.Generator().manual_seed(7))
    assert torch.equal(forecasts[:, 0], forecasts[:, 1])  # deterministic
    error = (forecasts[:, 0, 0, 1] - 0.9 * x0[:, 0, 0]).square().mean()
    assert float(error) < 0.3 * (1 - 0.9**2)  # the conditional variance of x₁ is 1 − a² per point
    assert module.forecast_nfe(12, 1) == 6


def test_forecast_figure_draws_space_time_in_1d_and_snapshots_in_2d():
    from pdegen.plotting import close_figure, forecast_figure

    one = forecast_figure(torch.randn(1, 20, 16), torch.randn(2, 1, 20, 16), 0.2, 1)
    two = forecast_figure(torch.randn(1, 20, 8, 8), torch.randn(2, 1, 20, 8, 8), 0.2, 1, num_snapshots=4)
    images = [ax for ax in one.axes if ax.images]
    assert len(images) == 4 and images[0].images[0].get_array().shape == (20, 16)  # truth, 2 members, error
    assert len([ax for ax in two.axes if ax.images]) == 4 * 4  # rows: truth, 2 members, error; 4 times
    close_figure(one)
    close_figure(two)
