"""The default physics feature extractor for Fréchet distances of PDE fields: a neural-operator surrogate's
view of the input part and its completion error on the rest."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from neuralop.models import FNO
from torch import Tensor

from pdegen.modules.generator import FieldModule


def pooled_statistics(x: Tensor, where: Tensor | None = None) -> Tensor:
    """``(B, (2 + dims) * C)`` statistics of ``x`` ``(B, C, *grid)`` per channel over the entries ``where``
    (bool ``(C, *grid)``; all when None): mean, standard deviation and, along each grid axis, the mean
    absolute difference between neighbours that are both in ``where``. A channel with no entry (or no
    neighbouring pair) in ``where`` gets zeros."""
    if where is None:
        where = torch.ones(x.shape[1:], dtype=torch.bool, device=x.device)
    weight = where.to(x.dtype)
    count = weight.flatten(1).sum(-1)
    mean = (x * weight).flatten(2).sum(-1) / count.clamp(min=1)
    centred = (x - mean.reshape(*mean.shape, *(1,) * (x.ndim - 2))) * weight
    std = (centred.square().flatten(2).sum(-1) / (count - 1).clamp(min=1)).sqrt()
    pooled = [mean, std]
    for axis in range(2, x.ndim):
        pairs = (where.narrow(axis - 1, 1, where.shape[axis - 1] - 1)
                 & where.narrow(axis - 1, 0, where.shape[axis - 1] - 1)).to(x.dtype)
        step = x.diff(dim=axis).abs() * pairs
        pooled.append(step.flatten(2).sum(-1) / pairs.flatten(1).sum(-1).clamp(min=1))
    return torch.cat(pooled, dim=1)


class FeatureSurrogate(FieldModule):
    """An FNO (neuraloperator) trained to complete a field from its input part (``PDE.input_mask`` M:
    Darcy's coefficient ``a`` → the whole sample, a time-dependent family's initial state → the
    trajectory), i.e. a surrogate F of the family's solution operator, whose ``forward(x) -> (B,
    (2 + dims) * (width + channels))`` is the feature vector of physical-unit fields ``x`` ``(B, C, *grid)``
    for Fréchet distances. With ``x`` in normalised units (the per-channel normaliser), two groups of
    statistics, each pooled by :func:`pooled_statistics` (mean, standard deviation and, along each grid
    axis, the mean absolute difference between neighbours: roughness, so that noise and blur show):

    * the input group, ``(2 + dims) * width``: the FNO's hidden state before its projection, run on
      ``x ⊙ M``, pooled over the grid per hidden channel. It depends on the input part alone: how the
      inputs are distributed, as the operator sees them.
    * the consistency group, ``(2 + dims) * channels``: the completion error ``e = x − F(x ⊙ M)``,
      pooled per field channel over that channel's non-input entries (Darcy's ``u``; every stored time
      after the first of a time-dependent family), neighbour differences over pairs of non-input
      entries. A channel with no non-input entry (Darcy's ``a``) gives zeros, which add nothing.

    Why both: in these families the solution is a deterministic function of the input, so the joint
    law of (input, solution) is fixed by the law of the input and by how the solution departs from
    the operator's response to its input. The second group measures that departure, a learnt
    physics-consistency feature: on the data it is the surrogate's own small error (``rel_l2``); a
    solution that is noisy, blurred, rescaled or another input's has a larger, differently shaped
    error, even where the input part is perfect. The features are summaries: a zero distance does
    not prove equal laws, the error is pooled over all later times (not per time), and its
    statistics measure physics only as well as F is trained.

    Scale: the Fréchet distance sums over features without weights. The consistency features are in
    units of each channel's data standard deviation (a change δ of one adds δ²); the input features in
    the FNO's activation units. On a small Darcy 16² surrogate (width 16, ``rel_l2`` 0.08; see
    tests/test_fid.py) their spreads over samples are alike (0.008-0.05 against 0.03), the same-law
    floor at 128 samples comes almost all from the 64 input features (about 2e-3 against 2e-5), noise
    of 0.1 standard deviation on ``u`` alone raises the distance to about 1.5e-2, and each ``u`` paired
    with another sample's ``a`` to about 0.24: neither group drowns the other, so they are not reweighted.

    Train it on a dataset with one command (``pdegen fit --config lightning_configs/features/<family>.yaml``);
    the loss is the mean squared error of the completed entries in normalised units, and
    ``{val,test}/rel_l2`` the relative L2 error of the completion (how well the operator is learnt).
    Checkpoints trained before the consistency group was added load unchanged: the network is the
    same, only the features ``forward`` computes from it grew.
    """

    def __init__(self, channels: int, dims: int = 2, width: int = 32, modes: int = 12, n_layers: int = 4,
                 optimizer: Callable[..., torch.optim.Optimizer] | None = None,
                 lr_scheduler: Callable[..., Any] | None = None) -> None:
        super().__init__(channels, optimizer or (lambda params: torch.optim.Adam(params, lr=1e-3)), lr_scheduler)
        self.save_init_arguments()
        self.net = FNO(n_modes=(modes,) * dims, in_channels=channels, out_channels=channels, hidden_channels=width,
                       n_layers=n_layers)
        self.num_features = (2 + dims) * (width + channels)
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
        """Features ``(B, (2 + dims) * (width + channels))`` of physical-unit fields ``(B, C, *grid)``: the
        pooled hidden state of the operator run on the input part, then the pooled completion error
        on the non-input entries (see the class)."""
        encoded = self.normalizer.encode(x.double()).float()
        error = encoded - self.complete(encoded)
        return torch.cat([pooled_statistics(self._hidden), pooled_statistics(error, ~self.input_mask(error))], dim=1)

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
