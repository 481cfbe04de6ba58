"""torchmetrics Metrics: PDE residual norms and ensemble moment errors."""

from .moments import MomentErrors
from .residual import PDEResidualNorm, reference_residual_scales, region_norms, region_squared_norms, residual_loss

__all__ = ["MomentErrors", "PDEResidualNorm", "region_norms", "region_squared_norms", "reference_residual_scales",
           "residual_loss"]
