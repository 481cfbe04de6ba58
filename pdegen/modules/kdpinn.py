"""KD-PINN (arXiv 2512.13336): a compact student PINN distilled from a trained teacher PINN. The student is a
:class:`~pdegen.modules.PINN` that holds a :class:`PINNDistillation`."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import Tensor, nn

from pdegen.modules.checkpoints import load_module
from pdegen.pdes.pointwise.base import sample_box

VARIANCES = ("temperature", "output")


def gaussian_kl(mean_p: Tensor, var_p: Tensor | float, mean_q: Tensor, var_q: Tensor | float) -> Tensor:
    """Elementwise KL(N(mean_p, var_p) ‖ N(mean_q, var_q)) = ½ [ln(var_q / var_p) + (var_p + (mean_p − mean_q)²)
    / var_q − 1] in nats."""
    var_p, var_q = torch.as_tensor(var_p, dtype=mean_p.dtype), torch.as_tensor(var_q, dtype=mean_p.dtype)
    return 0.5 * ((var_q / var_p).log() + (var_p + (mean_p - mean_q).square()) / var_q - 1)


def distillation_loss(student: Tensor, teacher: Tensor, variance: Tensor | float = 1.0) -> Tensor:
    """Mean over points of Σ_outputs KL(N(teacher, v) ‖ N(student, v)) for predictions ``(N, k)``, with the
    same variance ``v`` (a scalar τ², or one per output) for both: it reduces to the weighted MSE
    Σ_k (student_k − teacher_k)² / (2 v_k), which is what is computed."""
    return ((student - teacher).square() / (2 * torch.as_tensor(variance, dtype=student.dtype))).sum(1).mean()


def load_pinn(path: str | os.PathLike, teacher: str | os.PathLike | None = None):
    """A trained :class:`~pdegen.modules.PINN` from its checkpoint, frozen in eval mode; for a student,
    ``teacher`` replaces the teacher checkpoint it was trained from (a path saved relative to another
    directory)."""
    from pdegen.modules.pinn import PINN  # pinn.py imports this module

    if not Path(path).is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} not found: train the teacher first "
                                "(pdegen fit --config lightning_configs/kdpinn/<problem>_teacher.yaml) and set "
                                "`model.init_args.distillation.teacher` to its checkpoint")
    overrides = {}
    if teacher is not None:
        saved = torch.load(path, map_location="cpu", weights_only=True)["hyper_parameters"].get("distillation")
        if saved is None:
            raise ValueError(f"{os.fspath(path)!r} is not a KD-PINN student: it has no teacher to replace")
        settings = dict(saved.get("init_args", saved)) | {"teacher": os.fspath(teacher)}
        overrides["distillation"] = PINNDistillation(**settings)
    return load_module(PINN, path, **overrides).eval().requires_grad_(False)


class PINNDistillation(nn.Module):
    """The KD-PINN part of a student :class:`~pdegen.modules.PINN`: a frozen teacher PINN (its network stays in
    eval mode; its problem is the student's) and the distillation term.

    Loss at step s: w_d(s)·KD + w_p(s)·(the student's physics terms), where KD is :func:`distillation_loss`
    between student and teacher on ``num_points`` points of the domain (drawn once, by the student's
    collocation sampling). The weights move linearly from ``distill_weights[0]`` / ``physics_weights[0]`` to
    ``[1]`` over ``schedule_steps``: distillation dominates early, physics later. The variance of the
    Gaussians is τ² (``variance="temperature"``, τ = ``temperature``) or τ² times each output's variance over
    the distillation points (``"output"``, which balances outputs of different scale, e.g. u, v and p).

    Args:
        teacher: checkpoint of the trained teacher :class:`~pdegen.modules.PINN`.
    """

    def __init__(self, teacher: str, temperature: float = 1.0, variance: str = "temperature",
                 num_points: int = 8192, distill_weights: tuple[float, float] = (1.0, 0.1),
                 physics_weights: tuple[float, float] = (0.01, 1.0), schedule_steps: int = 2000) -> None:
        super().__init__()
        if variance not in VARIANCES:
            raise ValueError(f"unknown variance {variance!r}: use one of {VARIANCES}")
        if not temperature > 0 or num_points < 1 or schedule_steps < 0:
            raise ValueError("temperature must be > 0, num_points >= 1 and schedule_steps >= 0")
        weights = (*distill_weights, *physics_weights)
        if len(weights) != 4 or min(weights) < 0 or max(distill_weights) + max(physics_weights) == 0:
            raise ValueError(f"distill_weights and physics_weights are (start, end) pairs >= 0, not all zero; got "
                             f"{distill_weights} and {physics_weights}")
        module = load_pinn(teacher)
        self.problem, self.teacher = module.problem, module.net
        self.temperature, self.variance, self.num_points = float(temperature), variance, int(num_points)
        self.distill_weights, self.physics_weights = tuple(distill_weights), tuple(physics_weights)
        self.schedule_steps = schedule_steps

    def draw_points(self, sampling: str, seed: int) -> None:
        """The distillation points (``sampling``, ``seed``), the teacher there and the Gaussians' variance."""
        generator = torch.Generator().manual_seed(seed)
        coords = sample_box(self.problem.lower, self.problem.upper, self.num_points, sampling, generator)
        with torch.no_grad():
            target = self.teacher(coords)
        scale = target.var(0) if self.variance == "output" else torch.ones(target.shape[1])
        self.register_buffer("coords", coords)
        self.register_buffer("target", target)
        self.register_buffer("gaussian_variance", self.temperature**2 * scale.clamp_min(1e-12))

    def train(self, mode: bool = True) -> PINNDistillation:
        super().train(mode)
        self.teacher.eval()  # frozen
        return self

    def loss(self, student: nn.Module) -> Tensor:
        """:func:`distillation_loss` of ``student`` against the teacher on the distillation points."""
        return distillation_loss(student(self.coords), self.target, self.gaussian_variance)

    def weights_at(self, step: int, physics: dict[str, float]) -> dict[str, float]:
        """The ``distill`` weight at optimizer step ``step`` and the ``physics`` weights scaled by the
        physics schedule."""
        ramp = min(1.0, step / self.schedule_steps) if self.schedule_steps else 1.0
        (d0, d1), (p0, p1) = self.distill_weights, self.physics_weights
        scale = p0 + (p1 - p0) * ramp
        return {"distill": d0 + (d1 - d0) * ramp, **{name: scale * w for name, w in physics.items()}}
