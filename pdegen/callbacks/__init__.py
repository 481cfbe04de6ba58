"""Lightning callbacks that work on every generator module."""

from .residual import PDEResidualCallback
from .task import TaskCallback

__all__ = ["PDEResidualCallback", "TaskCallback"]
