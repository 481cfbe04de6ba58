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
    edm_loss_weight,
    karras_sigmas,
)
from pdegen.diffusion.edm import broadcast_like
from pdegen.modules.forecaster import WindowForecaster
from pdegen.pdes import PDE

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


def window_condition(values: Tensor, mask: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """The given values of a window (zero where the bool ``mask`` ``(B, 1, k, 1, ...)`` is False) and the
    network's conditioning channels [given values, mask]."""
    given = torch.where(mask, values.to(dtype), torch.zeros((), dtype=dtype, device=values.device))
    return given, torch.cat([given, mask.to(dtype).expand(-1, 1, -1, *values.shape[3:])], dim=1)


class ConditionalDiffusion(WindowForecaster):
    """Conditional diffusion over windows of ``window`` states (module docstring); forecasts, assimilates and is
    evaluated as a :class:`~pdegen.modules.WindowForecaster`, and samples unconditional trajectories with
    :meth:`sample` (joint and universal).

    Args:
        net: the backbone with ``channels`` = C·window and ``cond_channels`` as above (e.g. a 1-D
            :class:`~pdegen.nets.UNet` with ``padding_mode: circular`` for KS).
        window: k, states per window (odd for ``scheme: aao``).
        history: C, the states a forecast conditions each window on (1 ≤ C < k; the trained split of ``amortised``).
        variant, scheme, history_draw: above.
        guidance_noise_std, guidance_gamma: σ_y and γ of reconstruction guidance (the paper's 0.01 and 0.1;
            normalised units).
        ensemble_size, observation_probability, online_lead: the forecaster's (``pdegen test``).
        assimilation: how observations reach the model: ``guidance`` (reconstruction guidance) or ``input``
            (amortised variants trained with ``observation_training``: the masked observations and their mask as
            network channels).
        observation_training: amortised variants: half of each training batch's windows also get a sparse
            observation mask (every entry of the unconditioned states observed with probability p, p log-uniform
            in :data:`OBSERVATION_RATES`) in the network input, so that ``assimilation: input`` is in distribution.
        sigma_data, p_mean, p_std, sampler, num_steps, sigma_min, sigma_max, rho: as the
            :class:`~pdegen.modules.DiffusionTeacher`'s (EDM preconditioning, training σ, the PF-ODE solver).
    """

    evaluation_settings = WindowForecaster.evaluation_settings + ("scheme", "guidance_noise_std", "guidance_gamma",
                                                                 "assimilation", "sampler", "num_steps", "sigma_min",
                                                                 "sigma_max", "rho")
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
        if online_lead and scheme != "ar":
            raise ValueError(f"online assimilation goes window by window (scheme ar), got online_lead={online_lead} "
                             f"with scheme {scheme!r}")
        super().__init__(net.channels // window, window, history, ensemble_size, observation_probability,
                         online_lead, sample_batch_size=sample_batch_size, optimizer=optimizer,
                         lr_scheduler=lr_scheduler)
        self.save_init_arguments()
        self.variant, self.scheme = variant, scheme
        self.denoiser = EDMPreconditioner(WindowBackbone(net), sigma_data=sigma_data)
        self.sampler = as_sampler(sampler, Heun, "sampler")
        self.sigmas = karras_sigmas(num_steps, sigma_min=sigma_min, sigma_max=sigma_max, rho=rho)

    @property
    def fixed_split(self) -> bool:
        return self.variant in ("amortised", "mse")

    @property
    def label(self) -> str:
        return self.variant

    # ------------------------------------------------------------------ the PDE and the network
    def attach_pde(self, pde: PDE, source: str = "the data") -> None:
        super().attach_pde(pde, source)  # a time-dependent family
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
        self.denoiser.net.static = None if static is None else static.float()

    # ------------------------------------------------------------------ training
    def training_data(self, samples) -> TrajectoryWindows:
        """Every window of the training trajectories (:class:`~datamodules.windows.TrajectoryWindows`)."""
        return TrajectoryWindows(samples, self.window)

    def _draw_history(self, size: int, generator: torch.Generator | None) -> Tensor:
        """C per sample (B,): 0 (joint), ``history`` (amortised, mse) or uniform in 0..k−1 (universal)."""
        if self.variant == "joint":
            return torch.zeros(size, dtype=torch.long, device=self.device)
        if self.variant in ("amortised", "mse"):
            return torch.full((size,), self.history, dtype=torch.long, device=self.device)
        count = size if self.hparams.history_draw == "sample" else 1
        drawn = torch.randint(0, self.window, (count,), generator=generator, device=self.device)
        return drawn.expand(size)

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
        given, condition = window_condition(values, mask, x.dtype)
        return torch.where(mask, given, self.denoiser(x, sigma, condition))

    def predict(self, values: Tensor, mask: Tensor) -> Tensor:
        """The ``mse`` variant's window: the network on the conditioning alone (its field input zero, c_noise 0),
        the given states returned as given."""
        dtype = next(self.denoiser.parameters()).dtype
        given, condition = window_condition(values, mask, dtype)
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
        mask = self.state_mask(self._draw_history(len(z), generator), z)
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
        states = self.state_mask(torch.full((len(noise),), c, device=noise.device), noise)
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
        """As the forecaster's (window by window), or with ``scheme: aao`` all at once."""
        if self.scheme == "aao":
            return self._all_at_once(noise, initial, observed, mask)
        return super().rollout(noise, initial, observed, mask)

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

    def window_nfe(self, assimilating: bool = False) -> int:
        """One evaluation (``mse``) or the sampler's on its steps, guided or not."""
        return 1 if self.variant == "mse" else self.sampler.nfe(len(self.sigmas) - 1)

    def forecast_nfe(self, num_states: int, given: int, assimilating: bool = False) -> int:
        if self.scheme == "aao":
            return self.window_nfe() * (num_states - self.window + 1)
        return super().forecast_nfe(num_states, given, assimilating)

    def check_assimilation(self) -> None:
        if self.variant == "mse":
            raise ValueError("the mse forecaster cannot assimilate observations (it has no sampling to steer): use "
                             "a diffusion variant (universal: the hybrid)")
