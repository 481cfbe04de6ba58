"""LightningModules: thin shells wiring PDEs, diffusion, nets and metrics into train/val/test steps."""

from .checkpoints import load_module, save_init_arguments
from .conditional import ConditionalDiffusion
from .features import FeatureSurrogate
from .forecast_student import ForecastStudent
from .forecaster import WindowForecaster
from .frozen_teacher import FrozenTeacher
from .generator import FieldModule, GeneratorModule
from .guided import GuidedDiffusion
from .kdpinn import PINNDistillation
from .pid import PIDStudent
from .piddm import PIDDMStudent
from .pinn import PINN
from .teacher import DiffusionTeacher

__all__ = ["PINN", "ConditionalDiffusion", "DiffusionTeacher", "FeatureSurrogate", "FieldModule", "ForecastStudent",
           "FrozenTeacher", "GeneratorModule", "GuidedDiffusion", "PIDDMStudent", "PINNDistillation", "PIDStudent",
           "WindowForecaster", "load_module", "save_init_arguments"]
