"""WindowForecaster: the base of the modules that forecast trajectories window by window (a conditional diffusion
model, a one-step forecasting student): autoregressive rollouts from given states, ensembles, offline and online
data assimilation, ``pdegen test``'s forecast scores and ``pdegen predict`` on a user's file.

A subclass writes how one window is made (:meth:`WindowForecaster.sample_window`) and what it costs
(:meth:`WindowForecaster.window_nfe`), and its training (:meth:`~pdegen.modules.GeneratorModule.loss`).
Trajectories are ``(B, C, T, *space)`` in physical units; windows ``(B, C, k, *space)``.
"""

from __future__ import annotations

import json
import time
from abc import abstractmethod
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor

from pdegen.diffusion import autoregressive_rollout, check_split, num_windows
from pdegen.io import write_text_atomic
from pdegen.metrics import (
    crps_ensemble,
    high_correlation_time,
    pooled_spread_skill,
    spectrum_error,
    spread_skill_terms,
    state_correlation,
    state_rmsd,
)
from pdegen.modules.generator import GeneratorModule
from pdegen.pdes import PDE
from pdegen.seeding import seeded_generator


class WindowForecaster(GeneratorModule):
    """Forecasts trajectories window by window: each window of ``window`` = k states conditioned on the last
    ``history`` = C states (P = k − C new states a window). :meth:`forecast` rolls out from given states
    (ensembles: one noise draw per member), with sparse observations for offline data assimilation and
    :meth:`online_forecasts` for online; ``pdegen test`` forecasts the test split's trajectories from their first
    ``history`` states, ``ensemble_size`` members, and scores them by per-state correlation and RMSD,
    high-correlation time (both conventions), CRPS and spread–skill (ensembles), energy-spectrum error and the
    PDE residual next to the data's, with wall time and network evaluations per trajectory
    (``report/forecast_scores.json``); ``pdegen predict`` forecasts a :class:`~datamodules.ForecastRequest`'s file.

    Args:
        num_channels: the PDE's channels.
        window, history: k and C (1 ≤ C < k).
        ensemble_size: forecasts per initial condition in ``pdegen test``.
        observation_probability: p of ``pdegen test``'s offline data assimilation: each entry of the test
            trajectories (space × time) observed with probability p (a seeded Bernoulli mask, the same for every
            method); 0: forecasting from the first ``history`` states alone.
        online_lead: online data assimilation in ``pdegen test`` (with ``observation_probability`` > 0): after each
            window of assimilated states, forecast this many states ahead with no observations
            (:meth:`online_forecasts`) and score them; 0: offline only.
    """

    evaluation_settings = ("history", "ensemble_size", "observation_probability", "online_lead", "sample_batch_size")
    """Settings ``pdegen test --ckpt_path`` takes from the config, not from the checkpoint (:mod:`pdegen.cli`)."""
    scheme = "ar"
    """How a trajectory is made from windows: autoregressively (``ar``)."""

    def __init__(self, num_channels: int, window: int, history: int, ensemble_size: int = 1,
                 observation_probability: float = 0.0, online_lead: int = 0, sample_batch_size: int = 64,
                 optimizer: OptimizerCallable | None = None, lr_scheduler: LRSchedulerCallable | None = None) -> None:
        check_split(window, history)
        if history < 1:
            raise ValueError("history must be >= 1: a forecast conditions on at least one state")
        if not 0 <= observation_probability <= 1:
            raise ValueError(f"observation_probability is a probability in [0, 1], got {observation_probability}")
        if int(online_lead) != online_lead or online_lead < 0:
            raise ValueError(f"online_lead must be an integer >= 0, got {online_lead}")
        if int(ensemble_size) != ensemble_size or ensemble_size < 1:
            raise ValueError(f"ensemble_size must be an integer >= 1, got {ensemble_size}")
        super().__init__(num_channels, sample_batch_size=sample_batch_size, optimizer=optimizer,
                         lr_scheduler=lr_scheduler)
        self.window, self.history = int(window), int(history)
        self.forecast_scores: dict[str, Any] = {}
        """The last ``pdegen test``'s scores and curves (also written to ``report/forecast_scores.json``)."""
        self._scores: list[dict[str, Tensor]] = []
        self._example: tuple[Tensor, Tensor] | None = None

    # ------------------------------------------------------------------ what a forecaster writes
    @abstractmethod
    def sample_window(self, known: Tensor, noise: Tensor, observed: Tensor | None = None,
                      mask: Tensor | None = None) -> Tensor:
        """One window ``(B, C, k, *space)`` (normalised, float64) from unit ``noise`` of that shape, its first c
        states ``known`` ``(B, C, c, *space)`` (kept as given); with sparse ``observed`` values where the bool
        ``mask`` holds (both shaped like the window), steered towards them."""

    @abstractmethod
    def window_nfe(self, assimilating: bool = False) -> int:
        """Network evaluations per window (with observations to assimilate when ``assimilating``)."""

    @property
    def fixed_split(self) -> bool:
        """True for a model trained on its one P|C split (``history``): it forecasts with no other."""
        return True

    @property
    def label(self) -> str:
        """The model's name in reports and figures."""
        return type(self).__name__

    # ------------------------------------------------------------------ the PDE
    def attach_pde(self, pde: PDE, source: str = "the data") -> None:
        if pde.grid.boundary[0] != "time":
            raise ValueError(f"{pde.name} samples are not trajectories (their first grid axis is "
                             f"{pde.grid.boundary[0]!r}, not 'time'): {type(self).__name__} models time-dependent "
                             "families (ks, kolmogorov, burgers)")
        super().attach_pde(pde, source)

    @property
    def dt(self) -> float:
        """The time between stored states (the grid's time spacing)."""
        return float(self.pde.grid.spacing[0])

    def state_mask(self, history: Tensor, like: Tensor) -> Tensor:
        """Bool ``(B, 1, k, 1, ...)``: True on each window's first ``history[b]`` states."""
        states = torch.arange(self.window, device=like.device)
        return (states[None] < history[:, None]).reshape(len(history), 1, self.window, *([1] * (like.ndim - 3)))

    # ------------------------------------------------------------------ forecasting
    def rollout(self, noise: Tensor, initial: Tensor, observed: Tensor | None = None,
                mask: Tensor | None = None) -> Tensor:
        """A normalised trajectory shaped like ``noise`` ``(B, C, T, *space)`` (unit noise, each state's used
        for its own prediction) from ``initial`` states ``(B, C, C₀, *space)`` (C₀ may be 0 for a model that is not
        trained on a :attr:`fixed_split`), window by window; with sparse ``observed`` values where the bool ``mask``
        holds (both shaped like the trajectory), each window steered by those it covers (offline data
        assimilation)."""
        if initial.shape[2] == 0 and self.fixed_split:
            raise TypeError(f"{self.label} forecasts from given states (forecast(initial)); it cannot start a "
                            "trajectory from nothing: use a universal or joint ConditionalDiffusion to sample "
                            "unconditionally")
        num_states = noise.shape[2]
        noise = torch.cat([noise] * (2 + self.window // num_states), dim=2)  # windows reaching past the end
        if mask is not None:  # ... observe nothing there
            observed = torch.cat([observed, torch.zeros_like(noise[:, :, num_states:], dtype=observed.dtype)], 2)
            mask = torch.cat([mask, torch.zeros_like(noise[:, :, num_states:], dtype=torch.bool)], 2)

        def sample_window(known: Tensor, start: int) -> Tensor:
            part = slice(start, start + self.window)
            if mask is None:
                return self.sample_window(known, noise[:, :, part])
            return self.sample_window(known, noise[:, :, part], observed[:, :, part], mask[:, :, part])

        return autoregressive_rollout(sample_window, initial.double(), num_states, self.window, self.history)

    def generate(self, noise: Tensor) -> Tensor:
        """An unconditional trajectory: the rollout from no given state."""
        return self.rollout(noise, noise[:, :, :0])

    def forecast_nfe(self, num_states: int, given: int, assimilating: bool = False) -> int:
        """Network evaluations (on windows) per trajectory of ``num_states`` states from ``given`` ones."""
        return self.window_nfe(assimilating) * num_windows(num_states, self.window, self.history, given)

    @property
    def nfe(self) -> int:
        """Window evaluations per unconditional trajectory (:meth:`generate`)."""
        return self.forecast_nfe(self.sample_shape[1], 0)

    def forecast(self, initial: Tensor, members: int = 1, num_states: int | None = None,
                 generator: torch.Generator | None = None, batch_size: int | None = None,
                 observed: Tensor | None = None, mask: Tensor | None = None, noise: Tensor | None = None) -> Tensor:
        """Forecasts ``(B, members, C, T, *space)`` in physical units from ``initial`` states ``(B, C, C₀, *space)``
        (physical units, C₀ ≥ ``history``; T = ``num_states``, default the observations' or the PDE's); the given
        states are kept exactly. ``generator`` seeds the noise, or ``noise`` ``(B·members, C, T, *space)``
        (standard normal) is used. Offline data assimilation: ``observed`` values (physical units) where the bool
        ``mask`` holds, both ``(B, C, T, *space)``, steer every window (:meth:`sample_window`)."""
        channels, states, *space = self.sample_shape
        num_states = num_states or (states if observed is None else observed.shape[2])
        if initial.ndim != 3 + len(space) or initial.shape[1] != channels or list(initial.shape[3:]) != space:
            raise ValueError(f"initial states must be (B, {channels}, C0, {', '.join(map(str, space))}), got "
                             f"{tuple(initial.shape)}")
        if initial.shape[2] < self.history:
            raise ValueError(f"the model conditions on history={self.history} states but {initial.shape[2]} were given")
        if not bool(torch.isfinite(initial).all()):
            raise ValueError("the initial states are not finite (nan or inf)")
        conditions = [self.normalizer.encode(initial.to(self.device, torch.float64))]
        if mask is not None or observed is not None:
            conditions += self._observations(observed, mask, (len(initial), channels, num_states, *space))
        conditions = tuple(c.repeat_interleave(members, dim=0) for c in conditions)
        trajectories = self.sample_with(self.rollout, len(conditions[0]), generator, batch_size,
                                        conditions=conditions, noise=noise, shape=(channels, num_states, *space))
        trajectories[:, :, :initial.shape[2]] = initial.to(trajectories).repeat_interleave(members, dim=0)
        return trajectories.reshape(len(initial), members, channels, num_states, *space)

    def online_forecasts(self, analysis: Tensor, lead: int, generator: torch.Generator | None = None,
                         batch_size: int | None = None) -> tuple[Tensor, list[int]]:
        """Online data assimilation's forecasts. ``analysis`` ``(B, C, T, *space)`` (physical units) is an
        autoregressive assimilation (:meth:`forecast` with observations, scheme ar): each window saw only the
        observations up to its end, so stage s, ending at state e_s = C + (s + 1)·P (P = window − C new states a
        window), is what an online system holds when the observations up to e_s have arrived. From each stage's
        last C assimilated states, forecast ``lead`` states with no observations; returns the forecasts
        ``(B, S, C, lead, *space)`` of states e_s .. e_s + lead − 1 (every stage with e_s + lead ≤ T) and the e_s."""
        if self.scheme != "ar":
            raise ValueError("online assimilation goes window by window (scheme ar); all at once re-solves the whole "
                             "trajectory at every stage: use offline assimilation")
        step = self.window - self.history
        ends = list(range(self.history + step, analysis.shape[2] - lead + 1, step))
        if lead < 1 or not ends:
            raise ValueError(f"online forecasts of lead={lead} states need lead >= 1 and a trajectory longer than "
                             f"{self.history + step + lead - 1} states, got {analysis.shape[2]}")
        initial = torch.stack([analysis[:, :, e - self.history:e] for e in ends], dim=1).flatten(0, 1)
        forecasts = self.forecast(initial, 1, self.history + lead, generator, batch_size)[:, 0, :, self.history:]
        return forecasts.reshape(len(analysis), len(ends), *forecasts.shape[1:]), ends

    # ------------------------------------------------------------------ pdegen predict
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["pdegen"]["history"] = self.history

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        trained = checkpoint.get("pdegen", {}).get("history") or checkpoint.get("hyper_parameters", {}).get("history")
        trained = trained or self.history
        if self.fixed_split and trained != self.history:
            raise ValueError(f"this {self.label} model was trained on the P|C split "
                             f"{self.window - trained}|{trained} (history={trained}); it cannot forecast with "
                             f"history={self.history}: set `history: {trained}`, or use a model trained for "
                             f"history={self.history} (a universal ConditionalDiffusion serves every split)")

    def on_predict_start(self) -> None:
        """A :class:`~datamodules.ForecastRequest`'s file must hold this model's family and grid (any length)."""
        request = getattr(getattr(self.trainer, "datamodule", None), "file_pde", None)
        if request is None:
            return
        if self.pde is None:
            raise ValueError("forecasting needs a trained model: pass its checkpoint (--ckpt_path)")
        differs = self.pde.physics_differences(request, ignore=("num_states",))
        if differs:
            raise ValueError(f"{self.trainer.datamodule.file} holds {request!r}, but this model was trained on "
                             f"{self.pde!r}; they differ in {differs} (the model's value first): "
                             "forecast data of the family and grid the model was trained on")

    def predict_step(self, batch: Tensor | dict[str, Tensor], batch_idx: int) -> Tensor:
        """``pdegen predict``: for a :class:`~datamodules.ForecastRequest` batch, the forecasts ``(B, C, T, *space)``
        (physical units) of its items, each from its initial states and observations, its noise seeded by the
        request's seed and the item's index; else the generator's samples (unconditional trajectories)."""
        if not isinstance(batch, dict):
            return super().predict_step(batch, batch_idx)
        trajectory, mask = batch["trajectory"], batch.get("mask")
        given = int(batch["initial_states"][0]) if "initial_states" in batch else self.history
        states = int(batch["num_states"][0]) if "num_states" in batch else trajectory.shape[2]
        seed = getattr(self.trainer.datamodule, "seed", 0)
        noise = self.indexed_noise(batch["index"].tolist(), seed, shape=(trajectory.shape[1], states,
                                                                           *trajectory.shape[3:]))
        return self.forecast(trajectory[:, :, :given], 1, states, mask=mask, noise=noise,
                             observed=None if mask is None else batch["observed"])[:, 0]

    def check_assimilation(self) -> None:
        """Refuse observations this model cannot take (the default takes them)."""

    def _observations(self, observed: Tensor | None, mask: Tensor | None, shape: tuple[int, ...]) -> list[Tensor]:
        """Checked, normalised observations and their bool mask, both ``shape``."""
        if observed is None or mask is None:
            raise ValueError("data assimilation needs both the observed values and their mask")
        if tuple(observed.shape) != shape or tuple(mask.shape) != shape:
            raise ValueError(f"observations {tuple(observed.shape)} and mask {tuple(mask.shape)} must both be {shape} "
                             "(trajectories, channels, states, *space)")
        self.check_assimilation()
        mask = mask.to(self.device, torch.bool)
        observed = observed.to(self.device, torch.float64)
        if not bool(torch.isfinite(observed[mask]).all()):
            raise ValueError("the observations are not finite (nan or inf) at observed entries")
        return [self.normalizer.encode(torch.where(mask, observed, 0.0)), mask]

    # ------------------------------------------------------------------ evaluation
    def on_test_epoch_start(self) -> None:
        self._scores = []

    def test_step(self, batch: Tensor, batch_idx: int) -> Tensor:
        """The window loss, then forecasts of the batch's trajectories from their first ``history`` states."""
        loss = super().test_step(batch, batch_idx)
        members = self.hparams.ensemble_size
        p = self.hparams.observation_probability
        observations = {}
        if p > 0:  # the same mask for every method: seeded by the batch alone
            draw = torch.rand(batch.shape, generator=seeded_generator("observations", batch_idx), dtype=torch.float64)
            observations = {"observed": batch, "mask": (draw < p).to(batch.device)}
        start = time.perf_counter()
        ensemble = self.forecast(batch[:, :, :self.history], members, batch.shape[2],
                                 seeded_generator("forecast", self.seed, batch_idx, device=self.device),
                                 **observations)
        seconds = time.perf_counter() - start
        truth = batch.double()
        flat, repeated = ensemble.flatten(0, 1), truth.repeat_interleave(members, dim=0)

        def per_member(values: Tensor) -> Tensor:
            return values.reshape(len(batch), members, -1).mean(1)

        pde = self.pde if batch.shape[2] == self.sample_shape[1] else self.pde.replace(num_states=batch.shape[2])

        def residual_rms(x: Tensor) -> Tensor:
            return pde.residual(x).flatten(1).square().mean(1, keepdim=True).sqrt()

        scores = {"correlation": per_member(state_correlation(flat, repeated)),
                  "rmsd": per_member(state_rmsd(flat, repeated)),
                  "residual": per_member(residual_rms(flat)), "data_residual": residual_rms(truth),
                  "spectrum_error": spectrum_error(ensemble, truth, truth.ndim - 3).expand(len(batch), -1),
                  "seconds": torch.full((len(batch), 1), seconds / len(batch), dtype=torch.float64)}
        persistence = torch.cat([truth[:, :, :self.history],  # the last given state, held
                                 truth[:, :, self.history - 1:self.history].expand_as(truth[:, :, self.history:])], 2)
        scores |= {"persistence_correlation": state_correlation(persistence, truth),
                   "persistence_rmsd": state_rmsd(persistence, truth),
                   "climatology_rmsd": state_rmsd(self.normalizer.decode(torch.zeros_like(truth)), truth)}
        if members > 1:
            scores["crps"] = crps_ensemble(ensemble, truth, per_state=True)
            scores["spread"], scores["error_of_mean"] = spread_skill_terms(ensemble, truth)
        lead = self.hparams.online_lead
        if lead and p > 0:
            forecasts, ends = self.online_forecasts(flat, lead, seeded_generator("online", self.seed, batch_idx,
                                                                                 device=self.device))
            target = torch.stack([truth[:, :, e:e + lead] for e in ends], 1).repeat_interleave(members, dim=0)
            scores["online_rmsd"] = state_rmsd(forecasts.flatten(0, 1), target.flatten(0, 1)).reshape(
                len(batch), -1, lead).mean(1)
        self._scores.append({k: v.detach().double().cpu() for k, v in scores.items()})
        if batch_idx == 0:  # the report's figure: the first trajectory, two members
            self._example = (truth[0].cpu(), ensemble[0, :2].cpu())
        return loss

    def on_test_epoch_end(self) -> None:
        scores = self._gather()
        if not scores:
            return
        lead = slice(self.history, None)  # the forecast states

        def curves(prefix: str) -> dict[str, float]:
            correlation = scores[f"{prefix}correlation"][:, lead]
            return {"high_correlation_time": float(high_correlation_time(
                        correlation, self.dt, convention="per_trajectory").mean()),
                    "high_correlation_time_mean_curve": float(high_correlation_time(
                        correlation, self.dt, convention="mean_curve")),
                    "rmsd": float(scores[f"{prefix}rmsd"][:, lead].mean())}

        num_states = scores["correlation"].shape[1]
        summary = curves("") | {
            "residual": float(scores["residual"].mean()),
            "data_residual": float(scores["data_residual"].mean()),
            "seconds_per_trajectory": float(scores["seconds"].mean()),
            "nfe_per_trajectory": self.forecast_nfe(num_states, self.history,
                                                    assimilating=self.hparams.observation_probability > 0),
        }
        summary["spectrum_error"] = float(scores["spectrum_error"][:, lead].mean())
        if "online_rmsd" in scores:
            summary["online_rmsd"] = float(scores["online_rmsd"].mean())
        if "crps" in scores:
            summary["crps"] = float(scores["crps"][:, lead].mean())
            summary["spread_skill"] = float(pooled_spread_skill(  # pooled over trajectories and lead states
                scores["spread"][:, lead].flatten(), scores["error_of_mean"][:, lead].flatten(),
                self.hparams.ensemble_size))
        self.log_dict({f"test/{k}": float(v) for k, v in summary.items()}, rank_zero_only=True)
        self.forecast_scores = summary | {
            "floors": {"persistence": curves("persistence_"),
                       "climatology": {"rmsd": float(scores["climatology_rmsd"][:, lead].mean())}},
            "trajectories": len(scores["correlation"]), "members": self.hparams.ensemble_size, "dt": self.dt,
            "history": self.history, "window": self.window, "variant": self.label, "scheme": self.scheme,
            "observation_probability": self.hparams.observation_probability,
            "conventions": {"high_correlation_time": "per trajectory: lead time of the last state before the first "
                            "correlation <= 0.8, averaged over trajectories (PDE-Refiner)",
                            "high_correlation_time_mean_curve": "the same on the correlation curve averaged over "
                            "trajectories (Shysheya et al.)"},
            "correlation_curve": scores["correlation"].mean(0).tolist(),
            "rmsd_curve": scores["rmsd"].mean(0).tolist(),
            "persistence_correlation_curve": scores["persistence_correlation"].mean(0).tolist()}
        if "online_rmsd" in scores:
            self.forecast_scores["online"] = {
                "lead": self.hparams.online_lead, "rmsd_curve": scores["online_rmsd"].mean(0).tolist(),
                "convention": "RMSD of the forecasts issued after each window of assimilated states, by lead "
                              "(1 = the state after the last assimilated one), averaged over stages"}
        if self.trainer is not None and self.trainer.is_global_zero:
            folder = Path(self.trainer.default_root_dir) / "report"
            folder.mkdir(parents=True, exist_ok=True)
            write_text_atomic(folder / "forecast_scores.json", json.dumps(self.forecast_scores, indent=1))
            self._figures(folder)

    def _figures(self, folder: Path) -> None:
        """``forecast.png`` (the first test trajectory against two members: space–time for one space dimension,
        snapshots for two) and ``correlation.png`` (this model's correlation curve and persistence's)."""
        from pdegen.plotting import correlation_figure, forecast_figure, save_figure

        truth, members = self._example
        save_figure(forecast_figure(truth, members, self.dt, self.history, self.pde.channels[0]),
                    folder / "forecast.png")
        scores = self.forecast_scores
        save_figure(correlation_figure({self.label: scores["correlation_curve"],
                                        "persistence": scores["persistence_correlation_curve"]}, self.dt),
                    folder / "correlation.png")

    def _gather(self) -> dict[str, Tensor]:
        """This epoch's per-trajectory scores, concatenated (over ranks under DDP)."""
        parts = self._scores
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        if distributed:
            gathered: list[Any] = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(gathered, parts)
            parts = [part for rank in gathered for part in rank]
        if not parts:
            return {}
        return {key: torch.cat([part[key] for part in parts]) for key in parts[0]}

