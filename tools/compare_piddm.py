"""PIDDM against its baselines on the same teacher, data and test set: the paper-style table.

    python tools/compare_piddm.py --scale cpu                      # Darcy, Poisson, Helmholtz, Burgers on 2 CPU cores
    python tools/compare_piddm.py --scale gpu --families darcy     # the lightning_configs as they are, on a GPU
    python tools/compare_piddm.py --methods "PIDM (scratch)" ...   # add the from-scratch PIDM (opt-in)

For each family, with ``pdegen fit`` / ``pdegen test`` (``pdegen.cli.main``) on the family's configs:

1. train the diffusion teacher (``teacher/<family>.yaml``), the teacher fine-tuned with the residual of its
   posterior mean (``piddm/<family>_pidm.yaml``; with ``PIDM (scratch)``, also PIDM as published, trained
   from scratch) and the PIDDM student of the teacher (``piddm/<family>.yaml``);
2. choose DiffusionPDE's guidance weights on the validation split (``tools/tune_guidance.py``,
   ``<family>/tune/tune.md``);
3. test every method with the same callbacks on the same held-out samples, at the same sampling batch size:
   the teacher alone (Heun), DiffusionPDE guidance, D-Flow, the fine-tuned teacher (Heun), PIDDM-1 and
   PIDDM-ref;
4. gather residual, MMSE/SMSE/W1, forward / inverse / reconstruction relative L2, NFE and time per sample
   into ``compare.md``, ``compare.json`` and ``compare.png`` in ``--out``.

``--scale gpu`` runs the configs as committed (sized for one GPU; hours per family). ``--scale cpu``
runs the same configs shrunk by :data:`CPU_SCALE` (32² grids, 640 samples, a base-32 U-Net, 30-epoch teachers,
384 PIDDM pairs from the teacher's 50-step Euler sampler, fewer evaluation samples). The configs actually
run are written to ``<out>/<family>/configs/`` so every number can be reproduced with ``pdegen`` alone.
Stages whose outputs exist are reused (``--force`` redoes them), so an interrupted run continues.

The PIDDM-1 test run also samples the teacher with its own sampler and steps from the same noise, at the same
batch size: the Darcy targets (residual at most 1/5 of the teacher's, at least 50× faster) are checked on that
one run and printed under the table; the residual target counts only where MMSE, SMSE and W1 are within
:data:`BOUND` × the teacher's.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling tools
from pdegen.io import read_config, write_text_atomic  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FAMILIES = ("darcy", "poisson", "helmholtz", "burgers")
METHODS = {  # label -> the trained model it needs
    "teacher (Heun)": "teacher", "DiffusionPDE": "teacher", "D-Flow": "teacher",
    "R fine-tune (Heun)": "finetune", "PIDM (scratch)": "pidm", "PIDDM-1": "piddm", "PIDDM-ref": "piddm",
}
DEFAULT_METHODS = [m for m in METHODS if m != "PIDM (scratch)"]  # from scratch: opt-in (GPU scale)
BOUND = 1.5
"""A residual target counts only where MMSE, SMSE and the marginal W1 are within this factor of the teacher's."""
TASKS = ("forward", "inverse", "reconstruction")

# How --scale cpu shrinks the (GPU-sized) configs; everything not named here is kept.
CPU_SCALE: dict[str, Any] = {
    "accelerator": "cpu",
    "pde": {"darcy": {"resolution": 32}, "poisson": {"resolution": 32}, "helmholtz": {"resolution": 32},
            "burgers": {"resolution": 32, "num_times": 32}},
    "data": {"num_samples": 640, "batch_size": 32, "num_workers": 0},
    "net": {"base_channels": 32, "channel_mults": [1, 2, 2], "num_res_blocks": 1, "dropout": 0.0},
    "teacher": {"max_epochs": 30, "lr": 2e-3, "ema_decay": 0.99},
    "student": {"max_epochs": 40, "lr": 3e-4, "ema_decay": 0.99, "num_pairs": 384, "num_val_pairs": 32,
                "teacher_steps": 50, "task_steps": 100, "residual_warmup_steps": 240},
    "finetune": {"max_epochs": 15, "lr": 2e-4, "ema_decay": 0.99},
    "pidm": {"max_epochs": 30, "lr": 2e-3, "ema_decay": 0.99},
    "noise_steps": 10,
    "dflow": {"dflow_iterations": 5},
    "eval": {"num_samples": 32, "task_samples": 8, "sample_batch_size": 32},
    "tune": {"num_samples": 8},
}
GPU_NOISE_STEPS = 20
GPU_TUNE_SAMPLES = 32
PIDM_SCRATCH = {"init_from": None, "residual_weighting": "uniform", "residual_weight": 1e-3}
"""PIDM as published (Bastek et al. 2024): the residual of the posterior mean at every noise level, from scratch,
weight c_residual = 1e-3 (their model.yaml; our R is the squared relative residual, so λ's scale differs)."""


