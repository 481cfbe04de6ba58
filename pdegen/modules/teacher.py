"""DiffusionTeacher: an EDM denoiser over the joint fields of a PDE (e.g. Darcy's a and u)."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn

from pdegen.diffusion import (
    EDMPreconditioner,
    Heun,
    Sampler,
    as_sampler,
    edm_coefficients,
    edm_loss_terms,
    karras_sigmas,
)
from pdegen.modules.checkpoints import load_module
from pdegen.modules.generator import GeneratorModule

RESIDUAL_WEIGHTINGS = ("c_skip", "uniform")


class DiffusionTeacher(GeneratorModule):
    """Learns the distribution of PDE samples with the EDM loss; samples with a float64 PF-ODE solver.

    Batches are physical-unit tensors ``(B, C, *grid)``; the model normalises them with the
    per-channel statistics it copies from the DataModule (stored in its checkpoint) and
    denoises all channels jointly. ``sample(n)`` returns physical units.

    With ``residual_weight`` λ > 0 the loss becomes EDM loss + λ · mean over the batch of
    :func:`~pdegen.metrics.residual_loss` of the denoised estimate D(x + n, σ) in physical units
    (normalised by the training data's ``residual_scales``), each sample's term weighted by
    ``residual_weighting``:

    - ``uniform``: PIDM as published (Bastek, Sun & Kochmann 2024, "Physics-informed diffusion
      models": the residual of the posterior-mean estimate at every noise level, trained from scratch;
      their code weights it by c_residual = 1e-3);
    - ``c_skip``: c_skip(σ) = σ_d² / (σ² + σ_d²) (1 at σ → 0, σ_d²/σ² at high noise), pdegen's
      variant for fine-tuning a trained teacher (``init_from``): it counts the residual where the posterior
      mean is close to a sample; unweighted, the residual of the high-noise estimates (about 2e4 at σ = 80
      on Darcy, against 0.3 at σ = 0.01, for a trained teacher) dominates the term.
    That constrains the posterior mean E[x0 | xt], not the samples: for a nonlinear residual
    R(E[x0 | xt]) ≠ E[R(x0) | xt] (Jensen's gap), so even the exact denoiser of PDE solutions is
    penalised, which is the weakness PIDDM (arXiv 2505.22391) addresses.

    Args:
        net: backbone ``net(x, c_noise)`` with ``net.channels`` = the PDE's channel count.
        sigma_data: σ_data of the EDM preconditioning (the data are normalised to unit std).
        p_mean, p_std: log-normal training σ distribution, ln σ ~ N(p_mean, p_std²).
        sampler, num_steps: the PF-ODE solver (a :class:`~pdegen.diffusion.Sampler`; default
            :class:`~pdegen.diffusion.Heun`) and its number of steps.
        sigma_min, sigma_max, rho: the Karras σ schedule.
        sample_batch_size: samples generated per network batch in :meth:`sample`.
        residual_weight: λ >= 0 of the PIDM residual term (0: the plain EDM loss). λ > 0 needs the
            PDE attached (a DataModule with a ``pde``, a checkpoint, or :meth:`attach_pde`).
        residual_weighting: ``c_skip`` or ``uniform`` (above).
        init_from: checkpoint of a trained DiffusionTeacher of the same architecture whose weights start
            this one (PIDM fine-tunes the plain teacher: from scratch, the residual of the untrained
            network's posterior mean is huge and its gradient wrecks the EDM loss; docs/measurements.md).
    """

    def __init__(self, net: nn.Module, sigma_data: float = 1.0, p_mean: float = -1.2, p_std: float = 1.2,
                 sampler: Sampler | None = None, num_steps: int = 18, sigma_min: float = 0.002, sigma_max: float = 80.0,
                 rho: float = 7.0, sample_batch_size: int = 64, residual_weight: float = 0.0,
                 residual_weighting: str = "c_skip", init_from: str | None = None,
                 optimizer: OptimizerCallable = torch.optim.Adam,
                 lr_scheduler: LRSchedulerCallable | None = None) -> None:
        super().__init__(net.channels, sample_batch_size=sample_batch_size, optimizer=optimizer,
                         lr_scheduler=lr_scheduler)
        if not (math.isfinite(residual_weight) and residual_weight >= 0):
            raise ValueError(f"residual_weight (the PIDM λ) must be finite and >= 0, got {residual_weight}")
        if residual_weighting not in RESIDUAL_WEIGHTINGS:
            raise ValueError(f"unknown residual_weighting {residual_weighting!r}; choose one of {RESIDUAL_WEIGHTINGS}")
        self.save_init_arguments()
        self.residual_weight = float(residual_weight)
        self.denoiser = EDMPreconditioner(net, sigma_data=sigma_data)
        self.sampler = as_sampler(sampler, Heun, "sampler")
        self.sigmas = karras_sigmas(num_steps, sigma_min=sigma_min, sigma_max=sigma_max, rho=rho)
        if init_from is not None:
            self._init_from(init_from)

    def _init_from(self, path: str) -> None:
        if not Path(path).is_file():
            raise FileNotFoundError(f"init_from={path!r} not found: train the plain teacher first (pdegen fit "
                                    "--config lightning_configs/teacher/<family>.yaml) and point init_from at its "
                                    "checkpoint")
        trained = load_module(DiffusionTeacher, path)
        try:
            self.load_state_dict(trained.state_dict())
        except RuntimeError as error:
            raise ValueError(f"init_from={path!r}: that checkpoint's network differs from this one's; give "
                             f"`net` the same settings as the checkpoint's teacher ({error})") from None

    # ------------------------------------------------------------------ training
    @property
    def nfe(self) -> int:
        return self.sampler.nfe(len(self.sigmas) - 1)

    def loss(self, batch: Tensor, generator: torch.Generator | None = None) -> Tensor:
        self.check_batch(batch)
        z = self.normalizer.encode(batch.float())
        h = self.hparams
        terms = edm_loss_terms(self.denoiser, z, p_mean=h.p_mean, p_std=h.p_std, sigma_data=h.sigma_data,
                               generator=generator)
        edm = terms.loss.mean()
        if self.residual_weight == 0:
            self.log_loss_terms(batch.shape[0], edm_loss=edm)
            return edm
        residual = self.physics_loss(terms.denoised, reference=batch)  # the data's source size
        if self.hparams.residual_weighting == "c_skip":
            residual = edm_coefficients(terms.sigma, self.denoiser.sigma_data).c_skip * residual
        residual = residual.mean()
        self.log_loss_terms(batch.shape[0], edm_loss=edm, residual_loss=residual)
        return edm + self.residual_weight * residual.to(edm.dtype)

    # ------------------------------------------------------------------ sampling
    def generate(self, noise: Tensor) -> Tensor:
        """Solve the PF-ODE from ``noise`` ~ N(0, I) (scaled here by σ_max) to σ = 0, in float64."""
        sigmas = self.sigmas.to(noise.device)
        return self.sampler(self.denoiser, noise.double() * sigmas[0], sigmas)
