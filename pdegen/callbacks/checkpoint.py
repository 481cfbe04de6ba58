"""Checkpoints that belong to one run and are what they claim."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_warn
from lightning.pytorch.utilities.exceptions import SIGTERMException

from pdegen.io import replace_durably, take_lock

LOCK = ".pdegen-fit.lock"


class RunCheckpoint(ModelCheckpoint):
    """Lightning's ``ModelCheckpoint`` (same arguments) with a folder that belongs to one run:

    * ``dirpath`` defaults to ``checkpoints/`` in the run folder (``trainer.default_root_dir``), not in
      the logger's versioned folder, so ``--ckpt_path last`` finds what the last ``fit`` wrote;
    * one fixed last-checkpoint name: ``last.ckpt`` is replaced, never joined by ``last-v1.ckpt``
      (which ``--ckpt_path last`` would then pick without a word);
    * a fresh ``fit`` refuses a folder that holds checkpoints unless it resumes (``--ckpt_path``) or is
      told to replace them (``overwrite``, set by ``pdegen fit --overwrite``, which deletes them first);
    * a lock file refuses a second ``fit`` writing into the folder at the same time (taken over when
      its process on this host is gone, or from another host when resuming: a requeued job);
    * nothing is written under ``fast_dev_run`` (Lightning's ``save_last`` still wrote at train end);
    * SIGTERM (SLURM, ``scancel``) during ``fit`` stops training at the end of the batch and writes
      ``last.ckpt`` (see :mod:`pdegen.signals`; ``pdegen fit`` then exits with 143);
    * every write goes to a temporary file in the same folder, is flushed to disk and renamed over the
      target, so a full disk or a kill leaves the previous checkpoint intact;
    * ``validate``/``test``/``predict`` without a checkpoint to load (``--ckpt_path last`` with no
      ``last.ckpt``, or none given) fail instead of evaluating an untrained model.
    """

    def __init__(self, *args: Any, overwrite: bool = False, enable_version_counter: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(*args, enable_version_counter=enable_version_counter, **kwargs)
        self.overwrite = overwrite
        self._lock: Path | None = None

    # ------------------------------------------------------------------ one run per folder
    def _use_run_folder(self, trainer: L.Trainer) -> None:
        if self.dirpath is None:
            self.dirpath = os.path.realpath(os.path.join(trainer.default_root_dir, "checkpoints"))

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._use_run_folder(trainer)
        super().setup(trainer, pl_module, stage)

    def _find_last_checkpoints(self, trainer: L.Trainer) -> set[str]:
        self._use_run_folder(trainer)  # `--ckpt_path last` is resolved before the callbacks' setup
        return super()._find_last_checkpoints(trainer)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_fit_start(trainer, pl_module)
        if trainer.fast_dev_run:
            return
        # rank 0 decides for every process: a refusal raised on rank 0 alone left the others training
        refusal = trainer.strategy.broadcast(self._claim_folder(trainer) if trainer.is_global_zero else None)
        if refusal:
            raise FileExistsError(refusal)

    def _claim_folder(self, trainer: L.Trainer) -> str | None:
        """Take the folder for this fit (the lock; with ``overwrite``, delete the earlier run's checkpoints),
        or say why not."""
        folder = Path(self.dirpath)
        folder.mkdir(parents=True, exist_ok=True)
        try:  # a requeued job (resuming) may run on another node: it takes that node's lock over
            take_lock(folder / LOCK, f"checkpoints into {folder}", take_foreign=trainer.ckpt_path is not None)
        except FileExistsError as err:
            return str(err)
        self._lock = folder / LOCK
        existing = sorted(folder.glob("*.ckpt"))
        if existing and trainer.ckpt_path is None:
            if not self.overwrite:
                self._release_lock()
                return (f"{folder} already holds checkpoints of another run ({', '.join(p.name for p in existing)}): "
                        "resume it with --ckpt_path last, replace it with --overwrite, or write elsewhere "
                        "(--trainer.default_root_dir)")
            for path in existing:
                path.unlink()
        return None

    def _release_lock(self) -> None:
        if self._lock is not None:
            self._lock.unlink(missing_ok=True)
            self._lock = None

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._release_lock()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        super().on_exception(trainer, pl_module, exception)
        try:
            fitting = trainer.state.fn == TrainerFn.FITTING
            if isinstance(exception, SIGTERMException) and fitting and not trainer.fast_dev_run:
                # the loops stop between batches: weights, optimiser and loop state are consistent
                last = self.format_checkpoint_name(self._monitor_candidates(trainer), self.CHECKPOINT_NAME_LAST)
                self._save_checkpoint(trainer, last)
                rank_zero_warn(f"SIGTERM: stopped at step {trainer.global_step}, written to {last}")
        finally:
            self._release_lock()

    def _require_checkpoint(self, trainer: L.Trainer) -> None:
        if trainer.state.fn != TrainerFn.FITTING and trainer.ckpt_path is None:
            raise FileNotFoundError(
                f"pdegen {trainer.state.fn.value} has no checkpoint to load and would evaluate an untrained model: "
                f"no last.ckpt in {self.dirpath}. Run pdegen fit with this config first, or pass --ckpt_path <file>")

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._require_checkpoint(trainer)

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._require_checkpoint(trainer)

    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._require_checkpoint(trainer)

    # ------------------------------------------------------------------ what is written, and how
    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.fast_dev_run:
            super().on_train_end(trainer, pl_module)

    def _save_checkpoint(self, trainer: L.Trainer, filepath: str) -> None:
        target = Path(filepath)
        partial = target.with_name(f".{target.name}.partial")
        try:
            super()._save_checkpoint(trainer, str(partial))
            if trainer.is_global_zero:
                replace_durably(partial, target)
        except BaseException:
            if trainer.is_global_zero:
                partial.unlink(missing_ok=True)
            raise
        trainer.strategy.barrier("RunCheckpoint._save_checkpoint")
        self._last_checkpoint_saved = filepath