# ---------------------------------------------------------------------------------------- configs
def callbacks(config: dict, name: str) -> list[dict]:
    """The trainer callbacks of class ``name`` (their dicts, to edit in place)."""
    return [c for c in config["trainer"].get("callbacks", []) if c["class_path"].rsplit(".", 1)[-1] == name]


def set_callback_args(config: dict, name: str, **args: Any) -> None:
    for callback in callbacks(config, name):
        callback.setdefault("init_args", {}).update(args)


def retarget(config: dict, root: Path) -> dict:
    """Send every output of ``config`` (logs, checkpoints, reports: the run folder) under ``root``."""
    config["trainer"]["default_root_dir"] = str(root)
    return config


def shrink(config: dict, family: str, kind: str) -> dict:
    """Apply :data:`CPU_SCALE` to a config of ``kind`` teacher / pidm / student / eval."""
    s, trainer, model = CPU_SCALE, config["trainer"], config["model"]["init_args"]
    trainer["accelerator"] = s["accelerator"]
    data = config["data"]["init_args"]
    data.update(s["data"])
    data["pde"].setdefault("init_args", {}).update(s["pde"][family])
    if "net" in model:
        model["net"]["init_args"].update(s["net"])
    if kind in ("teacher", "finetune", "pidm", "student"):
        stage = s[kind]
        trainer.update(max_epochs=stage["max_epochs"], check_val_every_n_epoch=stage["max_epochs"],
                       log_every_n_steps=10)
        model["optimizer"]["init_args"]["lr"] = stage["lr"]
        set_callback_args(config, "EMAWeightAveraging", decay=stage["ema_decay"])
        set_callback_args(config, "PDEResidualCallback", every_n_epochs=stage["max_epochs"])
        model.update({k: v for k, v in stage.items() if k not in ("max_epochs", "lr", "ema_decay")})
    model["sample_batch_size"] = s["eval"]["sample_batch_size"]
    set_callback_args(config, "PDEResidualCallback", num_samples=s["eval"]["num_samples"])
    set_callback_args(config, "TaskCallback", num_samples=s["eval"]["task_samples"])
    set_callback_args(config, "LatencyCallback", batch_sizes=[1, s["eval"]["sample_batch_size"]], warmup=1, repeats=3)
    return config


