"""Stop a fit at the first NaN/inf training loss, naming the step and the last good checkpoint."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint


class NonFiniteLossError(FloatingPointError):
    """A training loss was NaN or infinite."""


class StopOnNonFiniteLoss(Callback):
    """After every ``check_every_n_steps``-th training batch, raise :class:`NonFiniteLossError` if the
    step's loss (the ``training_step`` output, else the logged ``train/loss``) is NaN or infinite. The
    message names the global step, epoch and batch, and the last checkpoint written before it (which
    holds finite weights: the fit stops before the next save). All DDP ranks take the decision
    together, so none is left waiting in a collective. ``pdegen`` adds this callback to every fit
    (``nan_guard`` in the YAML sets its options)."""

    def __init__(self, check_every_n_steps: int = 1) -> None:
        if check_every_n_steps < 1:
            raise ValueError(f"check_every_n_steps must be >= 1, got {check_every_n_steps}")
        self.check_every_n_steps = check_every_n_steps

    @staticmethod
    def step_loss(trainer: L.Trainer, outputs: Any) -> torch.Tensor | None:
        if isinstance(outputs, dict):
            outputs = outputs.get("loss")
        if isinstance(outputs, torch.Tensor):
            return outputs.detach()
        logged = trainer.callback_metrics.get("train/loss")
        return logged.detach() if isinstance(logged, torch.Tensor) else None

    @staticmethod
    def last_checkpoint(trainer: L.Trainer) -> str | None:
        paths = [path for callback in trainer.callbacks if isinstance(callback, ModelCheckpoint)
                 for path in (callback.last_model_path, callback.best_model_path) if path]
        return paths[0] if paths else None

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if trainer.global_step % self.check_every_n_steps:
            return
        loss = self.step_loss(trainer, outputs)
        bad = loss is not None and not bool(torch.isfinite(loss).all())
        if not trainer.strategy.reduce_boolean_decision(bad, all=False):
            return
        checkpoint = self.last_checkpoint(trainer)
        resume = (f"the last good checkpoint is {checkpoint}: resume from it (--ckpt_path {checkpoint}) with a lower "
                  "learning rate or gradient clipping (trainer.gradient_clip_val)" if checkpoint else
                  "no checkpoint was written before it: lower the learning rate or clip gradients "
                  "(trainer.gradient_clip_val) and start again")
        value = "another rank's" if loss is None or bool(torch.isfinite(loss).all()) else f"{loss.float().item()}"
        raise NonFiniteLossError(f"non-finite training loss ({value}) in optimizer step {trainer.global_step} "
                                 f"(epoch {trainer.current_epoch}, batch {batch_idx}); {resume}")
