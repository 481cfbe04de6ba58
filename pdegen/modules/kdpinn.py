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


def pointwise_kl(student: Tensor, teacher: Tensor, variance: Tensor | float = 1.0) -> Tensor:
    """Per point ``(N,)``: Σ over the other dimensions of KL(N(teacher, v) ‖ N(student, v)) for predictions
    ``(N, ...)`` (values ``(N, k)``, derivatives ``(N, k, d)``), with the same variance ``v`` (a scalar τ², or one
    per entry, broadcast) for both: it reduces to the weighted squared error (student − teacher)² / (2 v), which
    is what is computed."""
    error = (student - teacher).square() / (2 * torch.as_tensor(variance, dtype=student.dtype))
    return error.flatten(1).sum(1)


def distillation_loss(student: Tensor, teacher: Tensor, variance: Tensor | float = 1.0) -> Tensor:
    """Mean over points of Σ_outputs KL(N(teacher, v) ‖ N(student, v)) for predictions ``(N, k)``
    (:func:`pointwise_kl`)."""
    return pointwise_kl(student, teacher, variance).mean()


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


POINTS = ("fixed", "resampled", "adaptive")


def coordinate_jacobian(net: nn.Module, coords: Tensor, create_graph: bool) -> tuple[Tensor, Tensor]:
    """``net`` at ``coords`` ``(N, d)`` and its first derivatives there ``(N, k, d)`` (∂ output_k / ∂ coord_j,
    in the problem's units), by autograd; ``create_graph`` keeps them differentiable for training."""
    with torch.enable_grad():
        points = coords.detach().requires_grad_(True)
        values = net(points)
        rows = [torch.autograd.grad(values[:, k].sum(), points, create_graph=create_graph, retain_graph=True)[0]
                for k in range(values.shape[1])]
    return values, torch.stack(rows, 1)


