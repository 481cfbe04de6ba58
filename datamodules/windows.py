"""Windows of k consecutive states cut from trajectories: what a conditional diffusion model trains on."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.data import Dataset

from .samples import FileSamples, TensorSamples


class TrajectoryWindows(Dataset):
    """Every window of ``window`` consecutive states of ``trajectories`` ``(N, C, T, *space)`` (a tensor, or a
    split of a dataset file: :mod:`datamodules.samples`, whose windows are read when asked), served as
    ``(C, window, *space)``: N (T − window + 1) items, item i the window starting at state i mod (T − window + 1)
    of trajectory i // (T − window + 1). Views, not copies (memory is that of the trajectories)."""

    def __init__(self, trajectories: Tensor | TensorSamples | FileSamples, window: int) -> None:
        samples = TensorSamples(trajectories) if isinstance(trajectories, Tensor) else trajectories
        shape = samples.sample_shape  # (C, T, *space)
        if len(shape) < 3:
            raise ValueError(f"trajectories must be (N, C, T, *space), got samples of shape {tuple(shape)}")
        if not 1 <= window <= shape[1]:
            raise ValueError(f"a window of {window} states does not fit trajectories of {shape[1]} "
                             "states: lower the model's `window` or generate longer trajectories (num_states)")
        self.trajectories, self.window = samples, int(window)
        self.per_trajectory = shape[1] - self.window + 1

    def __len__(self) -> int:
        return len(self.trajectories) * self.per_trajectory

    def __getitem__(self, index: int) -> Tensor:
        trajectory, start = divmod(int(index), self.per_trajectory)
        return self.trajectories.states(trajectory, start, start + self.window)

    def take(self, indices: Tensor) -> Tensor:
        """The items at ``indices``, stacked: ``(len(indices), C, window, *space)`` (a copy)."""
        return torch.stack([self[int(i)] for i in indices])


def random_windows(trajectories: Tensor, window: int, generator: torch.Generator | None = None) -> Tensor:
    """One window per trajectory ``(B, C, window, *space)`` at a start drawn uniformly from ``generator``."""
    count = trajectories.shape[2] - window + 1
    starts = torch.randint(0, count, (len(trajectories),), generator=generator, device=trajectories.device)
    index = starts[:, None] + torch.arange(window, device=trajectories.device)  # (B, window)
    index = index.reshape(len(trajectories), 1, window, *([1] * (trajectories.ndim - 3)))
    return trajectories.gather(2, index.expand(-1, trajectories.shape[1], -1, *trajectories.shape[3:]))
