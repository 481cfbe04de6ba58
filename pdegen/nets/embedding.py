"""Noise embedding and the interface shared by the noise-conditioned backbones."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class NoiseEmbedding(nn.Module):
    """c_noise (B,) -> embedding (B, emb_dim).

    Sinusoidal features [cos(f_k c), sin(f_k c)] at K = emb_dim // 2 frequencies spaced
    geometrically, f_k = max_frequency^(k/(K−1)) (1 to ``max_frequency`` rad per unit of c_noise;
    EDM's c_noise = ln σ / 4 spans about [−1.6, 1.1] for σ in [0.002, 80]), then
    Linear → SiLU → Linear → SiLU, so blocks read it with a single Linear (as in EDM's U-Nets).
    """

    def __init__(self, emb_dim: int, max_frequency: float = 16.0) -> None:
        super().__init__()
        if emb_dim < 4 or emb_dim % 2:
            raise ValueError(f"emb_dim must be an even integer >= 4, got {emb_dim}")
        half = emb_dim // 2
        freqs = max_frequency ** (torch.arange(half, dtype=torch.float64) / (half - 1))
        self.register_buffer("frequencies", freqs.float(), persistent=False)
        self.emb_dim = emb_dim
        self.mlp = nn.Sequential(
            nn.Linear(emb_dim, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim), nn.SiLU()
        )

    def forward(self, c_noise: Tensor) -> Tensor:
        angles = c_noise.reshape(-1, 1).to(self.frequencies.dtype) * self.frequencies
        return self.mlp(torch.cat([angles.cos(), angles.sin()], dim=1))


class NoiseConditionedNet(nn.Module):
    """Base of the backbones: ``forward(x: (B, channels + cond_channels, *grid), c_noise: (B,))
    -> (B, channels, *grid)``, grid = ``dims`` spatial axes ((H, W) by default), and a
    :class:`NoiseEmbedding` ``self.embedding``.

    ``channels`` are the channels of the field being denoised (the output); ``cond_channels``
    extra channels of conditioning (e.g. observed states of a trajectory window) are concatenated
    by the caller after the field and are read but not predicted.
    """

    def __init__(self, channels: int, emb_dim: int, cond_channels: int = 0, dims: int = 2) -> None:
        super().__init__()
        if channels < 1:
            raise ValueError(f"channels must be >= 1, got {channels}")
        if cond_channels < 0:
            raise ValueError(f"cond_channels must be >= 0, got {cond_channels}")
        if dims < 1:
            raise ValueError(f"dims must be >= 1, got {dims}")
        self.channels = channels
        self.cond_channels = cond_channels
        self.dims = dims
        self.embedding = NoiseEmbedding(emb_dim)

    def check_input(self, x: Tensor, c_noise: Tensor) -> Tensor:
        """Validate x and return c_noise as (B,) (a single value is broadcast to the batch)."""
        if x.ndim != 2 + self.dims:
            grid = {1: "R", 2: "H, W", 3: "D, H, W"}.get(self.dims, "*grid")
            raise ValueError(f"expected input of shape (B, C, {grid}) ({self.dims}-D fields), got {tuple(x.shape)}")
        expected = self.channels + self.cond_channels
        if x.shape[1] != expected:
            if self.cond_channels:
                raise ValueError(
                    f"wrong channel count: the network was built for {expected} input channels "
                    f"(channels={self.channels} field + cond_channels={self.cond_channels} condition) but "
                    f"the input has {x.shape[1]} (shape {tuple(x.shape)}); set `channels` in the YAML to "
                    "the PDE's channels and `cond_channels` to the channels concatenated after the field"
                )
            raise ValueError(
                f"wrong channel count: the network was built for {self.channels} channels but "
                f"the input has {x.shape[1]} (shape {tuple(x.shape)}); set `channels` in the "
                "YAML to match the PDE"
            )
        c_noise = torch.as_tensor(c_noise, device=x.device)
        if c_noise.numel() == 1:
            return c_noise.reshape(1).expand(x.shape[0])
        if c_noise.numel() != x.shape[0]:
            raise ValueError(f"c_noise has {c_noise.numel()} values for a batch of {x.shape[0]}; pass (B,)")
        return c_noise.reshape(x.shape[0])
