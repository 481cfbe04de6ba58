"""Downstream tasks on a generator: complete a PDE sample from partial observations of it.

- ``forward``: the random input is observed (Darcy's coefficient ``a``, Burgers' initial state),
  the solution is sought;
- ``inverse``: the solution is observed, the input is sought;
- ``reconstruction``: ``num_points`` random grid points of every channel are observed (the
  PIDDM/DiffusionPDE setting: 500 points of both ``a`` and ``u``), everything is sought.

Generators solve a task by steering their sampling towards the observations (noise optimisation
for the one-step student and D-Flow, gradient guidance for DiffusionPDE); the objectives live here
so every method minimises the same thing, in normalised units.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from pdegen.pdes import PDE

TASKS = ("forward", "inverse", "reconstruction")


@dataclass(frozen=True)
class ObservationTask:
    """Which entries of a sample are observed, and how strictly.

    Args:
        name: ``forward``, ``inverse`` or ``reconstruction`` (module docstring).
        num_points: grid points observed per sample in ``reconstruction`` (all channels there).
        hard: impose the observations exactly, x = y⊙M + g(ε)⊙(1 − M), instead of penalising the
            misfit (for methods that support it: the PIDDM student, D-Flow).
        seed: seeds the ``reconstruction`` points, so every method sees the same ones.
    """

    name: str = "forward"
    num_points: int = 500
    hard: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        if self.name not in TASKS:
            raise ValueError(f"unknown task {self.name!r}; choose one of {TASKS}")
        if self.name == "reconstruction" and self.num_points < 1:
            raise ValueError(f"reconstruction needs num_points >= 1, got {self.num_points}")

    def mask(self, pde: PDE, n: int, device: torch.device | str | None = None) -> Tensor:
        """Bool ``(n, *pde.sample_shape)``: True where the sample is observed."""
        if self.name == "forward":
            return pde.input_mask.to(device).expand(n, *pde.sample_shape)
        if self.name == "inverse":
            return (~pde.input_mask).to(device).expand(n, *pde.sample_shape)
        points = pde.grid.shape
        total = int(torch.tensor(points).prod())
        if self.num_points > total:
            raise ValueError(f"reconstruction observes num_points={self.num_points} of a {points} grid with only "
                             f"{total} points; lower num_points")
        generator = torch.Generator().manual_seed(self.seed)
        chosen = torch.stack([torch.randperm(total, generator=generator)[: self.num_points] for _ in range(n)])
        mask = torch.zeros(n, total, dtype=torch.bool).scatter_(1, chosen, True).view(n, 1, *points)
        return mask.expand(n, pde.num_channels, *points).to(device)

    def target(self, pde: PDE, n: int, device: torch.device | str | None = None) -> Tensor:
        """Bool ``(n, *pde.sample_shape)``: the entries the task asks for (the unobserved ones; every
        entry for ``reconstruction``), where its error is measured."""
        if self.name == "reconstruction":
            return torch.ones(n, *pde.sample_shape, dtype=torch.bool, device=device)
        return ~self.mask(pde, n, device)


def misfit(x: Tensor, observed: Tensor, mask: Tensor) -> Tensor:
    """Per-sample mean squared misfit over the observed entries ``(B,)`` (normalised units)."""
    weights = mask.to(x.dtype)
    return ((x - observed).square() * weights).flatten(1).sum(1) / weights.flatten(1).sum(1).clamp_min(1)


def impose(x: Tensor, observed: Tensor, mask: Tensor) -> Tensor:
    """The hard constraint: observed values where ``mask``, ``x`` elsewhere (differentiable in ``x``)."""
    return torch.where(mask, observed.to(x.dtype), x)


def relative_error(x: Tensor, truth: Tensor, where: Tensor) -> Tensor:
    """Per-sample relative L2 error over the entries ``where`` ``(B,)``: ‖x − truth‖ / ‖truth‖ there
    (physical units; a uniform grid, so the grid weights cancel)."""
    weights = where.to(torch.float64)
    difference = ((x.double() - truth.double()).square() * weights).flatten(1).sum(1)
    scale = (truth.double().square() * weights).flatten(1).sum(1)
    return (difference / scale.clamp_min(torch.finfo(torch.float64).tiny)).sqrt()
