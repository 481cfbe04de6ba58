"""The base classes of pdegen's LightningModules: :class:`FieldModule` (one PDE's fields, their normaliser and
the optimiser) and :class:`GeneratorModule` (a module that generates samples, optionally from a frozen teacher).

A generator writes three things (:meth:`GeneratorModule.loss`, :meth:`GeneratorModule.generate` and
:attr:`GeneratorModule.nfe`); the base class turns them into the train/val/test steps and the contract of
DESIGN.md: ``sample(n, generator=None) -> (n, C, *grid)`` in physical units, usable by every callback.
"""

from __future__ import annotations

import inspect
from abc import ABCMeta, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

import lightning as L
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor
from torch.utils.data import Dataset

from pdegen import progress
from pdegen.diffusion import Euler, Sampler
from pdegen.metrics import reference_residual_scales, residual_loss
from pdegen.modules.checkpoints import checkpoint_record, save_init_arguments
from pdegen.modules.frozen_teacher import FrozenTeacher
from pdegen.pdes import PDE, get_pde
from pdegen.seeding import seeded_generator
from pdegen.tasks import ObservationTask
from pdegen.transforms import ChannelNormalizer


class FieldModule(L.LightningModule):
    """A module of one PDE's sampled fields: the PDE (from the DataModule at ``setup``, or from its
    checkpoint), a per-channel normaliser fitted on the training split and the data's residual
    normalisation :attr:`residual_scales` (both saved in the checkpoint), and the ``optimizer``/``lr_scheduler``
    callables from the YAML (``optimizer=None``: nothing to train).

    Args:
        num_channels: the channel count of the fields (the PDE's; checked when a PDE is attached).
    """

    def __init__(self, num_channels: int, optimizer: OptimizerCallable | None = None,
                 lr_scheduler: LRSchedulerCallable | None = None) -> None:
        super().__init__()
        self.normalizer = ChannelNormalizer(num_channels)
        self.pde: PDE | None = None
        self.residual_scales: dict[str, float] | None = None
        """Fixed ||S||² of :func:`~pdegen.metrics.residual_loss` (the training data's, from the DataModule)."""
        self.optimizer = optimizer
        self.lr_scheduler = lr_scheduler

    def save_init_arguments(self, ignore: list[str] | None = None) -> None:
        """``save_hyperparameters`` of the calling ``__init__``'s arguments (see :mod:`pdegen.modules.checkpoints`)."""
        save_init_arguments(self, inspect.currentframe().f_back, ignore)

    def attach_pde(self, pde: PDE, source: str = "the data") -> None:
        """Take this PDE's layout; the network's channel count must match it, and a module that already has
        a PDE (from the DataModule, or from its checkpoint) accepts only the same physics."""
        differs = {} if self.pde is None else self.pde.physics_differences(pde)
        if differs:
            changed = ", ".join(f"{k} ({held} vs {given})" for k, (held, given) in differs.items())
            raise ValueError(
                f"a checkpoint of one PDE met data of another: {source} has {pde!r} but the module already holds "
                f"{self.pde!r}; they differ in {changed} (the module's value first). Evaluate or resume a "
                "checkpoint with the data config it was trained with")
        if pde.num_channels != self.normalizer.num_channels:
            raise ValueError(
                f"wrong channel count: {pde.name} has {pde.num_channels} channels {pde.channels}, but the network "
                f"was built for {self.normalizer.num_channels}; "
                f"set `channels: {pde.num_channels}` on the net in the YAML"
            )
        self.pde = pde

    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is None or getattr(datamodule, "pde", None) is None:
            return
        self.attach_pde(datamodule.pde)
        if not bool(self.normalizer.fitted):
            self.normalizer.set_stats(*datamodule.normalizer_stats)
        if self.residual_scales is None and hasattr(datamodule, "residual_scales"):
            self.residual_scales = datamodule.residual_scales

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["pdegen"] = checkpoint_record(self) | {"pde": self.pde.describe() if self.pde else None,
                                                          "residual_scales": self.residual_scales}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        saved = checkpoint.get("pdegen", {})
        if saved.get("pde") is not None:
            self.attach_pde(get_pde(saved["pde"]["name"], **saved["pde"]["params"]), source="the checkpoint")
        if saved.get("residual_scales") is not None:
            self.residual_scales = saved["residual_scales"]

    def check_batch(self, batch: Tensor) -> None:
        if self.pde is not None:
            self.pde.check_sample(batch)

    def configure_optimizers(self) -> Any:
        """``optimizer`` (and ``lr_scheduler``) callables from the YAML, over the trainable parameters only."""
        if self.optimizer is None:
            raise RuntimeError(f"{type(self).__name__} has nothing to train: evaluate it with `pdegen test`")
        optimizer = self.optimizer([p for p in self.parameters() if p.requires_grad])
        if self.lr_scheduler is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": self.lr_scheduler(optimizer)}