class Family:
    """The trained models and the test runs of one PDE family under ``out/<family>``."""

    def __init__(self, family: str, scale: str, out: Path, force: bool) -> None:
        self.family, self.scale, self.root, self.force = family, scale, out / family, force

    def config(self, name: str, kind: str, run: str, **model_args: Any) -> dict:
        """``lightning_configs/<name>.yaml`` for run ``run``: scaled and retargeted."""
        config = read_config(ROOT / "lightning_configs" / f"{name}.yaml")
        config = retarget(config, self.root / run)
        if self.scale == "cpu":
            config = shrink(config, self.family, kind)
        config["model"]["init_args"].update(model_args)
        return config

    def write(self, run: str, config: dict) -> Path:
        """Save the config ``run`` runs with to ``<family>/configs/`` (reproducible with pdegen alone)."""
        path = self.root / "configs" / f"{run.replace('/', '_')}.yaml"
        write_text_atomic(path, yaml.safe_dump(config, sort_keys=False))
        return path

    def checkpoint(self, run: str) -> Path:
        return self.root / run / "checkpoints" / "last.ckpt"

    def fit(self, name: str, kind: str, run: str, **model_args: Any) -> Path:
        """Train ``run`` unless its last checkpoint exists; the checkpoint."""
        from pdegen.cli import main

        checkpoint = self.checkpoint(run)
        if self.force or not checkpoint.is_file():
            main(["fit", "--config", str(self.write(run, self.config(name, kind, run, **model_args))),
                  "--overwrite=true"])  # the stage is (re)done from scratch
        return checkpoint

    def test(self, name: str, run: str, kind: str = "eval", ckpt_path: Path | None = None, drop_tasks: bool = False,
             **model_args: Any) -> dict[str, Any]:
        """``pdegen test`` of ``run`` unless its report exists; {"sample": metrics, "<task>": metrics}."""
        from pdegen.cli import main

        report = self.root / run / "report"
        if self.force or not (report / "metrics.json").is_file():
            config = self.config(name, kind, run, **model_args)
            if drop_tasks:  # the plain samplers solve no tasks
                config["trainer"]["callbacks"] = [c for c in config["trainer"]["callbacks"]
                                                  if not c["class_path"].endswith("TaskCallback")]
            if ckpt_path:  # `--ckpt_path last` finds it there; a file path would let the checkpoint's
                # hyperparameters override the test-time settings (LightningCLI), e.g. noise_steps
                set_callback_args(config, "RunCheckpoint", dirpath=str(ckpt_path.parent))
            main(["test", "--config", str(self.write(run, config)), *(["--ckpt_path", "last"] if ckpt_path else [])])
        results = {"sample": json.loads((report / "metrics.json").read_text())}
        for task in TASKS:
            if (report / f"task_{task}.json").is_file():
                results[task] = json.loads((report / f"task_{task}.json").read_text())
        return results

    def tune(self, teacher: Path) -> dict[str, float]:
        """DiffusionPDE's (ζ_obs, ζ_pde), searched on the validation split (``tools/tune_guidance.py``) unless
        ``<family>/tune/tune.json`` exists; the chosen weights."""
        from tune_guidance import markdown, tune

        path = self.root / "tune" / "tune.json"
        if self.force or not path.is_file():
            data = self.config(f"piddm/{self.family}_guided", "eval", "tune")["data"]
            search = CPU_SCALE["tune"] if self.scale == "cpu" else {"num_samples": GPU_TUNE_SAMPLES}
            write_text_atomic(path.with_suffix(".md"), markdown(tune(str(teacher), data, path, **search)))
        best = json.loads(path.read_text())["best"]
        return {"observation_weight": best["observation_weight"], "pde_weight": best["pde_weight"]}

    def run(self, methods: list[str], noise_steps: int) -> dict[str, dict]:
        f = self.family
        needs = {METHODS[m] for m in methods}
        teacher = self.fit(f"teacher/{f}", "teacher", "teacher")
        finetune = (self.fit(f"piddm/{f}_pidm", "finetune", "finetune", init_from=str(teacher))
                    if "finetune" in needs else None)
        pidm = self.fit(f"piddm/{f}_pidm", "pidm", "pidm", **PIDM_SCRATCH) if "pidm" in needs else None
        distil = {"teacher": str(teacher), "pair_dir": str(self.root / "piddm" / "pairs")}
        student = self.fit(f"piddm/{f}", "student", "piddm", **distil) if "piddm" in needs else None
        guided = f"piddm/{f}_guided"
        dflow = CPU_SCALE["dflow"] if self.scale == "cpu" else {}
        runs = {
            "teacher (Heun)": lambda: self.test(guided, "eval/teacher", teacher=str(teacher), method="heun",
                                                drop_tasks=True),
            "DiffusionPDE": lambda: self.test(guided, "eval/diffusionpde", teacher=str(teacher),
                                              method="diffusionpde", **self.tune(teacher)),
            "D-Flow": lambda: self.test(guided, "eval/dflow", teacher=str(teacher), method="dflow", **dflow),
            "R fine-tune (Heun)": lambda: self.test(guided, "eval/finetune", teacher=str(finetune), method="heun",
                                                    drop_tasks=True),
            "PIDM (scratch)": lambda: self.test(guided, "eval/pidm", teacher=str(pidm), method="heun",
                                                drop_tasks=True),
            "PIDDM-1": lambda: self.test(f"piddm/{f}", "eval/piddm", "student", student, **distil),
            "PIDDM-ref": lambda: self.test(f"piddm/{f}", "eval/piddm_ref", "student", student, **distil,
                                           noise_steps=noise_steps),
        }
        return {method: runs[method]() for method in methods}


