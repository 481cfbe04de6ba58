"""Compact DDPM/EDM-style U-Net with FiLM noise conditioning, for 1-D or 2-D fields."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .embedding import NoiseConditionedNet

PADDING_MODES = ("zeros", "circular")
CONVS = {1: nn.Conv1d, 2: nn.Conv2d}


def conv(dims: int, in_ch: int, out_ch: int, kernel: int, stride: int = 1, padding_mode: str = "zeros") -> nn.Module:
    """``dims``-D convolution with 'same' padding (kernel // 2 per side) of the given mode."""
    return CONVS[dims](in_ch, out_ch, kernel, stride=stride, padding=kernel // 2, padding_mode=padding_mode)


def group_norm(channels: int, max_groups: int = 32) -> nn.GroupNorm:
    """GroupNorm with the largest group count dividing ``channels``, at most
    min(max_groups, channels // 4) (at least 4 channels a group where possible, as in EDM)."""
    limit = max(1, min(max_groups, channels // 4))
    groups = max(g for g in range(1, limit + 1) if channels % g == 0)
    return nn.GroupNorm(groups, channels)


class ResBlock(nn.Module):
    """h = conv(SiLU(norm(x))); h = SiLU(norm(h)(1 + γ) + β), (γ, β) = Linear(e);
    out = (skip(x) + conv(dropout(h))) / √2, skip a 1×1 conv when the width changes.
    Convolutions are ``dims``-D with kernel 3 and the given ``padding_mode``."""

    def __init__(
        self, in_ch: int, out_ch: int, emb_dim: int, dropout: float = 0.0, dims: int = 2, padding_mode: str = "zeros"
    ) -> None:
        super().__init__()
        self.norm1 = group_norm(in_ch)
        self.conv1 = conv(dims, in_ch, out_ch, 3, padding_mode=padding_mode)
        self.film = nn.Linear(emb_dim, 2 * out_ch)
        self.norm2 = group_norm(out_ch)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = conv(dims, out_ch, out_ch, 3, padding_mode=padding_mode)
        self.skip = conv(dims, in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        film = self.film(emb).reshape(*emb.shape[:1], -1, *([1] * (h.ndim - 2)))  # (B, 2C, 1, ...)
        scale, shift = film.chunk(2, dim=1)
        h = F.silu(self.norm2(h) * (1 + scale) + shift)
        h = self.conv2(self.dropout(h))
        return (self.skip(x) + h) * 2**-0.5


class SelfAttention(nn.Module):
    """Residual multi-head self-attention over all grid positions: x + MHA(GroupNorm(x)).
    No positional encoding, so it is equivariant to permutations (and hence shifts) of the grid."""

    def __init__(self, channels: int, head_dim: int = 32) -> None:
        super().__init__()
        self.norm = group_norm(channels)
        self.attn = nn.MultiheadAttention(channels, max(1, channels // head_dim), batch_first=True)

    def forward(self, x: Tensor) -> Tensor:
        seq = self.norm(x).flatten(2).transpose(1, 2)  # (B, positions, C)
        out, _ = self.attn(seq, seq, seq, need_weights=False)
        return x + out.transpose(1, 2).reshape(x.shape)


class UNet(NoiseConditionedNet):
    """U-Net backbone F(x, c_noise): (B, channels + cond_channels, *grid), (B,) -> (B, channels, *grid).

    grid is (R,) for ``dims=1`` (e.g. Kuramoto–Sivashinsky windows: states stacked on the channel
    axis over a periodic 1-D grid) and (H, W) for ``dims=2`` (the default). ``cond_channels``
    conditioning channels, concatenated by the caller after the field, are read by ``conv_in``
    only; the output has the field's ``channels``.

    Level l has width base_channels·channel_mults[l] and ``num_res_blocks`` FiLM residual
    blocks; levels are joined by stride-2 3×3 conv downsampling and nearest ×2 upsampling +
    3×3 conv (3 and ×2 for 1-D), with skip connections from every encoder block. The
    bottleneck is ResBlock (+ self-attention when ``attention``) + ResBlock. The output conv
    is zero-initialised, so F ≡ 0 at initialisation (D = c_skip x under EDM). Every grid axis
    must be divisible by 2^(len(channel_mults) − 1).

    ``padding_mode`` of every 3×3 conv: "zeros" (non-periodic) or "circular" (periodic domains,
    e.g. KS, Kolmogorov flow). With "circular" the net is exactly equivariant to grid shifts by
    multiples of 2^(len(channel_mults) − 1) (the stride-2 downsampling breaks other shifts).
    """

    def __init__(
        self,
        channels: int,
        base_channels: int = 32,
        channel_mults: list[int] = [1, 2, 2],
        num_res_blocks: int = 1,
        emb_dim: int = 128,
        dropout: float = 0.0,
        attention: bool = False,
        dims: int = 2,
        padding_mode: str = "zeros",
        cond_channels: int = 0,
    ) -> None:
        if dims not in CONVS:
            raise ValueError(f"dims must be one of {sorted(CONVS)} (1-D or 2-D fields), got {dims!r}")
        if padding_mode not in PADDING_MODES:
            raise ValueError(f"padding_mode must be one of {PADDING_MODES}, got {padding_mode!r}")
        super().__init__(channels, emb_dim, cond_channels=cond_channels, dims=dims)
        if not channel_mults or min(channel_mults) < 1 or base_channels < 1 or num_res_blocks < 1:
            raise ValueError(
                "need a non-empty channel_mults >= 1, base_channels >= 1 and num_res_blocks >= 1"
            )
        self.padding_mode = padding_mode
        widths = [base_channels * m for m in channel_mults]
        self.factor = 2 ** (len(widths) - 1)

        def block(in_ch: int, out_ch: int) -> ResBlock:
            return ResBlock(in_ch, out_ch, emb_dim, dropout, dims=dims, padding_mode=padding_mode)

        def conv3(in_ch: int, out_ch: int, stride: int = 1) -> nn.Module:
            return conv(dims, in_ch, out_ch, 3, stride=stride, padding_mode=padding_mode)

        self.conv_in = conv3(channels + cond_channels, widths[0])

        self.down = nn.ModuleList()
        skip_widths = [widths[0]]
        ch = widths[0]
        for level, width in enumerate(widths):
            for _ in range(num_res_blocks):
                self.down.append(block(ch, width))
                ch = width
                skip_widths.append(ch)
            if level < len(widths) - 1:
                self.down.append(conv3(ch, ch, stride=2))
                skip_widths.append(ch)

        self.mid1 = block(ch, ch)
        self.mid_attn = SelfAttention(ch) if attention else nn.Identity()
        self.mid2 = block(ch, ch)

        self.up = nn.ModuleList()
        for level in reversed(range(len(widths))):
            for _ in range(num_res_blocks + 1):
                self.up.append(block(ch + skip_widths.pop(), widths[level]))
                ch = widths[level]
            if level > 0:
                self.up.append(nn.Sequential(nn.Upsample(scale_factor=2.0), conv3(ch, ch)))

        self.norm_out = group_norm(ch)
        self.conv_out = conv3(ch, channels)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, x: Tensor, c_noise: Tensor) -> Tensor:
        """x: (B, channels + cond_channels, *grid), c_noise: (B,) or a scalar -> (B, channels, *grid)."""
        c_noise = self.check_input(x, c_noise)
        grid = tuple(x.shape[2:])
        if any(n % self.factor for n in grid):
            raise ValueError(
                f"grid {grid} is not divisible by {self.factor} = 2^(len(channel_mults) - 1) along "
                f"every axis; use a grid divisible by {self.factor} or fewer levels"
            )
        emb = self.embedding(c_noise)
        h = self.conv_in(x)
        skips = [h]
        for layer in self.down:
            h = layer(h, emb) if isinstance(layer, ResBlock) else layer(h)
            skips.append(h)
        h = self.mid2(self.mid_attn(self.mid1(h, emb)), emb)
        for layer in self.up:
            if isinstance(layer, ResBlock):
                h = layer(torch.cat([h, skips.pop()], dim=1), emb)
            else:
                h = layer(h)
        return self.conv_out(F.silu(self.norm_out(h)))
