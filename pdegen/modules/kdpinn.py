"""KD-PINN (arXiv 2512.13336): a compact student PINN distilled from a trained teacher PINN."""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from pathlib import Path

import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn

from pdegen.modules.checkpoints import load_module, save_init_arguments
from pdegen.modules.pinn import PINN, PhysicsInformedModule
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


def load_pinn(path: str | os.PathLike) -> PINN:
    """A trained teacher PINN from its checkpoint, frozen in eval mode."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"teacher checkpoint {str(path)!r} not found: train the teacher first "
                                "(pdegen fit --config lightning_configs/kdpinn/<problem>_teacher.yaml) and set "
                                "`model.init_args.teacher` to its checkpoint")
    return load_module(PINN, path).eval().requires_grad_(False)


class KDPINNStudent(PhysicsInformedModule):
    """A compact student PINN trained on the teacher's problem with its physics losses plus distillation.

    Loss at step s: w_d(s)·KD + w_p(s)·(mean ‖R_pde‖² + Σ_c λ_c mean ‖R_c‖²), where KD is
    :func:`distillation_loss` between student and teacher on ``num_distill`` points of the domain
    (Sobol or uniform, fixed). The weights move linearly from ``distill_weights[0]`` /
    ``physics_weights[0]`` to ``[1]`` over ``schedule_steps``: distillation dominates early, physics
    later. The variance of the Gaussians is τ² (``variance="temperature"``, τ = ``temperature``) or
    τ² times each output's variance over the distillation points (``"output"``, which balances outputs
    of different scale, e.g. u, v and p). Training and evaluation otherwise as in :class:`PINN`.

    Args:
        teacher: checkpoint of the trained :class:`PINN`; its problem is the student's.
        net: the compact student network.
    """

    def __init__(self, teacher: str, net: nn.Module, temperature: float = 1.0, variance: str = "temperature",
                 num_distill: int = 8192, distill_weights: tuple[float, float] = (1.0, 0.1),
                 physics_weights: tuple[float, float] = (0.01, 1.0), schedule_steps: int = 2000,
                 condition_weights: dict[str, float] | None = None, num_interior: int = 8192,
                 num_condition: int = 1024, sampling: str = "sobol", resample_every_n_epochs: int = 0,
                 steps_per_epoch: int = 100, adam_steps: int = 5000, lbfgs_max_iter: int = 20,
                 num_eval_points: int = 10000, seed: int = 0, optimizer: OptimizerCallable = torch.optim.Adam,
                 lr_scheduler: LRSchedulerCallable | None = None, causal_epsilon: float = 0.0,
                 causal_chunks: int = 32) -> None:
        if variance not in VARIANCES:
            raise ValueError(f"unknown variance {variance!r}: use one of {VARIANCES}")
        if not temperature > 0 or num_distill < 1 or schedule_steps < 0:
            raise ValueError("temperature must be > 0, num_distill >= 1 and schedule_steps >= 0")
        weights = (*distill_weights, *physics_weights)
        if len(weights) != 4 or min(weights) < 0 or max(distill_weights) + max(physics_weights) == 0:
            raise ValueError(f"distill_weights and physics_weights are (start, end) pairs >= 0, not all zero; got "
                             f"{distill_weights} and {physics_weights}")
        teacher_module = load_pinn(teacher)
        super().__init__(teacher_module.problem, net, condition_weights, num_interior, num_condition, sampling,
                         resample_every_n_epochs, steps_per_epoch, adam_steps, lbfgs_max_iter, num_eval_points, seed,
                         optimizer, lr_scheduler, causal_epsilon, causal_chunks)
        save_init_arguments(self, inspect.currentframe())
        self.teacher = teacher_module.net
        self.distill_weights, self.physics_weights = tuple(distill_weights), tuple(physics_weights)
        self.schedule_steps = schedule_steps
        generator = torch.Generator().manual_seed(seed + 1)
        coords = sample_box(self.problem.lower, self.problem.upper, num_distill, sampling, generator)
        with torch.no_grad():
            target = self.teacher(coords)
        scale = target.var(0) if variance == "output" else torch.ones(target.shape[1])
        self.register_buffer("distill_coords", coords)
        self.register_buffer("distill_target", target)
        self.register_buffer("distill_variance", temperature**2 * scale.clamp_min(1e-12))

    def train(self, mode: bool = True) -> KDPINNStudent:
        super().train(mode)
        self.teacher.eval()  # frozen
        return self

    def latency_targets(self, batch_size: int) -> dict[str, Callable[[], Tensor]]:
        """The student and its teacher on the same ``batch_size`` points."""
        points = self.latency_points(batch_size)
        return {"model": lambda: self.net(points), "teacher": lambda: self.teacher(points)}

    def weights_at(self, step: int) -> dict[str, float]:
        """Every loss term's weight at optimizer step ``step``: distillation, and the physics weight times
        1 (``pde``) or λ_c (each condition)."""
        ramp = min(1.0, step / self.schedule_steps) if self.schedule_steps else 1.0
        (d0, d1), (p0, p1) = self.distill_weights, self.physics_weights
        physics = p0 + (p1 - p0) * ramp
        return {"distill": d0 + (d1 - d0) * ramp, **{name: physics * w for name, w in super().term_weights().items()}}

    def term_weights(self) -> dict[str, float]:
        return self.weights_at(self.global_step)

    def loss_terms(self) -> dict[str, Tensor]:
        terms = super().loss_terms() if self.term_weights()["pde"] > 0 else {}
        terms["distill"] = distillation_loss(self.net(self.distill_coords), self.distill_target, self.distill_variance)
        return terms
