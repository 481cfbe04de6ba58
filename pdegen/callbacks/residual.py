"""PDEResidualCallback: how physical are the module's samples, next to held-out ground truth."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_only
from torch import Tensor

from pdegen.callbacks.comparison import TeacherComparison
from pdegen.callbacks.heldout import HeldOutEvaluation
from pdegen.callbacks.outputs import last_plane, publish_figure, results_dir, timed_draw
from pdegen.callbacks.provenance import provenance
from pdegen.diffusion import Sampler
from pdegen.io import write_text_atomic
from pdegen.metrics import MarginalWasserstein, MomentErrors, PDEResidualNorm
from pdegen.plotting import sample_figure
from pdegen.report import side_label, write_report


class _StageState:
    """Metrics of one validation/test epoch: ground truth accumulated batch by batch."""

    def __init__(self, pde, device: torch.device, num_examples: int, sides: list[str]) -> None:
        self.reference = PDEResidualNorm(pde).to(device)
        # held-out ground truth vs each generated set, and vs an independent ground-truth set (the floor)
        self.moments = {side: MomentErrors(pde.num_channels, pde.grid.shape).to(device) for side in sides}
        self.marginals = {side: MarginalWasserstein(pde.num_channels).to(device) for side in sides}
        self.examples: list[Tensor] = []
        self.num_examples = num_examples
        self.count = 0

    def add_reference(self, batch: Tensor, limit: int) -> None:
        batch = batch[: max(0, limit - self.count)].double()
        if len(batch) == 0:
            return
        self.reference.update(batch)
        for metric in (*self.moments.values(), *self.marginals.values()):
            metric.update(reference=batch)
        if sum(len(e) for e in self.examples) < self.num_examples:
            self.examples.append(batch[: self.num_examples])
        self.count += len(batch)


class PDEResidualCallback(HeldOutEvaluation):
    """At the end of each validation (every ``every_n_epochs``) and test epoch, draw
    ``num_samples`` samples from the module (``pl_module.sample``, EMA weights when the
    weight-averaging callback is on) and log, next to the same figures for up to
    ``num_samples`` held-out ground-truth samples from the loop's batches:

    - ``{stage}/gen/residual_{interior,boundary}[_rel]`` and ``{stage}/gt/...``: mean over samples
      of the discrete L2 residual norm (:class:`pdegen.metrics.PDEResidualNorm`);
    - ``{stage}/gen/{mmse,smse}/<channel>``: ensemble moment errors against the held-out set, and
      ``{stage}/gt/{mmse,smse}/<channel>`` the same for an independent ground-truth set of the same
      size (the first training samples): the sampling floor a perfect generator would reach;
    - ``{stage}/{gen,gt}/w1/<channel>``: the 1-D Wasserstein distance between the marginal distributions of
      the channel's generated and held-out values, over the held-out values' std
      (:class:`~pdegen.metrics.MarginalWasserstein`): do generated values lie where the data's do (a
      residual can be won by leaving the data's support, e.g. a smooth coefficient where the data are
      two-valued); ``gt`` is again the floor;
    - ``{stage}/nfe`` and ``{stage}/seconds_per_sample``;
    - for a student, the same figures for its teacher's samples from the same noise
      (:class:`~pdegen.callbacks.comparison.TeacherComparison`): with the teacher's own sampler and steps
      (``{stage}/teacher/...``, unless ``teacher=False``; its NFE, time at the same batch size in this process
      and ``teacher/speedup``) and, for a distilled student, on the student's grid with each of
      ``teacher_samplers`` (``{stage}/teacher_<sampler name>/...`` and ``gap_rmse``; never a speed-up);
    - a figure of samples and residual maps (for 3-D grids, of the last plane, e.g. the final state):
      an image for W&B/TensorBoard, else a PNG in ``output_dir``.

    The test epoch also writes ``metrics.json``, ``samples.png`` and ``report.md`` to ``output_dir``
    (default: ``report/`` in the run folder) and logs the metrics as the W&B table ``test/metrics``. The
    evaluation runs at the loop's last batch, so it sees the EMA weights whatever the order of the
    callbacks.
    """

    def __init__(self, num_samples: int = 64, every_n_epochs: int = 1, seed: int = 0, num_figure_samples: int = 4,
                 output_dir: str | None = None, log_images: bool = True, teacher: bool = True,
                 teacher_samplers: list[Sampler] | None = None) -> None:
        if num_samples < 2:
            raise ValueError(f"num_samples must be at least 2 for ensemble statistics, got {num_samples}")
        super().__init__(every_n_epochs)
        self.num_samples = num_samples
        self.seed = seed
        self.num_figure_samples = num_figure_samples
        self.output_dir = output_dir
        self.log_images = log_images
        self.comparison = TeacherComparison(own_sampler=teacher, samplers=teacher_samplers)
        self._state: _StageState | None = None
        self.last_results: dict[str, float] = {}

    def begin(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if getattr(pl_module, "pde", None) is None:
            raise RuntimeError("PDEResidualCallback needs a generator module with a PDE attached "
                               "(a DataModule that has `pde`, or a pdegen checkpoint)")
        sides = ["gen", "gt", *self.comparison.sides(pl_module)]
        self._state = _StageState(pl_module.pde, pl_module.device, self.num_figure_samples, sides)

    def add_reference(self, batch: Tensor) -> None:
        self._state.add_reference(batch, self.num_samples)

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        state, pde = self._state, pl_module.pde
        seed = self.seed + trainer.global_rank
        generator = torch.Generator(device=pl_module.device).manual_seed(seed)
        generated, seconds = timed_draw(pl_module, lambda: pl_module.sample(self.num_samples, generator=generator),
                                        "generated samples")
        results: dict[str, float] = {"nfe": float(pl_module.nfe), "seconds_per_sample": seconds / self.num_samples}
        teacher_sets, teacher_results = self.comparison.compare(pl_module, generated, seconds, seed)
        sets = {"gen": generated, **teacher_sets}
        results |= teacher_results

        independent = self._independent_ground_truth(trainer, pl_module)
        if independent is not None:
            sets["gt"] = independent
        for side, samples in sets.items():
            for metric in (state.moments[side], state.marginals[side]):
                metric.update(generated=samples)
                for key, values in metric.compute().items():
                    for channel, value in zip(pde.channels, values.reshape(-1), strict=True):  # 1 channel: 0-d
                        results[f"{side}/{key}/{channel}"] = float(value)
        residual_norms = {side: PDEResidualNorm(pde).to(pl_module.device) for side in sets if side != "gt"}
        for side, metric in residual_norms.items():
            metric.update(sets[side])
        residual_norms["gt"] = state.reference
        for side, metric in residual_norms.items():
            for key, value in metric.compute().items():
                results[f"{side}/residual_{key}"] = float(value)
        for key, value in results.items():
            pl_module.log(f"{stage}/{key}", value, batch_size=1, sync_dist=False)
        self.last_results = results

        figure_path = self._figure(trainer, pl_module, stage, sets, state)
        if stage == "test":
            self._write_test_outputs(trainer, pl_module, results, figure_path)
        self._state = None

    def _independent_ground_truth(self, trainer: L.Trainer, pl_module: L.LightningModule) -> Tensor | None:
        """The first ``num_samples`` training samples: a ground-truth set independent of the held-out one,
        whose MMSE/SMSE against it is the sampling floor a perfect generator would reach."""
        datamodule = getattr(trainer, "datamodule", None)
        if datamodule is None or not hasattr(datamodule, "datasets"):  # the family's split, not a student's pairs
            return None
        datamodule.setup()
        dataset = datamodule.datasets["train"]
        count = min(self.num_samples, len(dataset))
        if count < 2:
            return None
        return dataset.take(range(count)).to(pl_module.device, torch.float64)

    @rank_zero_only
    def _figure(self, trainer, pl_module, stage: str, sets: dict[str, Tensor], state: _StageState) -> Path | None:
        pde = pl_module.pde
        if pde.grid.ndim < 2 or not state.examples or not self.log_images:
            return None
        k = self.num_figure_samples
        shown = {"generated": sets["gen"][:k]}
        shown |= {side_label(side): x[:k] for side, x in sets.items() if side.startswith("teacher")}
        shown["ground truth"] = torch.cat(state.examples)[:k]
        rows = {label: (last_plane(x), last_plane(pde.residual(x))) for label, x in shown.items()}
        fig = sample_figure(rows, pde.channels, num_columns=k)
        name = "samples.png" if stage == "test" else f"samples_epoch{trainer.current_epoch:04d}.png"
        return publish_figure(trainer, f"{stage}/samples", fig, results_dir(trainer, self.output_dir) / name,
                              always_png=stage == "test")

    @rank_zero_only
    def _write_test_outputs(self, trainer, pl_module, results: dict[str, float], figure_path: Path | None) -> None:
        out = results_dir(trainer, self.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        summary: dict[str, Any] = {"pde": pl_module.pde.describe(), "num_samples": self.num_samples,
                                   "module": type(pl_module).__name__, "run": provenance(trainer), "metrics": results}
        write_text_atomic(out / "metrics.json", json.dumps(summary, indent=2))
        write_report(out / "report.md", summary, figure_path)
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_table(key="test/metrics", columns=["metric", "value"],
                                 data=[[name, value] for name, value in results.items()])
