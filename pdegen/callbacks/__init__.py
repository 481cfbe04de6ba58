"""Lightning callbacks: the residual and task reports of every generator module, inference latency, and
the stop at a non-finite loss."""

from .finite import NonFiniteLossError, StopOnNonFiniteLoss
from .latency import LatencyCallback
from .residual import PDEResidualCallback
from .task import TaskCallback

__all__ = ["LatencyCallback", "NonFiniteLossError", "PDEResidualCallback", "StopOnNonFiniteLoss", "TaskCallback"]
