"""Where pdegen's callbacks write and how they show their results: one run folder
(``trainer.default_root_dir``, with ``report/`` for reports and figures), figures published to the
run's loggers, progress bars of evaluation work."""

from __future__ import annotations

from pathlib import Path

import lightning as L
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger
from torch import Tensor

from pdegen import progress
from pdegen.benchmarking import best_time
from pdegen.plotting import close_figure, figure_to_array, save_figure


def results_dir(trainer: L.Trainer, configured: str | None = None) -> Path:
    """Where a callback writes its files: ``configured``, else ``report/`` in the run folder
    (``trainer.default_root_dir``, which also holds ``checkpoints/`` and the CSV ``logs/``)."""
    return Path(configured) if configured else Path(trainer.default_root_dir) / "report"


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


def timed_draw(pl_module: L.LightningModule, draw, label: str) -> tuple[Tensor, float]:
    """``draw()`` and its wall-clock seconds (the GPU synchronised around it), under a progress bar ``label``."""
    with progress_shown(pl_module.trainer, label):
        seconds, _, samples = best_time(draw, sync=pl_module.device.type == "cuda")
    return samples, seconds
