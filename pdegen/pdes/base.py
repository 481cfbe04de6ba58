"""The PDE contract: channels, grid, random inputs, batched solve, differentiable residual.

A *sample* is a tensor ``(batch, channels, *grid)`` in physical units whose channels are named
by :attr:`PDE.channels` (Darcy: ``("a", "u")``).  ``residual(x)`` returns ``(batch, r, *grid)``:
the interior equation at interior points and the boundary condition at boundary points
(:attr:`PDE.boundary_mask` tells which is which), so one metric serves every family.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

BOUNDARY_TYPES = ("dirichlet", "neumann", "periodic", "time")


@dataclass(frozen=True)
class Grid:
    """A uniform tensor-product grid; ``boundary`` is one type for every axis or one per axis.

    ``"dirichlet"`` / ``"neumann"``: node-centred, the boundary nodes included, spacing
    ``extent / (n - 1)``.  ``"periodic"``: ``n`` points on ``[0, extent)``, spacing
    ``extent / n``.  ``"time"``: ``n`` stored states at ``0, dt, ..., extent`` (spacing
    ``extent / (n - 1)``); time axes come first, so a time-dependent sample is
    ``(channels, num_times, *space)``.
    """

    shape: tuple[int, ...]
    extent: tuple[float, ...]
    boundary: str | tuple[str, ...] = "dirichlet"

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(int(n) for n in self.shape))
        object.__setattr__(self, "extent", tuple(float(e) for e in self.extent))
        boundary = (self.boundary,) * len(self.shape) if isinstance(self.boundary, str) else tuple(self.boundary)
        object.__setattr__(self, "boundary", boundary)
        if len(self.shape) != len(self.extent) or len(boundary) != len(self.shape):
            raise ValueError(f"grid shape {self.shape}, extent {self.extent} and boundary {boundary} differ in "
                             f"dimension")
        unknown = [b for b in boundary if b not in BOUNDARY_TYPES]
        if unknown:
            raise ValueError(f"unknown boundary type {unknown[0]!r}: use one of {BOUNDARY_TYPES}")

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def spacing(self) -> tuple[float, ...]:
        """Grid spacing per axis (physical units)."""
        return tuple(length / n if kind == "periodic" else length / (n - 1)
                     for n, length, kind in zip(self.shape, self.extent, self.boundary))

    @property
    def cell_volume(self) -> float:
        """h_1 * ... * h_d: the weight of one point in the discrete L2 norm."""
        return math.prod(self.spacing)

    def edge_mask(self) -> Tensor:
        """Bool ``shape``: True at the first and last node of every Dirichlet/Neumann axis (the walls)."""
        mask = torch.zeros(self.shape, dtype=torch.bool)
        for axis, kind in enumerate(self.boundary):
            if kind in ("dirichlet", "neumann"):
                mask.index_fill_(axis, torch.tensor([0, self.shape[axis] - 1]), True)
        return mask

    def coordinates(self, dtype: torch.dtype = torch.float64, device: Any = None) -> list[Tensor]:
        """1-D node coordinates per axis."""
        return [
            torch.arange(n, dtype=dtype, device=device) * h for n, h in zip(self.shape, self.spacing)
        ]

    def meshgrid(self, dtype: torch.dtype = torch.float64, device: Any = None) -> tuple[Tensor, ...]:
        return torch.meshgrid(*self.coordinates(dtype, device), indexing="ij")

    def to_dict(self) -> dict[str, Any]:
        return {"shape": list(self.shape), "extent": list(self.extent), "boundary": list(self.boundary)}


class PDE(abc.ABC):
    """One PDE family: its residual operator and the reference solver that agrees with it.

    Subclasses set :attr:`name` and :attr:`channels` and implement the abstract methods.
    ``params()`` returns the constructor arguments, so ``get_pde(pde.name, **pde.params())``
    rebuilds an equal object (used by checkpoints and dataset files).
    """

    name: ClassVar[str]
    channels: ClassVar[tuple[str, ...]]
    input_channels: ClassVar[tuple[str, ...]]
    """The channels drawn at random; the others are computed by :meth:`solve`."""
    solver_params: ClassVar[tuple[str, ...]] = ()
    """Parameters that choose how to solve, not what: left out of :meth:`physics`."""

    grid: Grid

    @abc.abstractmethod
    def params(self) -> dict[str, Any]:
        """JSON-serialisable constructor arguments."""

    @abc.abstractmethod
    def sample_inputs(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Draw ``n`` random inputs, ``(n, len(input_channels), *grid)``, float64."""

    @abc.abstractmethod
    def solve(self, inputs: Tensor) -> Tensor:
        """Solve for a batch of inputs; returns full samples ``(n, len(channels), *grid)``."""

    @abc.abstractmethod
    def residual(self, x: Tensor) -> Tensor:
        """Differentiable residual ``(batch, r, *grid)`` in physical units."""

    @abc.abstractmethod
    def residual_scale(self, x: Tensor) -> Tensor:
        """A field shaped like ``residual(x)`` giving the size of the terms it balances, so that
        ``||residual|| / ||residual_scale||`` over a region is a relative residual."""

    @property
    @abc.abstractmethod
    def boundary_mask(self) -> Tensor:
        """Bool ``(*grid)``: True where ``residual`` holds the boundary condition."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.params().items())})"

    def boundary_mask_on(self, device: torch.device) -> Tensor:
        """:attr:`boundary_mask` on ``device``, cached (residuals run every training step); made
        outside inference mode, so autograd may use it even when the first call came from a test loop."""
        cache = self.__dict__.setdefault("_boundary_masks", {})
        if device not in cache:
            with torch.inference_mode(False):
                cache[device] = self.boundary_mask.to(device)
        return cache[device]

    @property
    def num_channels(self) -> int:
        return len(self.channels)

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return (self.num_channels, *self.grid.shape)

    @property
    def input_mask(self) -> Tensor:
        """Bool ``sample_shape``: True where a sample holds the random input :meth:`solve` takes (the
        rest follows from it): for a time-dependent family (its input is the initial state) the first
        stored time, else the channels named in :attr:`input_channels` (Darcy's ``a``)."""
        mask = torch.zeros(self.sample_shape, dtype=torch.bool)
        named = [i for i, channel in enumerate(self.channels) if channel in self.input_channels]
        if self.grid.boundary[0] == "time":
            mask[:, 0] = True
        elif named:
            mask[named] = True
        else:
            raise NotImplementedError(f"{self.name}: no input channel among {self.channels} and no time axis: "
                                      "override input_mask")
        return mask

    def generate(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Random inputs and their solutions: ``(n, channels, *grid)``, float64."""
        return self.solve(self.sample_inputs(n, generator))

    def replace(self, **changes: Any) -> PDE:
        """The same family with some parameters changed (e.g. ``num_states`` of a longer trajectory)."""
        unknown = set(changes) - set(self.params())
        if unknown:
            raise ValueError(f"{self.name} has no parameters {sorted(unknown)}; it has {sorted(self.params())}")
        return type(self)(**(self.params() | changes))

    def static_fields(self) -> Tensor | None:
        """Fields that are the same in every sample, on the spatial grid ``(S, *space)`` (e.g. Kolmogorov's
        forcing), that a network working on windows of states may take as input; ``None``: there are none."""
        return None

    def check_sample(self, x: Tensor) -> None:
        """Raise a ValueError naming the expected layout unless ``x`` is ``(batch, *sample_shape)``."""
        if x.ndim != 1 + len(self.sample_shape) or tuple(x.shape[1:]) != self.sample_shape:
            raise ValueError(
                f"{self.name}: expected samples of shape (batch, {', '.join(map(str, self.sample_shape))}) "
                f"with channels {self.channels}, got {tuple(x.shape)}; check the network's channel count "
                f"and the data resolution"
            )

    def physics(self) -> dict[str, Any]:
        """The parameters that determine the data (``params()`` less ``solver_params``): two PDE
        objects with equal ``physics()`` produce the same samples up to solver round-off."""
        return {"name": self.name, **{k: v for k, v in self.params().items() if k not in self.solver_params}}

    def physics_differences(self, other: PDE, ignore: Sequence[str] = ()) -> dict[str, Any]:
        """Where ``other``'s :meth:`physics` differs from this PDE's (the family as ``name``), ``ignore`` left out:
        ``{parameter: (this value, other's value)}``, a parameter only one of them has paired with ``None``."""
        mine, theirs = self.physics(), other.physics()
        keys = [*mine, *(k for k in theirs if k not in mine)]
        return {k: (mine.get(k), theirs.get(k)) for k in keys if k not in ignore and mine.get(k) != theirs.get(k)}

    def input_field(self, inputs: Tensor, shape: tuple[int, ...], what: str, *, positive: bool = False,
                    hint: str = "") -> Tensor:
        """Validate a batch of one input field for :meth:`solve`: ``(n, 1, *shape)`` or ``(n, *shape)``,
        finite (and > 0 with ``positive``); returns it detached as float64 ``(n, *shape)``.
        ``what`` names the field in errors (e.g. "coefficients"); ``hint`` says how to fix a bad value."""
        if inputs.ndim == len(shape) + 2 and inputs.shape[1] == 1:
            inputs = inputs[:, 0]
        if inputs.ndim != len(shape) + 1 or tuple(inputs.shape[1:]) != tuple(shape):
            dims = ", ".join(map(str, shape))
            raise ValueError(f"{self.name}: solve expects {what} of shape (n, 1, {dims}) or (n, {dims}), got "
                             f"{tuple(inputs.shape)}; {hint or 'pass the input channel at the PDE resolution'}")
        field = inputs.detach().to(torch.float64)
        if field.numel() == 0:
            return field
        low, high = torch.aminmax(field)  # one pass; nan propagates into both
        if not (torch.isfinite(low) and torch.isfinite(high)):
            raise ValueError(f"{self.name}: non-finite {what} (nan or inf) passed to solve")
        if positive and not low > 0:
            raise ValueError(f"{self.name}: non-positive {what} (min {low.item():.3g}): the solver needs them > 0 "
                             f"everywhere; clamp or threshold generated fields first")
        return field

    def describe(self) -> dict[str, Any]:
        """What a dataset file or checkpoint records about this PDE."""
        return {"name": self.name, "params": self.params(), "channels": list(self.channels),
                "grid": self.grid.to_dict()}
