"""Where a report's figures come from: the run's config, its hash, and the checkpoint it evaluated."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import lightning as L
import yaml
from jsonargparse import Namespace
from lightning.pytorch.cli import SaveConfigCallback
from lightning.pytorch.loggers import WandbLogger

from pdegen import __version__

SETTINGS = ("seed_everything", "trainer", "model", "data")
"""The parts of a ``pdegen`` config that decide a run's result (not ``ckpt_path``, ``overwrite``, ...)."""


class RunConfig(SaveConfigCallback):
    """The ``pdegen`` CLI's config callback: writes ``config.yaml`` to the log directory (as LightningCLI
    does), puts the whole config into the config of every W&B run, stores the SHA-256 of the run's
    settings (:data:`SETTINGS`) in every checkpoint it writes (``checkpoint["pdegen_run"]``) and remembers the
    step and settings hash of the checkpoint a run loads, for :func:`provenance`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        settings = {key: self.config.get(key) for key in SETTINGS}
        dump = json.dumps(Namespace(settings).as_dict(), sort_keys=True, default=str)
        self.config_sha256 = hashlib.sha256(dump.encode()).hexdigest()
        self.loaded: dict[str, Any] = {}

    def save_config(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        config = yaml.safe_load(self.parser.dump(self.config, skip_none=False))
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.experiment.config.update({"cli": config}, allow_val_change=True)

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        checkpoint["pdegen_run"] = {"config_sha256": self.config_sha256, "pdegen_version": __version__}

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        self.loaded = {"global_step": checkpoint.get("global_step"),
                       "config_sha256": checkpoint.get("pdegen_run", {}).get("config_sha256")}


def provenance(trainer: L.Trainer) -> dict[str, Any]:
    """What every report and metrics file says about where its figures come from: the checkpoint
    evaluated (``trainer.ckpt_path`` resolved: ``last`` names the file), the training steps it holds, the
    SHA-256 of this run's settings and of the settings that trained the checkpoint (``None`` outside the
    ``pdegen`` CLI or for a checkpoint written without it), and the pdegen version."""
    record = next((c for c in trainer.callbacks if isinstance(c, RunConfig)), None)
    loaded = record.loaded if record is not None else {}
    return {"checkpoint": str(Path(trainer.ckpt_path).resolve()) if trainer.ckpt_path else None,
            "global_step": loaded.get("global_step", trainer.global_step),
            "config_sha256": record.config_sha256 if record is not None else None,
            "trained_config_sha256": loaded.get("config_sha256"), "pdegen_version": __version__}
