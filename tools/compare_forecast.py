"""Conditional diffusion on Kuramoto–Sivashinsky (and Kolmogorov flow): every model × sampling scheme, the P|C
sweep and the data assimilation sweep, on one data set and one set of test trajectories (Shysheya et al. 2024's
comparison).

    python tools/compare_forecast.py --scale cpu      # on 2 CPU cores (about 1 h, measured beside other work)
    python tools/compare_forecast.py --scale gpu      # the lightning_configs/conditional configs as committed
    python tools/compare_forecast.py --family kolmogorov --scale cpu   # 32² vorticity (:data:`KOLMOGOROV`)

With ``pdegen fit`` / ``pdegen test`` (``pdegen.cli.main``) on ``lightning_configs/conditional/<family>*.yaml``:

1. train, on the same data with the same backbone and number of optimiser steps (the family's ``models``): the
   MSE forecaster, the joint model, the universal amortised model (C drawn per sample; per batch, the reference
   code's choice; and per sample with sparse observations in its input, for architecture-only assimilation) and one
   plain amortised model per P|C split of the sweep;
2. forecast the test trajectories from their first state with every model and scheme (``forecasts``; the guided
   samplers with ``guided_steps``: fewer diverge), then from their first C states for each split of the sweep
   (universal, per-batch universal, amortised), then assimilate a Bernoulli(p) space–time mask of observations for
   each p of the sweep: the hybrid (universal + reconstruction guidance), architecture-only (observations in the
   network input) and the joint model guided on both;
3. gather high-correlation time (both conventions), RMSD, CRPS, spread–skill, spectrum error, PDE residual, NFE
   and seconds per trajectory into ``compare.md``, ``compare.json`` and ``compare.png`` in ``--out``, with the
   issue's targets checked under the tables.

``--scale cpu`` shrinks the configs by the family's ``cpu`` settings (KS: L = 64 on 128 points, Δx = 0.5 and Δt =
0.2; 256 training trajectories; a base-32 U-Net; batches of 32 and the same number of steps for every model; 16
test trajectories of 160 states. Kolmogorov: 32² vorticity from a 128² simulation, 128 training trajectories of 32
states, 16 test trajectories of 48, a base-16 U-Net and 400 steps; MSE, joint AR and universal, and the hybrid
assimilation, no P|C sweep). The
configs actually run are written to ``<out>/configs/`` (reproducible with pdegen alone); each run's ``report/``
holds its scores and figures. A stage is reused when its output exists and its config is unchanged (``--force``
redoes every stage); a retrained model's test runs are redone.
"""
from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pdegen.io import read_config, write_text_atomic

ROOT = Path(__file__).resolve().parents[1]
GUIDED = "guided"
"""Marks the runs that sample with reconstruction guidance (their ``num_steps`` is the scale's ``guided_steps``)."""
STUDENT, STUDENT_DA = "one-step student", "one-step student (ε optimised)"
"""The ForecastStudent's columns: distilled from the ``universal`` model (its teacher, trained here first)."""
TEACHER = "universal"
"""The student's teacher: the model (and the forecasting column) of that name."""


@dataclass(frozen=True)
class Family:
    """One family's comparison: its models (run -> (config under lightning_configs, model args); ``student`` is
    distilled from ``universal``), the forecasting columns, the P|C sweep's models (``amortised_C<c>``: config
    ``amortised`` with ``history: c``), the assimilation methods (column -> (model, test-time args)) and the
    settings of each scale."""

    title: str
    models: dict[str, tuple[str, dict[str, Any]]]
    forecasts: dict[str, tuple[str, dict[str, Any]]]
    sweep_models: dict[str, str]
    assimilation: dict[str, tuple[str, dict[str, Any]]]
    amortised: str
    cpu: dict[str, Any]
    gpu: dict[str, Any]


