"""The student-vs-teacher side of an evaluation: the teacher's samples from the student's noise, with its
own sampler (what a speed-up divides) and on the student's distillation grid (what the student reproduces)."""

from __future__ import annotations

import functools

import lightning as L
import torch
from torch import Tensor

from pdegen.callbacks.outputs import timed_draw
from pdegen.diffusion import Euler, Heun, Sampler
from pdegen.report import side_label


class TeacherComparison:
    """The teacher's sample sets beside a module's ``generated`` samples, from the same noise, and their figures:

    - ``teacher``, for a module holding a teacher (``own_sampler``): the teacher with *its own* configured
      sampler and steps (what a user of the teacher gets), ``teacher/nfe``, ``teacher/seconds_per_sample`` at the
      same batch size in this process and ``teacher/speedup`` (teacher time / module time);
    - ``teacher_<sampler name>``, for a distilled student (a module with ``distillation_sigmas``): the teacher's
      grid-matched samples with each of ``samplers`` (default Euler and Heun), their NFE and time, and
      ``gap_rmse``, the mean over samples of the RMS student-teacher difference in normalised units: how
      faithfully the student reproduces what it distilled, never a speed-up.

    The teacher is frozen, so each teacher set is drawn once per run and reused.
    """

    def __init__(self, own_sampler: bool = True, samplers: list[Sampler] | None = None) -> None:
        self.own_sampler = own_sampler
        self.samplers = [Euler(), Heun()] if samplers is None else list(samplers)
        self._drawn: dict[tuple, tuple[Tensor, float]] = {}

    def grid_samplers(self, pl_module: L.LightningModule) -> list[Sampler]:
        return self.samplers if getattr(pl_module, "distillation_sigmas", None) is not None else []

    def has_own(self, pl_module: L.LightningModule) -> bool:
        return self.own_sampler and getattr(pl_module, "teacher", None) is not None

    def sides(self, pl_module: L.LightningModule) -> list[str]:
        """The names of the teacher sets :meth:`compare` returns for this module."""
        return [*(["teacher"] if self.has_own(pl_module) else []),
                *(f"teacher_{sampler.name}" for sampler in self.grid_samplers(pl_module))]

    def _teacher_samples(self, pl_module: L.LightningModule, sampler: Sampler | None, num_samples: int,
                         seed: int) -> tuple[Tensor, float]:
        key = (repr(sampler), num_samples, seed, str(pl_module.device))
        if key not in self._drawn:
            generator = torch.Generator(device=pl_module.device).manual_seed(seed)
            if sampler is None:
                draw = functools.partial(pl_module.teacher_sample, num_samples, generator=generator)
            else:
                draw = functools.partial(pl_module.grid_teacher_sample, num_samples, generator=generator,
                                         sampler=sampler)
            side = f"teacher_{sampler.name}" if sampler else "teacher"
            self._drawn[key] = timed_draw(pl_module, draw, f"{side_label(side)} samples")
        return self._drawn[key]

    def compare(self, pl_module: L.LightningModule, generated: Tensor, seconds: float,
                seed: int) -> tuple[dict[str, Tensor], dict[str, float]]:
        """The teacher sets for the noise of ``seed`` (physical units) and their figures, given the module's
        ``generated`` samples from that noise and the ``seconds`` they took."""
        n = len(generated)
        sets: dict[str, Tensor] = {}
        results: dict[str, float] = {}
        if self.has_own(pl_module):
            sets["teacher"], teacher_seconds = self._teacher_samples(pl_module, None, n, seed)
            results |= {"teacher/nfe": float(pl_module.teacher_nfe), "teacher/seconds_per_sample": teacher_seconds / n,
                        "teacher/speedup": teacher_seconds / seconds}
        encoded = pl_module.normalizer.encode(generated)
        for sampler in self.grid_samplers(pl_module):
            side = f"teacher_{sampler.name}"
            sets[side], teacher_seconds = self._teacher_samples(pl_module, sampler, n, seed)
            gap = encoded - pl_module.normalizer.encode(sets[side])
            results |= {f"{side}/nfe": float(pl_module.grid_teacher_nfe(sampler)),
                        f"{side}/seconds_per_sample": teacher_seconds / n,
                        f"{side}/gap_rmse": float(gap.flatten(1).square().mean(1).sqrt().mean())}
        return sets, results
