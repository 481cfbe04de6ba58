"""neuraloperator's Darcy ``.pt`` files (Kossaifi et al., github.com/neuraloperator/neuraloperator).

Layout (``neuralop/data/datasets/pt_dataset.py::PTDataset``, ``darcy.py::DarcyDataset``):
``darcy_train_<r>.pt`` / ``darcy_test_<r>.pt``, a ``torch.save``\\ d dict with ``"x"`` ``(N, r, r)``, the
coefficient, and ``"y"`` ``(N, r, r)``, the solution (``r`` ∈ {16, 32, 64, 128, 421} on Zenodo record
12784353; 16 and 32 bundled in ``neuralop/data/datasets/data``).  The bundled files store ``x`` as
``torch.bool`` (True / False; ``DarcyDataset`` casts it to float32: 1 / 0) and ``y`` as float32;
no normalisation is applied before saving (``PTDataset`` normalises only on loading, optionally).

Physics: the files carry neither the coefficient values nor the forcing nor the grid.  The legacy
generator (``data_generation/darcy/demo.m`` and ``solve_gwf.m``, removed from the repository) is
FNO's: ``-∇·(a ∇u) = 1``, ``a = 12`` where a GRF(α = 2, τ = 3) ≥ 0 else 4 (so True ↦ 12,
False ↦ 4), ``a`` given at cell centres, spline-interpolated to nodes ``i/(K - 1)``, 5-point scheme
with *arithmetic* face means, ``u = 0`` on the boundary, ``u`` interpolated back to the cell
centres.  The defaults follow it (``a_high=12, a_low=4, forcing=1``) and, like the DiffusionPDE
reader for FNO's data, the ``r × r`` values are taken as pdegen's nodes ``i/(r - 1)``.

Unverified, and measured against: on the bundled 16² and 32² files the first row and column are
close to 0 but not 0 (about 1e-4 at the corner), the last are one step inside the wall, and
``darcy_test_16`` is exactly ``darcy_test_32[:, ::2, ::2]``, so they are point samples of a finer
field; fitting pdegen solutions to ``y`` (scale and contrast free) matches a 10 : 1 contrast
(True high) with about 16 % error and a scale ``f / a_high`` ≈ 3.9, and 12 : 4 only with 39 %
error and ``f / a_high`` ≈ 7 (where the defaults imply 1/12).  pdegen's relative residual on the
bundled files is ≈ 190-280 (median per file) with the defaults and still ≈ 3-5 with the best fit
(``a_high=1, a_low=0.1, forcing=3.9``; coarse point samples of a finer solution do not satisfy the
5-point scheme at the jumps), so it does not apply to them; pass ``a_high``, ``a_low``,
``forcing`` when the provenance of a file is known.  A file whose ``x`` already holds two positive
values is taken as stored.
"""

from __future__ import annotations

from pathlib import Path

import torch

from pdegen.pdes.darcy import FACE_AVERAGES, Darcy

from ._common import ImportedData, LayoutError, existing, take

SOURCE = "neuraloperator Darcy flow (github.com/neuraloperator/neuraloperator; FNO's generator, Li et al. 2021)"


def read_neuraloperator_darcy(source: str | Path, num_samples: int | None = None, a_high: float = 12.0,
                              a_low: float = 4.0, forcing: float = 1.0,
                              face_average: str = "arithmetic") -> ImportedData:
    """Read a neuraloperator ``darcy_<split>_<r>.pt`` file as :class:`~pdegen.pdes.darcy.Darcy` samples
    ``[a, u]`` on ``r × r`` nodes.  A binary ``x`` (bool or 0 / 1) becomes ``a_high`` where True / 1
    and ``a_low`` elsewhere; ``forcing``: the constant ``f`` (not stored; FNO's generator: 1)."""
    path = existing(source, "neuraloperator Darcy .pt file")
    layout = 'a torch.save\'d dict {"x": (N, r, r) coefficient or bool mask, "y": (N, r, r) solution}'
    if face_average not in FACE_AVERAGES:
        raise ValueError(f"neuraloperator Darcy: face_average must be one of {sorted(FACE_AVERAGES)}, got "
                         f"{face_average!r}")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle, zip and weights_only errors have no common base class
        raise LayoutError(f"{path} is not a torch.save'd file readable with weights_only=True ({err}); expected "
                          f"{layout}") from err
    if not isinstance(data, dict) or not {"x", "y"} <= set(data):
        keys = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise LayoutError(f"{path}: holds {keys}; expected {layout}")
    x, y = data["x"], data["y"]
    if not (isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor)):
        raise LayoutError(f"{path}: 'x' / 'y' are not tensors; expected {layout}")
    if x.ndim == 4 and x.shape[1] == 1:  # a channel axis
        x, y = x[:, 0], y[:, 0] if y.ndim == 4 else y
    if x.ndim != 3 or y.shape != x.shape or x.shape[1] != x.shape[2]:
        raise LayoutError(f"{path}: x {tuple(x.shape)} / y {tuple(y.shape)}; expected {layout}")
    n = take(x.shape[0], num_samples)
    x, u = x[:n], y[:n].to(torch.float64)
    values = torch.unique(x.to(torch.float64))
    if x.dtype == torch.bool or set(values.tolist()) <= {0.0, 1.0}:
        high, low = (torch.tensor(float(v), dtype=torch.float64) for v in (a_high, a_low))
        a = torch.where(x.to(torch.bool), high, low)
        coefficient = f"x a binary mask: a = {a_high:g} where True / 1, {a_low:g} elsewhere (values not stored)"
    elif len(values) <= 2 and bool((values > 0).all()):
        a = x.to(torch.float64)
        a_high, a_low = float(values.max()), float(values.min())
        coefficient = f"x stored as coefficient values {sorted(values.tolist())}"
    else:
        raise LayoutError(f"{path}: x holds {len(values)} distinct values from {float(values.min()):.6g}; expected a "
                          f"bool / 0-1 mask or the two positive values of a thresholded coefficient")
    pde = Darcy(resolution=x.shape[-1], a_high=a_high, a_low=a_low, forcing=forcing, face_average=face_average)
    notes = (f"no value scaling (y stored as is); {coefficient}; forcing f = {forcing:g} assumed (not stored); "
             f"values taken as pdegen's nodes i/(r-1) with boundary nodes (FNO's solve_gwf returns cell-centre "
             f"values interpolated from its node solution, u = 0 on the wall, arithmetic face means); pdegen's "
             f"residual applies only if the coefficient values, forcing and grid match the file's generator, which "
             f"the file does not record: on the bundled 16/32 files the defaults (12 / 4, f = 1) leave a relative "
             f"residual of ~200-300 and the best-fitting 1 / 0.1, f = 3.9 still ~3-5 (module docstring)")
    return ImportedData(torch.stack([a, u], dim=1), pde, f"{SOURCE}, {path.name}", notes)