KS = Family(
    title="Kuramoto–Sivashinsky",
    models={"mse": ("conditional/ks_mse", {}), "joint": ("conditional/ks_joint", {}),
            "universal": ("conditional/ks", {}), "universal_batch": ("conditional/ks", {"history_draw": "batch"}),
            "universal_obs": ("conditional/ks", {"observation_training": True}),
            "student": ("forecast_student/ks", {})},
    forecasts={
        "MSE": ("mse", {}),
        "joint AR": ("joint", {GUIDED: True}),
        "joint AAO": ("joint", {GUIDED: True, "scheme": "aao", "ensemble_size": 1}),  # one member: the costliest
        "amortised": ("amortised_C1", {}),
        "universal": ("universal", {}),
        "universal (C per batch)": ("universal_batch", {}),
        STUDENT: ("student", {}),
    },
    sweep_models={"universal": "universal", "universal (C per batch)": "universal_batch",
                  "amortised": "amortised_C{c}"},
    assimilation={
        "hybrid (universal + guidance)": ("universal", {GUIDED: True}),
        "architecture-only (observations as input)": ("universal_obs", {"assimilation": "input"}),
        "joint AR (guided on both)": ("joint", {GUIDED: True}),
        STUDENT_DA: ("student", {}),
    },
    amortised="conditional/ks_amortised",
    cpu={
        "accelerator": "cpu",
        "pde": {"length": 64.0, "resolution": 128},
        "data": {"num_samples": 256, "batch_size": 32, "eval_batch_size": 16, "num_workers": 0,
                 "test_num_samples": 16},
        "test_states": 160,
        "net": {"base_channels": 32, "channel_mults": [1, 2, 2], "num_res_blocks": 1},
        "train": {"max_steps": 1200, "lr": 1e-3, "ema_decay": 0.99},
        "eval": {"ensemble_size": 2, "num_steps": 16, "guided_steps": 32, "sample_batch_size": 64},
        "student": {"num_pairs": 4096, "residual_warmup_steps": 400},
        "splits": [1, 3, 6],
        "rates": [1e-1, 1e-2, 1e-3],
        "assimilation": ["hybrid (universal + guidance)", "architecture-only (observations as input)", STUDENT_DA],
    },
    gpu={"eval": {"guided_steps": 64}, "splits": [1, 3, 6], "rates": [1.0, 1e-1, 1e-2, 1e-3],
         "assimilation": ["hybrid (universal + guidance)", "architecture-only (observations as input)",
                          "joint AR (guided on both)", STUDENT_DA]},
)
KOLMOGOROV = Family(
    title="Kolmogorov flow",
    models={"mse": ("conditional/kolmogorov", {"variant": "mse"}), "joint": ("conditional/kolmogorov_joint", {}),
            "universal": ("conditional/kolmogorov", {}), "student": ("forecast_student/kolmogorov", {})},
    forecasts={"MSE": ("mse", {}), "joint AR": ("joint", {GUIDED: True}), "universal": ("universal", {}),
               STUDENT: ("student", {})},
    sweep_models={},
    assimilation={"hybrid (universal + guidance)": ("universal", {GUIDED: True}),
                  "joint AR (guided on both)": ("joint", {GUIDED: True}), STUDENT_DA: ("student", {})},
    amortised="conditional/kolmogorov",
    cpu={
        "accelerator": "cpu",
        "pde": {"resolution": 32, "sim_resolution": 128, "num_states": 32},
        "data": {"num_samples": 128, "batch_size": 32, "eval_batch_size": 16, "num_workers": 0,
                 "test_num_samples": 16},
        "test_states": 48,
        "net": {"base_channels": 16, "channel_mults": [1, 2], "num_res_blocks": 1},  # base 32: ~3 s a step here
        "train": {"max_steps": 400, "lr": 1e-3, "ema_decay": 0.99},
        "eval": {"ensemble_size": 2, "num_steps": 16, "guided_steps": 32, "sample_batch_size": 32},
        "student": {"num_pairs": 2048, "residual_warmup_steps": 150, "latency_states": 48},  # 640: minutes a call
        "splits": [],
        "rates": [1e-1, 1e-2],
        "assimilation": ["hybrid (universal + guidance)", STUDENT_DA],
    },
    gpu={"eval": {"guided_steps": 64}, "splits": [], "rates": [1e-1, 1e-2, 1e-3],
         "assimilation": ["hybrid (universal + guidance)", "joint AR (guided on both)", STUDENT_DA]},
)
FAMILIES = {"ks": KS, "kolmogorov": KOLMOGOROV}
SPARSE = 1e-2
"""The assimilation targets: hybrid against architecture-only at every p ≤ this, the student against the hybrid at
p = this."""


