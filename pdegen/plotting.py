"""Matplotlib figures of samples and their residual maps (headless: Agg backend)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from torch import Tensor  # noqa: E402


def sample_figure(rows: dict[str, tuple[Tensor, Tensor]], channels: Sequence[str], num_columns: int = 4):
    """A grid of 2-D fields: for each named set (e.g. "generated", "ground truth"), ``num_columns``
    samples per channel plus the map of log10 |residual| (max over residual channels, floored at
    1e-16). Each channel, and the residual, shares one colour scale across all sets, so rows compare.

    ``rows`` maps a set's name to ``(samples (B, C, H, W), residual (B, r, H, W))``.
    """
    num_columns = min(num_columns, *(len(s) for s, _ in rows.values()))
    residual_name = "log10|residual|"
    fields = {}  # (set, panel) -> (num_columns, H, W) numpy
    for name, (samples, residual) in rows.items():
        for c, channel in enumerate(channels):
            fields[name, channel] = samples[:num_columns, c].detach().cpu().double().numpy()
        log_residual = residual[:num_columns].detach().abs().amax(dim=1).clamp_min(1e-16).log10()
        fields[name, residual_name] = log_residual.cpu().double().numpy()
    panels = [*channels, residual_name]
    limits = {p: (min(fields[n, p].min() for n in rows), max(fields[n, p].max() for n in rows)) for p in panels}
    keys = [(name, panel) for name in rows for panel in panels]
    fig, axes = plt.subplots(len(keys), 1, figsize=(2.1 * num_columns, 2.0 * len(keys)), squeeze=False,
                             constrained_layout=True)
    for ax, (name, panel) in zip(axes[:, 0], keys, strict=True):
        vmin, vmax = limits[panel]
        cmap = plt.get_cmap("magma" if panel == residual_name else "viridis").with_extremes(bad="white")
        image = ax.imshow(_side_by_side(fields[name, panel]), origin="lower", cmap=cmap, vmin=vmin, vmax=vmax)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_frame_on(False)
        fig.colorbar(image, ax=ax, fraction=0.02, pad=0.01)
        ax.set_ylabel(f"{name}\n{panel}", fontsize=8)
    return fig


def _side_by_side(fields: np.ndarray) -> np.ndarray:
    """Fields ``(n, H, W)`` as one image ``(W, n·H + gaps)`` (x across, y up), a blank (NaN) column between:
    one image per row draws far faster than one axes per sample."""
    gap = np.full((max(1, fields.shape[1] // 12), fields.shape[2]), np.nan)
    pieces = [piece for field in fields for piece in (field, gap)][:-1]
    return np.concatenate(pieces, axis=0).T


def spectrum_figure(spectra: dict[str, tuple[Tensor, Tensor]], channels: Sequence[str]):
    """Log-log radially averaged power spectra, one panel per channel, one line per named set.

    ``spectra`` maps a set's name to ``(wavenumbers (K,), mean power (C, K))``; k = 0 (the mean) is
    left out of the axes."""
    fig, axes = plt.subplots(1, len(channels), figsize=(3.4 * len(channels), 2.8), squeeze=False,
                             constrained_layout=True)
    for c, channel in enumerate(channels):
        ax = axes[0, c]
        for name, (k, power) in spectra.items():
            ax.loglog(k[1:].cpu().numpy(), power[c, 1:].detach().cpu().double().numpy(), label=name)
        ax.set_title(channel, fontsize=9)
        ax.set_xlabel("wavenumber k (grid units)", fontsize=8)
    axes[0, 0].set_ylabel("power", fontsize=8)
    axes[0, 0].legend(fontsize=7)
    return fig


def save_figure(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    close_figure(fig)
    return path


def close_figure(fig) -> None:
    plt.close(fig)


def figure_to_array(fig) -> np.ndarray:
    """RGB array ``(H, W, 3)`` of a drawn figure (for loggers that take images)."""
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
