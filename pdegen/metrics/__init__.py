"""torchmetrics Metrics: PDE residual norms, ensemble moment errors, marginal W1 distances; power spectra."""

from .marginal import MarginalWasserstein, wasserstein_1d
from .moments import MomentErrors
from .residual import PDEResidualNorm, reference_residual_scales, region_norms, region_squared_norms, residual_loss
from .spectrum import radial_power_spectrum

__all__ = ["MarginalWasserstein", "MomentErrors", "PDEResidualNorm", "radial_power_spectrum", "region_norms",
           "region_squared_norms", "reference_residual_scales", "residual_loss", "wasserstein_1d"]