# ---------------------------------------------------------------------------------------- runs
class Comparison:
    """The trained models and test runs under ``out``."""

    def __init__(self, family: Family, scale: str, out: Path, force: bool) -> None:
        self.family, self.scale, self.root, self.force = family, scale, out, force
        self.settings = family.cpu if scale == "cpu" else family.gpu
        self.retrained: set[str] = set()

    def config(self, model: str, run: str, **model_args: Any) -> dict:
        """The config of ``model`` for run ``run`` (its outputs under ``out/run``), scaled, ``model_args`` set."""
        models = self.family.models
        stem, args = models[model] if model in models else (self.family.amortised,
                                                            {"history": int(model.split("C")[1])})
        config = read_config(ROOT / "lightning_configs" / f"{stem}.yaml")
        config["trainer"]["default_root_dir"] = str(self.root / run)
        data, init = config["data"]["init_args"], config["model"]["init_args"]
        data["cache_dir"] = str(self.root / "data")  # one data set for every run
        student = "teacher" in init
        if student:
            init["teacher"] = str(self.fit(TEACHER))
        if model_args.get("observation_probability"):  # the speed-up is measured on the forecasting run
            config["trainer"]["callbacks"] = [c for c in config["trainer"]["callbacks"]
                                              if not c["class_path"].endswith("LatencyCallback")]
        if self.scale == "cpu":
            s = self.settings
            config["trainer"].update(accelerator=s["accelerator"], max_epochs=-1, max_steps=s["train"]["max_steps"],
                                     log_every_n_steps=20)
            data.update(s["data"])
            for pde in (data["pde"], data["test_pde"]):
                pde.setdefault("init_args", {}).update(s["pde"])
            data["test_pde"]["init_args"]["num_states"] = s["test_states"]
            if student:  # a student copies its teacher's network
                init.update(s["student"])
            else:
                init["net"]["init_args"].update(s["net"])
            init["optimizer"]["init_args"]["lr"] = s["train"]["lr"]
            for callback in config["trainer"]["callbacks"]:
                if callback["class_path"].endswith("EMAWeightAveraging"):
                    callback["init_args"]["decay"] = s["train"]["ema_decay"]
            init.update({k: v for k, v in s["eval"].items()
                         if k != "guided_steps" and not (student and k == "num_steps")})
        init.update(args)
        if init.get("variant") == "mse":
            init.pop("num_steps", None)
            init["ensemble_size"] = 1  # deterministic
        if model_args.pop(GUIDED, False):
            model_args["num_steps"] = self.settings["eval"]["guided_steps"]
        init.update(model_args)
        return config

    def write(self, run: str, config: dict) -> Path:
        write_text_atomic(self.config_path(run), yaml.safe_dump(config, sort_keys=False))
        return self.config_path(run)

    def config_path(self, run: str) -> Path:
        return self.root / "configs" / f"{run.replace('/', '_')}.yaml"

    def redo(self, run: str, config: dict, output: Path, training: bool = False) -> bool:
        """Whether to (re)run ``run``: ``--force``, no ``output`` yet, or another config than the one it ran with
        (for ``training``, the model's evaluation settings aside)."""
        path = self.config_path(run)
        if self.force or not output.is_file() or not path.is_file():
            return True
        old, new = yaml.safe_load(path.read_text()), yaml.safe_load(yaml.safe_dump(config, sort_keys=False))
        if training:
            from pdegen.modules import ConditionalDiffusion, ForecastStudent

            for c in (old, new):
                for setting in {*ConditionalDiffusion.evaluation_settings, *ForecastStudent.evaluation_settings}:
                    c["model"]["init_args"].pop(setting, None)
        return old != new

    def fit(self, model: str) -> Path:
        """Train ``model`` unless its last checkpoint exists; the checkpoint."""
        from pdegen.cli import main

        run = f"models/{model}"
        checkpoint, config = self.root / run / "checkpoints" / "last.ckpt", self.config(model, run)
        if self.redo(run, config, checkpoint, training=True):
            main(["fit", "--config", str(self.write(run, config)), "--overwrite=true"])
            self.retrained.add(model)
        return checkpoint

    def test(self, model: str, run: str, **model_args: Any) -> dict[str, Any]:
        """``pdegen test`` of ``model`` with the test-time ``model_args`` unless the report exists; its scores."""
        from pdegen.cli import main

        report, config = self.root / run / "report" / "forecast_scores.json", self.config(model, run, **model_args)
        checkpoint = self.fit(model)
        if model in self.retrained or self.redo(run, config, report):
            main(["test", "--config", str(self.write(run, config)), f"--ckpt_path={checkpoint}"])
        scores = json.loads(report.read_text())
        latency = self.root / run / "report" / "latency.json"
        if latency.is_file():  # a student's forecast against its teacher's, same batch and initial states
            rows = {row["target"]: row for row in json.loads(latency.read_text())["rows"]}
            scores["speedup"] = rows["teacher"]["median_ms"] / rows["model"]["median_ms"]
            scores["latency_ms"] = {target: row["median_ms"] for target, row in rows.items()}
            scores["latency_states"] = config["model"]["init_args"].get("latency_states", 640)
        return scores

    def run(self) -> dict[str, Any]:
        splits, rates = self.settings["splits"], self.settings["rates"]
        family = self.family
        results: dict[str, Any] = {"family": family.title, "scale": self.scale, "forecast": {}, "splits": {},
                                   "assimilation": {}}
        for label, (model, args) in family.forecasts.items():
            results["forecast"][label] = self.test(model, f"forecast/{slug(label)}", **args)
        for c in splits:
            results["splits"][c] = {label: self.test(model.format(c=c), f"splits/C{c}/{slug(label)}", history=c)
                                    for label, model in family.sweep_models.items()}
        for p in rates:
            results["assimilation"][p] = {
                label: self.test(family.assimilation[label][0], f"assimilation/p{p:g}/{slug(label)}",
                                 observation_probability=p, **family.assimilation[label][1])
                for label in self.settings["assimilation"]}
        return results


