"""Write a generator's ``pdegen predict`` samples to an HDF5 file in pdegen's dataset layout."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter

from pdegen.callbacks.outputs import results_dir
from pdegen.callbacks.provenance import provenance
from pdegen.io import DatasetWriter, check_output
from pdegen.pdes import PDE


class SampleWriter(BasePredictionWriter):
    """At the end of ``pdegen predict``, writes every generated sample (physical units, float64) to
    ``path`` (default ``<run folder>/report/samples.h5``) as a pdegen dataset file: one HDF5 dataset per channel
    ``(N, *grid)``, the PDE in the attributes, plus the module, its NFE and the checkpoint. It appears
    under its name only when complete, reads with ``pdegen.io.load_samples`` and can train a
    ``PDEDataModule(file=...)``. Under DDP the ranks' samples are gathered and rank 0 writes them in
    sample-index order (duplicates from the sampler's padding dropped). Forecasts
    (:class:`datamodules.ForecastRequest`) are written as trajectories of their own length, with the request.
    An existing file at ``path`` is refused when prediction starts, before any sampling, unless ``overwrite``.

        pdegen predict --config <training yaml> --ckpt_path last \\
            --data datamodules.SampleRequest --data.num_samples 1000 \\
            --trainer.callbacks+=pdegen.callbacks.SampleWriter
    """

    def __init__(self, path: str | None = None, overwrite: bool = False) -> None:
        super().__init__(write_interval="epoch")
        self.path = path
        self.overwrite = overwrite

    def _target(self, trainer: L.Trainer) -> Path:
        return Path(self.path) if self.path else results_dir(trainer) / "samples.h5"

    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            check_output(self._target(trainer), self.overwrite)

    def write_on_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, predictions: Any,
                           batch_indices: Any) -> None:
        if getattr(pl_module, "pde", None) is None:
            raise RuntimeError("SampleWriter needs a generator with a PDE (a pdegen generator checkpoint)")
        if trainer.num_predict_batches and len(trainer.num_predict_batches) > 1:
            raise ValueError("SampleWriter writes the samples of one predict dataloader, got "
                             f"{len(trainer.num_predict_batches)}")
        samples = torch.cat(_flatten(predictions)).to(pl_module.device, torch.float64)
        indices = torch.tensor(_flatten(batch_indices), device=pl_module.device)
        if trainer.world_size > 1:
            samples = trainer.strategy.all_gather(samples).flatten(0, 1)
            indices = trainer.strategy.all_gather(indices).flatten(0, 1)
        if not trainer.is_global_zero:
            return
        samples = _in_index_order(samples, indices)
        path = self._target(trainer)
        attrs = {"module": type(pl_module).__name__, "nfe": int(getattr(pl_module, "nfe", 0)), "kind": "generated",
                 "run": provenance(trainer)}
        request = getattr(trainer.datamodule, "provenance", None)
        if request is not None:
            attrs["request"] = request()
        pde = _pde_of(pl_module.pde, samples)
        with DatasetWriter(path, pde, len(samples), attrs=attrs, overwrite=self.overwrite) as writer:
            writer.write(0, samples.cpu())
        self.written = path


def _pde_of(pde: PDE, samples: torch.Tensor) -> PDE:
    """The PDE of ``samples``: ``pde``, or trajectories of it of another length (forecasts)."""
    if tuple(samples.shape[1:]) != pde.sample_shape and "num_states" in pde.params():
        return pde.replace(num_states=samples.shape[2])
    return pde


def _flatten(nested: Any) -> list:
    """The leaves (tensors or sample indices) of Lightning's nested per-dataloader, per-batch lists."""
    if isinstance(nested, (list, tuple)):
        return [leaf for item in nested for leaf in _flatten(item)]
    return [nested]


def _in_index_order(samples: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """``samples`` sorted by their sample ``indices``, keeping the first of any repeated index."""
    _, inverse = torch.unique(indices, return_inverse=True)
    positions = torch.arange(len(indices), device=indices.device)
    first = torch.full((int(inverse.max()) + 1,), len(indices), device=indices.device)
    return samples[first.scatter_reduce(0, inverse, positions, reduce="amin")]
