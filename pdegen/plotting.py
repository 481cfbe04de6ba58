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


def forecast_figure(truth: Tensor, members: Tensor, dt: float, history: int, channel: str = "u",
                    num_snapshots: int = 5):
    """One trajectory's forecast against the truth, first channel: ``truth`` ``(C, T, *space)``, ``members``
    ``(M, C, T, *space)``. One space: space–time images (x across, time t = n·dt up; a line where the forecast
    starts, after ``history`` given states) of the truth, each member and the first member's error. Two: the
    fields at ``num_snapshots`` times (rows: truth, members, error). The fields share one colour scale."""
    truth = truth[0].detach().cpu().double().numpy()
    fields = {"truth": truth, **{f"member {m + 1}": member[0].detach().cpu().double().numpy()
                                 for m, member in enumerate(members)}}
    error = fields["member 1"] - truth
    limit = np.abs(error).max()
    styles = {False: {"cmap": "viridis", "vmin": truth.min(), "vmax": truth.max()},
              True: {"cmap": "RdBu_r", "vmin": -limit, "vmax": limit}}  # by "is this the error panel"
    num_states = truth.shape[0]
    if truth.ndim == 2:
        fig, axes = plt.subplots(1, len(fields) + 1, figsize=(2.6 * (len(fields) + 1), 4.2), squeeze=False,
                                 constrained_layout=True)
        extent = (0, truth.shape[1], 0, (num_states - 1) * dt)
        for ax, (name, field) in zip(axes[0], [*fields.items(), ("error, member 1", error)], strict=True):
            image = ax.imshow(field, origin="lower", aspect="auto", extent=extent,
                              **styles[name.startswith("error")])
            ax.axhline((history - 1) * dt, color="w", lw=0.8, ls="--")
            ax.set_title(name, fontsize=9)
            ax.set_xlabel("x (grid points)", fontsize=8)
            fig.colorbar(image, ax=ax, fraction=0.05, pad=0.02)
        axes[0, 0].set_ylabel(f"time ({channel})", fontsize=8)
        return fig
    times = np.linspace(history - 1, num_states - 1, num_snapshots).round().astype(int)
    rows = [*fields.items(), ("error, member 1", error)]
    fig, axes = plt.subplots(len(rows), len(times), figsize=(2.0 * len(times), 2.0 * len(rows)), squeeze=False,
                             constrained_layout=True)
    for r, (name, field) in enumerate(rows):
        for c, n in enumerate(times):
            ax = axes[r, c]
            image = ax.imshow(field[n].T, origin="lower", **styles[name.startswith("error")])
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"t = {n * dt:.3g}", fontsize=8)
        axes[r, 0].set_ylabel(name, fontsize=8)
        fig.colorbar(image, ax=axes[r, -1], fraction=0.05, pad=0.02)
    return fig


def correlation_figure(curves: dict[str, Sequence[float]], dt: float, threshold: float = 0.8, ax=None):
    """Per-state correlation with the truth against lead time (state i at t = i·dt), one line per method, the
    high-correlation threshold dashed; drawn on ``ax`` (a panel of a larger figure) or on a new figure."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6.0, 3.6), constrained_layout=True)
    for name, curve in curves.items():
        ax.plot(np.arange(len(curve)) * dt, curve, label=name, lw=1.2)
    ax.axhline(threshold, color="k", ls="--", lw=0.8)
    ax.set(xlabel="lead time", ylabel="correlation with the truth", ylim=(-0.2, 1.02))
    ax.legend(fontsize=7)
    return ax.figure


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
