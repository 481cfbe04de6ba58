"""Lightning callbacks: the residual, Fréchet-distance and task reports of every generator module,
figures of samples and spectra, inference latency, generated samples to HDF5, the stop at a
non-finite loss, an EMA of the weights that leaves constant weights exact, checkpoints that belong
to one run, and the record of which config and checkpoint every report comes from."""

from .checkpoint import RunCheckpoint
from .compile import CompileBackbones
from .ema import EMAWeightAveraging
from .fid import FIDCallback
from .figures import SampleFigures
from .finite import NonFiniteLossError, StopOnNonFiniteLoss
from .latency import LatencyCallback
from .provenance import RunConfig, provenance
from .residual import PDEResidualCallback
from .samples import SampleWriter
from .task import TaskCallback

__all__ = ["CompileBackbones", "EMAWeightAveraging", "FIDCallback", "LatencyCallback", "NonFiniteLossError",
           "PDEResidualCallback", "RunCheckpoint", "RunConfig", "SampleFigures", "SampleWriter", "StopOnNonFiniteLoss",
           "TaskCallback", "provenance"]
