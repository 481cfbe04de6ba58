"""Steering a diffusion model at sampling time: gradient guidance through the posterior-mean
(Tweedie) estimate, and optimisation of the initial noise through a differentiable generator.

- DiffusionPDE's gradient guidance (Huang et al. 2024) is the ``guidance`` option of every
  :class:`~pdegen.diffusion.samplers.Sampler`, not a loop of its own.
- :func:`optimize_noise` minimises a per-sample objective of ``generate(ε)`` over ε: D-Flow
  (Ben-Hamu et al. 2024) with ``generate`` = the differentiable PF-ODE solve and L-BFGS, PIDDM's
  noise refinement and downstream tasks with ``generate`` = the one-step student and Adam.

Objectives map a batch of samples ``(B, ...)`` to per-sample losses ``(B,)``; samples are
independent, so the batch objective is their sum.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

from pdegen import progress

Objective = Callable[[Tensor], Tensor]
"""samples (B, ...) -> per-sample losses (B,)."""

OPTIMIZERS = ("adam", "lbfgs")


class NoiseOptimization(NamedTuple):
    """The optimised noise and the number of ``generate`` calls it took (each with a backward pass)."""

    noise: Tensor
    evaluations: int


def project_to_shell(noise: Tensor) -> Tensor:
    """Rescale each sample of ε to norm √d (d = its size): N(0, I) concentrates on that shell, so
    this keeps optimised noise typical of the prior (for d ≫ 1)."""
    flat = noise.flatten(1)
    radius = math.sqrt(flat.shape[1])
    return (flat * (radius / flat.norm(dim=1, keepdim=True).clamp_min(1e-12))).view_as(noise)


def optimize_noise(generate: Callable[[Tensor], Tensor], noise: Tensor, objective: Objective, steps: int,
                   optimizer: str = "adam", lr: float = 0.05, project: bool = True) -> NoiseOptimization:
    """Minimise Σ_b objective(generate(ε))_b over ε, starting from ``noise``.

    ``adam``: ``steps`` Adam steps of size ``lr``, each followed by :func:`project_to_shell` when
    ``project``. ``lbfgs``: one torch L-BFGS run of at most ``steps`` iterations with a strong-Wolfe
    line search (``lr`` its initial step; D-Flow's optimiser), unprojected. Gradients reach only ε
    (the generator's parameters are left untouched).
    """
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown noise optimizer {optimizer!r}; choose one of {OPTIMIZERS}")
    if int(steps) != steps or steps < 1:
        raise ValueError(f"noise optimisation needs steps >= 1, got {steps}")
    eps = noise.detach().clone().requires_grad_(True)
    calls = 0

    def closure() -> Tensor:
        nonlocal calls
        calls += 1
        progress.note(f"noise optimisation, evaluation {calls}" + ("" if optimizer == "lbfgs" else f"/{steps}"))
        with torch.enable_grad():
            loss = objective(generate(eps)).sum()
            (eps.grad,) = torch.autograd.grad(loss, eps)  # not into the generator's parameters
        return loss.detach()

    if optimizer == "lbfgs":
        opt = torch.optim.LBFGS([eps], lr=lr, max_iter=int(steps), line_search_fn="strong_wolfe")
        opt.step(closure)
        return NoiseOptimization(eps.detach(), calls)
    opt = torch.optim.Adam([eps], lr=lr)
    for _ in range(int(steps)):
        opt.step(closure)
        if project:
            with torch.no_grad():
                eps.copy_(project_to_shell(eps))
    return NoiseOptimization(eps.detach(), calls)
