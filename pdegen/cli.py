"""``pdegen``: the LightningCLI entry point (fit / validate / test / predict from YAML).

    pdegen fit  --config lightning_configs/quickstart/darcy.yaml
    pdegen test --config lightning_configs/quickstart/darcy.yaml --ckpt_path runs/quickstart/checkpoints/last.ckpt

Any LightningModule and LightningDataModule is accepted by ``class_path`` (subclass mode); ``data`` may
be left out for modules that supply their own dataloaders (the PINNs). Every fit stops at the first
NaN/inf training loss (:class:`~pdegen.callbacks.StopOnNonFiniteLoss`, options under ``nan_guard``).
"""

from __future__ import annotations

import copy
import importlib
import os
from collections.abc import Sequence
from typing import Any

import lightning as L
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.loggers import CSVLogger

from pdegen import signals
from pdegen.callbacks import RunCheckpoint, RunConfig, StopOnNonFiniteLoss


class PdegenCLI(LightningCLI):
    """LightningCLI with W&B kept offline unless a config switches it on, the non-finite-loss stop, and one
    run folder: ``trainer.default_root_dir`` holds ``checkpoints/`` (:class:`~pdegen.callbacks.RunCheckpoint`),
    ``report/`` (the reports and figures of every callback) and, when the config names no logger, the CSV
    ``logs/``."""

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_lightning_class_args(StopOnNonFiniteLoss, "nan_guard")
        parser.add_argument("--overwrite", type=bool, default=False,
                            help="fit: replace the checkpoints of an earlier run in the checkpoint folder")

    def before_fit(self) -> None:
        signals.fitting(True)  # SIGTERM: stop at the end of the batch, with a final checkpoint
        for callback in self.trainer.callbacks:
            if isinstance(callback, RunCheckpoint):
                callback.overwrite = callback.overwrite or self.config.fit.overwrite

    def _parse_ckpt_path(self) -> None:
        """Lightning rebuilds the model from the checkpoint's hyperparameters, over the config: right for what the
        weights need, silently wrong for how the model is evaluated. The settings a module lists in
        ``evaluation_settings`` (its sampler, steps, ensemble size, ...) keep the value the config gives."""
        subcommand = self.config.get("subcommand")
        model = self.config[subcommand].get("model") if subcommand else None
        init_args = getattr(model, "init_args", None)
        given = {} if init_args is None else copy.deepcopy(dict(vars(init_args)))
        super()._parse_ckpt_path()
        if not given:
            return
        model = self.config[subcommand]["model"]
        module, _, name = str(model.class_path).rpartition(".")
        for setting in getattr(getattr(importlib.import_module(module), name, None), "evaluation_settings", ()):
            if setting in given:
                model.init_args[setting] = given[setting]

    def before_instantiate_classes(self) -> None:
        os.environ.setdefault("WANDB_MODE", "offline")

    def _instantiate_trainer(self, config: dict[str, Any], callbacks: list[L.Callback]) -> L.Trainer:
        if config.get("logger") in (None, True):  # not named: CSV metrics in the run folder
            config["logger"] = CSVLogger(config.get("default_root_dir") or os.getcwd(), name="logs")
        return super()._instantiate_trainer(config, callbacks)


def main(args: Sequence[str] | None = None, run: bool = True) -> PdegenCLI:
    return PdegenCLI(
        L.LightningModule,
        None,  # any LightningDataModule by class_path, or none: PINNs make their own collocation points
        subclass_mode_model=True,
        save_config_callback=RunConfig,
        save_config_kwargs={"overwrite": True},
        args=list(args) if args is not None else None,
        run=run,
        auto_configure_optimizers=False,
    )


def entry_point() -> None:
    """The ``pdegen`` console script: SIGTERM (SLURM, ``scancel``) stops it cleanly with exit code 143."""
    with signals.sigterm_stops():
        main()


if __name__ == "__main__":
    entry_point()
