"""Readers for public PDE dataset layouts: undo each source's scaling, map it onto a pdegen family.

Every reader returns an :class:`ImportedData`: ``samples`` ``(N, C, *grid)`` float64 in physical
units and pdegen's channel order, the ``pde`` whose parameters match the source's physics, and
``notes`` saying what scaling was undone, which residual convention the source used and how far
pdegen's residual applies to it.  :func:`import_dataset` writes them as a pdegen dataset file
(``pdegen-data info`` then shows ``source`` and ``source_notes``).

====================  ==========================================  ==================================================
format                source                                      reader
====================  ==========================================  ==================================================
diffusionpde-npy      DiffusionPDE training ``merge_*.npy``       :func:`~.diffusionpde.read_diffusionpde_npy`
diffusionpde-mat      DiffusionPDE ``.mat`` (test/training)       :func:`~.diffusionpde.read_diffusionpde_mat`
neuraloperator-darcy  neuraloperator ``darcy_<split>_<r>.pt``     :func:`~.neuraloperator.read_neuraloperator_darcy`
pdebench-burgers      PDEBench ``1D_Burgers_Sols_Nu*.hdf5``       :func:`~.pdebench.read_pdebench_burgers`
pdebench-darcy        PDEBench ``2D_DarcyFlow_beta*_Train.hdf5``  :func:`~.pdebench.read_pdebench_darcy`
pderefiner-ks         PDE-Refiner / PDEArena KS ``KS_*.h5``       :func:`~.pderefiner.read_pderefiner_ks`
pidm-darcy            PIDM ``K_data.csv`` + ``p_data.csv``        :func:`~.pidm.read_pidm_darcy`
sda-kolmogorov        SDA / pdediff Kolmogorov ``train.h5`` ...   :func:`~.sda.read_sda_kolmogorov`
====================  ==========================================  ==================================================
(``pdearena-ks`` and ``pdediff-kolmogorov`` are aliases.)
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pdegen.io import DatasetWriter, check_output
from pdegen.well import read_well

from ._common import ImportedData, LayoutError
from .diffusionpde import read_diffusionpde_mat, read_diffusionpde_npy
from .neuraloperator import read_neuraloperator_darcy
from .pdebench import read_pdebench_burgers, read_pdebench_darcy
from .pderefiner import read_pderefiner_ks
from .pidm import read_pidm_darcy
from .sda import read_sda_kolmogorov

FORMATS: dict[str, Callable[..., ImportedData]] = {
    "diffusionpde-npy": read_diffusionpde_npy,
    "diffusionpde-mat": read_diffusionpde_mat,
    "neuraloperator-darcy": read_neuraloperator_darcy,
    "pdebench-burgers": read_pdebench_burgers,
    "pdebench-darcy": read_pdebench_darcy,
    "pderefiner-ks": read_pderefiner_ks,
    "pdearena-ks": read_pderefiner_ks,
    "pidm-darcy": read_pidm_darcy,
    "sda-kolmogorov": read_sda_kolmogorov,
    "pdediff-kolmogorov": read_sda_kolmogorov,
    "the-well": read_well,
}
WRITE_BATCH = 256


def read(fmt: str, source: str | Path, **options: Any) -> ImportedData:
    """Read ``source`` in the layout ``fmt`` (a key of :data:`FORMATS`) with the reader's ``options``."""
    reader = reader_for(fmt)
    accepted = [name for name in inspect.signature(reader).parameters if name != "source"]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(f"format {fmt!r} has no option(s) {unknown}: its options are {accepted}")
    return reader(source, **options)


def reader_for(fmt: str) -> Callable[..., ImportedData]:
    """The reader of ``fmt``, or a ValueError listing the known formats."""
    try:
        return FORMATS[fmt]
    except KeyError:
        raise ValueError(f"unknown dataset format {fmt!r}: known formats are {sorted(FORMATS)}") from None


def import_dataset(fmt: str, source: str | Path, output: str | Path, overwrite: bool = False,
                   **options: Any) -> dict[str, Any]:
    """Read ``source`` in the layout ``fmt`` and write it as a pdegen dataset file ``output``.

    The file holds the samples in float64 with the imported PDE's name and parameters, plus the
    attributes ``source``, ``source_notes``, ``source_path``, ``import_format`` and
    ``import_options``.  Written through :class:`~pdegen.io.DatasetWriter` (atomic: nothing is
    left behind on failure).  Returns ``{"path", "num_samples", "pde", "source", "notes"}``.
    """
    check_output(output, overwrite)  # before reading the source
    data = read(fmt, source, **options)
    attrs = {"source": data.source, "source_notes": data.notes, "source_path": str(Path(source).resolve()),
             "import_format": fmt, "import_options": json.dumps(options, default=str)}
    with DatasetWriter(output, data.pde, data.num_samples, attrs=attrs, dtype="float64",
                       overwrite=overwrite) as writer:
        for start in range(0, data.num_samples, WRITE_BATCH):
            writer.write(start, data.samples[start:start + WRITE_BATCH])
    return {"path": Path(output), "num_samples": data.num_samples, "pde": data.pde.name, "source": data.source,
            "notes": data.notes}


__all__ = ["FORMATS", "ImportedData", "LayoutError", "import_dataset", "read", "read_diffusionpde_mat",
           "read_diffusionpde_npy", "read_neuraloperator_darcy", "read_pdebench_burgers", "read_pdebench_darcy",
           "read_pderefiner_ks", "read_pidm_darcy", "read_sda_kolmogorov", "reader_for"]
