"""LightningDataModules: generate-or-load PDE datasets, cache to HDF5, split, normalise."""

from .base import EpochShuffle, PDEDataModule, TensorSamples
from .families import (
    BurgersDataModule,
    DarcyDataModule,
    DarcyPIDMDataModule,
    HelmholtzDataModule,
    KolmogorovDataModule,
    KSDataModule,
    PoissonDataModule,
)
from .request import SampleRequest

__all__ = ["BurgersDataModule", "DarcyDataModule", "DarcyPIDMDataModule", "EpochShuffle", "HelmholtzDataModule",
           "KSDataModule", "KolmogorovDataModule", "PDEDataModule", "PoissonDataModule", "SampleRequest",
           "TensorSamples"]
