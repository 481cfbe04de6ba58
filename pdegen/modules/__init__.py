"""LightningModules: thin shells wiring PDEs, diffusion, nets and metrics into train/val/test steps."""

from .features import FeatureSurrogate
from .frozen_teacher import TeacherMixin, load_teacher
from .generator import FieldModuleMixin, GeneratorMixin
from .guided import GuidedTeacher
from .kdpinn import KDPINNStudent
from .pid import PIDStudent
from .piddm import PIDDMStudent
from .pinn import PINN
from .teacher import DiffusionTeacher

__all__ = ["PINN", "DiffusionTeacher", "FeatureSurrogate", "FieldModuleMixin", "GeneratorMixin", "GuidedTeacher",
           "KDPINNStudent", "PIDDMStudent", "PIDStudent", "TeacherMixin", "load_teacher"]
