"""Opt-in ``torch.compile`` of a module's grid backbones."""

from __future__ import annotations

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback


class CompileBackbones(Callback):
    """Compiles, in place (``nn.Module.compile``: parameter names and checkpoints unchanged), every grid
    backbone (U-Net, FNO) inside the module at the start of fit, validate, test or predict, e.g. the
    teacher's denoiser and a student's copy. Point-wise PINN networks are left alone: their autograd
    residuals take double backward, which compiled graphs do not support well. ``backend`` and
    ``mode`` go to ``torch.compile`` (``mode: max-autotune`` for long GPU runs); the first steps pay
    the compilation."""

    def __init__(self, backend: str = "inductor", mode: str | None = None) -> None:
        self.backend, self.mode = backend, mode
        self.compiled: list[torch.nn.Module] = []

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        from pdegen.nets import NoiseConditionedFNO, UNet  # here: neuraloperator is slow to import

        for module in pl_module.modules():
            if isinstance(module, (UNet, NoiseConditionedFNO)) and module._compiled_call_impl is None:
                module.compile(backend=self.backend, mode=self.mode)
                self.compiled.append(module)
