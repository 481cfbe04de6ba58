"""A frozen diffusion teacher as a component: what a student holds and samples, not a mixin it inherits."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import torch
from torch import Tensor, nn

from pdegen.diffusion import Guidance, Heun, Sampler, as_sampler, check_sigma_range, edm_loss, karras_sigmas
from pdegen.modules.checkpoints import load_module
from pdegen.pdes import PDE
from pdegen.transforms import ChannelNormalizer


class FrozenTeacher(nn.Module):
    """A trained diffusion teacher, frozen and kept in eval mode whatever its holder's mode: its denoiser
    D(x, σ) on normalised data, its σ range (the Karras schedule's σ_min, σ_max, ρ) and σ_data, its
    per-channel normaliser, PDE and residual normalisation, and its own configured sampler and steps.
    It answers "sample from this noise" (:meth:`sample`) and "solve the PF-ODE on this schedule"
    (:meth:`solve`). Build it with :meth:`load` from a :class:`~pdegen.modules.DiffusionTeacher`
    checkpoint or module, or around a bare denoiser.

    Args:
        denoiser: D(x, σ) on normalised data.
        normalizer: the teacher's per-channel normaliser (``None`` for a bare denoiser: the student keeps its own).
        pde: the PDE it learned (``None`` if unknown); residual_scales: its data's residual normalisation.
        sampler, num_steps: its own PF-ODE solver and steps (what a user of the teacher gets).
        p_mean, p_std: the log-normal σ distribution of its denoising loss (:meth:`denoising_loss`).
    """

    def __init__(self, denoiser: nn.Module, normalizer: ChannelNormalizer | None = None, pde: PDE | None = None,
                 residual_scales: dict[str, float] | None = None, sigma_min: float = 0.002,
                 sigma_max: float = 80.0, rho: float = 7.0, sigma_data: float = 1.0, sampler: Sampler | None = None,
                 num_steps: int = 18, p_mean: float = -1.2, p_std: float = 1.2) -> None:
        super().__init__()
        check_sigma_range(sigma_min, sigma_max)
        self.denoiser = denoiser.requires_grad_(False)
        self.normalizer = normalizer.requires_grad_(False) if normalizer is not None else None
        self.pde, self.residual_scales = pde, residual_scales
        self.sigma_min, self.sigma_max, self.rho, self.sigma_data = sigma_min, sigma_max, rho, sigma_data
        self.p_mean, self.p_std = p_mean, p_std
        self.sampler = as_sampler(sampler, Heun, "sampler")
        self.register_buffer("sigmas", self.schedule(num_steps), persistent=False)
        self.nfe = self.sampler.nfe(num_steps)
        """Network evaluations per sample of :meth:`sample`."""
        self.eval()

    @classmethod
    def load(cls, source: str | os.PathLike | nn.Module) -> FrozenTeacher:
        """From a :class:`~pdegen.modules.DiffusionTeacher` checkpoint path or module (everything comes with it),
        a FrozenTeacher (returned as is), or a bare denoiser module D(x, σ) on normalised data (e.g. an exact
        Gaussian-mixture denoiser): EDM's σ range and Heun with 18 steps, no normaliser and no PDE."""
        from pdegen.modules.teacher import DiffusionTeacher

        if isinstance(source, (str, os.PathLike)):
            path = Path(source)
            if not path.is_file():
                raise FileNotFoundError(
                    f"teacher checkpoint {str(path)!r} not found: train a teacher first "
                    "(pdegen fit --config lightning_configs/teacher/<family>.yaml) and set `model.init_args.teacher` "
                    "to its checkpoint (e.g. runs/teacher_<family>/checkpoints/last.ckpt)")
            source = load_module(DiffusionTeacher, path)
        if isinstance(source, FrozenTeacher):
            return source
        if isinstance(source, DiffusionTeacher):
            h = source.hparams
            return cls(source.denoiser, source.normalizer, source.pde, source.residual_scales, h.sigma_min,
                       h.sigma_max, h.rho, h.sigma_data, source.sampler, len(source.sigmas) - 1, h.p_mean, h.p_std)
        if not isinstance(source, nn.Module):
            raise TypeError(f"teacher must be a checkpoint path or a denoiser module, got {type(source).__name__}")
        return cls(source)

    def train(self, mode: bool = True) -> FrozenTeacher:
        """Stays in eval mode (no dropout) whatever its holder's mode."""
        return super().train(False)

    def copy_net(self) -> nn.Module:
        """A trainable copy of the denoiser's backbone (a student's initialisation in the papers)."""
        net = getattr(self.denoiser, "net", None)
        if net is None:
            raise ValueError("net is required when the teacher is a plain denoiser: give the student backbone")
        return copy.deepcopy(net).requires_grad_(True)

    def schedule(self, num_steps: int) -> Tensor:
        """The ``num_steps``-step Karras schedule of the teacher's σ range, ending at 0."""
        return karras_sigmas(num_steps, self.sigma_min, self.sigma_max, self.rho)

    def solve(self, noise: Tensor, sigmas: Tensor, sampler: Sampler, guidance: Guidance | None = None,
              enable_grad: bool = False) -> Tensor:
        """The PF-ODE solved by ``sampler`` on ``sigmas`` from unit ``noise`` (scaled here by sigmas[0]), float64,
        with the sampler's ``guidance`` if given; ``enable_grad``: differentiable in ``noise`` (D-Flow)."""
        sigmas = sigmas.to(noise.device)
        return sampler(self.denoiser, noise.double() * sigmas[0], sigmas, guidance=guidance, enable_grad=enable_grad)

    def sample(self, noise: Tensor) -> Tensor:
        """Normalised samples from unit ``noise`` with the teacher's own sampler and steps."""
        return self.solve(noise, self.sigmas, self.sampler)

    def denoising_loss(self, z: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """The teacher's EDM denoising loss on normalised data ``z`` (its training objective), averaged."""
        return edm_loss(self.denoiser, z, p_mean=self.p_mean, p_std=self.p_std, sigma_data=self.sigma_data,
                        generator=generator).mean()
