"""SampleFigures: what the generated fields look like next to held-out ground truth."""

from __future__ import annotations

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_only
from torch import Tensor

from pdegen.callbacks.heldout import HeldOutEvaluation
from pdegen.callbacks.outputs import last_plane, publish_figure, results_dir
from pdegen.metrics import radial_power_spectrum
from pdegen.plotting import sample_figure, spectrum_figure


class SampleFigures(HeldOutEvaluation):
    """At the end of each validation (every ``every_n_epochs``) and test epoch, draw ``num_samples``
    samples (seed ``seed``) and take as many held-out ones, and publish two figures (2-D grids; the
    last plane of 3-D ones, e.g. a trajectory's final state):

    - ``{stage}/figures/samples``: ``num_columns`` generated fields beside ground truth, per channel,
      with maps of log10 |PDE residual|;
    - ``{stage}/figures/spectra``: the radially averaged power spectrum of each channel
      (:func:`~pdegen.metrics.radial_power_spectrum`), averaged over the samples, generated against
      ground truth (a generator that misses small scales falls off early).

    Images go to every W&B / TensorBoard logger, else (CSV logger) to PNG files in ``output_dir``
    (default: ``report/`` in the run folder), named ``<stage>_samples_epoch<E>.png`` and ``..._spectra_...``;
    rank 0 only.
    """

    def __init__(self, num_samples: int = 16, num_columns: int = 4, every_n_epochs: int = 1, seed: int = 0,
                 output_dir: str | None = None) -> None:
        if num_samples < 1 or not 1 <= num_columns <= num_samples:
            raise ValueError(f"need 1 <= num_columns <= num_samples, got {num_columns} and {num_samples}")
        super().__init__(every_n_epochs)
        self.num_samples, self.num_columns, self.seed, self.output_dir = num_samples, num_columns, seed, output_dir
        self._truth: list[Tensor] = []

    def begin(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if getattr(pl_module, "pde", None) is None or pl_module.pde.grid.ndim < 2:
            raise RuntimeError("SampleFigures draws 2-D (or 3-D) fields: it needs a generator with such a PDE attached")
        self._truth = []

    def add_reference(self, batch: Tensor) -> None:
        missing = self.num_samples - sum(len(b) for b in self._truth)
        if missing > 0:
            self._truth.append(batch[:missing].double())

    @rank_zero_only
    def evaluate(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        pde = pl_module.pde
        generator = torch.Generator(device=pl_module.device).manual_seed(self.seed)
        sets = {"generated": pl_module.sample(self.num_samples, generator=generator),
                "ground truth": torch.cat(self._truth)}
        k = self.num_columns
        rows = {name: (last_plane(x[:k]), last_plane(pde.residual(x[:k]))) for name, x in sets.items()}
        spectra = {}
        for name, x in sets.items():
            wavenumbers, power = radial_power_spectrum(last_plane(x))
            spectra[name] = (wavenumbers, power.mean(0))
        out = results_dir(trainer, self.output_dir)
        suffix = f"epoch{trainer.current_epoch:04d}.png"
        publish_figure(trainer, f"{stage}/figures/samples", sample_figure(rows, pde.channels, num_columns=k),
                       out / f"{stage}_samples_{suffix}")
        publish_figure(trainer, f"{stage}/figures/spectra", spectrum_figure(spectra, pde.channels),
                       out / f"{stage}_spectra_{suffix}")
        self._truth = []
