"""Data loading at scale: peak memory per rank and loader rate against the training step rate, for two dataset
sizes 10× apart, the splits read from the file when asked (streaming, the default) against held in memory.

    python tools/bench_loading.py                                  # Darcy 64², 2,000 and 20,000 samples, 2 ranks
    python tools/bench_loading.py --sizes 2000 20000 --ranks 2 --workers 1 --batch-size 16 --steps 30

Each (size, mode) runs in a fresh process: a DDP fit (CPU, gloo, ``--ranks`` processes) of the EDM teacher with
the quickstart U-Net on a Darcy file (``--base`` solved samples repeated to the size: the loader's work does not
depend on the values). Every rank reports its peak resident memory (``ru_maxrss``), its growth over the
process's memory before the data module was set up, the rate at which its training loader alone serves samples
(its DDP shard, same batch) and the rate of its training steps (forward, backward, Adam). Data files go under
``--workdir`` and are removed afterwards unless ``--keep-data``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

DEFAULT_WORKDIR = Path("runs/bench_loading")


def rss_mib() -> float:
    """The process's resident memory now, MiB."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mib() -> float:
    """The process's peak resident memory so far, MiB (Linux reports ``ru_maxrss`` in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10


def make_dataset(path: Path, num_samples: int, resolution: int, base: int, seed: int = 0) -> Path:
    """A Darcy file of ``num_samples`` samples: ``base`` solved ones, repeated (written in blocks)."""
    from pdegen.datagen import generate_dataset
    from pdegen.io import DatasetWriter, load_samples
    from pdegen.pdes import Darcy

    pde = Darcy(resolution=resolution)
    solved = path.with_name(f"{path.stem}_base.h5")
    if not solved.exists():
        generate_dataset(pde, base, seed, solved, progress=False)
    samples, _ = load_samples(solved, dtype=torch.float64)
    with DatasetWriter(path, pde, num_samples, attrs={"repeats_of": solved.name}, overwrite=True) as writer:
        for start in range(0, num_samples, base):
            writer.write(start, samples[: min(base, num_samples - start)])
    return path


def child(file: Path, mode: str, ranks: int, workers: int, batch_size: int, steps: int, out: Path) -> None:
    """One fit (this process is rank 0; Lightning starts the others); each rank writes ``rank<r>.json``."""
    import lightning as L

    from datamodules import PDEDataModule
    from pdegen.benchmarking import BACKBONES
    from pdegen.io import read_info
    from pdegen.modules import DiffusionTeacher

    before = rss_mib()

    class Measure(L.Callback):
        def on_train_start(self, trainer, pl_module) -> None:
            loader, count, start = trainer.train_dataloader, 0, time.perf_counter()
            for count, batch in enumerate(loader, 1):  # the rank's shard, through the DDP sampler
                if count * len(batch) >= steps * batch_size:
                    break
            self.loader_rate = count * batch_size / (time.perf_counter() - start)
            self.times: list[float] = []

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            self.start = time.perf_counter()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            self.times.append(time.perf_counter() - self.start)

        def on_train_end(self, trainer, pl_module) -> None:
            timed = sorted(self.times[2:] or self.times)  # the first steps warm up
            peak = peak_rss_mib()
            result = {"mode": mode, "samples": read_info(file).num_samples, "file_mib": file.stat().st_size / 2**20,
                      "rank": trainer.global_rank, "peak_rss_mib": peak, "growth_mib": peak - before,
                      "loader_samples_per_s": self.loader_rate,
                      "train_samples_per_s": batch_size / timed[len(timed) // 2]}
            (out / f"rank{trainer.global_rank}.json").write_text(json.dumps(result))

    torch.manual_seed(0)
    data = PDEDataModule(pde=read_info(file).pde, file=str(file), batch_size=batch_size, num_workers=workers,
                         in_memory=mode == "memory", splits=(0.9, 0.05, 0.05))
    trainer = L.Trainer(accelerator="cpu", devices=ranks, strategy="ddp" if ranks > 1 else "auto", max_steps=steps,
                        limit_val_batches=0, num_sanity_val_steps=0, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[Measure()],
                        default_root_dir=str(out))
    trainer.fit(DiffusionTeacher(BACKBONES["unet-quickstart"]()), datamodule=data)


def run(sizes: list[int], modes: list[str], ranks: int = 2, workers: int = 1, batch_size: int = 16, steps: int = 30,
        resolution: int = 64, base: int = 64, workdir: Path = DEFAULT_WORKDIR, keep_data: bool = False) -> list[dict]:
    """Every (size, mode) fit in its own process; the ranks' results."""
    workdir.mkdir(parents=True, exist_ok=True)
    results = []
    for size in sizes:
        file = make_dataset(workdir / f"darcy{resolution}_n{size}.h5", size, resolution, base)
        try:
            for mode in modes:
                out = workdir / f"n{size}_{mode}"
                out.mkdir(parents=True, exist_ok=True)
                for old in out.glob("rank*.json"):
                    old.unlink()
                command = [sys.executable, str(Path(__file__).resolve()), "--child", str(file), "--mode", mode,
                           "--ranks", str(ranks), "--workers", str(workers), "--batch-size", str(batch_size),
                           "--steps", str(steps), "--out", str(out)]
                print(f"{size} samples, {mode}: fitting on {ranks} rank(s) ...", flush=True)
                subprocess.run(command, check=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
                results += [json.loads(p.read_text()) for p in sorted(out.glob("rank*.json"))]
        finally:
            if not keep_data:
                file.unlink(missing_ok=True)
    if not keep_data:
        for solved in workdir.glob("*_base.h5"):
            solved.unlink()
    return results


def table(results: list[dict]) -> str:
    lines = ["| samples | file MiB | mode | rank | peak RSS MiB | growth MiB | loader samples/s | train samples/s |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['samples']} | {r['file_mib']:.0f} | {r['mode']} | {r['rank']} | {r['peak_rss_mib']:.0f} | "
                     f"{r['growth_mib']:.0f} | {r['loader_samples_per_s']:.0f} | {r['train_samples_per_s']:.1f} |")
    sizes = sorted({r["samples"] for r in results})
    for mode in sorted({r["mode"] for r in results}):
        peaks = {s: max(r["peak_rss_mib"] for r in results if r["mode"] == mode and r["samples"] == s) for s in sizes}
        if len(sizes) > 1:
            lines.append(f"\n{mode}: peak RSS per rank at {sizes[-1]} samples / at {sizes[0]}: "
                         f"{peaks[sizes[-1]] / peaks[sizes[0]]:.2f}×")
    slowest = min(results, key=lambda r: r["loader_samples_per_s"] / r["train_samples_per_s"])
    ratio = slowest["loader_samples_per_s"] / slowest["train_samples_per_s"]
    lines.append(f"loader / training rate, lowest: {ratio:.1f}× ({slowest['samples']} samples, {slowest['mode']}, "
                 f"rank {slowest['rank']})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 20000])
    parser.add_argument("--modes", nargs="+", default=["stream", "memory"], choices=["stream", "memory"])
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--workers", type=int, default=1, help="DataLoader workers per rank")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--base", type=int, default=64, help="solved samples the file repeats")
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    parser.add_argument("--keep-data", action="store_true")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="stream", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        child(args.child, args.mode, args.ranks, args.workers, args.batch_size, args.steps, args.out)
        return []
    results = run(args.sizes, args.modes, args.ranks, args.workers, args.batch_size, args.steps, args.resolution,
                  args.base, args.workdir, args.keep_data)
    print(f"\ntorch {torch.__version__}, {args.ranks} rank(s), {args.workers} worker(s) per rank, "
          f"batch {args.batch_size}, Darcy {args.resolution}², {os.cpu_count()} CPU cores\n")
    print(table(results))
    (args.workdir / "bench_loading.json").write_text(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    main()
