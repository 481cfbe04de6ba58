"""The evaluation pattern of the sample-quality callbacks: collect held-out ground truth from the
validation/test batches, then, at the loop's last batch, draw the module's samples and compare."""

from __future__ import annotations

import lightning as L
from lightning.pytorch.callbacks import Callback
from torch import Tensor


class HeldOutEvaluation(Callback):
    """In each loop of :attr:`stages` (validation every ``every_n_epochs`` epochs, not the sanity check;
    every test and predict epoch): :meth:`begin`, then :meth:`add_reference` with each batch, then
    :meth:`evaluate` at the last batch, which runs inside the EMA weight swap whatever the order of the
    callbacks."""

    stages: tuple[str, ...] = ("val", "test")
    """The loops evaluated: any of ``val``, ``test`` and ``predict``."""

    def __init__(self, every_n_epochs: int = 1) -> None:
        if every_n_epochs < 1:
            raise ValueError(f"every_n_epochs must be >= 1, got {every_n_epochs}")
        self.every_n_epochs = every_n_epochs
        self._running = False

    def begin(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Prepare this epoch's evaluation."""

    def add_reference(self, batch: Tensor) -> None:
        raise NotImplementedError

    def evaluate(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        raise NotImplementedError

    def _active(self, trainer: L.Trainer, stage: str) -> bool:
        if stage not in self.stages:
            return False
        if stage != "val":
            return True
        return not trainer.sanity_checking and (trainer.current_epoch + 1) % self.every_n_epochs == 0

    def _start(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._running = self._active(trainer, stage)
        if self._running:
            self.begin(trainer, pl_module, stage)

    def _batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Tensor, batch_idx: int,
                   num_batches: int, stage: str) -> None:
        if not self._running:
            return
        self.add_reference(batch)
        if batch_idx == num_batches - 1:
            self._running = False
            self.evaluate(trainer, pl_module, stage)

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self._start(trainer, pl_module, "val")

    def on_test_epoch_start(self, trainer, pl_module) -> None:
        self._start(trainer, pl_module, "test")

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._batch_end(trainer, pl_module, batch, batch_idx, trainer.num_val_batches[dataloader_idx], "val")

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._batch_end(trainer, pl_module, batch, batch_idx, trainer.num_test_batches[dataloader_idx], "test")

    def on_predict_epoch_start(self, trainer, pl_module) -> None:
        self._start(trainer, pl_module, "predict")

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._batch_end(trainer, pl_module, batch, batch_idx, trainer.num_predict_batches[dataloader_idx], "predict")
