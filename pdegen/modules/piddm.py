"""PIDDMStudent: Physics-Informed Distillation of a diffusion teacher into a one-step generator
whose *samples* satisfy the PDE (PIDDM, arXiv 2505.22391)."""

from __future__ import annotations

import functools
from pathlib import Path

import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn
from torch.utils.data import Dataset

from datamodules.generated import TeacherPairs, teacher_fingerprint
from pdegen.diffusion import EDMPreconditioner, Euler, Sampler, as_sampler, optimize_noise
from pdegen.metrics import reference_residual_scales
from pdegen.modules.frozen_teacher import FrozenTeacher
from pdegen.modules.generator import GeneratorModule
from pdegen.tasks import ObservationTask, impose, misfit


class PIDDMStudent(GeneratorModule):
    """A one-step generator d_θ(ε) distilled from the frozen teacher's (ε, x0) pairs with the PDE
    residual of its own output in the loss:

        L = ‖d_θ(ε) − x0‖² + λ_train · R(d_θ(ε)),

    where x0 is the teacher's deterministic sample from noise ε (``teacher_sampler`` with
    ``teacher_steps`` = N_s steps, in normalised units, mean over entries) and R is
    :func:`pdegen.metrics.residual_loss` of the decoded sample: the squared relative discrete L2
    residual, interior equation plus boundary condition, in physical units, so λ_train means the
    same at every resolution; relative to the typical source size of the training data
    (``residual_scales``, the teacher's, saved in the checkpoint; for a teacher without them, its
    samples'), not to each output's own: the same normalisation as the PIDM and guided baselines. The constraint is on
    the final sample, not on a posterior mean E[x0|xt], so it has no Jensen's gap.

    Pairs: its training batches are ``num_pairs`` pairs (:class:`datamodules.generated.TeacherPairs`,
    served by the DataModule in its batch size and seeded shuffle: an epoch is one pass over them, under
    DDP each rank's share of its own), and ``num_val_pairs`` held-out ones give the val/test loss; each
    rank makes its own (DDP ranks distil different pairs) and caches them to HDF5 in ``pair_dir``
    (default: ``<trainer root>/pairs``), reused when made by the same teacher with the same settings
    and seed (``pdegen test`` reads the held-out pairs its fit made). ``refresh_every_n_epochs`` > 0
    makes fresh pairs every that many epochs. The DataModule's own samples serve the evaluation callbacks.

    Sampling: PIDDM-1 is d_θ(ε) (one network evaluation); with ``noise_steps`` > 0, PIDDM-ref
    first takes that many Adam steps on ε minimising λ_infer·R(d_θ(ε)) (``noise_residual_weight``), each
    followed by a projection of ε onto the shell |ε| = √d where N(0, I) concentrates (ε stays
    likely). Tasks (:meth:`solve_task`) minimise misfit + ``task_residual_weight``·R over ε the same
    way for ``task_steps`` steps, the observations imposed exactly when the task says ``hard``.

    Args:
        teacher: a :class:`~pdegen.modules.DiffusionTeacher` checkpoint path (PDE, normaliser and σ
            range come with it) or module.
        net: the student backbone (``net(x, c_noise)``, as the teacher's); ``None`` copies the
            teacher's backbone and weights. The student is d_θ(ε) = D_θ(σ_max ε, σ_max) with EDM
            preconditioning, so a teacher copy starts at the teacher's σ_max denoiser.
        residual_weight: λ_train (0: plain distillation of the teacher's pairs).
        residual_warmup_steps: ramp λ_train linearly from 0 over this many steps, so the student first
            learns the teacher's map and then trades data fit for physics. The residual is stiff
            (∝ h⁻² for a second-order operator): at full weight from the first step its gradient
            can throw a teacher-initialised student far from the pairs, where it settles in a poor
            compromise (docs/measurements.md).
        teacher_steps, teacher_sampler: N_s and the teacher's :class:`~pdegen.diffusion.Sampler` for the pairs
            (default and paper: Euler, 100).
        sample_batch_size: samples per network batch in :meth:`sample` and pair generation.
    """

    def __init__(self, teacher: str | nn.Module, net: nn.Module | None = None, residual_weight: float = 1.0,
                 residual_warmup_steps: int = 0, num_pairs: int = 4096, num_val_pairs: int = 128,
                 teacher_steps: int = 100, teacher_sampler: Sampler | None = None, refresh_every_n_epochs: int = 0,
                 pair_dir: str | None = None,
                 noise_steps: int = 0, noise_residual_weight: float = 1.0, noise_lr: float = 0.05,
                 task_steps: int = 200, task_lr: float = 0.05, task_residual_weight: float = 1e-3,
                 sample_batch_size: int = 64, optimizer: OptimizerCallable = torch.optim.Adam,
                 lr_scheduler: LRSchedulerCallable | None = None) -> None:
        for label, value in (("residual_weight", residual_weight), ("noise_residual_weight", noise_residual_weight),
                             ("task_residual_weight", task_residual_weight)):
            if value < 0:
                raise ValueError(f"{label} must be >= 0, got {value}")
        for label, value in (("num_pairs", num_pairs), ("num_val_pairs", num_val_pairs),
                             ("teacher_steps", teacher_steps), ("task_steps", task_steps)):
            if int(value) != value or value < 1:
                raise ValueError(f"{label} must be an integer >= 1, got {value}")
        if noise_steps < 0 or refresh_every_n_epochs < 0 or residual_warmup_steps < 0:
            raise ValueError("noise_steps, refresh_every_n_epochs and residual_warmup_steps must be >= 0")
        frozen = FrozenTeacher.load(teacher)
        backbone = net if net is not None else frozen.copy_net()
        super().__init__(backbone.channels, teacher=frozen, sample_batch_size=sample_batch_size, optimizer=optimizer,
                         lr_scheduler=lr_scheduler)
        self.save_init_arguments()
        self.student = EDMPreconditioner(backbone, sigma_data=frozen.sigma_data)
        self.residual_weight = float(residual_weight)
        self.teacher_sampler = as_sampler(teacher_sampler, Euler, "teacher_sampler")

    # ------------------------------------------------------------------ the generator
    @property
    def nfe(self) -> int:
        return 1 + self.hparams.noise_steps

    def d(self, noise: Tensor) -> Tensor:
        """d_θ(ε): one network evaluation from unit noise to a normalised sample (ε's dtype)."""
        return self.student(noise * self.teacher.sigma_max, self.teacher.sigma_max)

    # ------------------------------------------------------------------ teacher pairs
    @property
    def distillation_sigmas(self) -> Tensor:
        """The teacher's N_s-step Karras schedule (to σ = 0) of the pairs."""
        return self.teacher.schedule(self.hparams.teacher_steps)

    def teacher_pairs(self, name: str, count: int, refresh_every_n_epochs: int = 0) -> TeacherPairs:
        """This rank's cache of ``count`` teacher pairs called ``name``, keyed by the teacher's weights and
        sampler, the run's seed and the rank (DDP ranks distil different pairs)."""
        h = self.hparams
        settings = {"teacher": teacher_fingerprint(self.teacher), "teacher_steps": h.teacher_steps,
                    "teacher_sampler": self.teacher_sampler.name, "rank": self.global_rank, "seed": self.seed}
        directory = h.pair_dir or Path(self.trainer.default_root_dir) / "pairs"
        return TeacherPairs(lambda noise: self.grid_teacher_generate(noise.to(self.device), self.teacher_sampler),
                            self.sample_shape, count, settings, directory, f"{name}_rank{self.global_rank}",
                            self.sample_batch_size, refresh_every_n_epochs, show_progress=self.global_rank == 0)

    def training_data(self, samples: Dataset) -> TeacherPairs:
        """The teacher's ``num_pairs`` training pairs (the DataModule's samples serve evaluation only)."""
        pairs = self.teacher_pairs("pairs", self.hparams.num_pairs, self.hparams.refresh_every_n_epochs)
        pairs.set_epoch(self.current_epoch)
        if self.residual_scales is None:  # a teacher without the data's scales: its samples' typical source size
            self.residual_scales = reference_residual_scales(self.pde, self.normalizer.decode(pairs.sample.double()))
        return pairs

    @functools.cached_property
    def val_pairs(self) -> TeacherPairs:
        """The ``num_val_pairs`` held-out pairs of the val/test loss (made at most once per run folder)."""
        return self.teacher_pairs("val_pairs", self.hparams.num_val_pairs).load()

    # ------------------------------------------------------------------ training
    def loss(self, batch: tuple[Tensor, Tensor] | Tensor, generator: torch.Generator | None = None) -> Tensor:
        """On a batch of (noise, teacher sample) pairs in training; in val/test on the held-out pairs
        (:attr:`val_pairs`, in order), whatever the held-out batch."""
        if self.training:
            if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
                raise TypeError(f"{type(self).__name__} trains on batches of its teacher's (noise, sample) pairs, "
                                "got a single tensor: fit it with a PDEDataModule, which serves its training_data()")
            noise, target = (t.float() for t in batch)
        else:
            noise, target = self.val_pairs.noise.to(self.device), self.val_pairs.sample.to(self.device)
        prediction = self.d(noise)
        data = (prediction - target).square().flatten(1).mean(1).mean()
        physics = self.physics_loss(prediction).mean()
        self.log_loss_terms(len(noise), data_loss=data, residual_loss=physics)
        return data + self.ramp(self.residual_weight, self.hparams.residual_warmup_steps) * physics.to(data.dtype)

    # ------------------------------------------------------------------ sampling and tasks
    def generate(self, noise: Tensor) -> Tensor:
        """PIDDM-1, or PIDDM-ref with ``noise_steps``: float64 normalised samples."""
        h = self.hparams
        noise = noise.float()
        if h.noise_steps:
            noise = optimize_noise(self.d, noise, lambda x: h.noise_residual_weight * self.physics_loss(x),
                                   h.noise_steps, lr=h.noise_lr).noise
        return self.d(noise).double()

    def generate_task(self, noise: Tensor, observed: Tensor, mask: Tensor, task: ObservationTask) -> Tensor:
        """Optimise ε so that d_θ(ε) (with the observations imposed when ``task.hard``) fits them and the PDE."""
        h = self.hparams
        observed = observed.float()
        complete = (lambda e: impose(self.d(e), observed, mask)) if task.hard else self.d

        def objective(x: Tensor) -> Tensor:
            return misfit(x, observed, mask) + h.task_residual_weight * self.physics_loss(x).to(x.dtype)

        noise = optimize_noise(complete, noise.float(), objective, h.task_steps, lr=h.task_lr).noise
        return complete(noise).double()

    def task_nfe(self, task: ObservationTask) -> int:
        return self.hparams.task_steps + 1
