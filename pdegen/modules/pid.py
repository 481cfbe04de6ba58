"""PIDStudent: Physics Informed Distillation of a diffusion teacher into a one-step generator."""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn
from torch.utils.data import Dataset

from datamodules.generated import GaussianNoise
from pdegen.diffusion import (
    Heun,
    PIDTrajectory,
    Sampler,
    as_sampler,
    check_scheme,
    check_sigma_range,
    get_distance,
    karras_sigmas,
    pid_grid,
    pid_loss,
)
from pdegen.modules.frozen_teacher import FrozenTeacher
from pdegen.modules.generator import GeneratorModule


class PIDStudent(GeneratorModule):
    """A one-step generator x_θ(z, σ_min) trained as a PINN on the frozen teacher's PF-ODE, data-free.

    Its training batches are unit noise ε (:class:`datamodules.generated.GaussianNoise`, fresh each epoch,
    as many per epoch as the DataModule's training split, whose samples it never reads: held-out data
    serve the evaluation). Each step takes z = T·ε, draws a grid index i per sample and minimises the PID
    residual between x_θ(z, t_i) and x_θ(z, t_{i+1}) (:mod:`pdegen.diffusion.pid_trajectory`) on the
    N-point Karras grid.

    Args:
        teacher: a :class:`DiffusionTeacher` checkpoint path (its PDE, normaliser, σ range and
            backbone come with it), or a denoiser module D(x, σ) on normalised data.
        net: the student backbone X_θ; ``None`` copies the teacher's backbone and weights (the
            paper's initialisation); give a (smaller) fresh net to compress.
        num_points: N, the points of the Karras grid t_0 = T > … > t_{N−1} = σ_min.
        scheme: ``upwind`` (first order, paper eq. 11) or ``central`` (second order, same cost).
        distance: ``l2``, ``l1``, ``pseudo_huber`` or ``lpips`` (extra), with ``distance_kwargs``.
        sigma_min, sigma_max, rho, sigma_data: the grid and c_in; default to the teacher's.
        sample_sigma: the time t at which samples are read off the trajectory (default σ_min: one
            step from noise to data); with ``refine_steps`` > 0, the teacher then runs that many
            ``refine_sampler`` steps (a :class:`~pdegen.diffusion.Sampler`, default Heun) from ``sample_sigma``
            to 0 (NFE 1 + the sampler's).
        dropout: the probability of every dropout layer of the student backbone (the paper distils
            with 0; both student evaluations of a step share their masks otherwise); ``None``
            keeps the backbone's.
        sample_batch_size: samples per network batch in :meth:`sample`.
    """

    def __init__(self, teacher: str | nn.Module, net: nn.Module | None = None, num_points: int = 250,
                 scheme: str = "upwind", distance: str = "l2", distance_kwargs: dict[str, Any] | None = None,
                 sigma_min: float | None = None, sigma_max: float | None = None, rho: float | None = None,
                 sigma_data: float | None = None, sample_sigma: float | None = None, refine_steps: int = 0,
                 refine_sampler: Sampler | None = None, dropout: float | None = 0.0, sample_batch_size: int = 64,
                 optimizer: OptimizerCallable = torch.optim.RAdam,
                 lr_scheduler: LRSchedulerCallable | None = None) -> None:
        frozen = FrozenTeacher.load(teacher)
        backbone = net if net is not None else frozen.copy_net()
        super().__init__(backbone.channels, teacher=frozen, sample_batch_size=sample_batch_size, optimizer=optimizer,
                         lr_scheduler=lr_scheduler)
        self.save_init_arguments()
        self.sigma_min = float(sigma_min if sigma_min is not None else frozen.sigma_min)
        self.sigma_max = float(sigma_max if sigma_max is not None else frozen.sigma_max)
        self.rho = float(rho if rho is not None else frozen.rho)
        self.sigma_data = float(sigma_data if sigma_data is not None else frozen.sigma_data)
        check_sigma_range(self.sigma_min, self.sigma_max)
        self.sample_sigma = float(sample_sigma if sample_sigma is not None else self.sigma_min)
        self._check_sampling(refine_steps)
        if dropout is not None:
            if not 0 <= dropout < 1:
                raise ValueError(f"dropout must be in [0, 1), got {dropout}")
            for module in backbone.modules():
                if isinstance(module, nn.modules.dropout._DropoutNd):
                    module.p = dropout
        self.trajectory = PIDTrajectory(backbone, sigma_max=self.sigma_max, sigma_data=self.sigma_data)
        self.distance = get_distance(distance, **(distance_kwargs or {}))
        self.scheme = check_scheme(scheme)
        self.register_buffer("t_grid", pid_grid(num_points, self.sigma_min, self.sigma_max, self.rho),
                             persistent=False)
        self.refine_steps = refine_steps
        self.refine_sampler = as_sampler(refine_sampler, Heun, "refine_sampler")

    def _check_sampling(self, refine_steps: int) -> None:
        if not self.sigma_min <= self.sample_sigma <= self.sigma_max:
            raise ValueError(f"sample_sigma={self.sample_sigma} is outside the distilled range "
                             f"[sigma_min, sigma_max] = [{self.sigma_min}, {self.sigma_max}]")
        if refine_steps < 0:
            raise ValueError(f"refine_steps must be >= 0, got {refine_steps}")
        if refine_steps and self.sample_sigma <= self.sigma_min:
            raise ValueError("refine_steps > 0 needs a sample_sigma above sigma_min to refine from "
                             "(e.g. sample_sigma: 1.0)")

    @property
    def nfe(self) -> int:
        return 1 + (self.refine_sampler.nfe(self.refine_steps) if self.refine_steps else 0)

    @property
    def num_points(self) -> int:
        return self.t_grid.numel()

    # ------------------------------------------------------------------ training
    def training_data(self, samples: Dataset) -> Dataset:
        return GaussianNoise(len(samples), self.sample_shape, self.seed)

    def loss(self, batch: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """The PID loss on a batch of unit noise (in training); the val/test loss draws its noise from
        ``generator`` in the shape of the held-out batch."""
        self.check_batch(batch)
        b = batch.shape[0]
        z = self.noise_batch(batch, generator) * self.sigma_max
        i = torch.randint(0, self.num_points - 1, (b,), generator=generator, device=self.device)
        t_hi, t_lo = self.t_grid[i].to(z.dtype), self.t_grid[i + 1].to(z.dtype)
        x_hi, x_lo = self.trajectory.pair(z, t_hi, t_lo)
        return pid_loss(x_hi, x_lo, t_hi, t_lo, self.teacher.denoiser, self.distance, self.scheme).mean()

    # ------------------------------------------------------------------ sampling
    def generate(self, noise: Tensor) -> Tensor:
        """x_θ(T·noise, sample_sigma) in float64, then the teacher's refinement steps if any."""
        x = self.trajectory(noise.double() * self.sigma_max, self.sample_sigma)
        if not self.refine_steps:
            return x
        sigmas = karras_sigmas(self.refine_steps, self.sigma_min, self.sample_sigma, self.rho, device=x.device)
        return self.refine_sampler(self.teacher.denoiser, x, sigmas)

    @property
    def distillation_sigmas(self) -> Tensor:
        """The distilled grid, T to σ_min: the teacher's Euler solve on it is exactly what a student
        at zero upwind PID loss returns (Theorem 1)."""
        return self.t_grid
