"""``pdegen``: the LightningCLI entry point (fit / validate / test / predict from YAML).

    pdegen fit  --config lightning_configs/quickstart/darcy.yaml
    pdegen test --config lightning_configs/quickstart/darcy.yaml --ckpt_path runs/quickstart/checkpoints/last.ckpt

Any LightningModule and LightningDataModule is accepted by ``class_path`` (subclass mode); ``data`` may
be left out for modules that supply their own dataloaders (the PINNs).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import lightning as L
from lightning.pytorch.cli import LightningCLI


class PdegenCLI(LightningCLI):
    """LightningCLI with W&B kept offline unless a config switches it on."""

    def before_instantiate_classes(self) -> None:
        os.environ.setdefault("WANDB_MODE", "offline")


def main(args: Sequence[str] | None = None, run: bool = True) -> PdegenCLI:
    return PdegenCLI(
        L.LightningModule,
        None,  # any LightningDataModule by class_path, or none: PINNs make their own collocation points
        subclass_mode_model=True,
        save_config_kwargs={"overwrite": True},
        args=list(args) if args is not None else None,
        run=run,
        auto_configure_optimizers=False,
    )


def entry_point() -> None:
    """The ``pdegen`` console script."""
    main()


if __name__ == "__main__":
    entry_point()
