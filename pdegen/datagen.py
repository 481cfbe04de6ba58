"""Dataset generation: random inputs, batched reference solves, an atomic HDF5 file.

Randomness is drawn per block of :data:`SEED_BLOCK` samples from a generator seeded by
``(seed, block index)``, so the same seed gives the same samples whatever the batch size or
device used to solve them.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from tqdm.auto import tqdm

from pdegen.io import DatasetWriter, load_samples, read_info
from pdegen.pdes import PDE

SEED_BLOCK = 64


def block_generator(seed: int, block: int) -> torch.Generator:
    """An independent CPU generator for one block of samples."""
    state = np.random.SeedSequence([seed, block]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


def draw_inputs(pde: PDE, seed: int, start: int, count: int) -> torch.Tensor:
    """The random inputs of samples ``start .. start + count - 1`` (``start`` a multiple of SEED_BLOCK)."""
    assert start % SEED_BLOCK == 0, "inputs are drawn in whole seed blocks"
    blocks = []
    for offset in range(0, count, SEED_BLOCK):
        size = min(SEED_BLOCK, count - offset)
        blocks.append(pde.sample_inputs(size, generator=block_generator(seed, (start + offset) // SEED_BLOCK)))
    return torch.cat(blocks)


def shard_range(num_samples: int, shard: int, num_shards: int) -> tuple[int, int]:
    """Samples ``[start, stop)`` of shard ``shard`` of ``num_shards``: contiguous whole seed blocks, so
    shards generated independently (e.g. a SLURM array job) concatenate to the unsharded file."""
    if num_shards < 1 or not 0 <= shard < num_shards:
        raise ValueError(f"--shard must be in 0..{num_shards - 1} for --num-shards {num_shards}, got {shard}")
    num_blocks = -(-num_samples // SEED_BLOCK)
    if num_shards > num_blocks:
        raise ValueError(f"{num_samples} samples make only {num_blocks} seed blocks of {SEED_BLOCK}: "
                         f"use at most {num_blocks} shards")
    first, last = shard * num_blocks // num_shards, (shard + 1) * num_blocks // num_shards
    return first * SEED_BLOCK, min(num_samples, last * SEED_BLOCK)


def generate_dataset(pde: PDE, num_samples: int, seed: int, output: str | Path, *, device: str = "cpu",
                     batch_size: int = 256, dtype: str = "float64", progress: bool = True,
                     shard: int = 0, num_shards: int = 1, overwrite: bool = False) -> dict[str, Any]:
    """Write solved samples of ``pde`` to ``output`` (an existing file only with ``overwrite``); returns
    timing figures.

    Without sharding the file holds all ``num_samples``; with ``num_shards > 1`` it holds the
    samples of :func:`shard_range` (attributes ``shard``, ``num_shards``, ``sample_start``,
    ``total_samples`` record which), and :func:`merge_shards` joins the shard files. Inputs are
    drawn on the CPU (block-seeded) and solved on ``device`` in batches of ``batch_size``
    samples (rounded up to whole seed blocks).
    """
    if num_samples < 1:
        raise ValueError(f"--num-samples must be at least 1, got {num_samples}")
    first, stop = shard_range(num_samples, shard, num_shards)
    batch_size = max(SEED_BLOCK, -(-batch_size // SEED_BLOCK) * SEED_BLOCK)
    start_time = time.perf_counter()
    solver = {key: value for key, value in pde.params().items() if key in pde.solver_params}
    attrs = {"seed": seed, "solver": f"{type(pde).__name__}.solve {solver}",
             "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
    if num_shards > 1:
        attrs.update(shard=shard, num_shards=num_shards, sample_start=first, total_samples=num_samples)
    count_here = stop - first
    with DatasetWriter(output, pde, count_here, attrs=attrs, dtype=dtype, overwrite=overwrite) as writer, \
            tqdm(total=count_here, desc=f"generating {pde.name}", unit="sample", disable=not progress) as bar:
        for start in range(first, stop, batch_size):
            count = min(batch_size, stop - start)
            writer.write(start - first, pde.solve(draw_inputs(pde, seed, start, count).to(device)))
            bar.update(count)
    seconds = time.perf_counter() - start_time
    return {"path": str(output), "num_samples": count_here, "seconds": seconds,
            "samples_per_second": count_here / seconds}


def merge_shards(paths: list[str | Path], output: str | Path, progress: bool = True,
                 overwrite: bool = False) -> dict[str, Any]:
    """Join the shard files of one generation run into the file an unsharded run writes.

    Checks that the shards share the PDE, seed and shard count and cover every sample once, and that
    ``output`` is none of them (not even with ``overwrite``).
    """
    inputs = {Path(p).resolve() for p in paths}
    if Path(output).resolve() in inputs:
        raise ValueError(f"the output {output} is one of the shards being merged: choose another output path")
    infos = sorted((read_info(p) for p in paths), key=lambda i: int(i.attrs.get("sample_start", -1)))
    if not infos:
        raise ValueError("merge needs at least one shard file")
    head = infos[0]
    expected = int(head.attrs.get("num_shards", 0))
    for info in infos:
        if "num_shards" not in info.attrs:
            raise ValueError(f"{info.path} is not a shard file (no 'num_shards' attribute)")
        same = (info.pde.physics() == head.pde.physics() and info.attrs["seed"] == head.attrs["seed"]
                and int(info.attrs["num_shards"]) == expected
                and int(info.attrs["total_samples"]) == int(head.attrs["total_samples"]))
        if not same:
            raise ValueError(f"{info.path} belongs to another generation run than {head.path} "
                             f"(PDE, seed, shard count or total differ)")
    shards = [int(i.attrs["shard"]) for i in infos]
    if shards != list(range(expected)):
        missing = sorted(set(range(expected)) - set(shards))
        raise ValueError(f"shards {missing} of {expected} are missing (or one is given twice): got {shards}")
    total = int(head.attrs["total_samples"])
    attrs = {k: v for k, v in head.attrs.items() if k in ("seed", "solver", "created")}
    with DatasetWriter(output, head.pde, total, attrs=attrs, dtype=str(_dtype_of(head)),
                       overwrite=overwrite) as writer:
        for info in tqdm(infos, desc="merging shards", unit="shard", disable=not progress):
            data, _ = load_samples(info.path, dtype=torch.float64)
            writer.write(int(info.attrs["sample_start"]), data)
    return {"path": str(output), "num_samples": total, "num_shards": expected}


def _dtype_of(info) -> np.dtype:
    with h5py.File(info.path, "r") as f:
        return f[info.pde.channels[0]].dtype
