"""A noise-conditioned MLP for vector samples (B, C): toy distributions and unit tests."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .embedding import NoiseEmbedding


class NoiseConditionedMLP(nn.Module):
    """``forward(x: (B, C), c_noise: (B,)) -> (B, C)``: ``depth`` SiLU layers of width ``width``,
    each adding a linear read of the :class:`NoiseEmbedding` (FiLM-style shift)."""

    def __init__(self, channels: int, width: int = 128, depth: int = 3, emb_dim: int = 32) -> None:
        super().__init__()
        if channels < 1 or width < 1 or depth < 1:
            raise ValueError(f"channels, width and depth must be >= 1, got {channels}, {width}, {depth}")
        self.channels = channels
        self.embedding = NoiseEmbedding(emb_dim)
        self.layers = nn.ModuleList(nn.Linear(channels if i == 0 else width, width) for i in range(depth))
        self.shifts = nn.ModuleList(nn.Linear(emb_dim, width) for _ in range(depth))
        self.out = nn.Linear(width, channels)

    def forward(self, x: Tensor, c_noise: Tensor) -> Tensor:
        if x.ndim != 2 or x.shape[1] != self.channels:
            raise ValueError(f"expected vectors (B, {self.channels}), got {tuple(x.shape)}")
        emb = self.embedding(torch.as_tensor(c_noise, device=x.device).reshape(-1).expand(x.shape[0]))
        h = x
        for layer, shift in zip(self.layers, self.shifts):
            h = torch.nn.functional.silu(layer(h) + shift(emb))
        return self.out(h)
