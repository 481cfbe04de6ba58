"""PINN: a coordinate network trained on a point-wise problem's residuals, optionally distilled from a
teacher PINN (KD-PINN, :class:`~pdegen.modules.kdpinn.PINNDistillation`)."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass

import lightning as L
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn
from torch.utils.data import DataLoader

from pdegen.modules.checkpoints import checkpoint_record, save_init_arguments
from pdegen.modules.kdpinn import PINNDistillation
from pdegen.pdes.pointwise import PointwiseProblem
from pdegen.pdes.pointwise.base import SAMPLING_METHODS, sample_box


def reference_errors(problem: PointwiseProblem, coords: Tensor, prediction: Tensor,
                     reference: Tensor) -> dict[str, Tensor]:
    """Errors of ``prediction`` against ``reference`` ``(N, k)`` at ``coords`` (after the problem's gauge
    :meth:`~pdegen.pdes.pointwise.PointwiseProblem.align`): ``rel_l2`` = ‖pred − ref‖₂ / ‖ref‖₂ over all
    outputs, ``rmse`` = sqrt(mean (pred − ref)²), and ``rel_l2/<output>`` per output when there are several."""
    error = problem.align(coords, prediction.double()) - reference
    metrics = {"rel_l2": error.norm() / reference.norm(), "rmse": error.square().mean().sqrt()}
    if len(problem.outputs) > 1:
        for i, name in enumerate(problem.outputs):
            metrics[f"rel_l2/{name}"] = error[:, i].norm() / reference[:, i].norm()
    return metrics


def causal_mean(squared: Tensor, t: Tensor, t_range: tuple[float, float], chunks: int,
                epsilon: float) -> tuple[Tensor, Tensor]:
    """The causal PINN loss (Wang, Sankaran & Perdikaris 2022): per-point squared residuals ``squared`` ``(N,)``
    at times ``t`` ``(N,)`` are averaged over ``chunks`` equal slices of ``t_range``, giving L_i; slice i
    is weighted by w_i = exp(−ε Σ_{k<i} L_k), held constant in the gradient, so later times count only once
    the earlier ones are fitted. Returns (mean_i w_i L_i, the weights); ε = 0 gives the mean of the slice means."""
    lo, hi = t_range
    index = ((t.detach() - lo) / (hi - lo) * chunks).long().clamp(0, chunks - 1)
    sums = torch.zeros(chunks, dtype=squared.dtype, device=squared.device).index_add(0, index, squared)
    losses = sums / torch.bincount(index, minlength=chunks).clamp_min(1).to(squared.dtype)
    weights = torch.exp(-epsilon * (torch.cumsum(losses, 0) - losses)).detach()
    return (weights * losses).mean(), weights


class InitialConditionAnsatz(nn.Module):
    """u(z) = u₀(z) + τ·net(z), τ = (t − t₀) / (t₁ − t₀) the time scaled to [0, 1] over the problem's interval
    and u₀ the problem's :meth:`~pdegen.pdes.pointwise.PointwiseProblem.initial_state`: the initial condition
    holds exactly, by construction (Lagaris et al. 1998), and the network learns only the change from it."""

    def __init__(self, net: nn.Module, problem: PointwiseProblem) -> None:
        super().__init__()
        if "t" not in problem.inputs:
            raise ValueError(f"hard_initial_condition needs a time input, but {problem.name} has {problem.inputs}")
        problem.initial_state(torch.zeros(1, len(problem.inputs)))  # raises for a problem without one
        self.net, self.problem, self.axis = net, problem, problem.inputs.index("t")
        self.in_features, self.out_features = len(problem.inputs), len(problem.outputs)
        self.start, self.duration = problem.lower[self.axis], problem.upper[self.axis] - problem.lower[self.axis]

    def set_domain(self, lower: tuple[float, ...], upper: tuple[float, ...]) -> None:
        if hasattr(self.net, "set_domain"):
            self.net.set_domain(lower, upper)

    def forward(self, coords: Tensor) -> Tensor:
        elapsed = (coords[:, self.axis:self.axis + 1] - self.start) / self.duration
        return self.problem.initial_state(coords) + elapsed * self.net(coords)


@dataclass(frozen=True)
class Collocation:
    """Where the residuals are evaluated: ``num_interior`` interior points and ``num_condition`` points per
    condition (``ic``, ``bc``, ...), drawn by ``sampling`` (``sobol`` or ``uniform``), fixed or redrawn every
    ``resample_every_n_epochs`` epochs of the Adam stage (0: fixed; L-BFGS keeps the last set, as its line
    search and curvature pairs need one loss)."""

    num_interior: int = 8192
    num_condition: int = 1024
    sampling: str = "sobol"
    resample_every_n_epochs: int = 0

    def __post_init__(self) -> None:
        if self.sampling not in SAMPLING_METHODS:
            raise ValueError(f"unknown sampling {self.sampling!r}: use one of {SAMPLING_METHODS}")
        if min(self.num_interior, self.num_condition) < 1 or self.resample_every_n_epochs < 0:
            raise ValueError(f"collocation needs num_interior and num_condition >= 1 and resample_every_n_epochs "
                             f">= 0, got {self}")


@dataclass(frozen=True)
class Stages:
    """Adam (the module's ``optimizer``) for ``adam_steps`` optimizer steps, then L-BFGS (strong-Wolfe line
    search, ``lbfgs_max_iter`` iterations per step) to the end of training; an epoch is ``steps_per_epoch``
    steps."""

    adam_steps: int = 5000
    lbfgs_max_iter: int = 20
    steps_per_epoch: int = 100

    def __post_init__(self) -> None:
        if self.steps_per_epoch < 1 or min(self.adam_steps, self.lbfgs_max_iter) < 0:
            raise ValueError(f"stages need steps_per_epoch >= 1 and adam_steps, lbfgs_max_iter >= 0, got {self}")


@dataclass(frozen=True)
class Causal:
    """Causal weighting of the PDE term (:func:`causal_mean`) over ``chunks`` time slices; ``epsilon`` = 0:
    the plain mean."""

    epsilon: float = 0.0
    chunks: int = 32

    def __post_init__(self) -> None:
        if not self.epsilon >= 0 or self.chunks < 1:
            raise ValueError(f"causal weighting needs epsilon >= 0 and chunks >= 1, got {self}")


class PINN(L.LightningModule):
    """A physics-informed network u_θ(coords) for a point-wise problem; with ``distillation``, a KD-PINN
    student of a trained teacher PINN.

    Loss: mean ‖R_pde‖² + Σ_c λ_c mean ‖R_c‖² over the problem's conditions c (e.g. ``ic``, ``bc``;
    λ_c from ``condition_weights``, default 1) on the ``collocation`` points; the PDE term causal
    (:class:`Causal`) when ``causal.epsilon`` > 0. A :class:`~pdegen.modules.kdpinn.PINNDistillation` adds
    its distillation term and moves the weights from distillation to physics over training.
    Optimisation in two :class:`Stages`, Adam then L-BFGS (manual optimisation). Validation and test
    log the error against the problem's reference on ``num_eval_points`` grid points: ``rel_l2`` =
    ‖pred − ref‖₂ / ‖ref‖₂ over all outputs (and per output), ``rmse``.

    Args:
        net: a coordinate network ``(N, d) -> (N, k)``; its input scaling is set to the problem's
            domain when it has ``set_domain`` (:class:`~pdegen.nets.CoordinateMLP`).
        problem: the point-wise problem (:mod:`pdegen.pdes.pointwise`); ``None``: the teacher's, with
            ``distillation``.
        distillation: the frozen teacher and the distillation term (``None``: a plain PINN).
        hard_initial_condition: build the problem's initial state into the network
            (:class:`InitialConditionAnsatz`); its ``ic`` term is then zero and can be weighted 0.
        seed: seed of the collocation points (round r of resampling: ``seed + r``) and, ``seed + 1``, of
            the distillation points.
    """

    def __init__(self, net: nn.Module, problem: PointwiseProblem | None = None,
                 distillation: PINNDistillation | None = None, condition_weights: dict[str, float] | None = None,
                 collocation: Collocation = Collocation(), stages: Stages = Stages(), causal: Causal = Causal(),
                 hard_initial_condition: bool = False, num_eval_points: int = 10000, seed: int = 0,
                 optimizer: OptimizerCallable = torch.optim.Adam,
                 lr_scheduler: LRSchedulerCallable | None = None) -> None:
        super().__init__()
        save_init_arguments(self, inspect.currentframe())
        self.problem = self._problem(problem, distillation)
        self.net = InitialConditionAnsatz(net, self.problem) if hard_initial_condition else net
        self.distillation = distillation
        self.collocation, self.stages, self.causal = collocation, stages, causal
        if self.causal.epsilon and "t" not in self.problem.inputs:
            raise ValueError(f"causal epsilon > 0 weights time slices, but {self.problem.name} has no time input "
                             f"(inputs {self.problem.inputs}); set causal: {{epsilon: 0}}")
        self.condition_weights = self._check(self.problem, net, condition_weights)
        if hasattr(self.net, "set_domain"):
            self.net.set_domain(self.problem.lower, self.problem.upper)
        self.num_eval_points, self.seed = num_eval_points, seed
        self.optimizer, self.lr_scheduler = optimizer, lr_scheduler
        self.automatic_optimization = False
        if distillation is not None:
            distillation.draw_points(self.collocation.sampling, seed + 1)
        self._draw_points(round_=0)
        self._eval: tuple[Tensor, Tensor] | None = None

    @staticmethod
    def _problem(problem: PointwiseProblem | None, distillation: PINNDistillation | None) -> PointwiseProblem:
        teacher = distillation.problem if distillation is not None else None
        problem = problem if problem is not None else teacher
        if problem is None:
            raise ValueError("a PINN needs its `problem`, or a `distillation` whose teacher brings one")
        if not isinstance(problem, PointwiseProblem):
            raise TypeError(f"problem must be a pdegen.pdes.pointwise problem, got {type(problem).__name__}")
        if teacher is not None and (problem.name, problem.params) != (teacher.name, teacher.params):
            raise ValueError(f"the problem {problem.name} {problem.params} is not the teacher's {teacher.name} "
                             f"{teacher.params}: leave `problem` out of a student's config")
        return problem

    @staticmethod
    def _check(problem: PointwiseProblem, net: nn.Module, weights: dict[str, float] | None) -> dict[str, float]:
        for attribute, names in (("in_features", problem.inputs), ("out_features", problem.outputs)):
            if getattr(net, attribute, len(names)) != len(names):
                raise ValueError(f"the network's {attribute} is {getattr(net, attribute)} but {problem.name} has "
                                 f"{len(names)} {names}; set `{attribute}: {len(names)}` on the net")
        weights = dict(weights or {})
        unknown = set(weights) - set(problem.conditions)
        if unknown:
            raise ValueError(f"condition_weights names {sorted(unknown)}, but {problem.name} has the conditions "
                             f"{problem.conditions}")
        if any(not (math.isfinite(w) and w >= 0) for w in weights.values()):
            raise ValueError(f"condition_weights must be finite and >= 0, got {weights}")
        return {name: float(weights.get(name, 1.0)) for name in problem.conditions}

    # ------------------------------------------------------------------ points
    def _draw_points(self, round_: int) -> None:
        c = self.collocation
        points = self.problem.sample_points(c.num_interior, c.num_condition, c.sampling, seed=self.seed + round_)
        for name, coords in points.items():
            self.register_buffer(f"points_{name}", coords.to(self.device), persistent=False)

    @property
    def points(self) -> dict[str, Tensor]:
        return {name: getattr(self, f"points_{name}") for name in ("pde", *self.problem.conditions)}

    def setup(self, stage: str) -> None:
        precision = str(self.trainer.precision)
        if "16" in precision:
            raise ValueError(f"trainer.precision {precision!r}: PINN residuals take second derivatives by autograd, "
                             "which 16-bit formats ruin; use precision 32 (or 64) for PINNs")

    def on_train_epoch_start(self) -> None:
        every = self.collocation.resample_every_n_epochs
        if every and self.current_epoch and self.current_epoch % every == 0 and not self.in_lbfgs_stage:
            self._draw_points(round_=self.current_epoch // every)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(range(self.stages.steps_per_epoch), batch_size=None)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(range(1), batch_size=None)

    test_dataloader = val_dataloader

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["pdegen"] = checkpoint_record(self)

    # ------------------------------------------------------------------ loss and optimisation
    def forward(self, coords: Tensor) -> Tensor:
        return self.net(coords)

    def physics_terms(self) -> dict[str, Tensor]:
        """Mean squared residual of every physics term (``pde`` and each condition); the PDE term causal
        (:func:`causal_mean`) when ``causal.epsilon`` > 0."""
        residuals = self.problem.residuals(self.net, self.points)
        terms = {name: r.square().mean() for name, r in residuals.items()}
        if self.causal.epsilon:
            axis = self.problem.inputs.index("t")
            terms["pde"], weights = causal_mean(residuals["pde"].square().mean(1), self.points["pde"][:, axis],
                                                (self.problem.lower[axis], self.problem.upper[axis]),
                                                self.causal.chunks, self.causal.epsilon)
            if self._trainer is not None:
                self.log("train/causal_last_weight", weights[-1], on_step=True)
        return terms

    def loss_terms(self) -> dict[str, Tensor]:
        """Every term of the loss: the physics terms (skipped while a distillation weighs them 0) and
        ``distill``."""
        if self.distillation is None:
            return self.physics_terms()
        terms = self.physics_terms() if self.term_weights()["pde"] > 0 else {}
        distill = self.distillation.loss(self.net, self.global_step, frozen=self.in_lbfgs_stage)
        return terms | {"distill": distill}

    def term_weights(self) -> dict[str, float]:
        """The weight of each loss term at the current step."""
        return self.weights_at(self.global_step)

    def weights_at(self, step: int) -> dict[str, float]:
        """Every loss term's weight at optimizer step ``step``: 1 (``pde``) and λ_c (each condition), scaled
        and joined by ``distill`` along the distillation's schedule."""
        physics = {"pde": 1.0, **self.condition_weights}
        return physics if self.distillation is None else self.distillation.weights_at(step, physics)

    def total_loss(self) -> Tensor:
        terms, weights = self.loss_terms(), self.term_weights()
        loss = sum(weights[name] * value for name, value in terms.items())
        self.log_dict({f"train/{name}": value.detach() for name, value in terms.items()}, on_step=True)
        return loss

    @property
    def in_lbfgs_stage(self) -> bool:
        return self.global_step >= self.stages.adam_steps

    def training_step(self, batch: Tensor, batch_idx: int) -> Tensor:
        adam, lbfgs = self.optimizers()
        use_lbfgs = self.in_lbfgs_stage
        if use_lbfgs:
            def closure() -> Tensor:
                lbfgs.zero_grad()
                loss = self.total_loss()
                self.manual_backward(loss)
                return loss
            loss = lbfgs.step(closure=closure)
        else:
            loss = self.total_loss()
            adam.zero_grad()
            self.manual_backward(loss)
            adam.step()
            scheduler = self.lr_schedulers()
            if scheduler is not None:
                scheduler.step()
        self.log("train/loss", loss.detach(), on_step=True, prog_bar=True)
        self.log("train/lbfgs", float(use_lbfgs), on_step=True)
        return loss

    def configure_optimizers(self):
        adam = self.optimizer(self.net.parameters())
        lbfgs = torch.optim.LBFGS(self.net.parameters(), lr=1.0, max_iter=max(1, self.stages.lbfgs_max_iter),
                                  history_size=50, line_search_fn="strong_wolfe")
        if self.lr_scheduler is None:
            return [adam, lbfgs]
        return [adam, lbfgs], [self.lr_scheduler(adam)]

    # ------------------------------------------------------------------ evaluation
    def evaluation_points(self) -> tuple[Tensor, Tensor]:
        """Grid points ``(N, d)`` and the reference there ``(N, k)`` (float64), computed once."""
        if self._eval is None:
            per_axis = max(2, round(self.num_eval_points ** (1 / len(self.problem.inputs))))
            coords = self.problem.grid(per_axis)
            self._eval = (coords, self.problem.reference(coords))
        return self._eval

    @torch.no_grad()
    def predict_points(self, coords: Tensor, chunk: int = 65536) -> Tensor:
        """The network at ``coords`` in chunks, float64 on the CPU."""
        dtype = next(self.net.parameters()).dtype
        return torch.cat([self.net(part.to(self.device, dtype)).double().cpu() for part in coords.split(chunk)])

    def reference_errors(self) -> dict[str, Tensor]:
        """``rel_l2`` (all outputs and ``rel_l2/<output>``) and ``rmse`` against the reference."""
        coords, reference = self.evaluation_points()
        return reference_errors(self.problem, coords, self.predict_points(coords), reference)

    def latency_points(self, batch_size: int) -> Tensor:
        """``batch_size`` uniform points of the domain (fixed seed) on the module's device and dtype."""
        coords = sample_box(self.problem.lower, self.problem.upper, batch_size, "uniform",
                            torch.Generator().manual_seed(self.seed))
        return coords.to(self.device, next(self.net.parameters()).dtype)

    def latency_targets(self, batch_size: int) -> dict[str, Callable[[], Tensor]]:
        """What :class:`~pdegen.callbacks.LatencyCallback` times: the network on ``batch_size`` points, and a
        student's teacher on the same points."""
        points = self.latency_points(batch_size)
        targets = {"model": lambda: self.net(points)}
        if self.distillation is not None:
            targets["teacher"] = lambda: self.distillation.teacher(points)
        return targets

    def latency_nfe(self) -> dict[str, int]:
        """One network evaluation per query point, for every latency target."""
        return dict.fromkeys(self.latency_targets(1), 1)

    def _log_errors(self, stage: str) -> None:
        self.log_dict({f"{stage}/{name}": value.float() for name, value in self.reference_errors().items()},
                      prog_bar=False, batch_size=1)

    def validation_step(self, batch: Tensor, batch_idx: int) -> None:
        self._log_errors("val")

    def test_step(self, batch: Tensor, batch_idx: int) -> None:
        self._log_errors("test")
