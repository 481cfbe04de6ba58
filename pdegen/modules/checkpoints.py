"""Saving a module's constructor arguments and loading a pdegen checkpoint safely (``weights_only``)."""

from __future__ import annotations

import os
import pickle
import warnings
from typing import Any

from lightning.pytorch.core.mixins.hparams_mixin import _given_hyperparameters
from torch import nn


def save_init_arguments(module: Any, frame: Any, ignore: list[str] | None = None) -> None:
    """``save_hyperparameters`` of the ``__init__`` arguments in ``frame``, ``net`` included: under
    LightningCLI they hold its class_path config, which is what lets ``load_from_checkpoint`` rebuild
    the backbone. ``optimizer`` and ``lr_scheduler`` are left out: as Python callables (their defaults)
    they would pickle classes into the checkpoint, which then no longer loads with ``weights_only``
    (a loaded module gets the defaults; the YAML's run config keeps the ones used). Nor is a ``teacher``
    given as a module rather than a checkpoint path: its weights travel in the state dict, and
    ``load_from_checkpoint`` needs it passed again."""
    if isinstance(frame.f_locals.get("teacher"), nn.Module):
        ignore = [*(ignore or []), "teacher"]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Attribute '\w+' is an instance of `nn.Module`")
        module.save_hyperparameters(ignore=[*(ignore or []), "optimizer", "lr_scheduler"], frame=frame)


TRUSTED_CHECKPOINTS = "PDEGEN_TRUSTED_CHECKPOINTS"


def load_module(cls: type, path: str | os.PathLike, **overrides: Any) -> Any:
    """``cls.load_from_checkpoint(path, **overrides)`` on the CPU from inside another module's ``__init__``:
    LightningCLI builds a module inside a context that hands *its* arguments to every save_hyperparameters call, so
    the loaded module must record its own.

    Loads with ``weights_only=True`` (tensors and plain containers: what pdegen checkpoints hold); a
    file that pickles other Python objects, which could run code, is refused with an error saying so,
    unless the environment sets ``PDEGEN_TRUSTED_CHECKPOINTS`` to the paths (``os.pathsep``-separated)
    whose source you trust: the command-line way to load such a legacy checkpoint on purpose."""
    token = _given_hyperparameters.set(None)
    trusted = {os.path.realpath(p) for p in os.environ.get(TRUSTED_CHECKPOINTS, "").split(os.pathsep) if p}
    try:
        return cls.load_from_checkpoint(path, map_location="cpu",
                                        weights_only=os.path.realpath(path) not in trusted, **overrides)
    except pickle.UnpicklingError as error:
        raise pickle.UnpicklingError(
            f"{os.fspath(path)!r} pickles Python objects beyond tensors and plain containers, which can run "
            "arbitrary code when loaded, so it was not loaded. If you trust its source, name it in the "
            f"environment: {TRUSTED_CHECKPOINTS}={os.fspath(path)} (or load it yourself with "
            f"{cls.__name__}.load_from_checkpoint(path, weights_only=False)). ({error})") from error
    finally:
        _given_hyperparameters.reset(token)
