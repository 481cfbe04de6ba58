"""Noise-conditioned backbones F(x: (B, C, H, W), c_noise: (B,)) -> (B, C, H, W) — plain torch.

``TimeAsChannels`` adapts any of them to time-dependent samples (B, C, T, H, W).
"""

from .embedding import NoiseConditionedNet, NoiseEmbedding
from .fno import NoiseConditionedFNO, PerSampleAdaIN
from .mlp import NoiseConditionedMLP
from .time_channels import TimeAsChannels
from .unet import UNet

__all__ = ["NoiseConditionedFNO", "NoiseConditionedMLP", "NoiseConditionedNet", "NoiseEmbedding", "PerSampleAdaIN",
           "TimeAsChannels", "UNet"]
