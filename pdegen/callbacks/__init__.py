"""Lightning callbacks: the residual and task reports of every generator module, and inference latency."""

from .latency import LatencyCallback
from .residual import PDEResidualCallback
from .task import TaskCallback

__all__ = ["LatencyCallback", "PDEResidualCallback", "TaskCallback"]
