"""Noise-conditioned backbones F(x: (B, C, H, W), c_noise: (B,)) -> (B, C, H, W) — plain torch.

``TimeAsChannels`` adapts any of them to time-dependent samples (B, C, T, H, W); ``CoordinateMLP`` is
the point-wise network of the PINNs, (N, d) coordinates -> (N, k) outputs.
"""

from .coordinate_mlp import CoordinateMLP
from .embedding import NoiseConditionedNet, NoiseEmbedding
from .fno import NoiseConditionedFNO, PerSampleAdaIN
from .mlp import NoiseConditionedMLP
from .time_channels import TimeAsChannels
from .unet import UNet

__all__ = ["CoordinateMLP", "NoiseConditionedFNO", "NoiseConditionedMLP", "NoiseConditionedNet", "NoiseEmbedding",
           "PerSampleAdaIN", "TimeAsChannels", "UNet"]
