"""ConditionalDiffusion: a diffusion model of windows of k consecutive PDE states that forecasts trajectories
from their first states (Shysheya et al. 2024, "On conditional diffusion models for PDE simulations").

One module, the variant a YAML choice:

- ``joint``: an unconditional denoiser of k-state windows. It forecasts autoregressively (``scheme: ar``), each
  window conditioned on the last C states by reconstruction guidance, or all at once (``scheme: aao``): one
  diffusion over the whole trajectory, its denoiser composed from windows (SDA's local score), the initial
  states imposed by reconstruction guidance;
- ``amortised``: a denoiser of the window given its first C = ``history`` states, passed to the network as
  channels (the masked states and the mask); it predicts P = k − C states a window;
- ``universal``: the amortised network trained with C drawn at random in 0..k−1 (per sample, or per batch as in
  the reference code: ``history_draw``), so one model serves every P|C split (``history`` is the split used to
  forecast);
- ``mse``: the deterministic baseline: the same network and conditioning as ``amortised``, no noise input (zeros,
  c_noise = 0), trained by mean squared error to predict the P states; one evaluation a window.

Sparse observations (data assimilation) reach a diffusion variant by reconstruction guidance (``assimilation:
guidance``; for amortised variants this is the paper's *hybrid*) or, for an amortised network trained with
``observation_training``, through the network input like the history (``assimilation: input``: the paper's
architecture-only conditioning).

Trajectories are ``(B, C, T, *space)`` in physical units; windows ``(B, C, k, *space)``; the network sees a
window's states stacked on the channel axis (``net.channels`` = C·k) with the conditioning channels after them
(``net.cond_channels``: (C + 1)·k for the amortised variants, plus the PDE's static fields, e.g. Kolmogorov's
forcing). Conditioned states are given, not denoised: the denoiser returns them as they are, and the loss is
the EDM loss over the predicted states only.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn

from datamodules.windows import TrajectoryWindows, random_windows
from pdegen.diffusion import (
    EDMPreconditioner,
    Heun,
    LocalScoreDenoiser,
    ReconstructionGuidance,
    Sampler,
    as_sampler,
    autoregressive_rollout,
    check_split,
    edm_loss_weight,
    karras_sigmas,
    num_windows,
)
from pdegen.diffusion.edm import broadcast_like
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

VARIANTS = ("joint", "amortised", "universal", "mse")
SCHEMES = ("ar", "aao")
HISTORY_DRAWS = ("sample", "batch")
ASSIMILATIONS = ("guidance", "input")
OBSERVATION_RATES = (1e-3, 1.0)
"""With ``observation_training``, the rate p of each training window's sparse observation mask is log-uniform in
this range (the assimilation sweep's p from 1e-3 to 1)."""


class WindowBackbone(nn.Module):
    """A channel-stacked backbone on windows: ``forward(x (B, C, k, *space), c_noise, condition=None)`` runs
    ``net`` on [x's states, the condition's, the static fields] stacked on the channel axis and returns the
    output in the window's layout. The static fields are a plain attribute, not a buffer: set when the PDE is
    attached (after callbacks such as weight averaging copied the model), they follow the input's device."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.static: Tensor | None = None

    def forward(self, x: Tensor, c_noise: Tensor, condition: Tensor | None = None) -> Tensor:
        parts = [x.flatten(1, 2)]
        if condition is not None:
            parts.append(condition.flatten(1, 2))
        if self.static is not None:
            parts.append(self.static.to(x.device, x.dtype).expand(len(x), *self.static.shape))
        return self.net(torch.cat(parts, dim=1), c_noise).view_as(x)


class ConditionalDiffusion(GeneratorModule):
    """Conditional diffusion over windows of ``window`` states (module docstring); forecasts with
    :meth:`forecast`, samples unconditional trajectories with :meth:`sample` (joint and universal), and is
    evaluated by ``pdegen test`` on the test split's trajectories: each forecast from its first ``history``
    states, ``ensemble_size`` members, scored by per-state correlation and RMSD, high-correlation time (both
    conventions), CRPS and spread–skill (ensembles), energy-spectrum error and the PDE residual next to the
    data's, with wall time and network evaluations per trajectory (``report/forecast_scores.json``).

    Args:
        net: the backbone with ``channels`` = C·window and ``cond_channels`` as above (e.g. a 1-D
            :class:`~pdegen.nets.UNet` with ``padding_mode: circular`` for KS).
        window: k, states per window (odd for ``scheme: aao``).
        history: C, the states a forecast conditions each window on (1 ≤ C < k; the trained split of ``amortised``).
        variant, scheme, history_draw: above.
        guidance_noise_std, guidance_gamma: σ_y and γ of reconstruction guidance (the paper's 0.01 and 0.1;
            normalised units).
        ensemble_size: forecasts per initial condition in ``pdegen test``.
        observation_probability: p of ``pdegen test``'s offline data assimilation: each entry of the test
            trajectories (space × time) observed with probability p (a seeded Bernoulli mask, the same for every
            method); 0: forecasting from the first ``history`` states alone.
        online_lead: online data assimilation in ``pdegen test`` (with ``observation_probability`` > 0): after each
            window of assimilated states, forecast this many states ahead with no observations
            (:meth:`online_forecasts`) and score them; 0: offline only.
        assimilation: how observations reach the model: ``guidance`` (reconstruction guidance) or ``input``
            (amortised variants trained with ``observation_training``: the masked observations and their mask as
            network channels).
        observation_training: amortised variants: half of each training batch's windows also get a sparse
            observation mask (every entry of the unconditioned states observed with probability p, p log-uniform
            in :data:`OBSERVATION_RATES`) in the network input, so that ``assimilation: input`` is in distribution.
        sigma_data, p_mean, p_std, sampler, num_steps, sigma_min, sigma_max, rho: as the
            :class:`~pdegen.modules.DiffusionTeacher`'s (EDM preconditioning, training σ, the PF-ODE solver).
    """

    evaluation_settings = ("history", "scheme", "guidance_noise_std", "guidance_gamma", "ensemble_size",
                           "observation_probability", "online_lead", "assimilation", "sampler", "num_steps",
                           "sigma_min", "sigma_max", "rho", "sample_batch_size")
    """Settings ``pdegen test --ckpt_path`` takes from the config, not from the checkpoint (:mod:`pdegen.cli`)."""

    def __init__(self, net: nn.Module, window: int = 9, history: int = 1, variant: str = "universal",
                 scheme: str = "ar", history_draw: str = "sample", guidance_noise_std: float = 0.01,
                 guidance_gamma: float = 0.1, ensemble_size: int = 1, observation_probability: float = 0.0,
                 online_lead: int = 0, assimilation: str = "guidance", observation_training: bool = False,
                 sigma_data: float = 1.0,
                 p_mean: float = -1.2, p_std: float = 1.2, sampler: Sampler | None = None, num_steps: int = 16,
                 sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0, sample_batch_size: int = 64,
                 optimizer: OptimizerCallable = torch.optim.Adam,
                 lr_scheduler: LRSchedulerCallable | None = None) -> None:
        for name, value, choices in (("variant", variant, VARIANTS), ("scheme", scheme, SCHEMES),
                                     ("history_draw", history_draw, HISTORY_DRAWS),
                                     ("assimilation", assimilation, ASSIMILATIONS)):
            if value not in choices:
                raise ValueError(f"unknown {name} {value!r}; choose one of {choices}")
        check_split(window, history)
        if history < 1:
            raise ValueError("history must be >= 1: a forecast conditions on at least one state")
        if scheme == "aao" and (variant != "joint" or window % 2 == 0):
            raise ValueError("scheme aao composes a joint model's windows (SDA's local score): it needs "
                             f"variant joint and an odd window, got variant {variant!r}, window {window}")
        if observation_training and variant not in ("amortised", "universal"):
            raise ValueError(f"observation_training feeds observations through an amortised network's input; the "
                             f"{variant} variant has no such input: use variant universal or amortised")
        if assimilation == "input" and not observation_training:
            raise ValueError("assimilation: input passes sparse observations through the network, which this model was "
                             "not trained on (observation_training: false): use assimilation: guidance (the hybrid), "
                             "or train with observation_training: true")
        if net.channels % window:
            raise ValueError(f"the net's channels ({net.channels}) must be the PDE's channels times window={window}: "
                             f"set `channels: {window}` on the net for a one-channel PDE")
        if not 0 <= observation_probability <= 1:
            raise ValueError(f"observation_probability is a probability in [0, 1], got {observation_probability}")
        if int(online_lead) != online_lead or online_lead < 0 or (online_lead and scheme != "ar"):
            raise ValueError(f"online_lead must be an integer >= 0 (online assimilation goes window by window: scheme "
                             f"ar), got {online_lead} with scheme {scheme!r}")
        if int(ensemble_size) != ensemble_size or ensemble_size < 1:
            raise ValueError(f"ensemble_size must be an integer >= 1, got {ensemble_size}")
        super().__init__(net.channels // window, sample_batch_size=sample_batch_size, optimizer=optimizer,
                         lr_scheduler=lr_scheduler)
        self.save_init_arguments()
        self.window, self.history, self.variant, self.scheme = int(window), int(history), variant, scheme
        self.denoiser = EDMPreconditioner(WindowBackbone(net), sigma_data=sigma_data)
        self.sampler = as_sampler(sampler, Heun, "sampler")
        self.sigmas = karras_sigmas(num_steps, sigma_min=sigma_min, sigma_max=sigma_max, rho=rho)
        self.forecast_scores: dict[str, Any] = {}
        """The last ``pdegen test``'s scores and curves (also written to ``report/forecast_scores.json``)."""
        self._scores: list[dict[str, Tensor]] = []
        self._example: tuple[Tensor, Tensor] | None = None

    # ------------------------------------------------------------------ the PDE and the network
    def attach_pde(self, pde: PDE, source: str = "the data") -> None:
        super().attach_pde(pde, source)
        static = pde.static_fields()
        net = self.denoiser.net.net
        expected = (0 if self.variant == "joint" else (pde.num_channels + 1) * self.window)
        expected += 0 if static is None else len(static)
        if getattr(net, "cond_channels", 0) != expected:
            what = "" if self.variant == "joint" else f"(C + 1)·window = {(pde.num_channels + 1) * self.window}"
            if static is not None:
                what += f"{' + ' if what else ''}{len(static)} static field(s) of {pde.name}"
            raise ValueError(f"the {self.variant} model's net needs cond_channels={expected} ({what or 'none'}), "
                             f"got {getattr(net, 'cond_channels', 0)}: set `cond_channels: {expected}` on the net")
        if pde.grid.boundary[0] != "time":
            raise ValueError(f"{pde.name} samples are not trajectories (their first grid axis is "
                             f"{pde.grid.boundary[0]!r}, not 'time'): ConditionalDiffusion models time-dependent "
                             "families (ks, kolmogorov, burgers)")
        self.denoiser.net.static = None if static is None else static.float()

    @property
    def dt(self) -> float:
        """The time between stored states (the grid's time spacing)."""
        return float(self.pde.grid.spacing[0])

    # ------------------------------------------------------------------ training
    def training_data(self, samples) -> TrajectoryWindows:
        """Every window of the training trajectories (:class:`~datamodules.windows.TrajectoryWindows`)."""
        return TrajectoryWindows(samples.data, self.window)

    def _draw_history(self, size: int, generator: torch.Generator | None) -> Tensor:
        """C per sample (B,): 0 (joint), ``history`` (amortised, mse) or uniform in 0..k−1 (universal)."""
        if self.variant == "joint":
            return torch.zeros(size, dtype=torch.long, device=self.device)
        if self.variant in ("amortised", "mse"):
            return torch.full((size,), self.history, dtype=torch.long, device=self.device)
        count = size if self.hparams.history_draw == "sample" else 1
        drawn = torch.randint(0, self.window, (count,), generator=generator, device=self.device)
        return drawn.expand(size)

    def _state_mask(self, history: Tensor, like: Tensor) -> Tensor:
        """Bool ``(B, 1, k, 1, ...)``: True on each window's first ``history[b]`` states."""
        states = torch.arange(self.window, device=like.device)
        return (states[None] < history[:, None]).reshape(len(history), 1, self.window, *([1] * (like.ndim - 3)))

    def _training_observations(self, z: Tensor, generator: torch.Generator | None) -> Tensor:
        """Bool ``(B, 1, k, *space)``: a sparse observation mask for half the windows (rate p log-uniform in
        :data:`OBSERVATION_RATES`), none for the others; the same entries observed in every channel."""
        low, high = (torch.tensor(r).log() for r in OBSERVATION_RATES)
        uniform = torch.rand(2, len(z), generator=generator, device=z.device)
        rate = (low + (high - low) * uniform[0]).exp() * (uniform[1] < 0.5)
        draw = torch.rand((len(z), 1, *z.shape[2:]), generator=generator, device=z.device)
        return draw < rate.reshape(-1, *([1] * (z.ndim - 1)))

    def denoise(self, x: Tensor, sigma: Tensor | float, values: Tensor | None = None,
                mask: Tensor | None = None) -> Tensor:
        """D(x, σ) of windows ``(B, C, k, *space)`` (normalised) given ``values`` on the states where the bool
        ``mask`` ``(B, 1, k, 1, ...)`` holds (amortised variants; those states are returned as given)."""
        if self.variant == "joint":
            return self.denoiser(x, sigma)
        if mask is None:
            mask = torch.zeros(len(x), 1, self.window, *([1] * (x.ndim - 3)), dtype=torch.bool, device=x.device)
            values = torch.zeros_like(x)
        given, condition = self._condition(values, mask, x.dtype)
        return torch.where(mask, given, self.denoiser(x, sigma, condition))

    def _condition(self, values: Tensor, mask: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """The given values (zero elsewhere) and the network's conditioning channels [given values, mask]."""
        given = torch.where(mask, values.to(dtype), torch.zeros((), dtype=dtype, device=values.device))
        return given, torch.cat([given, mask.to(dtype).expand(-1, 1, -1, *values.shape[3:])], dim=1)

    def predict(self, values: Tensor, mask: Tensor) -> Tensor:
        """The ``mse`` variant's window: the network on the conditioning alone (its field input zero, c_noise 0),
        the given states returned as given."""
        dtype = next(self.denoiser.parameters()).dtype
        given, condition = self._condition(values, mask, dtype)
        output = self.denoiser.net(torch.zeros_like(given), torch.zeros(len(given), dtype=dtype,
                                                                        device=given.device), condition)
        return torch.where(mask, given, output)

    def loss(self, batch: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """EDM loss (``mse``: squared error) over the predicted states of windows ``(B, C, k, *space)`` (physical
        units); a batch of longer trajectories (the held-out splits) gives one window each, at a start drawn from
        ``generator``."""
        if batch.shape[2] != self.window:
            batch = random_windows(batch, self.window, generator)
        z = self.normalizer.encode(batch.float())
        mask = self._state_mask(self._draw_history(len(z), generator), z)
        if self.hparams.observation_training:
            mask = mask | self._training_observations(z, generator)
        free = (~mask).expand_as(z).flatten(1).float().mean(1)
        predicted = 1 / free.clamp_min(1 / z[0].numel())  # the mean over the entries the model predicts
        if self.variant == "mse":
            loss = ((self.predict(z, mask) - z).square().flatten(1).mean(1) * predicted).mean()
            self.log_loss_terms(len(z), mse_loss=loss)
            return loss
        h = self.hparams
        sigma = (h.p_mean + h.p_std * torch.randn(len(z), generator=generator, device=z.device)).exp()
        noise = torch.randn(z.shape, generator=generator, device=z.device)
        denoised = self.denoise(z + broadcast_like(sigma, z) * noise, sigma, z, mask)
        loss = (edm_loss_weight(sigma, h.sigma_data) * (denoised - z).square().flatten(1).mean(1) * predicted).mean()
        self.log_loss_terms(len(z), edm_loss=loss)
        return loss

    # ------------------------------------------------------------------ sampling
    def sample_window(self, known: Tensor, noise: Tensor, observed: Tensor | None = None,
                      mask: Tensor | None = None) -> Tensor:
        """One window ``(B, C, k, *space)`` (normalised, float64) from unit ``noise`` of that shape, its first
        c states conditioned on ``known`` ``(B, C, c, *space)``: through the network input (amortised variants)
        or reconstruction guidance (joint). Sparse ``observed`` values where the bool ``mask`` (both shaped like
        the window) steer it by reconstruction guidance (the hybrid, for the amortised variants) or, with
        ``assimilation: input``, enter the network input with the history; the ``mse`` forecaster cannot take them."""
        c = known.shape[2]
        if self.variant in ("amortised", "mse") and c != self.history:
            raise ValueError(f"this {self.variant} model was trained to predict {self.window - self.history} states "
                             f"from {self.history} (P|C = {self.window - self.history}|{self.history}); it cannot "
                             f"condition on {c}: use variant universal for other splits")
        values = torch.zeros_like(noise)
        values[:, :, :c] = known
        states = self._state_mask(torch.full((len(noise),), c, device=noise.device), noise)
        if mask is not None and self.hparams.assimilation == "input":  # observations through the network input
            sparse = mask[:, :1]
            if not torch.equal(sparse.expand_as(mask), mask):
                raise ValueError("assimilation: input needs every channel observed at the same entries; use "
                                 "assimilation: guidance for per-channel masks")
            values = torch.where(states, values, torch.where(sparse, observed, 0.0))
            states, mask = states | sparse, None
        if self.variant == "mse":
            return self.predict(values, states).double()
        guide = torch.zeros_like(noise, dtype=torch.bool) if mask is None else mask.clone()
        if self.variant == "joint":
            denoiser = self.denoiser
            guide |= states.expand_as(guide)
        else:
            def denoiser(x: Tensor, sigma: Tensor) -> Tensor:
                return self.denoise(x, sigma, values, states)
        if bool(guide.any()):
            denoiser = self.guided(denoiser, values if mask is None else torch.where(states, values, observed), guide)
        sigmas = self.sigmas.to(noise.device)
        return self.sampler(denoiser, noise.double() * sigmas[0], sigmas)

    def guided(self, denoiser, observed: Tensor, mask: Tensor) -> ReconstructionGuidance:
        """``denoiser`` steered towards ``observed`` where ``mask`` with this model's σ_y and γ."""
        return ReconstructionGuidance(denoiser, observed, mask, self.hparams.guidance_noise_std,
                                      self.hparams.guidance_gamma)

    def rollout(self, noise: Tensor, initial: Tensor, observed: Tensor | None = None,
                mask: Tensor | None = None) -> Tensor:
        """A normalised trajectory shaped like ``noise`` ``(B, C, T, *space)`` (unit noise, each state's used
        for its own prediction) from ``initial`` states ``(B, C, C₀, *space)`` (C₀ may be 0 for joint and
        universal models), by :attr:`scheme`; with sparse ``observed`` values where the bool ``mask`` holds (both
        shaped like the trajectory), assimilated by reconstruction guidance (offline data assimilation)."""
        if initial.shape[2] == 0 and self.variant in ("amortised", "mse"):
            raise TypeError(f"an {self.variant} model forecasts from given states (forecast(initial)); it cannot start "
                            "a trajectory from nothing: use variant universal or joint to sample unconditionally")
        if self.scheme == "aao":
            return self._all_at_once(noise, initial, observed, mask)
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

    def _all_at_once(self, noise: Tensor, initial: Tensor, observed: Tensor | None = None,
                     mask: Tensor | None = None) -> Tensor:
        c = initial.shape[2]
        values = torch.zeros_like(noise) if observed is None else observed.to(noise.dtype).clone()
        values[:, :, :c] = initial
        guide = torch.zeros_like(noise, dtype=torch.bool) if mask is None else mask.clone()
        guide[:, :, :c] = True
        denoiser = LocalScoreDenoiser(self.denoiser, self.window)
        if bool(guide.any()):
            denoiser = self.guided(denoiser, values, guide)
        sigmas = self.sigmas.to(noise.device)
        x = self.sampler(denoiser, noise.double() * sigmas[0], sigmas)
        return torch.cat([initial.double(), x[:, :, c:]], dim=2)

    def generate(self, noise: Tensor) -> Tensor:
        """An unconditional trajectory: the rollout from no given state."""
        return self.rollout(noise, noise[:, :, :0])

    def forecast_nfe(self, num_states: int, given: int) -> int:
        """Network evaluations (on windows) per trajectory of ``num_states`` states from ``given`` ones."""
        per_solve = 1 if self.variant == "mse" else self.sampler.nfe(len(self.sigmas) - 1)
        if self.scheme == "aao":
            return per_solve * (num_states - self.window + 1)
        return per_solve * num_windows(num_states, self.window, self.history, given)

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
        ``mask`` holds, both ``(B, C, T, *space)``, steer every window (:attr:`assimilation`)."""
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
    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        trained = checkpoint.get("hyper_parameters", {}).get("history", self.history)
        if self.variant in ("amortised", "mse") and trained != self.history:
            raise ValueError(f"this {self.variant} model was trained on the P|C split "
                             f"{self.window - trained}|{trained} (history={trained}); it cannot forecast with "
                             f"history={self.history}: set `history: {trained}`, or train a universal model "
                             "(every split)")

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

    def _observations(self, observed: Tensor | None, mask: Tensor | None, shape: tuple[int, ...]) -> list[Tensor]:
        """Checked, normalised observations and their bool mask, both ``shape``."""
        if observed is None or mask is None:
            raise ValueError("data assimilation needs both the observed values and their mask")
        if tuple(observed.shape) != shape or tuple(mask.shape) != shape:
            raise ValueError(f"observations {tuple(observed.shape)} and mask {tuple(mask.shape)} must both be {shape} "
                             "(trajectories, channels, states, *space)")
        if self.variant == "mse":
            raise ValueError("the mse forecaster cannot assimilate observations (it has no sampling to steer): use "
                             "a diffusion variant (universal: the hybrid)")
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
            "nfe_per_trajectory": self.forecast_nfe(num_states, self.history),
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
            "history": self.history, "window": self.window, "variant": self.variant, "scheme": self.scheme,
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
        save_figure(correlation_figure({self.variant: scores["correlation_curve"],
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

