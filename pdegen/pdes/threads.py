"""CPU thread control for the batched solvers.

On small per-sample tensors torch's intra-op threads spin-wait on each other, which made solves on
a loaded machine many times slower (docs/measurements.md); solvers therefore run torch with few
threads and split batches themselves.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
from collections.abc import Callable, Iterator

import torch


@contextlib.contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """Run the block with ``count`` torch intra-op threads (None: unchanged), then restore them.

    A process-wide setting: other Python threads meanwhile run with it too.
    """
    previous = torch.get_num_threads()
    if count is not None:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def usable_cpus() -> int:
    """The CPU cores this process may run on (its affinity mask on Linux)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@contextlib.contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Run OpenBLAS single-threaded inside the block, then restore its thread counts.

    The banded Cholesky at these sizes gains nothing from BLAS threads, whose hand-offs made a 128²
    solve hundreds of times slower (docs/measurements.md; and two pool workers with two threads
    each oversubscribe the cores).  Finds the loaded OpenBLAS builds (numpy's, scipy's) in
    /proc/self/maps, as threadpoolctl does; a no-op elsewhere or for other BLAS libraries.
    Changes a process-wide setting: BLAS calls from other Python threads meanwhile also run
    single-threaded.
    """
    libs = _openblas_thread_controls()
    previous = [get() for get, _ in libs]
    for _, set_threads in libs:
        set_threads(1)
    try:
        yield
    finally:
        for (_, set_threads), count in zip(libs, previous, strict=True):
            set_threads(count)


@functools.cache
def _openblas_thread_controls() -> list[tuple[Callable[[], int], Callable[[int], None]]]:
    try:
        with open("/proc/self/maps") as maps:
            lines = [line for line in maps if "openblas" in line.lower()]
        paths = sorted({line.split(maxsplit=5)[-1].strip() for line in lines})
    except OSError:
        return []
    controls = []
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix, suffix in (("", ""), ("scipy_", ""), ("scipy_", "64_")):
            get = f"{prefix}openblas_get_num_threads{suffix}"
            set_ = f"{prefix}openblas_set_num_threads{suffix}"
            if hasattr(lib, get) and hasattr(lib, set_):
                controls.append((getattr(lib, get), getattr(lib, set_)))
    return controls
