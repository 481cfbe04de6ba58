"""Timing helpers for the benchmark scripts in ``tools/`` and the latency callback (figures, never
test assertions)."""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch


def _net(name: str, **kwargs: Any) -> torch.nn.Module:
    from pdegen import nets  # here: neuraloperator is slow to import, and the latency callback needs none

    return getattr(nets, name)(**kwargs)


BACKBONES: dict[str, Callable[[], torch.nn.Module]] = {
    "unet-quickstart": lambda: _net("UNet", channels=2, base_channels=32, channel_mults=[1, 2, 2], num_res_blocks=1),
    "unet-gpu-config": lambda: _net("UNet", channels=2, base_channels=64, channel_mults=[1, 2, 2, 2],
                                    num_res_blocks=2),
    "fno-gpu-config": lambda: _net("NoiseConditionedFNO", channels=2, width=64, modes=[24, 24], n_layers=4),
}
"""The Darcy backbones the training benchmarks time: the quickstart's and the GPU configs'."""


def best_time(run: Callable[[], Any], repeats: int = 1, sync: bool = False) -> tuple[float, float, Any]:
    """Best wall-clock seconds of ``repeats`` calls of ``run``, the process CPU seconds of that call,
    and its result; ``sync`` waits for CUDA work before and after each call."""
    best, cpu, result = float("inf"), float("nan"), None
    for _ in range(max(1, repeats)):
        if sync:
            torch.cuda.synchronize()
        start, start_cpu = time.perf_counter(), time.process_time()
        out = run()
        if sync:
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - start
        if elapsed < best:
            best, cpu, result = elapsed, time.process_time() - start_cpu, out
    return best, cpu, result


def add_bench_options(parser: argparse.ArgumentParser, *, cuda_samples: int | None = None,
                      repeats: bool = True) -> None:
    """The options every benchmark tool shares: ``--torch-threads`` and, where the tool uses them,
    ``--repeats`` and ``--cuda-samples`` (with the given default)."""
    if cuda_samples is not None:
        parser.add_argument("--cuda-samples", type=int, default=cuda_samples, help="samples for the CUDA run")
    if repeats:
        parser.add_argument("--repeats", type=int, default=1, help="report the best of this many runs")
    parser.add_argument("--torch-threads", type=int, default=None,
                        help="torch.set_num_threads for the CPU runs (default: torch's choice; 1 is far faster "
                             "on a loaded machine)")


def parse_bench_args(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the tool's arguments and apply ``--torch-threads``."""
    args = parser.parse_args(argv)
    if args.torch_threads is not None:
        torch.set_num_threads(args.torch_threads)
    return args


def items_per_second(step: Callable[[], Any], items: int, steps: int, warmup: int = 2, cuda: bool = False) -> float:
    """``items`` × ``steps`` / seconds for ``steps`` calls of ``step`` after ``warmup`` untimed calls
    (synchronising CUDA around the timed ones when ``cuda``)."""
    for _ in range(warmup):
        step()
    if cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if cuda:
        torch.cuda.synchronize()
    return steps * items / (time.perf_counter() - start)


def latency_ms(run: Callable[[], Any], warmup: int = 10, repeats: int = 100, sync: bool = False) -> dict[str, float]:
    """Wall-clock milliseconds per call of ``run``: ``warmup`` untimed calls, then ``repeats`` timed ones
    (each synchronising CUDA before and after when ``sync``); their median, 90th percentile and minimum."""
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got {repeats} and {warmup}")
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        if sync:
            torch.cuda.synchronize()
        start = time.perf_counter()
        run()
        if sync:
            torch.cuda.synchronize()
        times.append(1e3 * (time.perf_counter() - start))
    p90 = statistics.quantiles(times, n=10, method="inclusive")[-1] if repeats > 1 else times[0]
    return {"median_ms": statistics.median(times), "p90_ms": p90, "min_ms": min(times)}


@contextlib.contextmanager
def torch_threads(count: int | None) -> Iterator[int]:
    """Run the block with ``torch.set_num_threads(count)`` (None or 0: leave torch's setting), then restore it;
    yields the thread count in use."""
    before = torch.get_num_threads()
    if count:
        torch.set_num_threads(count)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
