"""A coordinate MLP u_θ(x, t, ...) for PINNs: inputs scaled to [-1, 1] inside the network."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

ACTIVATIONS = {"tanh": nn.Tanh, "silu": nn.SiLU}


class CoordinateMLP(nn.Module):
    """``forward(coords: (N, in_features)) -> (N, out_features)``: ``depth`` hidden layers of ``width``
    units with ``activation`` (tanh, the PINN default, or SiLU), Xavier-initialised.

    The coordinates are mapped affinely from the box ``[lower, upper]`` to [-1, 1] by buffers inside
    the network (:meth:`set_domain`), so an exported network takes physical coordinates. Each input
    listed in ``periodic`` (indices) enters as ``(cos πz, sin πz)`` of its scaled value z, so the network
    and all its derivatives take equal values at ``lower`` and ``upper`` of that coordinate: a periodic
    boundary condition holds exactly, by construction.
    """

    def __init__(self, in_features: int, out_features: int, width: int = 64, depth: int = 4,
                 activation: str = "tanh", periodic: list[int] | tuple[int, ...] = ()) -> None:
        super().__init__()
        if min(in_features, out_features, width, depth) < 1:
            raise ValueError(f"in_features, out_features, width and depth must be >= 1, got "
                             f"{in_features}, {out_features}, {width}, {depth}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}: use one of {sorted(ACTIVATIONS)}")
        if len(set(periodic)) != len(periodic) or not all(0 <= i < in_features for i in periodic):
            raise ValueError(f"periodic must list distinct input indices in [0, {in_features}), got {list(periodic)}")
        self.in_features, self.out_features = in_features, out_features
        self.periodic = sorted(periodic)
        self.aperiodic = [i for i in range(in_features) if i not in self.periodic]
        sizes = [in_features + len(self.periodic)] + [width] * depth
        layers: list[nn.Module] = []
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(fan_in, fan_out), ACTIVATIONS[activation]()]
        layers.append(nn.Linear(sizes[-1], out_features))
        self.layers = nn.Sequential(*layers)
        for layer in self.layers:
            if isinstance(layer, nn.Linear):
                nn.init.xavier_normal_(layer.weight)
                nn.init.zeros_(layer.bias)
        self.register_buffer("center", torch.zeros(in_features))
        self.register_buffer("half_width", torch.ones(in_features))

    def set_domain(self, lower: tuple[float, ...], upper: tuple[float, ...]) -> None:
        """Scale inputs from the box ``[lower, upper]`` to [-1, 1]."""
        lo, hi = torch.tensor(lower, dtype=torch.float64), torch.tensor(upper, dtype=torch.float64)
        if lo.shape != (self.in_features,) or hi.shape != lo.shape or not bool((hi > lo).all()):
            raise ValueError(f"domain must give {self.in_features} lower < upper bounds, got {lower} and {upper}")
        self.center.copy_((hi + lo) / 2)
        self.half_width.copy_((hi - lo) / 2)

    def forward(self, coords: Tensor) -> Tensor:
        if coords.ndim != 2 or coords.shape[1] != self.in_features:
            raise ValueError(f"expected coordinates (N, {self.in_features}), got {tuple(coords.shape)}")
        scaled = (coords - self.center.to(coords.dtype)) / self.half_width.to(coords.dtype)
        if self.periodic:
            angle = math.pi * scaled[:, self.periodic]
            scaled = torch.cat([scaled[:, self.aperiodic], torch.cos(angle), torch.sin(angle)], dim=1)
        return self.layers(scaled)

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
