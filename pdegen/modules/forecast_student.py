"""ForecastStudent: a one-step conditional forecaster d_θ(ε, history), distilled from a conditional diffusion
teacher with the PDE residual of its windows in the loss: PIDDM's physics-informed distillation (arXiv
2505.22391) made conditional. It forecasts at one network evaluation a window and assimilates observations by
optimising ε, where the teacher needs a sampler's evaluations a window (and a backward pass each when guided)."""

from __future__ import annotations

import copy
import functools
import os
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn

from datamodules.generated import TeacherPairs, teacher_fingerprint
from datamodules.windows import TrajectoryWindows, random_windows
from pdegen.diffusion import EDMPreconditioner, optimize_noise
from pdegen.metrics import reference_residual_scales, residual_loss
from pdegen.modules.checkpoints import load_module
from pdegen.modules.conditional import ConditionalDiffusion, WindowBackbone, window_condition
from pdegen.modules.forecaster import WindowForecaster
from pdegen.pdes import PDE
from pdegen.seeding import seeded_generator
from pdegen.tasks import misfit

TEACHER_VARIANTS = ("universal", "amortised")
"""The conditional teachers a student distils: those whose network takes the history as input."""


class ForecastStudent(WindowForecaster):
    """A one-step forecaster d_θ(ε, h) = D_θ(σ_max ε, σ_max | h): a denoiser of windows at the teacher's σ_max,
    the history h (the window's first C = ``history`` states) given as the teacher's network takes it, trained on
    its teacher's (ε, h) → window pairs with

        L = ‖d_θ(ε, h) − x‖² + λ · R(d_θ(ε, h)),

    x the teacher's window from noise ε given h with its own deterministic sampler and steps (normalised units,
    mean over the predicted states) and R the squared relative residual (:func:`~pdegen.metrics.residual_loss`)
    of the window from the history's last state to its end (time differences across the window; at least the
    PDE's time stencil of states), decoded to physical units, relative to the typical source size of the data's
    windows (:attr:`window_residual_scales`, saved in the checkpoint): PIDDM's normalisation.

    Pairs: ``num_pairs`` history windows drawn (seeded) from the training trajectories, one ε each, sampled by
    the teacher and cached like PIDDM's (:class:`~datamodules.generated.TeacherPairs`, keyed by the teacher's
    weights, the histories, the seed and the rank; ``refresh_every_n_epochs`` > 0 draws fresh histories and noise
    every that many epochs). The val/test loss is the same on one window of each held-out trajectory, its
    teacher window made on the spot from noise seeded by the batch.

    Forecasting: the autoregressive rollout of :class:`~pdegen.modules.WindowForecaster`, one evaluation a
    window; ensembles by drawing ε. Data assimilation, online and offline: each window's ε takes ``task_steps``
    Adam steps on the misfit to the window's observations + ``task_residual_weight``·R, projected on its
    typical shell after each (PIDDM's task machinery), then one evaluation. ``pdegen test`` with a
    :class:`~pdegen.callbacks.LatencyCallback` times a forecast of ``latency_states`` states against the
    teacher's own sampler and steps on the same initial states and batch.

    Args:
        teacher: a :class:`~pdegen.modules.ConditionalDiffusion` checkpoint path or module, variant ``universal``
            or ``amortised`` (PDE, normaliser, window and σ_max come with it).
        net: the student backbone (as the teacher's: ``channels`` = C·window, ``cond_channels``); ``None`` copies
            the teacher's backbone and weights.
        history: C, the split the student is distilled for (default: the teacher's); any split for a universal
            teacher, its own for an amortised one.
        residual_weight, residual_warmup_steps: λ and the steps of its linear ramp from 0 (as PIDDM's).
        num_pairs, refresh_every_n_epochs, pair_dir: as :class:`~pdegen.modules.PIDDMStudent`'s.
        task_steps, task_lr, task_residual_weight: the per-window ε optimisation of data assimilation.
        latency_states: the trajectory length :class:`~pdegen.callbacks.LatencyCallback` times.
        ensemble_size, observation_probability, online_lead: the forecaster's (``pdegen test``).
    """

    evaluation_settings = WindowForecaster.evaluation_settings + ("task_steps", "task_lr", "task_residual_weight",
                                                                  "latency_states")

    def __init__(self, teacher: str | ConditionalDiffusion, net: nn.Module | None = None, history: int | None = None,
                 residual_weight: float = 1.0, residual_warmup_steps: int = 0, num_pairs: int = 4096,
                 refresh_every_n_epochs: int = 0, pair_dir: str | None = None,
                 task_steps: int = 10, task_lr: float = 0.1, task_residual_weight: float = 0.0,
                 latency_states: int = 640, ensemble_size: int = 1, observation_probability: float = 0.0,
                 online_lead: int = 0, sample_batch_size: int = 64, optimizer: OptimizerCallable = torch.optim.Adam,
                 lr_scheduler: LRSchedulerCallable | None = None) -> None:
        for label, value in (("residual_weight", residual_weight), ("task_residual_weight", task_residual_weight)):
            if value < 0:
                raise ValueError(f"{label} must be >= 0, got {value}")
        for label, value in (("num_pairs", num_pairs), ("task_steps", task_steps),
                             ("latency_states", latency_states)):
            if int(value) != value or value < 1:
                raise ValueError(f"{label} must be an integer >= 1, got {value}")
        if refresh_every_n_epochs < 0 or residual_warmup_steps < 0:
            raise ValueError("refresh_every_n_epochs and residual_warmup_steps must be >= 0")
        frozen = self.load_teacher(teacher)
        history = frozen.history if history is None else int(history)
        if frozen.fixed_split and history != frozen.history:
            raise ValueError(f"the {frozen.variant} teacher serves only its trained split history={frozen.history}; "
                             f"got history={history}: distil a universal teacher for other splits")
        super().__init__(frozen.normalizer.num_channels, frozen.window, history, ensemble_size,
                         observation_probability, online_lead, sample_batch_size=sample_batch_size,
                         optimizer=optimizer, lr_scheduler=lr_scheduler)
        self.save_init_arguments()
        frozen.history = history  # the teacher forecasts (latency, comparisons) on the student's split
        self.window_teacher = frozen
        self.normalizer.load_state_dict(frozen.normalizer.state_dict())
        if net is None:
            self.student = copy.deepcopy(frozen.denoiser).requires_grad_(True)
        else:
            sigma_data = getattr(frozen.denoiser, "sigma_data", 1.0)
            self.student = EDMPreconditioner(WindowBackbone(net), sigma_data=sigma_data)
        self.residual_weight = float(residual_weight)
        self.window_residual_scales: dict[str, float] | None = None
        """||S||² of :meth:`window_residual`: the training data's windows' (from the history index on)."""
        self.attach_pde(frozen.pde, "the teacher")

    @staticmethod
    def load_teacher(teacher: str | os.PathLike | ConditionalDiffusion) -> ConditionalDiffusion:
        """The conditional teacher, frozen, from its checkpoint or as given."""
        if isinstance(teacher, (str, os.PathLike)):
            if not Path(teacher).is_file():
                raise FileNotFoundError(
                    f"teacher checkpoint {str(teacher)!r} not found: train a universal conditional model first "
                    "(pdegen fit --config lightning_configs/conditional/ks.yaml) and set `model.init_args.teacher` "
                    "to its checkpoint (e.g. runs/conditional_ks/checkpoints/last.ckpt)")
            teacher = load_module(ConditionalDiffusion, teacher)
        if not isinstance(teacher, ConditionalDiffusion):
            raise TypeError(f"teacher must be a ConditionalDiffusion checkpoint or module, got "
                            f"{type(teacher).__name__}")
        if teacher.variant not in TEACHER_VARIANTS:
            raise ValueError(f"a {teacher.variant} teacher cannot be distilled into a one-step forecaster: its network "
                             f"does not take the history as input; use a variant in {TEACHER_VARIANTS}")
        if teacher.pde is None or not bool(teacher.normalizer.fitted):
            raise ValueError("the teacher has no PDE or normaliser: pass a trained teacher (its checkpoint)")
        return teacher.requires_grad_(False).eval()

    def train(self, mode: bool = True) -> ForecastStudent:
        """The teacher stays in eval mode whatever the student's."""
        super().train(mode)
        self.window_teacher.eval()
        return self

    @property
    def label(self) -> str:
        return "one-step student"

    def attach_pde(self, pde: PDE, source: str = "the data") -> None:
        super().attach_pde(pde, source)
        static = pde.static_fields()
        if isinstance(self.student.net, WindowBackbone):
            self.student.net.static = None if static is None else static.float()

    # ------------------------------------------------------------------ the one-step map and its residual
    @property
    def sigma_max(self) -> float:
        return float(self.window_teacher.sigmas[0])

    def d(self, noise: Tensor, values: Tensor, mask: Tensor) -> Tensor:
        """d_θ(ε, h): one network evaluation from unit ``noise`` ``(B, C, k, *space)`` to a window (normalised,
        float32), its states where the bool ``mask`` ``(B, 1, k, 1, ...)`` holds given by ``values`` (kept)."""
        given, condition = window_condition(values, mask, torch.float32)
        sigma = self.sigma_max
        return torch.where(mask, given, self.student(noise.float() * sigma, sigma, condition))

    def _history_mask(self, like: Tensor) -> Tensor:
        return self.state_mask(torch.full((len(like),), self.history, device=like.device), like)

    @functools.cached_property
    def residual_start(self) -> int:
        """The window's first state in :meth:`window_residual`: the history's last, or earlier where fewer states
        remain than the PDE's time stencil needs (``time_order`` + 1, three for second order)."""
        stencil = getattr(self.pde, "time_order", 2) + 1
        return max(0, min(self.history - 1, self.window - stencil))

    @functools.cached_property
    def window_pde(self) -> PDE:
        """The PDE on the states of :meth:`window_residual`."""
        return self.pde.replace(num_states=self.window - self.residual_start)

    def window_residual(self, x: Tensor) -> Tensor:
        """Per-window squared relative residual ``(B,)`` of normalised windows, from :attr:`residual_start` on,
        in physical units (float64), relative to :attr:`window_residual_scales`; differentiable."""
        if self.window_residual_scales is None:
            raise RuntimeError("the window residual needs the data windows' scales: train the student (its "
                               "training data sets them) or load its checkpoint")
        physical = self.normalizer.decode(x[:, :, self.residual_start:].double())
        return residual_loss(self.window_pde, physical, self.window_residual_scales)

    # ------------------------------------------------------------------ teacher pairs
    def teacher_pairs(self, windows: TrajectoryWindows) -> TeacherPairs:
        """This rank's cache of ``num_pairs`` (ε, teacher window) pairs, each from a history window drawn from
        ``windows`` (seeded by the run's seed, the rank and the round)."""
        h = self.hparams
        settings = {"teacher": teacher_fingerprint(self.window_teacher), "history": self.history,
                    "rank": self.global_rank, "seed": self.seed}

        def histories(round_: int) -> Tensor:
            draw = seeded_generator("histories", "pairs", self.seed, self.global_rank, round_)
            index = torch.randint(len(windows), (h.num_pairs,), generator=draw)
            return self.normalizer.encode(windows.take(index).double()).float()

        def make(noise: Tensor, window: Tensor) -> Tensor:
            known = window[:, :, :self.history].to(self.device, torch.float64)
            return self.window_teacher.sample_window(known, noise.to(self.device))

        directory = h.pair_dir or Path(self.trainer.default_root_dir) / "pairs"
        return TeacherPairs(make, self.window_shape, h.num_pairs, settings, directory, f"pairs_rank{self.global_rank}",
                            self.sample_batch_size, h.refresh_every_n_epochs, show_progress=self.global_rank == 0,
                            conditions=histories)

    @property
    def window_shape(self) -> tuple[int, ...]:
        channels, _, *space = self.sample_shape
        return (channels, self.window, *space)

    def set_window_residual_scales(self, windows: TrajectoryWindows) -> None:
        """:attr:`window_residual_scales` from (at most 1024 of) the training trajectories' windows, unless set."""
        if self.window_residual_scales is not None:
            return
        count = min(len(windows), 1024)
        index = torch.randperm(len(windows), generator=seeded_generator("residual scales", self.seed))[:count]
        data = windows.take(index)[:, :, self.residual_start:]
        self.window_residual_scales = reference_residual_scales(self.window_pde, data.double())

    def setup(self, stage: str) -> None:
        """As the field module's, and the window residual's scales from the training split (before the sanity
        check's validation needs them)."""
        super().setup(stage)
        datasets = getattr(getattr(self.trainer, "datamodule", None), "datasets", {})
        if "train" in datasets:
            self.set_window_residual_scales(TrajectoryWindows(datasets["train"], self.window))

    def training_data(self, samples) -> TeacherPairs:
        """The teacher's ``num_pairs`` training pairs; the training trajectories' windows also set the residual's
        scales."""
        windows = TrajectoryWindows(samples, self.window)
        self.set_window_residual_scales(windows)
        pairs = self.teacher_pairs(windows)
        pairs.set_epoch(self.current_epoch)
        return pairs

    # ------------------------------------------------------------------ training
    def loss(self, batch: tuple[Tensor, Tensor] | Tensor, generator: torch.Generator | None = None) -> Tensor:
        """On a batch of (noise, teacher window) pairs in training; in val/test on one window of each held-out
        trajectory (physical units) at a start drawn from ``generator``, the teacher's window made from its noise."""
        if self.training:
            if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
                raise TypeError(f"{type(self).__name__} trains on its teacher's (noise, window) pairs, got a single "
                                "tensor: fit it with a PDEDataModule, which serves its training_data()")
            noise, target = (t.float().to(self.device) for t in batch)
        else:
            windows = self.normalizer.encode(random_windows(batch, self.window, generator).double())
            noise = torch.randn(windows.shape, generator=generator, device=windows.device, dtype=torch.float64)
            with torch.no_grad():
                target = self.window_teacher.sample_window(windows[:, :, :self.history], noise).float()
            noise = noise.float()
        mask = self._history_mask(target)
        prediction = self.d(noise, target, mask)
        predicted = 1 / (1 - self.history / self.window)  # the mean over the predicted states
        data = (prediction - target).square().flatten(1).mean(1).mean() * predicted
        physics = self.window_residual(prediction).mean()
        self.log_loss_terms(len(noise), data_loss=data, residual_loss=physics)
        return data + self.ramp(self.residual_weight, self.hparams.residual_warmup_steps) * physics.to(data.dtype)

    # ------------------------------------------------------------------ forecasting
    def sample_window(self, known: Tensor, noise: Tensor, observed: Tensor | None = None,
                      mask: Tensor | None = None) -> Tensor:
        """d_θ(ε, known), one evaluation; with observations, ε first optimised to fit them (class docstring)."""
        if known.shape[2] != self.history:
            raise ValueError(f"this student was distilled for {self.window - self.history}|{self.history} (P|C); "
                             f"it cannot condition on {known.shape[2]} states")
        values = torch.zeros_like(noise, dtype=torch.float32)
        values[:, :, :self.history] = known
        states = self._history_mask(noise)
        if mask is None:
            return self.d(noise, values, states).double()
        h = self.hparams
        target = torch.where(mask, observed, 0.0).float()

        def objective(x: Tensor) -> Tensor:
            fit = misfit(x, target, mask)
            if h.task_residual_weight:
                fit = fit + h.task_residual_weight * self.window_residual(x).to(fit.dtype)
            return fit

        eps = optimize_noise(lambda e: self.d(e, values, states), noise.float(), objective, h.task_steps,
                             lr=h.task_lr).noise
        return self.d(eps, values, states).double()

    def window_nfe(self, assimilating: bool = False) -> int:
        """One evaluation; with observations, one more per step of the ε optimisation (each with a backward pass)."""
        return 1 + (self.hparams.task_steps if assimilating else 0)

    # ------------------------------------------------------------------ checkpoint and latency
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["pdegen"]["window_residual_scales"] = self.window_residual_scales

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        self.window_residual_scales = checkpoint.get("pdegen", {}).get("window_residual_scales")

    def latency_targets(self, batch_size: int) -> dict[str, Any]:
        """A forecast of ``batch_size`` trajectories of ``latency_states`` states from the same initial states (the
        data's mean state) and noise seed, by the student and by its teacher with its own sampler and steps."""
        channels, _, *space = self.sample_shape
        initial = self.normalizer.decode(torch.zeros(batch_size, channels, self.history, *space,
                                                     dtype=torch.float64, device=self.device))
        states = self.hparams.latency_states

        def forecast(model: WindowForecaster):
            return lambda: model.forecast(initial, 1, states, self._latency_seed(), batch_size)

        return {"model": forecast(self), "teacher": forecast(self.window_teacher)}

    def latency_nfe(self) -> dict[str, int]:
        """Network evaluations per trajectory of each :meth:`latency_targets` entry."""
        states = self.hparams.latency_states
        return {"model": self.forecast_nfe(states, self.history),
                "teacher": self.window_teacher.forecast_nfe(states, self.history)}
