"""torchmetrics Metrics: PDE residual norms and ensemble moment errors; power spectra."""

from .moments import MomentErrors
from .residual import PDEResidualNorm, reference_residual_scales, region_norms, region_squared_norms, residual_loss
from .spectrum import radial_power_spectrum

__all__ = ["MomentErrors", "PDEResidualNorm", "radial_power_spectrum", "region_norms", "region_squared_norms",
           "reference_residual_scales", "residual_loss"]
