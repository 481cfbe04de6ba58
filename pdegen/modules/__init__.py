"""LightningModules: thin shells wiring PDEs, diffusion, nets and metrics into train/val/test steps."""

from .frozen_teacher import TeacherMixin, load_teacher
from .generator import GeneratorMixin
from .guided import GuidedTeacher
from .pid import PIDStudent
from .piddm import PIDDMStudent
from .teacher import DiffusionTeacher

__all__ = ["DiffusionTeacher", "GeneratorMixin", "GuidedTeacher", "PIDDMStudent", "PIDStudent", "TeacherMixin",
           "load_teacher"]
