"""A short markdown report of an evaluation: metrics of generated samples beside ground truth
(and, for a distilled student, beside its teacher's samples from the same noise)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pdegen.io import write_text_atomic

_RESIDUAL_ROWS = [
    ("residual_interior", "PDE residual, interior (discrete L2)"),
    ("residual_interior_rel", "PDE residual, interior, relative to the source"),
    ("residual_boundary", "boundary-condition residual (discrete L2 on the boundary)"),
    ("residual_boundary_rel", "boundary-condition residual, relative to RMS(u)"),
]


def _teacher_sides(metrics: dict[str, float]) -> list[str]:
    """``teacher`` (its own sampler) first, then the grid-matched ``teacher_<sampler>`` sides."""
    return sorted(key.split("/")[0] for key in metrics if key.startswith("teacher") and key.endswith("/nfe"))


def side_label(side: str) -> str:
    """How reports and figures name a side of the evaluation: ``teacher`` is the teacher with its own
    sampler; ``teacher_<sampler>`` its samples on the student's distillation grid."""
    if side == "teacher":
        return "teacher (own sampler)"
    if side.startswith("teacher_"):
        return f"teacher {side.removeprefix('teacher_')} (student's grid)"
    return side


def _cell(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def write_report(path: str | Path, summary: dict[str, Any], figure_path: Path | None = None) -> Path:
    """Write ``report.md`` from the summary :class:`~pdegen.callbacks.PDEResidualCallback` builds."""
    path = Path(path)
    metrics = summary["metrics"]
    pde = summary["pde"]
    teachers = _teacher_sides(metrics)
    columns = [("gen", "generated"), *((side, side_label(side)) for side in teachers), ("gt", "ground truth")]
    lines = [
        f"# pdegen report: {summary['module']} on {pde['name']}",
        "",
        f"PDE parameters: `{pde['params']}`; grid {pde['grid']['shape']} on {pde['grid']['extent']}.",
        f"{summary['num_samples']} generated samples ({metrics['nfe']:.0f} network evaluations each, "
        f"{metrics['seconds_per_sample'] * 1e3:.1f} ms per sample) against up to {summary['num_samples']} "
        f"held-out ground-truth samples.",
    ]
    run = summary.get("run")
    if run:
        lines.append(f"Checkpoint `{run['checkpoint']}` after {run['global_step']} training steps; config SHA-256 "
                     f"`{run['config_sha256']}`; pdegen {run['pdegen_version']}.")
    for side in teachers:
        how = ("with its own configured sampler and steps: the speed-up divides its time by the generator's"
               if side == "teacher" else "on the student's distillation grid: how faithfully the student "
               "reproduces what it distilled (not a speed-up reference)")
        lines.append(f"The {side_label(side)} column: the teacher's samples from the same noise, {how} "
                     f"({metrics[f'{side}/nfe']:.0f} network evaluations, "
                     f"{metrics[f'{side}/seconds_per_sample'] * 1e3:.1f} ms per sample at the same batch size, "
                     "in this process).")
    lines += [
        "",
        "The ground-truth column of MMSE/SMSE/W1 compares an independent ground-truth set of the same size "
        "(training samples) with the held-out set: the sampling floor a perfect generator would reach. "
        "W1 is the Wasserstein distance between the distributions of a channel's generated and held-out "
        "values over the data's std: a low residual with a large W1 means the samples left the data's support.",
        "",
        "| metric | " + " | ".join(label for _, label in columns) + " |",
        "|---" * (len(columns) + 1) + "|",
    ]

    def value(side: str, key: str) -> float | None:
        if side == "gen" and key in ("nfe", "seconds_per_sample"):  # logged without a side prefix
            return metrics[key]
        return metrics.get(f"{side}/{key}")

    def row(label: str, key: str) -> str:
        return f"| {label} | " + " | ".join(_cell(value(side, key)) for side, _ in columns) + " |"

    lines += [row(label, key) for key, label in _RESIDUAL_ROWS]
    for channel in pde["channels"]:
        for key, label in (("mmse", "mean maps"), ("smse", "std maps")):
            lines.append(row(f"{key.upper()} `{channel}` ({label}, squared units)", f"{key}/{channel}"))
        lines.append(row(f"W1 `{channel}` (distribution of values, in data stds)", f"w1/{channel}"))
    if teachers:
        lines.append(row("network evaluations per sample", "nfe"))
        lines.append(row("RMS difference to the student's sample (normalised units)", "gap_rmse"))
        lines.append(row("speed-up (teacher's own sampler time / generator time)", "speedup"))
    if figure_path is not None:
        lines += ["", f"![samples and residual maps]({Path(figure_path).name})"]
    return write_text_atomic(path, "\n".join(lines) + "\n")
