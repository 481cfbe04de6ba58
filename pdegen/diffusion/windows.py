"""Trajectories from windows of k consecutive states: autoregressive rollouts and SDA's local-score
composition (all-at-once sampling).

Trajectories are pdegen's layout ``(B, C, T, *space)`` (states on axis 2); a window is the same layout
with k states. A rollout predicts P = k − C states per window from the C states before them, so a
trajectory of T states from C₀ given ones takes ``num_windows`` windows.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from pdegen import progress

from .edm import Denoiser, per_sample_sigma


def num_windows(num_states: int, window: int, history: int, given: int | None = None) -> int:
    """Windows an autoregressive rollout samples for ``num_states`` states from ``given`` initial ones (default
    ``history``), each window of ``window`` states conditioned on the last ``history`` states (P = window − history
    new ones; with fewer than ``history`` states known, the first window predicts window − given)."""
    given = history if given is None else given
    check_split(window, history)
    if given >= num_states:
        return 0
    first = window - min(given, history)
    return 1 + math.ceil(max(0, num_states - given - first) / (window - history))


def check_split(window: int, history: int) -> None:
    """Refuse a P|C split that predicts nothing or conditions on a negative number of states."""
    if not 0 <= history < window:
        raise ValueError(f"a window of {window} states can condition on 0 to {window - 1} states, "
                         f"got history={history}")


def autoregressive_rollout(sample_window: Callable[[Tensor, int], Tensor], initial: Tensor, num_states: int,
                           window: int, history: int) -> Tensor:
    """A trajectory ``(B, C, num_states, *space)`` from ``initial`` states ``(B, C, C₀, *space)`` (C₀ may be 0),
    window by window: ``sample_window(known, start)`` gets the last c = min(states known, ``history``) states
    known so far ``(B, C, c, *space)`` and the index in the trajectory of the window's first state, and returns
    a window ``(B, C, window, *space)`` whose first c states are conditioned on them; its other states are
    appended (a window reaching past ``num_states`` is cut). The given states are kept exactly (the first c
    states of each window are dropped, never copied back)."""
    check_split(window, history)
    states = [initial]
    known = initial.shape[2]
    total = num_windows(num_states, window, history, known)
    for index in range(total):
        progress.note(f"window {index + 1}/{total}")
        c = min(known, history)
        trajectory = torch.cat(states, dim=2)
        sampled = sample_window(trajectory[:, :, known - c:known], known - c)
        if sampled.shape[2] != window:
            raise ValueError(f"sample_window returned {sampled.shape[2]} states, expected a window of {window}")
        new = sampled[:, :, c:c + num_states - known].to(initial.dtype)
        states.append(new)
        known += new.shape[2]
    return torch.cat(states, dim=2)


class LocalScoreDenoiser:
    """SDA's all-at-once denoiser of a whole trajectory ``(B, C, L, *space)`` composed from a denoiser of
    windows of ``window`` = 2w + 1 states (Rozet & Louppe 2023): state i takes its denoised value (its
    score, D = x + σ² ∇ log p) from the window centred on it, clipped to the trajectory (the first and
    last w states from the first and last windows). Exact when the noisy process is Markov of order w;
    its error falls as the window grows. One call evaluates all L − k + 1 windows, ``batch_size`` at a time.
    """

    def __init__(self, window_denoiser: Denoiser, window: int, batch_size: int | None = None) -> None:
        if window < 1 or window % 2 == 0:
            raise ValueError(f"the local-score window must be an odd number of states 2w + 1, got {window}")
        self.denoiser, self.window, self.batch_size = window_denoiser, int(window), batch_size
        self.sigma_data = getattr(window_denoiser, "sigma_data", 1.0)

    def __call__(self, x: Tensor, sigma: Tensor | float) -> Tensor:
        b, c, length = x.shape[:3]
        k, w = self.window, self.window // 2
        if length < k:
            raise ValueError(f"a trajectory of {length} states is shorter than the window of {k}")
        sigma = per_sample_sigma(sigma, x)
        count = length - k + 1
        windows = x.unfold(2, k, 1).movedim(-1, 3)  # (B, C, count, k, *space)
        windows = windows.movedim(2, 1).reshape(b * count, c, k, *x.shape[3:])
        sigmas = sigma.repeat_interleave(count)
        size = self.batch_size or len(windows)
        denoised = torch.cat([self.denoiser(part, s) for part, s in zip(windows.split(size), sigmas.split(size))])
        denoised = denoised.reshape(b, count, c, k, *x.shape[3:])
        index = torch.arange(length, device=x.device)
        start = (index - w).clamp(0, count - 1)
        return denoised[:, start, :, index - start].movedim(0, 2)  # advanced indices first: (L, B, C, *space)