def slug(label: str) -> str:
    """A run folder's name for a column label: its ASCII letters and digits, runs of anything else one ``_``."""
    return "_".join("".join(c if c.isascii() and c.isalnum() else " " for c in label.lower()).split())


# ---------------------------------------------------------------------------------------- the tables
def fmt(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.3g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"


FORECAST_ROWS = (  # (label, key in forecast_scores.json)
    ("high-correlation time, per trajectory (PDE-Refiner)", "high_correlation_time"),
    ("high-correlation time, mean curve (Shysheya et al.)", "high_correlation_time_mean_curve"),
    ("RMSD over the forecast states", "rmsd"),
    ("CRPS (fair, ensemble)", "crps"),
    ("spread–skill ratio (1 = calibrated)", "spread_skill"),
    ("energy-spectrum error (mean relative, log)", "spectrum_error"),
    ("PDE residual (RMS, physical units)", "residual"),
    ("ensemble members per trajectory", "members"),
    ("network evaluations per trajectory (one member)", "nfe_per_trajectory"),
    ("seconds per trajectory (all members)", "seconds_per_trajectory"),
    ("speed-up over its teacher's own sampler (one forecast, states below; same batch, one process)", "speedup"),
    ("states of that forecast", "latency_states"),
)


def forecast_table(forecast: dict[str, dict]) -> list[str]:
    methods = list(forecast)
    first = next(iter(forecast.values()))
    floors = first["floors"]
    lines = ["| | " + " | ".join(methods) + " | persistence | climatology | data |",
             "|---|" + "---|" * (len(methods) + 3)]
    for label, key in FORECAST_ROWS:
        floor = {"high_correlation_time": floors["persistence"]["high_correlation_time"],
                 "high_correlation_time_mean_curve": floors["persistence"]["high_correlation_time_mean_curve"],
                 "rmsd": floors["persistence"]["rmsd"]}.get(key)
        data = first["data_residual"] if key == "residual" else None
        climatology = floors["climatology"]["rmsd"] if key == "rmsd" else None
        lines.append(f"| {label} | " + " | ".join(fmt(forecast[m].get(key)) for m in methods)
                     + f" | {fmt(floor)} | {fmt(climatology)} | {fmt(data)} |")
    return lines


def markdown(results: dict[str, Any]) -> str:
    forecast, splits, assimilation = results["forecast"], results["splits"], results["assimilation"]
    first = next(iter(forecast.values()))
    lines = [f"# Conditional diffusion on {results['family']} ({results['scale']} scale)", "",
             f"{first['trajectories']} test trajectories of {len(first['correlation_curve'])} states (Δt = "
             f"{first['dt']:g}), the same for every column. Times are lead times (model time units). "
             "High-correlation time: the lead time until the per-state Pearson correlation with the truth first "
             "falls to 0.8, per trajectory then averaged (PDE-Refiner's convention) or on the averaged curve "
             "(Shysheya et al.'s). RMSD, CRPS and the spectrum error are means over the forecast states; the "
             "residual is the PDE's residual of the forecasts in physical units, next to the data's own. Each run's "
             "config is in `configs/`, its figures (`forecast.png`: space–time in 1-D, snapshots in 2-D; "
             "`correlation.png`) in its `report/`.", "",
             f"## Forecasting from the first state (P|C = {first['window'] - 1}|1)", "", *forecast_table(forecast), ""]
    methods = list(next(iter(splits.values()), {}))
    if splits:
        lines += ["## P|C sweep: forecasting from the first C states", "",
                  "High-correlation time per trajectory (RMSD in brackets); universal and per-batch universal are "
                  "one network each for every split, amortised is trained per split.", "",
                  "| P\\|C | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
        for c, runs in splits.items():
            window = runs[methods[0]]["window"]
            lines.append(f"| {window - int(c)}\\|{c} | " + " | ".join(
                f"{fmt(runs[m]['high_correlation_time'])} ({fmt(runs[m]['rmsd'])})" for m in methods) + " |")
        lines.append("")
    methods = list(next(iter(assimilation.values()), {}))
    lines += ["## Offline data assimilation: Bernoulli(p) observations over space–time, from the first state", "",
              "RMSD over the assimilated states (CRPS in brackets); the same mask for every method.", "",
              "| p | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
    for p, runs in assimilation.items():
        lines.append(f"| {float(p):g} | " + " | ".join(
            f"{fmt(runs[m]['rmsd'])} ({fmt(runs[m].get('crps'))})" for m in methods) + " |")
    lines += ["", "## Targets", "", *targets(results), ""]
    return "\n".join(lines)


def targets(results: dict[str, Any]) -> list[str]:
    """The issue's targets that the results' columns allow, each stated with its numbers and verdict."""
    forecast, splits, assimilation = results["forecast"], results["splits"], results["assimilation"]

    def hct(scores: dict) -> float:
        return scores["high_correlation_time"]

    def verdict(ok: bool) -> str:
        return "**met**" if ok else "**missed**"

    lines = []
    mse = hct(forecast["MSE"])
    for label in ("universal", "joint AR"):
        lines.append(f"- {label} reaches the MSE forecaster's high-correlation time: {fmt(hct(forecast[label]))} "
                     f"against {fmt(mse)}: {verdict(hct(forecast[label]) >= mse)}")
    if "joint AAO" in forecast:
        ar, aao = hct(forecast["joint AR"]), hct(forecast["joint AAO"])
        lines.append(f"- AR beats AAO (joint model): {fmt(ar)} against {fmt(aao)}: {verdict(ar > aao)}")
    if splits:
        pairs = [(c, hct(runs["universal"]), hct(runs["amortised"])) for c, runs in splits.items()]
        lines.append("- universal ≥ amortised at every P|C: " + ", ".join(
            f"C = {c}: {fmt(u)} against {fmt(a)}" for c, u, a in pairs)
            + f": {verdict(all(u >= a for _, u, a in pairs))}")
        batch = [(c, hct(runs["universal"]), hct(runs["universal (C per batch)"])) for c, runs in splits.items()]
        better = "per sample" if sum(s - b for _, s, b in batch) >= 0 else "per batch"
        lines.append(f"- C drawn per sample or per batch (not a target): {better} is better on the mean over splits ("
                     + ", ".join(f"C = {c}: {fmt(s)} against {fmt(b)}" for c, s, b in batch) + ")")
    if STUDENT in forecast:
        lines += student_targets(forecast[STUDENT], forecast[TEACHER], mse,
                                 {p: runs for p, runs in assimilation.items() if STUDENT_DA in runs})
    hybrid, architecture = "hybrid (universal + guidance)", "architecture-only (observations as input)"
    sparse = [(p, runs) for p, runs in assimilation.items() if float(p) <= SPARSE and architecture in runs]
    if sparse:
        pairs = [(p, runs[hybrid]["rmsd"], runs[architecture]["rmsd"]) for p, runs in sparse]
        lines.append(f"- in sparse assimilation (p ≤ {SPARSE:g}) the hybrid beats architecture-only (RMSD): "
                     + ", ".join(f"p = {float(p):g}: {fmt(h)} against {fmt(a)}" for p, h, a in pairs)
                     + f": {verdict(all(h < a for _, h, a in pairs))}")
    return lines


def student_targets(student: dict, teacher: dict, mse: float, assimilation: dict[Any, dict]) -> list[str]:
    """The one-step student's targets against its teacher (the universal model's AR forecast), the MSE forecaster
    and, in sparse assimilation (p = 1e-2), the hybrid."""
    def verdict(ok: bool) -> str:
        return "**met**" if ok else "**missed**"

    hct, teacher_hct = student["high_correlation_time"], teacher["high_correlation_time"]
    lines = [f"- one-step student: high-correlation time ≥ 90 % of its teacher's: {fmt(hct)} against "
             f"0.9 × {fmt(teacher_hct)}: {verdict(hct >= 0.9 * teacher_hct)}; ≥ the MSE forecaster's: {fmt(hct)} "
             f"against {fmt(mse)}: {verdict(hct >= mse)}",
             f"- one-step student: PDE residual ≤ half its teacher's: {fmt(student['residual'])} against "
             f"{fmt(teacher['residual'])}: {verdict(student['residual'] <= 0.5 * teacher['residual'])}"]
    if "spread_skill" in student and "spread_skill" in teacher:
        ratio = student["spread_skill"] / teacher["spread_skill"]
        lines.append(f"- one-step student: spread–skill within 20 % of its teacher's: {fmt(student['spread_skill'])} "
                     f"against {fmt(teacher['spread_skill'])}: {verdict(abs(ratio - 1) <= 0.2)}")
    if "speedup" in student:
        ms = student["latency_ms"]
        lines.append(f"- one-step student: ≥ 10× faster than its teacher's own sampler per "
                     f"{student['latency_states']}-state forecast: "
                     f"{fmt(student['speedup'])}× ({fmt(ms['model'])} ms against {fmt(ms['teacher'])} ms): "
                     f"{verdict(student['speedup'] >= 10)}")
    hybrid = "hybrid (universal + guidance)"
    for p, runs in assimilation.items():
        if float(p) == SPARSE and hybrid in runs:
            mine, theirs = runs[STUDENT_DA], runs[hybrid]
            lines.append(f"- one-step student in sparse assimilation (p = {SPARSE:g}): RMSD within 1.2× the "
                         f"hybrid's: {fmt(mine['rmsd'])} against {fmt(theirs['rmsd'])}: "
                         f"{verdict(mine['rmsd'] <= 1.2 * theirs['rmsd'])}, at {fmt(mine['seconds_per_trajectory'])} "
                         f"s per trajectory against {fmt(theirs['seconds_per_trajectory'])} s "
                         f"({fmt(mine['nfe_per_trajectory'])} against {fmt(theirs['nfe_per_trajectory'])} evaluations)")
    return lines


def figure(results: dict[str, Any], path: Path) -> None:
    """Correlation against lead time for every forecasting method, the P|C sweep (where run) and the assimilation
    sweep."""
    import matplotlib.pyplot as plt

    from pdegen.plotting import correlation_figure, save_figure

    forecast, splits, rates = results["forecast"], list(results["splits"]), list(results["assimilation"])
    first = next(iter(forecast.values()))
    fig, axes = plt.subplots(1, 3 if splits else 2, figsize=(15 if splits else 10, 4), constrained_layout=True)
    curves = {label: scores["correlation_curve"] for label, scores in forecast.items()}
    correlation_figure(curves | {"persistence": first["persistence_correlation_curve"]}, first["dt"], ax=axes[0])
    axes[0].set_title("forecasting from the first state")
    if splits:
        for label in results["splits"][splits[0]]:
            axes[1].plot(splits, [results["splits"][c][label]["high_correlation_time"] for c in splits], "o-",
                         label=label)
        axes[1].set(xlabel="C (given states)", ylabel="high-correlation time", title="P|C sweep")
        axes[1].legend(fontsize=7)
    for label in results["assimilation"][rates[0]] if rates else ():
        axes[-1].plot([float(p) for p in rates], [results["assimilation"][p][label]["rmsd"] for p in rates], "o-",
                      label=label)
    axes[-1].set(xscale="log", xlabel="observed fraction p", ylabel="RMSD", title="offline data assimilation")
    axes[-1].legend(fontsize=7)
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--family", choices=tuple(FAMILIES), default="ks")
    parser.add_argument("--scale", choices=("cpu", "gpu"), default="cpu")
    parser.add_argument("--out", type=Path, default=None,
                        help="default: runs/compare_forecast_<scale> (ks), runs/compare_forecast_<family>_<scale>")
    parser.add_argument("--force", action="store_true", help="retrain and retest even where outputs exist")
    args = parser.parse_args(argv)
    name = "" if args.family == "ks" else f"{args.family}_"
    out = args.out or Path(f"runs/compare_forecast_{name}{args.scale}")
    results = Comparison(FAMILIES[args.family], args.scale, out, args.force).run()
    write_text_atomic(out / "compare.md", markdown(results))
    write_text_atomic(out / "compare.json", json.dumps(results, indent=1))
    figure(results, out / "compare.png")
    print(markdown(results))
    print(f"\nwritten: {out / 'compare.md'}, {out / 'compare.json'}, {out / 'compare.png'}")
    return results


if __name__ == "__main__":
    main()
