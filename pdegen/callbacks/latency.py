"""Latency of a module's inference, measured at test time for each batch size and thread count."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import lightning as L
import torch
from lightning.pytorch.loggers import WandbLogger

from pdegen import progress
from pdegen.benchmarking import latency_ms, torch_threads
from pdegen.callbacks.outputs import progress_shown, results_dir
from pdegen.callbacks.provenance import provenance
from pdegen.io import write_text_atomic

STATS = ("median_ms", "p90_ms", "median_ms_per_sample", "p90_ms_per_sample", "samples_per_s")


class LatencyCallback(L.Callback):
    """At the end of ``pdegen test``, times ``module.latency_targets(batch_size)``: named callables, the
    module's own inference (``"model"``) and, for a student, its teacher's (``"teacher"``) on the same
    inputs. For a generator one call draws ``batch_size`` samples (the student's teacher: its
    ``latency_sampler`` from the same noise); for a PINN it evaluates ``batch_size`` query points.

    For every batch size and thread count (0: torch's default, all cores), ``warmup`` untimed then
    ``repeats`` timed calls give the median and p90 milliseconds per call (CUDA synchronised around
    each call on a GPU), per sample (point) and the throughput. Logged as
    ``test/latency/<name>/b<batch>_t<threads>/{median_ms,p90_ms,median_ms_per_sample,p90_ms_per_sample,
    samples_per_s}``, ``test/latency/<name>/nfe`` (network evaluations per sample, from
    ``module.latency_nfe()`` where it has one) and ``test/latency/speedup/b<batch>_t<threads>`` (teacher
    median / model median); put in the summary of every W&B run, and written to ``latency.json`` in
    ``output_dir`` (default: ``report/`` in the run folder).
    """

    def __init__(self, batch_sizes: Sequence[int] = (1, 1000, 10000), threads: Sequence[int] = (1, 0),
                 warmup: int = 10, repeats: int = 100, output_dir: str | None = None) -> None:
        if not batch_sizes or min(batch_sizes) < 1 or not threads or min(threads) < 0:
            raise ValueError(f"need batch sizes >= 1 and thread counts >= 0 (0: all), got {batch_sizes} and {threads}")
        if repeats < 1 or warmup < 0:
            raise ValueError(f"need repeats >= 1 and warmup >= 0, got {repeats} and {warmup}")
        self.batch_sizes, self.threads = list(batch_sizes), list(threads)
        self.warmup, self.repeats, self.output_dir = warmup, repeats, output_dir

    def measure(self, module: L.LightningModule) -> list[dict[str, Any]]:
        """One row per (target, batch size, thread count) with its median and p90 ms."""
        if not hasattr(module, "latency_targets"):
            raise TypeError(f"{type(module).__name__} has no latency_targets(batch_size); LatencyCallback times "
                            "modules that name what to time (PINN, a KD-PINN student)")
        sync = module.device.type == "cuda"
        rows = []
        measurements = len(self.batch_sizes) * len(self.threads) * len(module.latency_targets(1))
        with progress.bar(measurements, "measurement"):  # ticks between timings, never inside one
            for batch in self.batch_sizes:
                rows += self._measure_batch(module, batch, sync)
        return rows

    def _measure_batch(self, module: L.LightningModule, batch: int, sync: bool) -> list[dict[str, Any]]:
        rows = []
        targets = module.latency_targets(batch)
        for threads in self.threads:
            with torch_threads(threads) as used, torch.inference_mode():
                for name, run in targets.items():
                    progress.note(f"{name}, batch {batch}, {used} threads")
                    stats = latency_ms(run, self.warmup, self.repeats, sync=sync)
                    progress.advance()
                    rows.append({"target": name, "batch_size": batch, "threads": threads, "threads_used": used,
                                 **stats, "median_ms_per_sample": stats["median_ms"] / batch,
                                 "p90_ms_per_sample": stats["p90_ms"] / batch,
                                 "samples_per_s": 1e3 * batch / stats["median_ms"]})
        return rows

    def on_test_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        with progress_shown(trainer, "latency"):
            rows = self.measure(module)
        metrics, medians = {}, {}
        for row in rows:
            key = f"b{row['batch_size']}_t{row['threads']}"
            medians[(row["target"], key)] = row["median_ms"]
            for stat in STATS:
                metrics[f"test/latency/{row['target']}/{key}/{stat}"] = row[stat]
        for (target, key), median in medians.items():
            if target == "teacher" and ("model", key) in medians:
                metrics[f"test/latency/speedup/{key}"] = median / medians[("model", key)]
        nfe = module.latency_nfe() if hasattr(module, "latency_nfe") else {}
        metrics |= {f"test/latency/{target}/nfe": float(count) for target, count in nfe.items()}
        module.log_dict(metrics, batch_size=1)
        if not trainer.is_global_zero:
            return
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.experiment.summary.update(metrics)
        out = results_dir(trainer, self.output_dir)
        summary = {"module": type(module).__name__, "run": provenance(trainer), "device": str(module.device),
                   "warmup": self.warmup,
                   "repeats": self.repeats, "nfe": nfe, "rows": rows}
        write_text_atomic(out / "latency.json", json.dumps(summary, indent=2))
