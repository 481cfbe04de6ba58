"""What pdegen's callbacks share: where their files go, how figures are published, and the evaluation
pattern of the sample-quality callbacks (collect held-out ground truth from the validation/test
batches, then, at the loop's last batch, draw the module's samples and compare)."""

from __future__ import annotations

from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger
from torch import Tensor

from pdegen import progress
from pdegen.plotting import close_figure, figure_to_array, save_figure


def results_dir(trainer: L.Trainer, configured: str | None = None) -> Path:
    """Where a callback writes its files: ``configured``, else the trainer's log directory, else its root."""
    return Path(configured or trainer.log_dir or trainer.default_root_dir)


def progress_shown(trainer: L.Trainer, label: str):
    """Progress bars for the evaluation work in the block, described by the stage and ``label``, where the
    trainer shows its own bar (and on rank 0 only): see :mod:`pdegen.progress`."""
    stage = trainer.state.stage.value if trainer.state.stage else "run"
    return progress.shown(f"{stage}: {label}", trainer.is_global_zero and trainer.progress_bar_callback is not None)


def last_plane(x: Tensor) -> Tensor:
    """``(B, C, *grid)`` -> ``(B, C, H, W)``: the last 2-D plane (e.g. the final state of a 3-D trajectory)."""
    while x.ndim > 4:
        x = x[:, :, -1]
    return x


def publish_figure(trainer: L.Trainer, key: str, fig, png: Path, always_png: bool = False) -> Path | None:
    """Log ``fig`` as the image ``key`` to every W&B / TensorBoard logger of ``trainer``; write it to
    ``png`` when no such logger took it (the CSV logger) or ``always_png``. Closes the figure."""
    logged = False
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            logger.log_image(key=key, images=[figure_to_array(fig)], step=trainer.global_step)
            logged = True
        elif isinstance(logger, TensorBoardLogger):
            logger.experiment.add_figure(key, fig, global_step=trainer.global_step, close=False)
            logged = True
    if always_png or not logged:
        return save_figure(fig, png)
    close_figure(fig)
    return None


class HeldOutEvaluation(Callback):
    """Every ``every_n_epochs`` validation epochs (not the sanity check) and every test epoch:
    :meth:`begin`, then :meth:`add_reference` with each batch, then :meth:`evaluate` at the last
    batch, which runs inside the EMA weight swap whatever the order of the callbacks."""

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
        if stage == "test":
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