# ---------------------------------------------------------------------------------------- the table
def fmt(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.3g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"


def rows_of(results: dict[str, dict]) -> list[tuple[str, dict[str, float | None], str | None]]:
    """(row label, {method: value}, key of the ground-truth column or None) for one family's table."""
    first = next(iter(results.values()))["sample"]
    channels = first["pde"]["channels"]

    def sample_metric(key: str) -> dict[str, float | None]:
        return {m: r["sample"]["metrics"].get(key) for m, r in results.items()}

    def task_metric(task: str, key: str) -> dict[str, float | None]:
        return {m: r[task]["metrics"].get(key) if task in r else None for m, r in results.items()}

    rows = [("network evaluations per sample", sample_metric("nfe"), None),
            ("ms per sample (same batch, each method's own run)",
             {m: None if v is None else 1e3 * v for m, v in sample_metric("seconds_per_sample").items()}, None)]
    for region in ("interior", "boundary"):
        key = f"residual_{region}_rel"
        rows.append((f"PDE residual, {region} (relative)", sample_metric(f"gen/{key}"), key))
    for moment in ("mmse", "smse", "w1"):
        label = "W1 of values / data std" if moment == "w1" else moment.upper()
        rows += [(f"{label} `{c}`", sample_metric(f"gen/{moment}/{c}"), f"{moment}/{c}") for c in channels]
    for task in TASKS:
        keys = sorted({k for r in results.values() if task in r for k in r[task]["metrics"] if k.startswith("rel_l2/")})
        rows += [(f"{task}: relative L2 `{k.split('/')[1]}`", task_metric(task, k), None) for k in keys]
        if keys:
            rows.append((f"{task}: NFE", task_metric(task, "nfe"), None))
    return rows


def ground_truth(results: dict[str, dict]) -> dict[str, float]:
    """The ground-truth column (residual of the data, MMSE/SMSE floor of an independent set)."""
    metrics = next(iter(results.values()))["sample"]["metrics"]
    return {k.removeprefix("gt/"): v for k, v in metrics.items() if k.startswith("gt/")}


def within_bounds(metrics: dict[str, float], channels: list[str], side: str = "gen",
                  reference: str = "teacher") -> list[str]:
    """The distribution metrics of ``side`` that are more than :data:`BOUND` × ``reference``'s (empty: all within):
    per channel MMSE, SMSE and the marginal W1. A residual won by leaving the data's support fails here."""
    misses = []
    for moment in ("mmse", "smse", "w1"):
        for c in channels:
            ours, theirs = metrics.get(f"{side}/{moment}/{c}"), metrics.get(f"{reference}/{moment}/{c}")
            if ours is None or theirs is None or ours > BOUND * theirs:
                misses.append(f"{moment.upper()} `{c}`")
    return misses


def targets(results: dict[str, dict]) -> list[str]:
    """The issue's Darcy targets, from the PIDDM-1 run: the student against its teacher sampled with the teacher's
    own sampler and steps from the same noise, at the same batch size, in that one process."""
    if "PIDDM-1" not in results:
        return []
    m = results["PIDDM-1"]["sample"]["metrics"]
    channels = results["PIDDM-1"]["sample"]["pde"]["channels"]
    ratio = m["gen/residual_interior_rel"] / m["teacher/residual_interior_rel"]
    speedup = m["teacher/speedup"]
    lines = [f"- PIDDM-1 against the teacher's own sampler ({m['teacher/nfe']:.0f} NFE) from the same noise, same "
             f"batch, one process: residual ratio **{ratio:.3f}** (target ≤ 0.2), speed-up **{speedup:.0f}×** "
             "(target ≥ 50×)"]
    for moment in ("mmse", "smse", "w1"):
        for c in channels:
            r = m[f"gen/{moment}/{c}"] / m[f"teacher/{moment}/{c}"]
            lines.append(f"  - {moment.upper()} `{c}`: {r:.2f}× the teacher's (bound ≤ {BOUND}×)")
    misses = within_bounds(m, channels)
    if ratio > 0.2:
        verdict = "missed"
    elif misses:
        verdict = f"not counted: {', '.join(misses)} beyond {BOUND}× the teacher's (the samples left the data's law)"
    else:
        verdict = "met, with MMSE, SMSE and W1 within bounds"
    lines += [f"- residual target: **{verdict}**; speed-up target: **{'met' if speedup >= 50 else 'missed'}**"]
    return lines


def markdown(all_results: dict[str, dict[str, dict]], scale: str) -> str:
    lines = [f"# PIDDM and its baselines ({scale} scale)", "",
             "Same teacher, data, test samples and sampling batch size in every column. Residuals are the "
             "discrete L2 norm relative to the source (interior) or to RMS(u) (boundary); MMSE/SMSE are "
             "errors of the ensemble mean / std maps against held-out data (squared physical units); W1 is the "
             "1-D Wasserstein distance between the generated and held-out values of a channel, over the data's "
             "spread (does the method put values where the data has them?); task errors are relative L2 over the "
             "sought entries. The ground-truth column is the data's residual and the MMSE/SMSE/W1 of an "
             "independent set of the same size (the floor). Times per sample come from each method's own run; "
             "the speed-up line under a table divides the teacher's own sampler's time by PIDDM-1's in one "
             "process. DiffusionPDE runs at the guidance weights chosen on the validation split "
             "(`<family>/tune/tune.md`); R fine-tune is the teacher fine-tuned with the c_skip-weighted residual "
             "of its posterior mean (pdegen's variant); PIDM (scratch) is the published recipe.", ""]
    for family, results in all_results.items():
        methods = list(results)
        truth = ground_truth(results)
        lines += [f"## {family}", "", "| | " + " | ".join(methods) + " | ground truth |",
                  "|---|" + "---|" * (len(methods) + 1)]
        for label, values, key in rows_of(results):
            lines.append(f"| {label} | " + " | ".join(fmt(values[m]) for m in methods)
                         + f" | {fmt(truth.get(key)) if key else '–'} |")
        lines += ["", *targets(results), "",
                  f"Samples: `{family}/eval/<method>/report/samples.png`; tasks: `task_<name>.png` there.", ""]
    return "\n".join(lines)


def figure(all_results: dict[str, dict[str, dict]], path: Path) -> None:
    """Per family: residual against time per sample (top) and forward / inverse errors (bottom)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pdegen.plotting import save_figure

    fig, axes = plt.subplots(2, len(all_results), figsize=(4.2 * len(all_results), 7), squeeze=False)
    for column, (family, results) in enumerate(all_results.items()):
        top, bottom = axes[0, column], axes[1, column]
        for method, r in results.items():
            m = r["sample"]["metrics"]
            top.scatter(1e3 * m["seconds_per_sample"], m["gen/residual_interior_rel"], s=40)
            top.annotate(method, (1e3 * m["seconds_per_sample"], m["gen/residual_interior_rel"]), fontsize=8)
        top.set(xscale="log", yscale="log", xlabel="ms per sample", ylabel="relative interior residual",
                title=family)
        labels, forward, inverse = [], [], []
        for method, r in results.items():
            errors = [next((v for k, v in r[t]["metrics"].items() if k.startswith("rel_l2/")), math.nan)
                      if t in r else math.nan for t in ("forward", "inverse")]
            if not all(math.isnan(e) for e in errors):
                labels.append(method)
                forward.append(errors[0])
                inverse.append(errors[1])
        x = range(len(labels))
        bottom.bar([i - 0.2 for i in x], forward, width=0.4, label="forward")
        bottom.bar([i + 0.2 for i in x], inverse, width=0.4, label="inverse")
        bottom.set_xticks(list(x), labels, rotation=30, ha="right", fontsize=8)
        bottom.set(ylabel="relative L2 error")
        bottom.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", choices=("cpu", "gpu"), default="cpu")
    parser.add_argument("--families", nargs="+", choices=FAMILIES, default=list(FAMILIES))
    parser.add_argument("--methods", nargs="+", choices=list(METHODS), default=DEFAULT_METHODS,
                        help="default: all but PIDM (scratch), which needs GPU-scale training to converge")
    parser.add_argument("--noise-steps", type=int, default=None,
                        help=f"PIDDM-ref noise-refinement steps (cpu: {CPU_SCALE['noise_steps']}, "
                             f"gpu: {GPU_NOISE_STEPS})")
    parser.add_argument("--out", type=Path, default=None, help="default: runs/compare_piddm_<scale>")
    parser.add_argument("--force", action="store_true", help="retrain and retest even where outputs exist")
    args = parser.parse_args(argv)
    out = args.out or Path(f"runs/compare_piddm_{args.scale}")
    noise_steps = args.noise_steps or (CPU_SCALE["noise_steps"] if args.scale == "cpu" else GPU_NOISE_STEPS)
    results = {}
    for family in args.families:
        results[family] = Family(family, args.scale, out, args.force).run(args.methods, noise_steps)
        # written after each family, so a long run shows its table as it goes
        write_text_atomic(out / "compare.md", markdown(results, args.scale))
        write_text_atomic(out / "compare.json", json.dumps(results, indent=2))
        figure(results, out / "compare.png")
    print(markdown(results, args.scale))
    print(f"\nwritten: {out / 'compare.md'}, {out / 'compare.json'}, {out / 'compare.png'}")


if __name__ == "__main__":
    main()
