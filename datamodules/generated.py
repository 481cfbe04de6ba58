"""Training data a student makes instead of reading: fresh unit noise (a data-free student's batches) and a
frozen teacher's (noise, sample) pairs, cached to HDF5 under the settings that made them.

A :class:`~pdegen.modules.GeneratorModule` hands such a dataset to the DataModule through
``training_data``; the DataModule serves it in its batches and its seeded shuffle, which tells the
dataset the epoch (``set_epoch``), and keeps serving the family's held-out samples for evaluation.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor, nn
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from pdegen.io import read_arrays, write_arrays_atomic
from pdegen.seeding import seeded_generator


def teacher_fingerprint(module: nn.Module) -> str:
    """SHA-1 of a module's state (names and bytes): the ``teacher`` setting of :class:`TeacherPairs`, so that
    pairs cached from another teacher are never reused."""
    return tensor_fingerprint(module.state_dict())


def tensor_fingerprint(tensors: dict[str, Tensor]) -> str:
    """SHA-1 of named tensors (names and bytes)."""
    digest = hashlib.sha1()
    for name, tensor in sorted(tensors.items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


class GaussianNoise(Dataset):
    """``size`` standard-normal tensors of ``shape`` (float32) per epoch, fresh each epoch: item ``i`` of
    epoch ``e`` is drawn from (``seed``, e, i) alone, so a resumed run, any batching and any number of
    processes (each serving its share of the indices) see the same noise."""

    def __init__(self, size: int, shape: Sequence[int], seed: int = 0) -> None:
        if size < 1:
            raise ValueError(f"size must be >= 1, got {size}")
        self.size, self.shape, self.seed, self.epoch = int(size), tuple(shape), seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> Tensor:
        return torch.randn(self.shape, generator=seeded_generator("noise", self.seed, self.epoch, int(index)))


class TeacherPairs(Dataset):
    """``count`` pairs (ε, make(ε)) of float32 tensors, ε standard normal of ``shape`` and ``make`` a frozen
    teacher's deterministic sampler (normalised units), served as ``(noise, sample)`` items. A conditional
    teacher's pairs are (ε, make(ε, c)): ``conditions(round)`` gives each round's per-pair conditions ``(count,
    ...)`` (e.g. history windows drawn from the training data), and their fingerprint joins the settings.

    Each round's pairs are made once and cached in ``<directory>/<name>_round<k>.h5`` (atomically), with
    ``settings`` (which must name the teacher, e.g. a fingerprint of its weights, the sampler and its steps)
    as the file's attributes: a file made with other settings is made again, never reused. The noise is
    drawn from the settings, the count and the round alone. ``refresh_every_n_epochs`` > 0 moves to a new
    round (fresh pairs) every that many epochs; 0 keeps round 0.

    Args:
        make: ``noise (b, *shape) float64 [, conditions (b, ...)] -> samples (b, *shape)``, called in chunks of
            ``batch_size``.
        show_progress: a progress bar while making pairs (on one process of several).
    """

    def __init__(self, make: Callable[..., Tensor], shape: Sequence[int], count: int, settings: dict[str, Any],
                 directory: str | Path, name: str = "pairs", batch_size: int = 64, refresh_every_n_epochs: int = 0,
                 show_progress: bool = True, conditions: Callable[[int], Tensor] | None = None) -> None:
        if count < 1 or refresh_every_n_epochs < 0:
            raise ValueError(f"count must be >= 1 and refresh_every_n_epochs >= 0, got {count} and "
                             f"{refresh_every_n_epochs}")
        self.make, self.shape, self.count = make, tuple(shape), int(count)
        self.settings = {**settings, "name": name, "count": self.count, "shape": list(self.shape)}
        self.directory, self.name, self.batch_size = Path(directory), name, batch_size
        self.refresh_every_n_epochs, self.show_progress = refresh_every_n_epochs, show_progress
        self.conditions = conditions
        self.round = -1
        self.noise = self.sample = torch.empty(0)

    def path(self, round_: int) -> Path:
        return self.directory / f"{self.name}_round{round_}.h5"

    def set_epoch(self, epoch: int) -> None:
        every = self.refresh_every_n_epochs
        self.load(epoch // every if every else 0)

    def load(self, round_: int = 0) -> TeacherPairs:
        """The pairs of round ``round_``: read from the cache when its settings match, else made and cached."""
        if round_ == self.round:
            return self
        path, settings = self.path(round_), {**self.settings, "round": round_}
        conditions = None if self.conditions is None else self.conditions(round_)
        if conditions is not None:
            if len(conditions) != self.count:
                raise ValueError(f"conditions({round_}) gave {len(conditions)} conditions for {self.count} pairs")
            settings["conditions"] = tensor_fingerprint({"conditions": conditions})
        if path.is_file():
            arrays, attrs = read_arrays(path)
            if {k: attrs.get(k) for k in settings} == settings:
                return self._hold(arrays, round_)
            rank_zero_info(f"{path} was made with other settings: making it again")
        noise = torch.randn(self.count, *self.shape, generator=seeded_generator("pairs", settings), dtype=torch.float64)
        chunks = [noise.split(self.batch_size)] + ([] if conditions is None else [conditions.split(self.batch_size)])
        with torch.inference_mode(False), torch.no_grad():
            samples = [self.make(*chunk).float().cpu()
                       for chunk in tqdm(list(zip(*chunks)), desc=f"{self.name} of the teacher", unit="batch",
                                         disable=not self.show_progress)]
        arrays = {"noise": noise.float(), "sample": torch.cat(samples)}
        if not torch.isfinite(arrays["sample"]).all():
            raise FloatingPointError("the teacher produced non-finite samples: check its checkpoint")
        write_arrays_atomic(path, arrays, settings)
        return self._hold(arrays, round_)

    def _hold(self, arrays: dict[str, Tensor], round_: int) -> TeacherPairs:
        self.noise, self.sample = arrays["noise"].float(), arrays["sample"].float()
        self.round = round_
        return self

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        if self.round < 0:
            self.load(0)
        return self.noise[index], self.sample[index]
