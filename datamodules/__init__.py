"""LightningDataModules: generate-or-load PDE datasets, cache to HDF5, split, normalise.

One :class:`PDEDataModule` serves every family: its ``pde`` (typed, so LightningCLI validates the YAML) names
the family; ``lightning_configs/data/<family>.yaml`` holds each family's settings.
"""

from .base import EpochShuffle, PDEDataModule
from .request import ForecastRequest, SampleRequest
from .samples import FileSamples, TensorSamples, channel_stats
from .windows import TrajectoryWindows, random_windows

__all__ = ["EpochShuffle", "FileSamples", "ForecastRequest", "PDEDataModule", "SampleRequest", "TensorSamples",
           "TrajectoryWindows", "channel_stats", "random_windows"]