class PINNDistillation(nn.Module):
    """The KD-PINN part of a student :class:`~pdegen.modules.PINN`: a frozen teacher PINN (its network stays in
    eval mode; its problem is the student's) and the distillation term.

    Loss at step s: w_d(s)·KD + w_p(s)·(the student's physics terms). KD is :func:`distillation_loss` between
    student and teacher on ``num_points`` points of the domain, plus ``derivative_weight`` times the same
    Gaussian KL between their first derivatives in every coordinate (Sobolev distillation: the student then
    inherits the derivatives its residual is made of). The weights move linearly from ``distill_weights[0]`` /
    ``physics_weights[0]`` to ``[1]`` over ``schedule_steps``: distillation dominates early, physics later.
    The variance of the Gaussians is τ² (``variance="temperature"``, τ = ``temperature``) or τ² times each
    output's (and each derivative's) variance over the first distillation points (``"output"``, which
    balances outputs and derivatives of different scale, e.g. u, v and p).

    Distillation ``points``: ``"fixed"`` (drawn once by the student's collocation sampling), ``"resampled"``
    (fresh uniform points every ``resample_every`` Adam steps) or ``"adaptive"`` (every ``resample_every``
    steps, ``num_points`` drawn from ``pool`` × as many uniform candidates with probability ∝ e/mean(e) + 1,
    e the student's pointwise distillation loss: denser where the student is furthest from the teacher, as in
    residual-based adaptive distribution (Wu et al. 2023)). The points are frozen during L-BFGS, which needs a
    deterministic loss.

    Args:
        teacher: checkpoint of the trained teacher :class:`~pdegen.modules.PINN`.
    """

    def __init__(self, teacher: str, temperature: float = 1.0, variance: str = "temperature",
                 num_points: int = 8192, distill_weights: tuple[float, float] = (1.0, 0.1),
                 physics_weights: tuple[float, float] = (0.01, 1.0), schedule_steps: int = 2000,
                 derivative_weight: float = 0.0, points: str = "fixed", resample_every: int = 10,
                 pool: int = 4) -> None:
        super().__init__()
        if variance not in VARIANCES:
            raise ValueError(f"unknown variance {variance!r}: use one of {VARIANCES}")
        if points not in POINTS:
            raise ValueError(f"unknown distillation points {points!r}: use one of {POINTS}")
        if not temperature > 0 or num_points < 1 or schedule_steps < 0 or resample_every < 1 or pool < 1:
            raise ValueError("temperature must be > 0, num_points, resample_every and pool >= 1 and "
                             "schedule_steps >= 0")
        if not derivative_weight >= 0:
            raise ValueError(f"derivative_weight must be >= 0, got {derivative_weight}")
        weights = (*distill_weights, *physics_weights)
        if len(weights) != 4 or min(weights) < 0 or max(distill_weights) + max(physics_weights) == 0:
            raise ValueError(f"distill_weights and physics_weights are (start, end) pairs >= 0, not all zero; got "
                             f"{distill_weights} and {physics_weights}")
        module = load_pinn(teacher)
        self.problem, self.teacher = module.problem, module.net
        self.temperature, self.variance, self.num_points = float(temperature), variance, int(num_points)
        self.distill_weights, self.physics_weights = tuple(distill_weights), tuple(physics_weights)
        self.schedule_steps = schedule_steps
        self.derivative_weight, self.points, self.resample_every, self.pool = (float(derivative_weight), points,
                                                                             int(resample_every), int(pool))
        self.generator: torch.Generator | None = None

    def draw_points(self, sampling: str, seed: int) -> None:
        """The first distillation points (``sampling``, ``seed``), the teacher there and the Gaussians'
        variances; later draws (``resampled``, ``adaptive``) continue from ``seed``."""
        self.generator = torch.Generator().manual_seed(seed)
        coords = sample_box(self.problem.lower, self.problem.upper, self.num_points, sampling, self.generator)
        self._set_points(coords)
        target, slopes = self.target, self.target_slopes
        output = self.variance == "output"
        scale = target.var(0) if output else torch.ones(target.shape[1])
        slope_scale = slopes.var(0) if output else torch.ones(slopes.shape[1:])
        self.register_buffer("gaussian_variance", self.temperature**2 * scale.clamp_min(1e-12))
        self.register_buffer("slope_variance", self.temperature**2 * slope_scale.clamp_min(1e-12))

    def _set_points(self, coords: Tensor) -> None:
        """Distil on ``coords`` from now on: the teacher's values (and slopes) there."""
        coords = coords.to(next(self.teacher.parameters()).device)
        if self.derivative_weight or not hasattr(self, "target_slopes"):
            target, slopes = coordinate_jacobian(self.teacher, coords, create_graph=False)
        else:
            with torch.no_grad():
                target, slopes = self.teacher(coords), self.target_slopes[:0]
        self.register_buffer("coords", coords)
        self.register_buffer("target", target.detach())
        self.register_buffer("target_slopes", slopes.detach())

    def train(self, mode: bool = True) -> PINNDistillation:
        super().train(mode)
        self.teacher.eval()  # frozen
        return self

    def pointwise(self, student: nn.Module, coords: Tensor, target: Tensor, slopes: Tensor,
                  create_graph: bool = True) -> Tensor:
        """The distillation loss of ``student`` at each point ``(N,)``: Σ_outputs of the Gaussian KL of the
        values, plus ``derivative_weight`` × that of the first derivatives."""
        if not self.derivative_weight:
            return pointwise_kl(student(coords), target, self.gaussian_variance)
        values, student_slopes = coordinate_jacobian(student, coords, create_graph)
        return (pointwise_kl(values, target, self.gaussian_variance)
                + self.derivative_weight * pointwise_kl(student_slopes, slopes, self.slope_variance))

    def loss(self, student: nn.Module, step: int = 0, frozen: bool = False) -> Tensor:
        """The mean distillation loss of ``student`` on the distillation points, redrawn first when
        ``points`` is not ``fixed``, ``step`` is a multiple of ``resample_every`` and not ``frozen``."""
        if self.points != "fixed" and not frozen and step and step % self.resample_every == 0:
            self._set_points(self._draw(student).to(self.coords.dtype))
        return self.pointwise(student, self.coords, self.target, self.target_slopes).mean()

    @torch.no_grad()
    def _draw(self, student: nn.Module) -> Tensor:
        """New distillation points: uniform (``resampled``) or adaptive to the student's error."""
        lower, upper = self.problem.lower, self.problem.upper
        if self.points == "resampled":
            return sample_box(lower, upper, self.num_points, "uniform", self.generator)
        candidates = sample_box(lower, upper, self.pool * self.num_points, "uniform", self.generator)
        candidates = candidates.to(self.coords.device)
        target, slopes = (coordinate_jacobian(self.teacher, candidates, create_graph=False)
                          if self.derivative_weight else (self.teacher(candidates), None))
        error = self.pointwise(student, candidates, target.detach(), slopes, create_graph=False).detach().cpu()
        density = error / error.mean().clamp_min(1e-30) + 1
        chosen = torch.multinomial(density, self.num_points, replacement=False, generator=self.generator)
        return candidates[chosen.to(candidates.device)]

    def weights_at(self, step: int, physics: dict[str, float]) -> dict[str, float]:
        """The ``distill`` weight at optimizer step ``step`` and the ``physics`` weights scaled by the
        physics schedule."""
        ramp = min(1.0, step / self.schedule_steps) if self.schedule_steps else 1.0
        (d0, d1), (p0, p1) = self.distill_weights, self.physics_weights
        scale = p0 + (p1 - p0) * ramp
        return {"distill": d0 + (d1 - d0) * ramp, **{name: scale * w for name, w in physics.items()}}