class GeneratorModule(FieldModule, metaclass=ABCMeta):
    """A :class:`FieldModule` that generates samples. A subclass writes:

    - :meth:`loss` (``batch, generator -> scalar``): the training (and val/test) loss;
    - :meth:`generate` (``noise -> normalised samples``): one batch of samples from standard-normal noise;
    - :attr:`nfe`: network evaluations per sample of :meth:`generate`.

    A student passes the :class:`~pdegen.modules.FrozenTeacher` it holds as ``teacher``: the student then
    takes the teacher's normaliser, residual normalisation and PDE, refuses data of another PDE, and gains
    :meth:`teacher_sample` (the teacher with its own sampler and steps, what every speed-up divides) and,
    when it declares :attr:`distillation_sigmas`, :meth:`grid_teacher_sample` (the teacher on the student's grid).

    Args:
        num_channels: the channel count of the samples.
        teacher: the frozen teacher a student distils (``None`` for a module that is not a student).
        sample_batch_size: samples per network batch in :meth:`sample`.
    """

    requires_residual_scales = False
    """True for modules whose residual objective must not fall back to each sample's own scale."""

    def __init__(self, num_channels: int, teacher: FrozenTeacher | None = None, sample_batch_size: int = 64,
                 optimizer: OptimizerCallable | None = None, lr_scheduler: LRSchedulerCallable | None = None) -> None:
        super().__init__(num_channels, optimizer, lr_scheduler)
        if int(sample_batch_size) != sample_batch_size or sample_batch_size < 1:
            raise ValueError(f"sample_batch_size must be an integer >= 1, got {sample_batch_size}")
        self.sample_batch_size = int(sample_batch_size)
        self.seed = 0
        """The run's seed (``seed_everything``'s, the same on every rank), set when fitting starts."""
        self.teacher = teacher
        if teacher is not None and teacher.normalizer is not None:
            self.normalizer.load_state_dict(teacher.normalizer.state_dict())
            self.residual_scales = teacher.residual_scales
            if teacher.pde is not None:
                self.attach_pde(teacher.pde)

    # ------------------------------------------------------------------ what a generator writes
    @abstractmethod
    def loss(self, batch: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """The scalar training loss on a physical-unit batch; ``generator`` fixes its draws."""

    @abstractmethod
    def generate(self, noise: Tensor) -> Tensor:
        """Normalised samples (float64) from standard-normal ``noise`` ``(B, *sample_shape)``."""

    @property
    @abstractmethod
    def nfe(self) -> float:
        """Network evaluations per sample of :meth:`generate`."""

    # ------------------------------------------------------------------ the physics
    def attach_pde(self, pde: PDE, source: str = "the data") -> None:
        """As the field module's, and a student's PDE must be the one its teacher learned."""
        teacher_pde = self.teacher.pde if self.teacher is not None else None
        if teacher_pde is not None and (pde.name, pde.physics()) != (teacher_pde.name, teacher_pde.physics()):
            raise ValueError(f"the data's PDE {pde!r} differs from the teacher's {teacher_pde!r}: "
                             "set the DataModule's `pde` to the teacher's")
        super().attach_pde(pde, source)

    def physics_loss(self, x: Tensor, reference: Tensor | None = None) -> Tensor:
        """Per-sample :func:`~pdegen.metrics.residual_loss` ``(B,)`` of normalised samples, decoded to
        physical units (the residual itself in float64); differentiable. The residual term of PIDM,
        PIDDM and the guided baselines, normalised by the fixed :attr:`residual_scales` (the training
        data's, which students and baselines take from their teacher), else by the source size of
        ``reference`` (physical data) when given, else by each sample's own (held constant, so value and
        gradient disagree: modules with :attr:`requires_residual_scales` refuse that)."""
        if self.pde is None:
            raise RuntimeError(f"{type(self).__name__}: the residual loss needs the PDE attached: fit with a "
                               "DataModule that has a `pde`, or call attach_pde(pde)")
        scales = self.residual_scales
        if scales is None and reference is not None:
            scales = reference_residual_scales(self.pde, reference)
        if scales is None and self.requires_residual_scales:
            raise RuntimeError(f"{type(self).__name__} needs fixed residual_scales (the data's residual "
                               "normalisation): run it with a DataModule, use a teacher checkpoint that has them, "
                               "or set residual_scales = pdegen.metrics.reference_residual_scales(pde, data)")
        return residual_loss(self.pde, self.normalizer.decode(x), scales)

    # ------------------------------------------------------------------ training
    def log_loss_terms(self, batch_size: int, **terms: Tensor) -> None:
        """Log each term of a loss as ``<stage>/<name>`` (train, val or test) when a trainer runs this module's
        step (not when another module calls its loss)."""
        if self._trainer is None or self._current_fx_name is None:
            return
        stage = "train" if self.training else ("test" if self.trainer.testing else "val")
        self.log_dict({f"{stage}/{name}": value.detach().float() for name, value in terms.items()},
                      batch_size=batch_size)

    def ramp(self, weight: float, warmup_steps: int) -> float:
        """``weight`` ramped linearly from 0 over the first ``warmup_steps`` optimizer steps of training (full
        weight in evaluation and with no warm-up)."""
        ramp = min(1.0, self.global_step / warmup_steps) if warmup_steps and self.training else 1.0
        return weight * ramp

    def on_fit_start(self) -> None:
        self.seed = torch.initial_seed()  # seed_everything's seed, the same on every rank

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["pdegen"]["seed"] = self.seed

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        self.seed = checkpoint.get("pdegen", {}).get("seed", self.seed)

    def training_data(self, samples: Dataset) -> Dataset:
        """What the DataModule serves as training batches, given its training split ``samples``: those
        samples (a teacher learns them), or what a student makes instead (its noise, its teacher's pairs:
        :mod:`datamodules.generated`). The DataModule's held-out splits serve evaluation either way."""
        return samples

    def noise_batch(self, batch: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """A data-free student's unit noise for one step: in training the batch itself (what its
        ``training_data``, e.g. :class:`~datamodules.generated.GaussianNoise`, served); in val/test, where
        the batches are held-out samples, noise drawn from ``generator`` in their shape."""
        if self.training:
            return batch.float()
        return torch.randn(batch.shape, generator=generator, device=self.device)

    def training_generator(self) -> torch.Generator:
        """The generator of this training step's draws, seeded by (seed, rank, step): ranks
        draw different noise (data-free students would otherwise repeat each other's work under
        DDP) and a resumed run draws what the uninterrupted one would have."""
        return seeded_generator("training", self.seed, self.global_rank, self.global_step, device=self.device)

    def training_step(self, batch: Tensor | Sequence[Tensor], batch_idx: int) -> Tensor:
        loss = self.loss(batch, generator=self.training_generator())
        size = (batch[0] if isinstance(batch, (tuple, list)) else batch).shape[0]  # samples, noise or pairs
        self.log("train/loss", loss, prog_bar=True, batch_size=size)
        return loss

    def _eval_step(self, batch: Tensor, batch_idx: int, stage: str) -> Tensor:
        """The loss with draws seeded by the batch index: a deterministic validation/test loss."""
        loss = self.loss(batch, generator=torch.Generator(device=self.device).manual_seed(batch_idx))
        self.log(f"{stage}/loss", loss, prog_bar=stage == "val", batch_size=batch.shape[0], sync_dist=True)
        return loss

    def validation_step(self, batch: Tensor, batch_idx: int) -> Tensor:
        return self._eval_step(batch, batch_idx, "val")

    def test_step(self, batch: Tensor, batch_idx: int) -> Tensor:
        return self._eval_step(batch, batch_idx, "test")

    # ------------------------------------------------------------------ sampling
    @property
    def sample_shape(self) -> tuple[int, ...]:
        if self.pde is None:
            raise RuntimeError("this generator has no PDE attached: fit it with a DataModule, load it from a "
                               "checkpoint, or call attach_pde(pde)")
        return self.pde.sample_shape

    def sample(self, n: int, generator: torch.Generator | None = None, batch_size: int | None = None) -> Tensor:
        """``n`` samples ``(n, C, *grid)`` in physical units (float64); ``generator`` seeds the noise."""
        return self.sample_with(self.generate, n, generator, batch_size)

    def sample_with(self, generate: Callable[..., Tensor], n: int, generator: torch.Generator | None = None,
                    batch_size: int | None = None, conditions: tuple[Tensor, ...] = (),
                    noise: Tensor | None = None, shape: tuple[int, ...] | None = None) -> Tensor:
        """Like :meth:`sample`, with ``generate(noise, *conditions) -> normalised samples`` in place of
        :meth:`generate`; ``conditions`` are per-sample tensors ``(n, ...)`` split into the
        same batches as the noise. The same ``generator`` seed gives the same noise whatever
        ``generate`` is, so students and their teacher can be compared sample by sample; ``noise``
        ``(n, *sample_shape)`` (standard normal) is used instead of drawing it; ``shape`` replaces ``sample_shape``
        (e.g. a forecast longer than the training trajectories).

        Runs without autograd, but outside inference mode (also under ``pdegen test``), so that a
        ``generate`` that steers its sampling by gradients (guidance, noise optimisation) can
        enable them."""
        if n < 1:
            raise ValueError(f"n must be positive, got {n}")
        batch_size = batch_size or self.sample_batch_size
        was_training = self.training
        self.eval()
        try:
            with torch.inference_mode(False), torch.no_grad():
                shape = tuple(shape or self.sample_shape)
                if noise is None:
                    noise = torch.randn(n, *shape, generator=generator, dtype=torch.float64,
                                        device=generator.device if generator is not None else self.device)
                elif noise.shape != (n, *shape):
                    raise ValueError(f"noise must be (n, *sample_shape) = {(n, *shape)}, got {tuple(noise.shape)}")
                noise = noise.to(self.device, torch.float64)
                conditions = tuple(c.to(self.device).clone() for c in conditions)  # plain tensors, not inference ones
                pieces = zip(noise.split(batch_size), *(c.split(batch_size) for c in conditions))
                chunks = []
                with progress.bar(n, "sample"):
                    for piece in pieces:
                        chunks.append(generate(*piece))
                        progress.advance(len(piece[0]))
        finally:
            self.train(was_training)
        return self.normalizer.decode(torch.cat(chunks).double())

    # ------------------------------------------------------------------ the teacher of a student
    def _held_teacher(self) -> FrozenTeacher:
        if self.teacher is None:
            raise TypeError(f"{type(self).__name__} holds no teacher")
        return self.teacher

    def teacher_sample(self, n: int, generator: torch.Generator | None = None,
                       batch_size: int | None = None) -> Tensor:
        """The teacher's samples with its own configured sampler and steps, from the noise :meth:`sample`
        draws with the same ``generator`` seed: what every speed-up divides."""
        return self.sample_with(self._held_teacher().sample, n, generator, batch_size)

    @property
    def teacher_nfe(self) -> int:
        """Network evaluations per sample of :meth:`teacher_sample`."""
        return self._held_teacher().nfe

    @property
    def distillation_sigmas(self) -> Tensor | None:
        """The σ schedule a student distils (its teacher's grid-matched samples, :meth:`grid_teacher_sample`,
        measure how faithfully it reproduces what it distilled, never its speed-up); ``None``: no such grid."""
        return None

    def grid_teacher_generate(self, noise: Tensor, sampler: Sampler | None = None) -> Tensor:
        """The teacher's PF-ODE solved with ``sampler`` (default Euler) on :attr:`distillation_sigmas`."""
        sigmas = self.distillation_sigmas
        if sigmas is None:
            raise TypeError(f"{type(self).__name__} distils no σ grid of its teacher")
        return self._held_teacher().solve(noise, sigmas, sampler or Euler())

    def grid_teacher_sample(self, n: int, generator: torch.Generator | None = None, sampler: Sampler | None = None,
                            batch_size: int | None = None) -> Tensor:
        """The teacher's grid-matched samples for the noise :meth:`sample` draws with the same ``generator`` seed."""
        return self.sample_with(lambda noise: self.grid_teacher_generate(noise, sampler), n, generator, batch_size)

    def grid_teacher_nfe(self, sampler: Sampler) -> int:
        """Teacher network evaluations per grid-matched sample."""
        sigmas = self.distillation_sigmas
        return sampler.nfe(len(sigmas) - 1, ends_at_zero=bool(sigmas[-1] == 0))

    # ------------------------------------------------------------------ downstream tasks
    def generate_task(self, noise: Tensor, observed: Tensor, mask: Tensor, task: ObservationTask) -> Tensor:
        """A sample agreeing with ``observed`` where ``mask`` (normalised units), from ``noise``."""
        raise NotImplementedError(f"{type(self).__name__} does not solve observation tasks; use a PIDDMStudent or a "
                                  "GuidedDiffusion (method diffusionpde or dflow)")

    def task_nfe(self, task: ObservationTask) -> int:
        """Network evaluations (forward passes) per sample of :meth:`solve_task`."""
        raise NotImplementedError(f"{type(self).__name__} does not solve observation tasks")

    def solve_task(self, observed: Tensor, mask: Tensor, task: ObservationTask,
                   generator: torch.Generator | None = None, batch_size: int | None = None) -> Tensor:
        """Complete ``observed`` samples ``(n, C, *grid)`` (physical units, read only where the bool
        ``mask`` of the same shape is True) into full samples in physical units."""
        if observed.shape != mask.shape or observed.shape[1:] != self.sample_shape:
            raise ValueError(f"observations {tuple(observed.shape)} and mask {tuple(mask.shape)} must both be "
                             f"(n, {', '.join(map(str, self.sample_shape))})")
        encoded = self.normalizer.encode(observed.to(self.device, torch.float64))
        return self.sample_with(lambda noise, y, m: self.generate_task(noise, y, m, task),
                                observed.shape[0], generator, batch_size, conditions=(encoded, mask.bool()))

    # ------------------------------------------------------------------ latency
    def latency_targets(self, batch_size: int) -> dict[str, Callable[[], Tensor]]:
        """What :class:`~pdegen.callbacks.LatencyCallback` times: one batch of ``batch_size`` samples
        (fixed noise seed), drawn as :meth:`sample` draws them, and a student's teacher's with its own
        sampler and steps (:meth:`teacher_sample`) from the same noise."""
        targets = {"model": lambda: self.sample(batch_size, self._latency_seed(), batch_size=batch_size)}
        if self.teacher is not None:
            targets["teacher"] = lambda: self.teacher_sample(batch_size, self._latency_seed(), batch_size=batch_size)
        return targets

    def latency_nfe(self) -> dict[str, int]:
        """Network evaluations per sample of each :meth:`latency_targets` entry."""
        return {"model": self.nfe} | ({"teacher": self.teacher_nfe} if self.teacher is not None else {})

    def _latency_seed(self) -> torch.Generator:
        return torch.Generator(device=self.device).manual_seed(0)

    def indexed_noise(self, indices: Sequence[int], seed: int = 0, shape: tuple[int, ...] | None = None) -> Tensor:
        """Standard-normal noise ``(len(indices), *shape)`` (default ``sample_shape``), each sample's drawn from
        (seed, its index) alone: the same whatever the batch it falls in."""
        return torch.stack([torch.randn(shape or self.sample_shape, dtype=torch.float64,
                                        generator=seeded_generator("indexed noise", seed, int(i)))
                            for i in indices])

    def predict_step(self, batch: Tensor, batch_idx: int) -> Tensor:
        """Generated samples in physical units, as many as the batch holds. For a batch of sample indices
        (:class:`datamodules.SampleRequest`) each sample's noise comes from the request's seed and its
        index (:meth:`indexed_noise`), so the samples do not depend on the batch size or the number of
        processes; any other batch is seeded by the batch index."""
        if batch.ndim == 1 and not batch.is_floating_point():
            datamodule = getattr(self.trainer, "datamodule", None)
            noise = self.indexed_noise(batch.tolist(), getattr(datamodule, "seed", 0))
            return self.sample_with(self.generate, len(batch), noise=noise)
        return self.sample(batch.shape[0], generator=torch.Generator(device=self.device).manual_seed(batch_idx))
