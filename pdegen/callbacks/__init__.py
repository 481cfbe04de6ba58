"""Lightning callbacks: the residual, Fréchet-distance and task reports of every generator module,
figures of samples and spectra, inference latency, generated samples to HDF5, and the stop at a
non-finite loss."""

from .compile import CompileBackbones
from .fid import FIDCallback
from .figures import SampleFigures
from .finite import NonFiniteLossError, StopOnNonFiniteLoss
from .latency import LatencyCallback
from .residual import PDEResidualCallback
from .samples import SampleWriter
from .task import TaskCallback

__all__ = ["CompileBackbones", "FIDCallback", "LatencyCallback", "NonFiniteLossError", "PDEResidualCallback",
           "SampleFigures", "SampleWriter", "StopOnNonFiniteLoss", "TaskCallback"]
