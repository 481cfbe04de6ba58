"""Exponential moving average of the weights that leaves weights which never change exactly as they are."""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch.callbacks import EMAWeightAveraging as LightningEMA
from torch import Tensor


def exact_ema(decay: float):
    """EMA update ``avg + (1 − decay)(w − avg)``: equal to ``decay·avg + (1 − decay)·w`` in exact arithmetic,
    and bit-for-bit ``avg`` when ``w == avg`` (torch's form rounds such a weight a little at every step).
    Integer and boolean buffers (masks, counters) take the current value."""
    @torch.no_grad()
    def update(average: Tensor, current: Tensor, num_averaged: Tensor) -> Tensor:
        if not average.is_floating_point():
            return current
        return average + (1.0 - decay) * (current - average)
    return update


class EMAWeightAveraging(LightningEMA):
    """Lightning's ``EMAWeightAveraging`` (same arguments) with :func:`exact_ema`: a student's frozen teacher
    and the normaliser's statistics stay bit-identical in the averaged weights, so a student checkpoint holds
    exactly the teacher it was distilled from (and the teacher pairs cached under its fingerprint are reused at
    test time instead of regenerated); Lightning's update drifts them (docs/measurements.md)."""

    def __init__(self, device: torch.device | str | int | None = None, use_buffers: bool = True, decay: float = 0.999,
                 update_every_n_steps: int = 1, update_starting_at_step: int | None = None,
                 update_starting_at_epoch: int | None = None, **kwargs: Any) -> None:
        super().__init__(device=device, use_buffers=use_buffers, decay=decay,
                         update_every_n_steps=update_every_n_steps, update_starting_at_step=update_starting_at_step,
                         update_starting_at_epoch=update_starting_at_epoch, **kwargs)
        self._kwargs["avg_fn"] = exact_ema(decay)

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        """As Lightning's, but ``AveragedModel``'s deep copy of the module, kept for its weights alone, leaves
        out the trainer (it copied the datamodule's data too) and every callable attribute (optimiser
        factories, compiled forwards); under DDP the copy failed on their locks."""
        stashed = {(module, key): value for module in pl_module.modules() for key, value in vars(module).items()
                   if key == "_trainer" or (callable(value) and not isinstance(value, torch.nn.Module))}
        for module, key in stashed:
            vars(module)[key] = None
        try:
            super().setup(trainer, pl_module, stage)
        finally:
            for (module, key), value in stashed.items():
                vars(module)[key] = value
