"""TaskCallback: how well a generator completes held-out samples from partial observations."""

from __future__ import annotations

import json

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_only, rank_zero_warn
from torch import Tensor

from pdegen.callbacks.heldout import HeldOutEvaluation
from pdegen.callbacks.outputs import results_dir, timed_draw
from pdegen.callbacks.provenance import provenance
from pdegen.io import write_arrays_atomic, write_text_atomic
from pdegen.metrics import PDEResidualNorm
from pdegen.plotting import sample_figure, save_figure
from pdegen.tasks import ObservationTask, relative_error


class TaskCallback(HeldOutEvaluation):
    """At the end of the test (or predict) epoch, take up to ``num_samples`` held-out samples from the
    loop's batches, observe them as ``task`` says (:class:`~pdegen.tasks.ObservationTask`: forward, inverse
    or reconstruction; hard or soft), let the module complete them (``pl_module.solve_task``) and log
    ``test/task_<name>/...``:

    - ``rel_l2/<channel>``: mean over samples of the relative L2 error against the ground truth over
      the entries the task asks for (forward: the solution; inverse: the input; reconstruction: all);
    - ``residual_{interior,boundary}[_rel]``: the PDE residual of the completed samples
      (:class:`~pdegen.metrics.PDEResidualNorm`);
    - ``observed_rmse``: the RMS misfit at the observed entries (normalised units; 0 for a hard task);
    - ``nfe`` and ``seconds_per_sample``.

    Writes ``task_<name>.json``, ``task_<name>.png`` (solutions beside the ground truth, with
    residual maps) and ``task_<name>.h5`` (datasets ``solution``, ``truth``, ``observed``, ``mask``:
    physical units, ``(N, C, *grid)``; the JSON summary in the ``meta`` attribute) to ``output_dir``
    (default: ``report/`` in the run folder). Under ``pdegen predict`` (the test split) the same files are
    written and nothing is logged.
    """

    def __init__(self, task: str = "forward", num_points: int = 500, hard: bool = False, num_samples: int = 16,
                 seed: int = 0, output_dir: str | None = None, num_figure_samples: int = 4) -> None:
        super().__init__()
        self.task = ObservationTask(task, num_points=num_points, hard=hard, seed=seed)
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        self.num_samples = num_samples
        self.output_dir = output_dir
        self.num_figure_samples = num_figure_samples
        self._truth: list[Tensor] = []
        self.last_results: dict[str, float] = {}

    stages = ("test", "predict")

    def begin(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._truth = []

    def add_reference(self, batch: Tensor) -> None:
        have = sum(len(t) for t in self._truth)
        if have < self.num_samples and batch.is_floating_point():  # not sample indices (a SampleRequest)
            self._truth.append(batch[: self.num_samples - have].detach().double())

    def evaluate(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if not self._truth:
            rank_zero_warn(f"TaskCallback({self.task.name}): the {stage} batches hold no samples to observe "
                           "(sample indices of a SampleRequest?): the task is not run")
            return
        self._evaluate(trainer, pl_module, torch.cat(self._truth))

    def _evaluate(self, trainer: L.Trainer, pl_module: L.LightningModule, truth: Tensor) -> None:
        pde, task, n = pl_module.pde, self.task, len(truth)
        mask = task.mask(pde, n, truth.device)
        observed = torch.where(mask, truth, torch.zeros_like(truth))  # nothing unobserved reaches the method
        generator = torch.Generator(device=pl_module.device).manual_seed(task.seed + trainer.global_rank)
        solution, seconds = timed_draw(pl_module, lambda: pl_module.solve_task(observed, mask, task, generator),
                                       f"{task.name} task")
        solution = solution.to(truth.device)
        prefix = f"task_{task.name}"
        results = {"nfe": float(pl_module.task_nfe(task)), "seconds_per_sample": seconds / n}
        target = task.target(pde, n, truth.device)
        for c, channel in enumerate(pde.channels):
            where = torch.zeros_like(target)
            where[:, c] = target[:, c]
            if where.any():
                results[f"rel_l2/{channel}"] = float(relative_error(solution, truth, where).mean())
        residual = PDEResidualNorm(pde).to(truth.device)
        residual.update(solution)
        results |= {f"residual_{k}": float(v) for k, v in residual.compute().items()}
        encode = pl_module.normalizer.to(truth.device).encode
        gap = (encode(solution) - encode(truth)).square()[mask]
        results["observed_rmse"] = float(gap.mean().sqrt()) if gap.numel() else 0.0
        if trainer.testing:
            for key, value in results.items():
                pl_module.log(f"test/{prefix}/{key}", value, batch_size=1, sync_dist=False)
        self.last_results = results
        self._write(trainer, pl_module, results, {"solution": solution, "truth": truth, "observed": observed,
                                                  "mask": mask})

    @rank_zero_only
    def _write(self, trainer, pl_module, results: dict[str, float], arrays: dict[str, Tensor]) -> None:
        out = results_dir(trainer, self.output_dir)
        name = f"task_{self.task.name}"
        solution, truth = arrays["solution"], arrays["truth"]
        summary = {"task": vars(self.task), "module": type(pl_module).__name__, "pde": pl_module.pde.describe(),
                   "num_samples": len(truth), "run": provenance(trainer), "metrics": results}
        write_text_atomic(out / f"{name}.json", json.dumps(summary, indent=2))
        write_arrays_atomic(out / f"{name}.h5", arrays, summary)
        pde = pl_module.pde
        if pde.grid.ndim == 2 and self.num_figure_samples:
            k = self.num_figure_samples
            shown = {"solution": solution[:k], "ground truth": truth[:k]}
            rows = {label: (x, pde.residual(x)) for label, x in shown.items()}
            save_figure(sample_figure(rows, pde.channels, num_columns=k), out / f"{name}.png")
