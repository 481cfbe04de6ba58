"""Saving a module's constructor arguments and what a checkpoint records; loading a pdegen checkpoint
safely (``weights_only``), with its class named (:func:`load_module`) or read from the file (:func:`load`)."""

from __future__ import annotations

import importlib
import os
import pickle
import sys
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.core.mixins.hparams_mixin import _given_hyperparameters
from torch import nn

from pdegen import __version__


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


def checkpoint_record(module: Any) -> dict[str, Any]:
    """What every pdegen checkpoint holds under ``"pdegen"`` at least: the package version and the module's
    class as ``"package.module:Class"``, which is what lets :func:`load` rebuild it without being told."""
    return {"version": __version__, "module": f"{type(module).__module__}:{type(module).__qualname__}"}


TRUSTED_CHECKPOINTS = "PDEGEN_TRUSTED_CHECKPOINTS"


def _weights_only(path: str | os.PathLike) -> bool:
    trusted = {os.path.realpath(p) for p in os.environ.get(TRUSTED_CHECKPOINTS, "").split(os.pathsep) if p}
    return os.path.realpath(path) not in trusted


def _refusal(path: str | os.PathLike, error: Exception, how: str) -> pickle.UnpicklingError:
    return pickle.UnpicklingError(
        f"{os.fspath(path)!r} pickles Python objects beyond tensors and plain containers, which can run "
        "arbitrary code when loaded, so it was not loaded. If you trust its source, name it in the "
        f"environment: {TRUSTED_CHECKPOINTS}={os.fspath(path)} (or load it yourself with {how}). ({error})")


def load_module(cls: type, path: str | os.PathLike, **overrides: Any) -> Any:
    """``cls.load_from_checkpoint(path, **overrides)`` on the CPU from inside another module's ``__init__``:
    LightningCLI builds a module inside a context that hands *its* arguments to every save_hyperparameters call, so
    the loaded module must record its own.

    Loads with ``weights_only=True`` (tensors and plain containers: what pdegen checkpoints hold); a
    file that pickles other Python objects, which could run code, is refused with an error saying so,
    unless the environment sets ``PDEGEN_TRUSTED_CHECKPOINTS`` to the paths (``os.pathsep``-separated)
    whose source you trust: the command-line way to load such a legacy checkpoint on purpose."""
    token = _given_hyperparameters.set(None)
    try:
        return cls.load_from_checkpoint(path, map_location="cpu", weights_only=_weights_only(path), **overrides)
    except pickle.UnpicklingError as error:
        raise _refusal(path, error, f"{cls.__name__}.load_from_checkpoint(path, weights_only=False)") from error
    finally:
        _given_hyperparameters.reset(token)


def module_class(name: str, where: str) -> Any:
    """The object ``"package.module:Qualname"`` names, imported only if the module is pdegen's or already
    imported (a checkpoint or pretrained folder imports nothing else on its own); ``where`` names the file."""
    module_name, _, qualname = name.partition(":")
    if not module_name or not qualname:
        raise ValueError(f"{where} names {name!r}, not a class as 'package.module:Class'")
    if module_name.split(".")[0] != "pdegen" and module_name not in sys.modules:
        raise ValueError(f"{where} names {name}, outside pdegen: a checkpoint imports "
                         f"nothing else on its own; import {module_name} first, or load it with its class")
    cls: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        cls = getattr(cls, part, None)
        if cls is None:
            raise ValueError(f"{where} names {name}, which {module_name} does not define")
    return cls


def load(path: str | os.PathLike, **overrides: Any) -> L.LightningModule:
    """The module a pdegen checkpoint holds, on the CPU in eval mode, its class read from the file:
    ``pdegen.load("runs/quickstart/checkpoints/last.ckpt").sample(16)`` for a generator (fields in
    physical units), ``model(points)`` for a PINN. ``overrides`` go to ``load_from_checkpoint`` (e.g. a
    student's ``teacher`` path where the teacher moved). Loads weights only, as :func:`load_module`, and
imports only pdegen's modules or ones already imported (a user's own module class: import it first)."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"checkpoint {os.fspath(path)!r} not found")
    try:
        record = torch.load(path, map_location="cpu", weights_only=_weights_only(path), mmap=True).get("pdegen", {})
    except pickle.UnpicklingError as error:
        raise _refusal(path, error, "<ModuleClass>.load_from_checkpoint(path, weights_only=False)") from error
    if "module" not in record:
        raise ValueError(f"{os.fspath(path)!r} does not record its module class (made before pdegen "
                         "recorded it, or not by pdegen): load it with its class, "
                         "e.g. pdegen.modules.DiffusionTeacher.load_from_checkpoint(path)")
    cls = module_class(record["module"], repr(os.fspath(path)))
    if not (isinstance(cls, type) and issubclass(cls, L.LightningModule)):
        raise TypeError(f"{os.fspath(path)!r} names {record['module']}, which is not a LightningModule")
    return load_module(cls, path, **overrides).eval()
