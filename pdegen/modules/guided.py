"""GuidedDiffusion: a frozen diffusion teacher sampled plainly or steered at sampling time — the
baselines PIDDM is compared with (the teacher alone, DiffusionPDE guidance, D-Flow)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from pdegen.diffusion import Euler, Heun, optimize_noise
from pdegen.modules.frozen_teacher import FrozenTeacher
from pdegen.modules.generator import GeneratorModule
from pdegen.tasks import ObservationTask, impose, misfit

METHODS = ("heun", "diffusionpde", "dflow")


class GuidedDiffusion(GeneratorModule):
    """Sample a trained :class:`~pdegen.modules.DiffusionTeacher` with one of ``METHODS``; nothing
    is trained (run ``pdegen test``). Residuals R are :func:`pdegen.metrics.residual_loss` of the
    decoded sample (squared relative residual, physical units), observations are in normalised units.

    - ``heun``: the teacher alone, Heun with ``num_steps`` Karras steps (no tasks).
    - ``diffusionpde``: DiffusionPDE (Huang et al. 2024): Heun, and after each step the gradient
      of ζ_obs‖M⊙(x̂0 − y)‖₂ + ζ_pde‖R(x̂0)‖^½ with respect to x_i, x̂0 = D(x_i, σ_i) the posterior
      mean; their schedule: observation guidance alone for the first ``pde_start`` fraction of the
      steps, then 0.1·ζ_obs together with ζ_pde. Unconditional sampling uses the PDE term only.
    - ``dflow``: D-Flow (Ben-Hamu et al. 2024): L-BFGS on the initial noise, at most
      ``dflow_iterations`` iterations, through the differentiable ``dflow_steps``-step Euler solve,
      minimising ``dflow_residual_weight``·R (+ the misfit for a task; with a ``hard`` task, the
      observations are imposed on the output). Each sample is optimised on its own (its own line
      searches), so a sample does not depend on the batch it is drawn in; ``nfe`` is the mean over
      the samples of the last :meth:`sample_with` call of the function evaluations L-BFGS actually made.

    R is normalised by the teacher's fixed ``residual_scales`` (the training data's), as in PIDDM and
    PIDM, so the objective's value and its gradient agree. The weights of DiffusionPDE are tuned per
    family on the validation split (``tools/tune_guidance.py``; the result is in
    ``lightning_configs/piddm/<family>_guided.yaml``).

    Args:
        teacher: the teacher's checkpoint path (or module). For the PIDM baseline, a teacher trained
            with ``residual_weight`` > 0, sampled with ``heun`` or ``diffusionpde``.
        num_steps: Heun steps of ``heun`` and ``diffusionpde`` (default: the teacher's).
    """

    requires_residual_scales = True

    def __init__(self, teacher: str | nn.Module, method: str = "heun", num_steps: int | None = None,
                 observation_weight: float = 1.0, pde_weight: float = 0.01, pde_start: float = 0.8,
                 dflow_steps: int = 10, dflow_iterations: int = 20, dflow_lr: float = 1.0,
                 dflow_residual_weight: float = 1e-3, sample_batch_size: int = 64) -> None:
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; choose one of {METHODS}")
        if not 0 <= pde_start <= 1:
            raise ValueError(f"pde_start is a fraction of the steps, in [0, 1]; got {pde_start}")
        if min(observation_weight, pde_weight, dflow_residual_weight) < 0:
            raise ValueError("guidance weights must be >= 0")
        frozen = FrozenTeacher.load(teacher)
        if frozen.normalizer is None:
            raise TypeError("GuidedDiffusion needs a DiffusionTeacher (checkpoint) for its PDE and normaliser")
        super().__init__(frozen.normalizer.num_channels, teacher=frozen, sample_batch_size=sample_batch_size)
        self.save_init_arguments()
        self.method = method
        self.num_steps = int(num_steps or len(frozen.sigmas) - 1)
        self._dflow_nfe: list[int] = []
        self._nfe = Euler().nfe(dflow_steps) if method == "dflow" else Heun().nfe(self.num_steps)

    @property
    def nfe(self) -> float:
        """Per sample; for D-Flow, the mean over the samples of the last :meth:`sample_with` call."""
        return self._nfe

    @property
    def distillation_sigmas(self) -> Tensor:
        """The teacher's own ``num_steps``-step schedule: the unguided sampler from the same noise."""
        return self.teacher.schedule(self.num_steps)

    def loss(self, batch: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """The teacher's EDM denoising loss (the val/test loss)."""
        self.check_batch(batch)
        return self.teacher.denoising_loss(self.normalizer.encode(batch.float()), generator)

    # ------------------------------------------------------------------ samplers
    def _diffusionpde(self, noise: Tensor, observed: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
        h = self.hparams
        switch = h.pde_start * self.num_steps

        def guidance(denoised: Tensor, i: int) -> Tensor:
            late = i >= switch
            loss = denoised.new_zeros(len(denoised))
            if late:
                loss = h.pde_weight * (self.physics_loss(denoised) + 1e-30).sqrt()
            if observed is not None:
                weight = h.observation_weight * (0.1 if late else 1.0)
                loss = loss + weight * ((denoised - observed) * mask).flatten(1).norm(dim=1)
            return loss

        return self.teacher.solve(noise, self.distillation_sigmas, Heun(), guidance=guidance)

    def _dflow(self, noise: Tensor, observed: Tensor | None = None, mask: Tensor | None = None,
               hard: bool = False) -> Tensor:
        """D-Flow, one L-BFGS run per sample (its line searches see that sample alone)."""
        rows = [slice(i, i + 1) for i in range(len(noise))]
        if observed is None:
            return torch.cat([self._dflow_one(noise[row]) for row in rows])
        return torch.cat([self._dflow_one(noise[row], observed[row], mask[row], hard) for row in rows])

    def _dflow_one(self, noise: Tensor, observed: Tensor | None = None, mask: Tensor | None = None,
                   hard: bool = False) -> Tensor:
        h = self.hparams
        sigmas = self.teacher.schedule(h.dflow_steps)

        def solve(eps: Tensor) -> Tensor:
            x = self.teacher.solve(eps, sigmas, Euler(), enable_grad=True)
            return impose(x, observed, mask) if hard else x

        def objective(x: Tensor) -> Tensor:
            loss = h.dflow_residual_weight * self.physics_loss(x)
            return loss if observed is None else loss + misfit(x, observed, mask)

        result = optimize_noise(solve, noise.double(), objective, h.dflow_iterations, optimizer="lbfgs",
                                lr=h.dflow_lr)
        self._dflow_nfe.append((result.evaluations + 1) * h.dflow_steps)
        return solve(result.noise).detach()

    def sample_with(self, *args, **kwargs) -> Tensor:
        """As the generator's; for D-Flow, ``nfe`` becomes the mean over this call's samples."""
        self._dflow_nfe = []
        samples = super().sample_with(*args, **kwargs)
        if self._dflow_nfe:
            self._nfe = sum(self._dflow_nfe) / len(self._dflow_nfe)
        return samples

    def generate(self, noise: Tensor) -> Tensor:
        if self.method == "diffusionpde":
            return self._diffusionpde(noise)
        if self.method == "dflow":
            return self._dflow(noise)
        return self.grid_teacher_generate(noise, Heun())

    def generate_task(self, noise: Tensor, observed: Tensor, mask: Tensor, task: ObservationTask) -> Tensor:
        observed = observed.double()
        if self.method == "diffusionpde":
            x = self._diffusionpde(noise, observed, mask)
            return impose(x, observed, mask) if task.hard else x
        if self.method == "dflow":
            return self._dflow(noise, observed, mask, task.hard)
        return super().generate_task(noise, observed, mask, task)

    def task_nfe(self, task: ObservationTask) -> int:
        if self.method == "heun":
            return super().task_nfe(task)
        return self.nfe
