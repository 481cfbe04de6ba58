"""LightningModules: thin shells wiring PDEs, diffusion, nets and metrics into train/val/test steps."""

from .generator import GeneratorMixin
from .pid import PIDStudent
from .teacher import DiffusionTeacher

__all__ = ["DiffusionTeacher", "GeneratorMixin", "PIDStudent"]
