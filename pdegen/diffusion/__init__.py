"""EDM preconditioning, σ schedules and PF-ODE samplers — plain torch, no Lightning."""

from .distances import DISTANCES, Distance, get_distance
from .edm import (
    Denoiser,
    EDMCoefficients,
    EDMLossTerms,
    EDMPreconditioner,
    edm_coefficients,
    edm_loss,
    edm_loss_terms,
    edm_loss_weight,
    lognormal_sigma_levels,
)
from .gaussian import (
    AR1Process,
    CorrelatedGaussianDenoiser,
    GaussianDenoiser,
    GaussianMixtureDenoiser,
    MixturePosterior,
)
from .guidance import OPTIMIZERS, NoiseOptimization, optimize_noise, project_to_shell
from .pid_trajectory import SCHEMES, PIDTrajectory, check_scheme, pid_grid, pid_loss, pid_prediction
from .reconstruction import ReconstructionGuidance
from .samplers import (
    Euler,
    Guidance,
    Heun,
    LangevinCorrected,
    Sampler,
    StepCallback,
    as_sampler,
    check_sigma_range,
    karras_sigmas,
)
from .windows import LocalScoreDenoiser, autoregressive_rollout, check_split, num_windows

__all__ = [
    "AR1Process",
    "CorrelatedGaussianDenoiser",
    "LocalScoreDenoiser",
    "ReconstructionGuidance",
    "autoregressive_rollout",
    "check_split",
    "num_windows",
    "OPTIMIZERS",
    "NoiseOptimization",
    "optimize_noise",
    "project_to_shell",
    "DISTANCES",
    "SCHEMES",
    "check_scheme",
    "Distance",
    "GaussianMixtureDenoiser",
    "MixturePosterior",
    "EDMLossTerms",
    "edm_loss_terms",
    "PIDTrajectory",
    "get_distance",
    "pid_grid",
    "pid_loss",
    "pid_prediction",
    "Euler",
    "Guidance",
    "Heun",
    "LangevinCorrected",
    "Sampler",
    "as_sampler",
    "StepCallback",
    "Denoiser",
    "EDMCoefficients",
    "EDMPreconditioner",
    "GaussianDenoiser",
    "edm_coefficients",
    "edm_loss",
    "edm_loss_weight",
    "check_sigma_range",
    "karras_sigmas",
    "lognormal_sigma_levels",
]
