"""DiffusionPDE's guidance weights (ζ_obs, ζ_pde) chosen by a grid search on the validation split.

    python tools/tune_guidance.py --teacher runs/teacher_darcy/checkpoints/last.ckpt \\
        --config lightning_configs/piddm/darcy_guided.yaml --out runs/tune_darcy.json

For every pair of :data:`OBSERVATION_WEIGHTS` × :data:`PDE_WEIGHTS`, the teacher with DiffusionPDE guidance
solves the forward, inverse and reconstruction tasks on the first ``--num-samples`` samples of the
*validation* split (never the test split the comparison reports), and the pair with the lowest mean over
the three tasks of the relative L2 error of the sought entries wins (the figure ``TaskCallback`` reports at
test time). The table of every pair is printed and written as JSON; ``tools/compare_piddm.py`` runs this
search per family before it tests DiffusionPDE, and the committed ``lightning_configs/piddm/<family>_guided.yaml``
hold the CPU-scale result.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

OBSERVATION_WEIGHTS = (1.0, 3.0, 10.0, 30.0, 100.0)
"""ζ_obs searched: the default 1 to 100 (the gradient of the un-squared misfit norm has size ζ_obs)."""
PDE_WEIGHTS = (0.0, 0.01, 0.1)
"""ζ_pde searched: none, the old default 0.01, and ten times that."""
TASK_NAMES = ("forward", "inverse", "reconstruction")


def validation_samples(data: dict[str, Any], count: int) -> Tensor:
    """The first ``count`` samples of the validation split of the DataModule that the config section ``data``
    (``class_path``/``init_args``, as in a pdegen YAML) describes, in physical units."""
    import lightning as L
    from jsonargparse import ArgumentParser

    parser = ArgumentParser()
    parser.add_subclass_arguments(L.LightningDataModule, "data")
    datamodule = parser.instantiate_classes(parser.parse_object({"data": data})).data
    datamodule.prepare_data()
    datamodule.setup("validate")
    val = datamodule.datasets["val"]
    if len(val) < count:
        raise ValueError(f"the validation split has {len(val)} samples, fewer than --num-samples {count}")
    return val.take(range(count))


def task_error(guided, truth: Tensor, name: str, num_points: int = 500, seed: int = 0) -> float:
    """Mean over samples and sought channels of the relative L2 error of ``guided``'s completion of ``truth``
    observed as task ``name`` (:class:`~pdegen.tasks.ObservationTask`; the TaskCallback figure)."""
    from pdegen.tasks import ObservationTask, relative_error

    pde, n = guided.pde, len(truth)
    task = ObservationTask(name, num_points=num_points, seed=seed)
    mask = task.mask(pde, n)
    observed = torch.where(mask, truth, torch.zeros_like(truth))
    solution = guided.solve_task(observed, mask, task, torch.Generator().manual_seed(seed))
    target = task.target(pde, n)
    errors = []
    for c in range(pde.num_channels):
        where = torch.zeros_like(target)
        where[:, c] = target[:, c]
        if where.any():
            errors.append(float(relative_error(solution, truth, where).mean()))
    return sum(errors) / len(errors)


def search(teacher, truth: Tensor, observation_weights=OBSERVATION_WEIGHTS, pde_weights=PDE_WEIGHTS,
           num_steps: int | None = None, tasks=TASK_NAMES, log=print) -> dict[str, Any]:
    """Every (ζ_obs, ζ_pde) pair's task errors on ``truth``; ``{"rows": [...], "best": row}``."""
    from pdegen.modules import GuidedDiffusion

    rows = []
    for observation_weight in observation_weights:
        for pde_weight in pde_weights:
            guided = GuidedDiffusion(teacher, method="diffusionpde", num_steps=num_steps,
                                   observation_weight=observation_weight, pde_weight=pde_weight)
            errors = {name: task_error(guided, truth, name) for name in tasks}
            row = {"observation_weight": observation_weight, "pde_weight": pde_weight, **errors,
                   "mean": sum(errors.values()) / len(errors)}
            rows.append(row)
            log(" | ".join(f"{k} {v:.4g}" for k, v in row.items()), flush=True)
    return {"rows": rows, "best": min(rows, key=lambda r: r["mean"]), "num_samples": len(truth),
            "split": "validation", "tasks": list(tasks)}


def markdown(result: dict[str, Any]) -> str:
    tasks = result["tasks"]
    lines = ["| ζ_obs | ζ_pde | " + " | ".join(tasks) + " | mean |", "|---" * (len(tasks) + 3) + "|"]
    for row in result["rows"]:
        mark = " **(chosen)**" if row == result["best"] else ""
        lines.append(f"| {row['observation_weight']:g} | {row['pde_weight']:g} | "
                     + " | ".join(f"{row[t]:.4g}" for t in tasks) + f" | {row['mean']:.4g}{mark} |")
    return "\n".join(lines)


def tune(teacher: str, data: dict[str, Any], out: Path, num_samples: int = 8, num_steps: int | None = None,
         observation_weights=OBSERVATION_WEIGHTS, pde_weights=PDE_WEIGHTS) -> dict[str, Any]:
    """Run :func:`search` for the teacher checkpoint ``teacher`` on the config's validation split; write ``out``."""
    from pdegen.io import write_text_atomic
    from pdegen.modules import DiffusionTeacher
    from pdegen.modules.checkpoints import load_module

    model = load_module(DiffusionTeacher, teacher)
    result = search(model, validation_samples(data, num_samples), observation_weights, pde_weights, num_steps)
    result["teacher"] = str(teacher)
    write_text_atomic(out, json.dumps(result, indent=2))
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from pdegen.io import read_config

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", required=True, help="the DiffusionTeacher checkpoint")
    parser.add_argument("--config", required=True, type=Path, help="a YAML whose `data` section gives the dataset")
    parser.add_argument("--num-samples", type=int, default=8, help="validation samples per task")
    parser.add_argument("--num-steps", type=int, default=None, help="Heun steps (default: the teacher's)")
    parser.add_argument("--observation-weights", type=float, nargs="+", default=list(OBSERVATION_WEIGHTS))
    parser.add_argument("--pde-weights", type=float, nargs="+", default=list(PDE_WEIGHTS))
    parser.add_argument("--out", type=Path, required=True, help="the JSON result")
    args = parser.parse_args(argv)
    data = read_config(args.config)["data"]
    result = tune(args.teacher, data, args.out, args.num_samples, args.num_steps, args.observation_weights,
                  args.pde_weights)
    print(markdown(result))
    print(f"chosen: observation_weight {result['best']['observation_weight']:g}, "
          f"pde_weight {result['best']['pde_weight']:g}; written {args.out}")
    return result


if __name__ == "__main__":
    main()
