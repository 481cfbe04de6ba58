"""The default physics feature extractor for Fréchet distances of PDE fields: a neural-operator surrogate."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning as L
import torch
from neuralop.models import FNO
from torch import Tensor

from pdegen.modules.generator import FieldModuleMixin


class FeatureSurrogate(FieldModuleMixin, L.LightningModule):
    """An FNO (neuraloperator) trained to complete a field from its input part (``PDE.input_mask``:
    Darcy's coefficient ``a`` → the whole sample, a time-dependent family's initial state → the
    trajectory), i.e. a surrogate of the family's solution operator. Its hidden state before the
    projection, pooled over the grid, is the feature vector ``forward(x) -> (B, (2 + dims) * width)``
    of physical-unit fields ``x`` ``(B, C, *grid)``: for each of the ``width`` channels its mean, its
    standard deviation and, along each grid axis, its mean absolute difference between neighbours
    (roughness: it makes the distance see noise and blur). A Fréchet distance on these features
    compares how the fields' inputs and their responses are distributed, as the operator sees them.

    Train it on a dataset with one command (``pdegen fit --config lightning_configs/features/<family>.yaml``);
    the loss is the mean squared error of the completed entries in normalised units, and
    ``{val,test}/rel_l2`` the relative L2 error of the completion (how well the operator is learnt).
    """

    def __init__(self, channels: int, dims: int = 2, width: int = 32, modes: int = 12, n_layers: int = 4,
                 optimizer: Callable[..., torch.optim.Optimizer] | None = None,
                 lr_scheduler: Callable[..., Any] | None = None) -> None:
        super().__init__()
        self.save_init_arguments()
        self.init_fields(channels)
        self.net = FNO(n_modes=(modes,) * dims, in_channels=channels, out_channels=channels, hidden_channels=width,
                       n_layers=n_layers)
        self.num_features = (2 + dims) * width
        self.optimizer = optimizer or (lambda params: torch.optim.Adam(params, lr=1e-3))
        self.lr_scheduler = lr_scheduler
        self._hidden: Tensor | None = None
        self.net.projection.register_forward_pre_hook(self._keep_hidden)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        # neuraloperator's FNO adds its init kwargs (functions included) to the state dict; without them
        # the checkpoint holds tensors and plain containers only, and loads with weights_only=True
        checkpoint["state_dict"].pop("_metadata", None)

    def _keep_hidden(self, module: torch.nn.Module, inputs: tuple[Tensor, ...]) -> None:
        self._hidden = inputs[0]

    def input_mask(self, like: Tensor) -> Tensor:
        if self.pde is None:
            raise RuntimeError("FeatureSurrogate has no PDE: fit it with a DataModule or load its checkpoint")
        return self.pde.input_mask.to(like.device)

    def complete(self, x: Tensor) -> Tensor:
        """The surrogate's completion of the fields ``x`` (normalised units) from their input part."""
        return self.net((x * self.input_mask(x)).float())

    def forward(self, x: Tensor) -> Tensor:
        """Features ``(B, (2 + dims) * width)`` of physical-unit fields ``(B, C, *grid)``."""
        self.complete(self.normalizer.encode(x.double()))
        hidden = self._hidden
        pooled = [hidden.flatten(2).mean(-1), hidden.flatten(2).std(-1)]
        pooled += [hidden.diff(dim=axis).abs().flatten(2).mean(-1) for axis in range(2, hidden.ndim)]
        return torch.cat(pooled, dim=1)

    def _loss_terms(self, batch: Tensor) -> tuple[Tensor, Tensor]:
        self.check_batch(batch)
        x = self.normalizer.encode(batch.double()).float()
        predicted, unknown = self.complete(x), ~self.input_mask(x)
        error = (predicted - x)[:, unknown]
        loss = error.square().mean()
        rel_l2 = (error.flatten(1).norm(dim=1) / x[:, unknown].flatten(1).norm(dim=1)).mean()
        return loss, rel_l2

    def training_step(self, batch: Tensor, batch_idx: int) -> Tensor:
        loss, _ = self._loss_terms(batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=batch.shape[0])
        return loss

    def _eval_step(self, batch: Tensor, stage: str) -> None:
        loss, rel_l2 = self._loss_terms(batch)
        self.log_dict({f"{stage}/loss": loss, f"{stage}/rel_l2": rel_l2}, batch_size=batch.shape[0], sync_dist=True)

    def validation_step(self, batch: Tensor, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: Tensor, batch_idx: int) -> None:
        self._eval_step(batch, "test")
