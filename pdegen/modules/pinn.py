"""PINN: a coordinate network trained on a point-wise problem's residuals (the KD-PINN teacher)."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable

import lightning as L
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn
from torch.utils.data import DataLoader

from pdegen.modules.checkpoints import save_init_arguments
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


class PhysicsInformedModule(L.LightningModule):
    """What a PINN and a KD-PINN student share: a coordinate network trained on a point-wise problem's
    residuals, Adam then L-BFGS, and the error against the problem's reference.

    Loss: mean ‖R_pde‖² + Σ_c λ_c mean ‖R_c‖² over the problem's conditions c (e.g. ``ic``, ``bc``;
    λ_c from ``condition_weights``, default 1), on ``num_interior`` interior and ``num_condition``
    points per condition (uniform or Sobol, fixed, or redrawn every ``resample_every_n_epochs``).
    Optimisation: ``optimizer`` (Adam) for ``adam_steps`` steps, then L-BFGS (strong-Wolfe line
    search, ``lbfgs_max_iter`` iterations per step) to the end of training; manual optimisation.
    Each epoch is ``steps_per_epoch`` steps. Validation and test log the error against the problem's
    reference on ``num_eval_points`` grid points: ``rel_l2`` = ‖pred − ref‖₂ / ‖ref‖₂ over all
    outputs (and per output), ``rmse``. With ``causal_epsilon`` ε > 0 (time-dependent problems) the PDE
    term is the causal loss of :func:`causal_mean` over ``causal_chunks`` time slices.
    """

    def __init__(self, problem: PointwiseProblem, net: nn.Module, condition_weights: dict[str, float] | None,
                 num_interior: int, num_condition: int, sampling: str, resample_every_n_epochs: int,
                 steps_per_epoch: int, adam_steps: int, lbfgs_max_iter: int, num_eval_points: int, seed: int,
                 optimizer: OptimizerCallable, lr_scheduler: LRSchedulerCallable | None, causal_epsilon: float = 0.0,
                 causal_chunks: int = 32) -> None:
        super().__init__()
        if causal_epsilon < 0 or causal_chunks < 1:
            raise ValueError(f"need causal_epsilon >= 0 and causal_chunks >= 1, got {causal_epsilon} and "
                             f"{causal_chunks}")
        if causal_epsilon and "t" not in problem.inputs:
            raise ValueError(f"causal_epsilon > 0 weights time slices, but {problem.name} has no time input "
                             f"(inputs {problem.inputs}); set causal_epsilon: 0")
        self.causal_epsilon, self.causal_chunks = float(causal_epsilon), int(causal_chunks)
        self.automatic_optimization = False
        self.problem, self.net = problem, net
        self.condition_weights = self._check(problem, net, condition_weights, sampling,
                                             num_interior, num_condition, steps_per_epoch, adam_steps, lbfgs_max_iter)
        if hasattr(net, "set_domain"):
            net.set_domain(problem.lower, problem.upper)
        self.num_interior, self.num_condition, self.sampling, self.seed = num_interior, num_condition, sampling, seed
        self.resample_every_n_epochs, self.steps_per_epoch = resample_every_n_epochs, steps_per_epoch
        self.adam_steps, self.lbfgs_max_iter, self.num_eval_points = adam_steps, lbfgs_max_iter, num_eval_points
        self.optimizer, self.lr_scheduler = optimizer, lr_scheduler
        self._draw_points(round_=0)
        self._eval: tuple[Tensor, Tensor] | None = None

    @staticmethod
    def _check(problem, net, weights, sampling, *counts) -> dict[str, float]:
        if not isinstance(problem, PointwiseProblem):
            raise TypeError(f"problem must be a pdegen.pdes.pointwise problem, got {type(problem).__name__}")
        for attribute, names in (("in_features", problem.inputs), ("out_features", problem.outputs)):
            if getattr(net, attribute, len(names)) != len(names):
                raise ValueError(f"the network's {attribute} is {getattr(net, attribute)} but {problem.name} has "
                                 f"{len(names)} {names}; set `{attribute}: {len(names)}` on the net")
        if sampling not in SAMPLING_METHODS:
            raise ValueError(f"unknown sampling {sampling!r}: use one of {SAMPLING_METHODS}")
        if min(counts[:3]) < 1 or min(counts[3:]) < 0:
            raise ValueError("num_interior, num_condition and steps_per_epoch must be >= 1, adam_steps and "
                             "lbfgs_max_iter >= 0")
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
        points = self.problem.sample_points(self.num_interior, self.num_condition, self.sampling,
                                            seed=self.seed + round_)
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
        every = self.resample_every_n_epochs
        if every and self.current_epoch and self.current_epoch % every == 0:
            self._draw_points(round_=self.current_epoch // every)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(range(self.steps_per_epoch), batch_size=None)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(range(1), batch_size=None)

    test_dataloader = val_dataloader

    # ------------------------------------------------------------------ loss and optimisation
    def forward(self, coords: Tensor) -> Tensor:
        return self.net(coords)

    def loss_terms(self) -> dict[str, Tensor]:
        """Mean squared residual of every loss term (``pde`` and each condition); the PDE term causal
        (:func:`causal_mean`) when ``causal_epsilon`` > 0."""
        residuals = self.problem.residuals(self.net, self.points)
        terms = {name: r.square().mean() for name, r in residuals.items()}
        if self.causal_epsilon:
            axis = self.problem.inputs.index("t")
            terms["pde"], weights = causal_mean(residuals["pde"].square().mean(1), self.points["pde"][:, axis],
                                                (self.problem.lower[axis], self.problem.upper[axis]),
                                                self.causal_chunks, self.causal_epsilon)
            if self._trainer is not None:
                self.log("train/causal_last_weight", weights[-1], on_step=True)
        return terms

    def term_weights(self) -> dict[str, float]:
        """The weight of each loss term at the current step."""
        return {"pde": 1.0, **self.condition_weights}

    def total_loss(self) -> Tensor:
        terms, weights = self.loss_terms(), self.term_weights()
        loss = sum(weights[name] * value for name, value in terms.items())
        self.log_dict({f"train/{name}": value.detach() for name, value in terms.items()}, on_step=True)
        return loss

    @property
    def in_lbfgs_stage(self) -> bool:
        return self.global_step >= self.adam_steps

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
        lbfgs = torch.optim.LBFGS(self.net.parameters(), lr=1.0, max_iter=max(1, self.lbfgs_max_iter),
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
        """What :class:`~pdegen.callbacks.LatencyCallback` times: the network on ``batch_size`` points."""
        points = self.latency_points(batch_size)
        return {"model": lambda: self.net(points)}

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


class PINN(PhysicsInformedModule):
    """A physics-informed network u_θ(coords) for ``problem`` (the KD-PINN teacher); training and
    evaluation as in :class:`PhysicsInformedModule`.

    Args:
        problem: the point-wise problem (:mod:`pdegen.pdes.pointwise`).
        net: a coordinate network ``(N, d) -> (N, k)``; its input scaling is set to the problem's
            domain when it has ``set_domain`` (:class:`~pdegen.nets.CoordinateMLP`).
    """

    def __init__(self, problem: PointwiseProblem, net: nn.Module, condition_weights: dict[str, float] | None = None,
                 num_interior: int = 8192, num_condition: int = 1024, sampling: str = "sobol",
                 resample_every_n_epochs: int = 0, steps_per_epoch: int = 100, adam_steps: int = 5000,
                 lbfgs_max_iter: int = 20, num_eval_points: int = 10000, seed: int = 0,
                 optimizer: OptimizerCallable = torch.optim.Adam,
                 lr_scheduler: LRSchedulerCallable | None = None, causal_epsilon: float = 0.0,
                 causal_chunks: int = 32) -> None:
        super().__init__(problem, net, condition_weights, num_interior, num_condition, sampling,
                         resample_every_n_epochs, steps_per_epoch, adam_steps, lbfgs_max_iter, num_eval_points, seed,
                         optimizer, lr_scheduler, causal_epsilon, causal_chunks)
        save_init_arguments(self, inspect.currentframe())
