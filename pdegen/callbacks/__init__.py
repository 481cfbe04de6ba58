"""Lightning callbacks: the residual, Fréchet-distance and task reports of every generator module,
figures of samples and spectra, inference latency, generated samples to HDF5, the stop at a
non-finite loss, an EMA of the weights that leaves constant weights exact, and checkpoints that
belong to one run."""

from .checkpoint import RunCheckpoint
from .compile import CompileBackbones
from .ema import EMAWeightAveraging
from .fid import FIDCallback
from .figures import SampleFigures
from .finite import NonFiniteLossError, StopOnNonFiniteLoss
from .latency import LatencyCallback
from .residual import PDEResidualCallback
from .samples import SampleWriter
from .task import TaskCallback

__all__ = ["CompileBackbones", "EMAWeightAveraging", "FIDCallback", "LatencyCallback", "NonFiniteLossError",
           "PDEResidualCallback", "RunCheckpoint", "SampleFigures", "SampleWriter", "StopOnNonFiniteLoss",
           "TaskCallback"]
