"""PIDDMStudent: Physics-Informed Distillation of a diffusion teacher into a one-step generator
whose *samples* satisfy the PDE (PIDDM, arXiv 2505.22391)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor, nn
from tqdm.auto import tqdm

from pdegen.diffusion import EDMPreconditioner, Euler, Sampler, as_sampler, optimize_noise
from pdegen.io import read_arrays, write_arrays_atomic
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

    Pairs: ``num_pairs`` training pairs and ``num_val_pairs`` held-out ones (the val/test loss),
    drawn per rank (DDP ranks distil different pairs) and cached to HDF5 in ``pair_dir`` (default:
    ``<trainer root>/pairs``); a cached file is reused when it was made by the same teacher with
    the same settings. ``refresh_every_n_epochs`` > 0 draws fresh pairs every that many epochs.

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
        self._pairs: dict[str, Tensor] | None = None
        self._pair_round = -1

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

    def _pair_path(self, round_: int) -> Path:
        root = Path(self.hparams.pair_dir or Path(self.trainer.default_root_dir) / "pairs")
        return root / f"pairs_rank{self.global_rank}_round{round_}.h5"

    def _pair_settings(self, round_: int) -> dict:
        h = self.hparams
        return {"teacher": self._teacher_fingerprint(), "teacher_steps": h.teacher_steps,
                "teacher_sampler": self.teacher_sampler.name, "num_pairs": h.num_pairs,
                "num_val_pairs": h.num_val_pairs,
                "rank": self.global_rank, "round": round_, "seed": self.seed,
                "shape": list(self.sample_shape)}

    def _teacher_fingerprint(self) -> str:
        """SHA-1 of the teacher's weights and normaliser: pairs cached from another teacher are never reused."""
        digest = hashlib.sha1()
        for name, tensor in sorted(self.teacher.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
        return digest.hexdigest()

    def load_pairs(self, round_: int = 0) -> None:
        """Load (or generate and cache) the pairs of refresh round ``round_`` for this rank."""
        if self._pairs is not None and self._pair_round == round_:
            return
        path, settings = self._pair_path(round_), self._pair_settings(round_)
        if path.is_file():
            arrays, attrs = read_arrays(path)
            if {k: attrs.get(k) for k in settings} == settings:
                self._set_pairs(arrays, round_)
                return
            rank_zero_info(f"{path} was made with other settings: regenerating it")
        total = self.hparams.num_pairs + self.hparams.num_val_pairs
        seed = int.from_bytes(hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).digest()[:8], "little")
        generator = torch.Generator().manual_seed(seed % 2**63)  # stable across processes, unlike hash()
        noise = torch.randn(total, *self.sample_shape, generator=generator, dtype=torch.float64)
        h = self.hparams
        samples = []
        with torch.inference_mode(False), torch.no_grad():
            for chunk in tqdm(noise.split(self.sample_batch_size), desc=f"teacher pairs (N_s={h.teacher_steps})",
                              unit="batch", disable=self.global_rank != 0):
                samples.append(self.grid_teacher_generate(chunk.to(self.device), self.teacher_sampler).float().cpu())
        arrays = {"noise": noise.float(), "sample": torch.cat(samples)}
        if not torch.isfinite(arrays["sample"]).all():
            raise FloatingPointError("the teacher produced non-finite samples: check its checkpoint")
        write_arrays_atomic(path, arrays, settings)
        self._set_pairs(arrays, round_)

    def _set_pairs(self, arrays: dict[str, Tensor], round_: int) -> None:
        self._pairs = {k: v.to(self.device, torch.float32) for k, v in arrays.items()}
        self._pair_round = round_
        if self.residual_scales is None:  # a teacher without the data's scales: its samples' typical source size
            self.residual_scales = reference_residual_scales(self.pde, self.normalizer.decode(self._pairs["sample"]))

    def on_fit_start(self) -> None:
        super().on_fit_start()
        self.load_pairs(self._round_of(self.current_epoch))

    def on_train_epoch_start(self) -> None:
        self.load_pairs(self._round_of(self.current_epoch))

    def _round_of(self, epoch: int) -> int:
        every = self.hparams.refresh_every_n_epochs
        return epoch // every if every else 0

    # ------------------------------------------------------------------ training
    def loss(self, batch: Tensor, generator: torch.Generator | None = None) -> Tensor:
        self.check_batch(batch)
        if self._pairs is None:
            self.load_pairs(0)
        n_train = self.hparams.num_pairs
        if self.training:
            index = torch.randint(0, n_train, (batch.shape[0],), generator=generator, device=self.device)
        else:  # the held-out pairs, in order
            index = n_train + torch.arange(self.hparams.num_val_pairs, device=self.device)
        noise, target = self._pairs["noise"][index], self._pairs["sample"][index]
        prediction = self.d(noise)
        data = (prediction - target).square().flatten(1).mean(1).mean()
        physics = self.physics_loss(prediction).mean()
        self.log_loss_terms(len(index), data_loss=data, residual_loss=physics)
        return data + self.current_residual_weight * physics.to(data.dtype)

    @property
    def current_residual_weight(self) -> float:
        """λ_train, ramped linearly from 0 over the first ``residual_warmup_steps`` optimizer steps."""
        warmup = self.hparams.residual_warmup_steps
        ramp = min(1.0, self.global_step / warmup) if warmup and self.training else 1.0
        return self.residual_weight * ramp

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
