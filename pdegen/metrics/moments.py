"""Ensemble moment errors between a generated and a reference set (MMSE, SMSE)."""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric


class MomentErrors(Metric):
    """MMSE and SMSE per channel between two sets of fields ``(B, C, *grid)``.

    MMSE: mean over grid points of the squared difference of the per-point mean maps;
    SMSE: the same for the per-point standard-deviation maps (population std, ddof = 0).
    Both in squared physical units of each channel. ``update(generated=..., reference=...)``
    takes either set or both, in batches of any size; sums are kept in float64.
    """

    full_state_update = False

    def __init__(self, num_channels: int, grid_shape: tuple[int, ...] | list[int], **kwargs) -> None:
        super().__init__(**kwargs)
        shape = (num_channels, *grid_shape)
        for side in ("generated", "reference"):
            self.add_state(f"{side}_sum", default=torch.zeros(shape, dtype=torch.float64), dist_reduce_fx="sum")
            self.add_state(f"{side}_sumsq", default=torch.zeros(shape, dtype=torch.float64), dist_reduce_fx="sum")
            self.add_state(f"{side}_count", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, generated: Tensor | None = None, reference: Tensor | None = None) -> None:
        for side, x in (("generated", generated), ("reference", reference)):
            if x is None:
                continue
            expected = tuple(getattr(self, f"{side}_sum").shape)
            if tuple(x.shape[1:]) != expected:
                raise ValueError(f"MomentErrors: {side} batch has shape {tuple(x.shape)}, expected (B, {expected})")
            x = x.detach().double()
            setattr(self, f"{side}_sum", getattr(self, f"{side}_sum") + x.sum(0))
            setattr(self, f"{side}_sumsq", getattr(self, f"{side}_sumsq") + x.pow(2).sum(0))
            setattr(self, f"{side}_count", getattr(self, f"{side}_count") + x.shape[0])

    def moments(self, side: str) -> tuple[Tensor, Tensor]:
        """Per-point mean and standard-deviation maps ``(C, *grid)`` of one set."""
        count = getattr(self, f"{side}_count")
        if count < 2:
            raise RuntimeError(f"MomentErrors needs at least 2 {side} samples, got {int(count)}")
        mean = getattr(self, f"{side}_sum") / count
        var = (getattr(self, f"{side}_sumsq") / count - mean.pow(2)).clamp_min(0.0)
        return mean, var.sqrt()

    def compute(self) -> dict[str, Tensor]:
        """``{"mmse": (C,), "smse": (C,)}`` (torchmetrics squeezes them to 0-d when C = 1)."""
        mean_g, std_g = self.moments("generated")
        mean_r, std_r = self.moments("reference")
        reduce_dims = tuple(range(1, mean_g.ndim))
        return {"mmse": (mean_g - mean_r).pow(2).mean(reduce_dims), "smse": (std_g - std_r).pow(2).mean(reduce_dims)}
