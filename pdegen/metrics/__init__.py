"""torchmetrics Metrics: PDE residual norms, ensemble moment errors, marginal W1 distances; power spectra;
forecast scores (per-state correlation and RMSD, high-correlation time, CRPS, spread–skill, spectrum error)."""

from .forecast import (
    crps_ensemble,
    energy_spectrum,
    high_correlation_time,
    pooled_spread_skill,
    spectrum_error,
    spread_skill_ratio,
    spread_skill_terms,
    state_correlation,
    state_rmsd,
)
from .marginal import MarginalWasserstein, wasserstein_1d
from .moments import MomentErrors
from .residual import PDEResidualNorm, reference_residual_scales, region_norms, region_squared_norms, residual_loss
from .spectrum import radial_power_spectrum

__all__ = ["crps_ensemble", "energy_spectrum", "high_correlation_time", "pooled_spread_skill",
           "spectrum_error", "spread_skill_ratio", "spread_skill_terms", "state_correlation", "state_rmsd",
           "MarginalWasserstein", "MomentErrors", "PDEResidualNorm", "radial_power_spectrum", "region_norms",
           "region_squared_norms", "reference_residual_scales", "residual_loss", "wasserstein_1d"]
