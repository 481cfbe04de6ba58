"""A frozen diffusion teacher inside another module: loading it, and what students borrow from it."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

from pdegen.diffusion import sample, sampler_nfe
from pdegen.modules.generator import load_module
from pdegen.modules.teacher import DiffusionTeacher
from pdegen.pdes import PDE


def load_teacher(teacher: str | os.PathLike | nn.Module) -> nn.Module:
    """A frozen teacher: a :class:`DiffusionTeacher` (or its checkpoint path), or any denoiser
    module D(x, σ) on normalised data (e.g. an exact Gaussian-mixture denoiser). A module passed in
    is frozen and put in eval mode in place."""
    if isinstance(teacher, (str, os.PathLike)):
        path = Path(teacher)
        if not path.is_file():
            raise FileNotFoundError(
                f"teacher checkpoint {str(path)!r} not found: train a teacher first "
                "(pdegen fit --config lightning_configs/teacher/<family>.yaml) and set `model.init_args.teacher` "
                "to its checkpoint (e.g. runs/teacher_<family>/checkpoints/last.ckpt)")
        teacher = load_module(DiffusionTeacher, path)
    if not isinstance(teacher, nn.Module):
        raise TypeError(f"teacher must be a checkpoint path or a denoiser module, got {type(teacher).__name__}")
    return teacher.eval().requires_grad_(False)


class TeacherMixin:
    """A frozen teacher as the submodule ``teacher``, kept in eval mode; mix in before
    :class:`~pdegen.modules.generator.GeneratorMixin`. Students take the teacher's σ range,
    normaliser and PDE, and reject data of another PDE."""

    def attach_teacher(self, teacher: str | os.PathLike | nn.Module, sigma_min: float | None = None,
                       sigma_max: float | None = None, rho: float | None = None,
                       sigma_data: float | None = None) -> None:
        """Load and freeze ``teacher``; the σ settings default to the teacher's (EDM's for a plain denoiser)."""
        self.teacher = load_teacher(teacher)
        defaults = self.teacher.hparams if self.is_diffusion_teacher else {}

        def pick(value: float | None, key: str, default: float) -> float:
            return float(value if value is not None else defaults.get(key, default))

        self.sigma_min, self.sigma_max = pick(sigma_min, "sigma_min", 0.002), pick(sigma_max, "sigma_max", 80.0)
        self.rho, self.sigma_data = pick(rho, "rho", 7.0), pick(sigma_data, "sigma_data", 1.0)
        if not 0 < self.sigma_min < self.sigma_max:
            raise ValueError(f"need 0 < sigma_min < sigma_max, got {self.sigma_min} and {self.sigma_max}")

    @property
    def is_diffusion_teacher(self) -> bool:
        return isinstance(self.teacher, DiffusionTeacher)

    @property
    def teacher_net(self) -> nn.Module:
        """The teacher's backbone (to copy as a student's initialisation)."""
        if not self.is_diffusion_teacher:
            raise ValueError("net is required when the teacher is a plain denoiser: give the student backbone")
        return self.teacher.denoiser.net

    def copy_teacher_normalizer(self) -> None:
        """Call after ``init_generator``: the teacher's normaliser, residual normalisation and PDE become
        the student's (so every residual loss of a student or baseline uses the teacher's data scales)."""
        if self.is_diffusion_teacher:
            self.normalizer.load_state_dict(self.teacher.normalizer.state_dict())
            self.residual_scales = self.teacher.residual_scales
            if self.teacher.pde is not None:
                self.attach_pde(self.teacher.pde)

    @property
    def denoiser(self) -> nn.Module:
        """The teacher's D(x, σ) on normalised data."""
        return self.teacher.denoiser if self.is_diffusion_teacher else self.teacher

    def attach_pde(self, pde: PDE, source: str = "the data") -> None:
        """As the generator's, and the PDE must be the one the teacher learned."""
        teacher_pde = getattr(self.teacher, "pde", None)
        if teacher_pde is not None and (pde.name, pde.physics()) != (teacher_pde.name, teacher_pde.physics()):
            raise ValueError(f"the data's PDE {pde!r} differs from the teacher's {teacher_pde!r}: "
                             "set the DataModule's `pde` to the teacher's")
        super().attach_pde(pde, source)

    # ------------------------------------------------------------------ the teacher on the student's grid
    @property
    def reference_sigmas(self) -> Tensor:
        """The σ schedule of the teacher's grid-matched samples (the student's distillation grid): they measure
        how faithfully the student reproduces what it distilled (fidelity, gap), never its speed-up."""
        raise NotImplementedError

    def reference_generate(self, noise: Tensor, sampler: str = "euler") -> Tensor:
        """The teacher's PF-ODE solved with ``sampler`` on :attr:`reference_sigmas` from ``noise``."""
        sigmas = self.reference_sigmas.to(noise.device)
        return sample(self.denoiser, noise.double() * sigmas[0], sigmas, sampler=sampler)

    def reference_sample(self, n: int, generator: torch.Generator | None = None, sampler: str = "euler",
                         batch_size: int | None = None) -> Tensor:
        """The teacher's samples for the noise :meth:`sample` draws with the same ``generator`` seed."""
        return self.sample_with(lambda noise: self.reference_generate(noise, sampler), n, generator, batch_size)

    def reference_nfe(self, sampler: str) -> int:
        """Teacher network evaluations per reference sample."""
        sigmas = self.reference_sigmas
        return sampler_nfe(sampler, len(sigmas) - 1, ends_at_zero=bool(sigmas[-1] == 0))

    # ------------------------------------------------------------------ the teacher as its users sample it
    def teacher_sample(self, n: int, generator: torch.Generator | None = None,
                       batch_size: int | None = None) -> Tensor:
        """The teacher's samples with its own configured sampler and steps (``DiffusionTeacher.sample``), from
        the noise :meth:`sample` draws with the same ``generator`` seed: what every speed-up divides."""
        if not self.is_diffusion_teacher:
            raise TypeError("a plain denoiser teacher has no sampler of its own; give a DiffusionTeacher")
        return self.sample_with(self.teacher.generate_normalized, n, generator, batch_size)

    @property
    def teacher_nfe(self) -> int:
        """Network evaluations per sample of :meth:`teacher_sample`."""
        return self.teacher.nfe

    def latency_targets(self, batch_size: int) -> dict[str, Callable[[], Tensor]]:
        """The student's batch of samples and, for a DiffusionTeacher, the teacher's with its own sampler and
        steps (:meth:`teacher_sample`) from the same noise."""
        targets = super().latency_targets(batch_size)
        if self.is_diffusion_teacher:
            targets["teacher"] = lambda: self.teacher_sample(batch_size, self._latency_seed(), batch_size=batch_size)
        return targets

    def latency_nfe(self) -> dict[str, int]:
        return super().latency_nfe() | ({"teacher": self.teacher_nfe} if self.is_diffusion_teacher else {})

    def train(self, mode: bool = True):
        """The teacher stays in eval mode (no dropout) whatever the student's mode."""
        super().train(mode)
        self.teacher.eval()
        return self
