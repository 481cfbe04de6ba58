"""PDE residual norms of a set of samples, as a torchmetrics Metric (synchronised under DDP)."""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric

from pdegen.pdes import PDE


def region_squared_norms(pde: PDE, field: Tensor) -> dict[str, Tensor]:
    """Per-sample squared discrete L2 norms of a residual-shaped field ``(B, r, *grid)``.

    interior: ``h^d * sum over interior points and residual channels of field^2``, which
    approximates the squared L2(Omega) norm; boundary: ``h^(d-1) * sum over boundary points``,
    approximating the squared L2 norm over the boundary. ``h^d`` is the grid's cell volume.
    Smooth at zero (unlike the norms), so it serves as a training loss.
    """
    squared = field.double().pow(2).sum(dim=1)  # (B, *grid)
    boundary = pde.boundary_mask_on(field.device)
    cell = pde.grid.cell_volume
    face = cell / min(pde.grid.spacing)
    return {
        "interior": squared[:, ~boundary].sum(dim=1) * cell,
        "boundary": squared[:, boundary].sum(dim=1) * face,
    }


def region_norms(pde: PDE, field: Tensor) -> dict[str, Tensor]:
    """Per-sample discrete L2 norms, interior and boundary: the square roots of :func:`region_squared_norms`."""
    return {region: value.sqrt() for region, value in region_squared_norms(pde, field).items()}


def residual_loss(pde: PDE, x: Tensor, scales: dict[str, float] | None = None) -> Tensor:
    """Per-sample squared relative residual ``(B,)``, differentiable in ``x`` (physical units):

        ||R(x)||²_Ω / ||S||²_Ω + ||R(x)||²_∂Ω / ||S||²_∂Ω

    with the discrete L2 norms of :func:`region_squared_norms` (they carry the grid spacing, so the value
    approximates a ratio of continuous norms and means the same at every resolution). ||S||² are
    ``scales`` when given (fixed numbers, e.g. :func:`reference_residual_scales` of the data), else those
    of ``pde.residual_scale(x)`` of each sample, held constant (no gradient flows through the scale).
    Train with fixed scales: a sample's own scale can be near zero (a generated Poisson source f ≈ 0,
    u ≈ 0 on Darcy's boundary), which makes the per-sample ratio and its gradient explode. The interior
    equation and the boundary condition count equally; evaluated in float64.
    """
    x = x.double()
    squared = region_squared_norms(pde, pde.residual(x))
    if scales is None:
        with torch.no_grad():
            scales = region_squared_norms(pde, pde.residual_scale(x))
    tiny = torch.finfo(torch.float64).tiny
    return sum(squared[r] / torch.as_tensor(scales[r], dtype=torch.float64).clamp_min(tiny)
               for r in ("interior", "boundary"))


def reference_residual_scales(pde: PDE, x: Tensor) -> dict[str, float]:
    """The fixed ``scales`` of :func:`residual_loss`: the mean over samples ``x`` (physical units,
    e.g. the training data or a teacher's samples) of the squared region norms of ``pde.residual_scale``."""
    with torch.no_grad():
        squared = region_squared_norms(pde, pde.residual_scale(x.double()))
    return {region: float(value.mean()) for region, value in squared.items()}


class PDEResidualNorm(Metric):
    """Mean over samples of the residual's discrete L2 norm, interior and boundary, absolute and relative.

    ``compute()`` returns ``{"interior", "interior_rel", "boundary", "boundary_rel"}``; the relative
    figures divide each sample's norm by the same norm of ``pde.residual_scale(x)`` (Darcy: the
    source f inside, the RMS of u on the boundary) before averaging. Units: those of the PDE's
    equation (Darcy: of f); see :func:`region_norms` for the norm.
    """

    full_state_update = False
    keys = ("interior", "interior_rel", "boundary", "boundary_rel")

    def __init__(self, pde: PDE, **kwargs) -> None:
        super().__init__(**kwargs)
        self.pde = pde
        for key in self.keys:
            self.add_state(key, default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, x: Tensor) -> None:
        """Accumulate a batch of samples ``(B, channels, *grid)`` in physical units."""
        with torch.no_grad():
            x = x.double()
            norms = region_norms(self.pde, self.pde.residual(x))
            scales = region_norms(self.pde, self.pde.residual_scale(x))
        tiny = torch.finfo(torch.float64).tiny
        for region in ("interior", "boundary"):
            setattr(self, region, getattr(self, region) + norms[region].sum())
            relative = norms[region] / scales[region].clamp_min(tiny)
            setattr(self, f"{region}_rel", getattr(self, f"{region}_rel") + relative.sum())
        self.count += x.shape[0]

    def compute(self) -> dict[str, Tensor]:
        if self.count == 0:
            raise RuntimeError("PDEResidualNorm.compute() called before any update()")
        return {key: getattr(self, key) / self.count for key in self.keys}
