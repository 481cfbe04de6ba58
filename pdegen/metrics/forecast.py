"""Metrics of (probabilistic) PDE trajectory forecasts: per-state correlation and RMSD, high-correlation time,
ensemble CRPS, spread-skill ratio and energy-spectrum error. Plain torch functions, float64 internally.

Layout: a trajectory batch is ``(B, C, T, *space)`` (B trajectories, C channels, T states; ``space = (R,)`` for
Kuramoto-Sivashinsky, ``(H, W)`` for Kolmogorov flow); an ensemble is ``(B, M, C, T, *space)`` (M members per
trajectory); the truth is ``(B, C, T, *space)``. Values are in the fields' physical units.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from pdegen.metrics.spectrum import radial_power_spectrum

__all__ = ["crps_ensemble", "energy_spectrum", "high_correlation_time", "pooled_spread_skill", "spectrum_error",
           "spread_skill_ratio", "spread_skill_terms", "state_correlation", "state_rmsd"]

HIGH_CORRELATION_CONVENTIONS = ("per_trajectory", "mean_curve")


def _check_trajectories(prediction: Tensor, truth: Tensor, name: str) -> None:
    if prediction.shape != truth.shape:
        raise ValueError(f"{name}: prediction {tuple(prediction.shape)} and truth {tuple(truth.shape)} differ in shape")
    if truth.ndim < 4:
        raise ValueError(f"{name}: expected trajectories (B, C, T, *space), got shape {tuple(truth.shape)}")


def _per_state(x: Tensor) -> Tensor:
    """``(B, C, T, *space)`` -> ``(B, T, C * prod(space))`` in float64."""
    return x.double().transpose(1, 2).flatten(2)


def state_correlation(prediction: Tensor, truth: Tensor) -> Tensor:
    """Pearson correlation of ``prediction`` and ``truth`` ``(B, C, T, *space)`` at each state: ``(B, T)``.

    Each channel of each state is centred by its own spatial mean; the result is the cosine of the angle between
    the centred prediction and truth, both flattened over channels and space (so it is invariant to per-state,
    per-channel offsets and to a positive common scale). Unitless, in [-1, 1]. Where either centred field is
    zero (constant fields; zero up to float64 rounding, ``norm <= 64 eps max|x| sqrt(n)``) the correlation is
    defined as 0, never NaN.
    """
    _check_trajectories(prediction, truth, "state_correlation")
    spatial = tuple(range(3, truth.ndim))
    p, t = prediction.double(), truth.double()
    p_centred = _per_state(p - p.mean(spatial, keepdim=True))
    t_centred = _per_state(t - t.mean(spatial, keepdim=True))
    n = p_centred.shape[-1]
    eps = torch.finfo(torch.float64).eps
    p_norm, t_norm = p_centred.norm(dim=-1), t_centred.norm(dim=-1)
    p_tol = 64 * eps * math.sqrt(n) * _per_state(p).abs().amax(-1)
    t_tol = 64 * eps * math.sqrt(n) * _per_state(t).abs().amax(-1)
    degenerate = (p_norm <= p_tol) | (t_norm <= t_tol)
    denominator = torch.where(degenerate, torch.ones_like(p_norm), p_norm * t_norm)
    correlation = (p_centred * t_centred).sum(-1) / denominator
    return torch.where(degenerate, torch.zeros_like(correlation), correlation.clamp(-1.0, 1.0))


def state_rmsd(prediction: Tensor, truth: Tensor) -> Tensor:
    """Root-mean-square difference of ``prediction`` and ``truth`` ``(B, C, T, *space)`` at each state: ``(B, T)``.

    ``sqrt(mean over channels and space of (prediction - truth)²)``, in the fields' units.
    """
    _check_trajectories(prediction, truth, "state_rmsd")
    return _per_state(prediction.double() - truth.double()).square().mean(-1).sqrt()


def _leading_count(curves: Tensor, threshold: float) -> Tensor:
    """Number of leading entries ``> threshold`` along the last dim (NaN counts as a crossing)."""
    return (curves > threshold).long().cumprod(-1).sum(-1)


def high_correlation_time(correlation: Tensor, dt: float, threshold: float = 0.8, *, convention: str) -> Tensor:
    """High-correlation time of correlation curves ``(B, T)`` (e.g. from :func:`state_correlation`), float64.

    State ``n`` is at time ``n * dt`` (``dt`` in the trajectories' time units, > 0). A curve's high-correlation
    time is the time of its first state with correlation ``<= threshold``, i.e. ``dt`` times the number of leading
    states (from state 0) with correlation ``> threshold``. (If state ``n`` lies at ``(n + 1) dt``, e.g. state 0 is
    the first predicted step, the same number is the time of the last state of that leading run.) A curve that
    never crosses gives ``T * dt``, then only a lower bound of the true time. NaN counts as a crossing. The curves
    are compared in float64 (a float32 0.8 is slightly above 0.8).

    ``convention`` (keyword, required):

    - ``"per_trajectory"`` (PDE-Refiner, Lippe et al. 2023): the time of each curve, ``(B,)``; the reported
      number is its mean over trajectories (``.mean()``).
    - ``"mean_curve"`` (Shysheya et al. 2024): the curves are first averaged over trajectories, then the time of
      the mean curve, a 0-d tensor.

    On the same curves the two generally differ: the mean of the first crossings is not the first crossing of the
    mean curve (a curve that stays high can hold the mean above the threshold after others have crossed, and one
    early dip can pull the mean below it before most curves cross).
    """
    if convention not in HIGH_CORRELATION_CONVENTIONS:
        raise ValueError(f"unknown convention {convention!r}; choose one of {HIGH_CORRELATION_CONVENTIONS}")
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must lie in (0, 1), got {threshold}")
    if not (math.isfinite(dt) and dt > 0):
        raise ValueError(f"dt must be a positive finite number, got {dt}")
    if correlation.ndim != 2 or correlation.shape[0] == 0 or correlation.shape[1] == 0:
        raise ValueError(f"correlation must be a non-empty (B, T) tensor, got shape {tuple(correlation.shape)}")
    curves = correlation.double()
    if convention == "mean_curve":
        curves = curves.mean(0)
    return _leading_count(curves, threshold).double() * dt


def _pointwise_crps(ensemble: Tensor, truth: Tensor, fair: bool) -> Tensor:
    """CRPS at each point: ensemble ``(B, M, ...)``, truth ``(B, ...)`` -> ``(B, ...)``, float64."""
    members = ensemble.shape[1]
    x, y = ensemble.double(), truth.double()
    skill = (x - y.unsqueeze(1)).abs().mean(1)
    # sum_{i,j} |x_i - x_j| = 2 sum_i (2i - M + 1) x_(i) over the ascending order statistics x_(0..M-1).
    weights = 2 * torch.arange(members, dtype=torch.float64, device=x.device) - members + 1
    weights = weights.reshape(1, members, *([1] * (x.ndim - 2)))
    half_pair_sum = (weights * x.sort(dim=1).values).sum(1)
    denominator = members * (members - 1) if fair else members**2
    return skill - half_pair_sum / denominator


def crps_ensemble(ensemble: Tensor, truth: Tensor, fair: bool = True, per_state: bool = False) -> Tensor:
    """Continuous ranked probability score of an ensemble's empirical distribution, pointwise, averaged: ``(B,)``.

    ``ensemble`` ``(B, M, ...)``, ``truth`` ``(B, ...)`` (same trailing shape). At every point
    ``CRPS = E|X - y| - 1/2 E|X - X'|`` with ``X, X'`` members and ``y`` the truth, in the fields' units (lower is
    better; for M = 1 it is ``|x - y|``). ``fair=True`` uses the estimator unbiased for finite M (Ferro 2014):
    ``E|X - X'| = sum_{i != j} |x_i - x_j| / (M (M - 1))``, needs M >= 2; ``fair=False`` divides by ``M²`` (the
    CRPS of the empirical distribution itself). The pair term is computed in O(M log M) per point by sorting.

    Averaged over all non-batch entries -> ``(B,)``; ``per_state=True`` takes trajectory ensembles
    ``(B, M, C, T, *space)`` and averages over channels and space only -> ``(B, T)``.
    """
    if ensemble.ndim < 2 or truth.shape != ensemble.shape[:1] + ensemble.shape[2:]:
        raise ValueError(f"crps_ensemble: ensemble {tuple(ensemble.shape)} must be (B, M, ...) with truth (B, ...), "
                         f"got truth {tuple(truth.shape)}")
    if fair and ensemble.shape[1] < 2:
        raise ValueError("crps_ensemble: the fair estimator needs M >= 2 members (use fair=False for M = 1)")
    if ensemble.shape[1] < 1:
        raise ValueError("crps_ensemble: the ensemble has no members")
    if per_state and ensemble.ndim < 5:
        raise ValueError(f"crps_ensemble(per_state=True) needs (B, M, C, T, *space), got {tuple(ensemble.shape)}")
    crps = _pointwise_crps(ensemble, truth, fair)
    if per_state:
        return _per_state(crps).mean(-1)
    return crps.flatten(1).mean(-1)


def spread_skill_terms(ensemble: Tensor, truth: Tensor) -> tuple[Tensor, Tensor]:
    """What :func:`spread_skill_ratio` pools, per trajectory and state ``(B, T)``: the mean over channels and space
    of the unbiased (M - 1) ensemble variance, and of the squared error of the ensemble mean. Ensembles
    ``(B, M, C, T, *space)`` (M >= 2), truth ``(B, C, T, *space)``."""
    if ensemble.ndim < 5 or truth.shape != ensemble.shape[:1] + ensemble.shape[2:]:
        raise ValueError(f"spread_skill_ratio: expected ensemble (B, M, C, T, *space) and truth (B, C, T, *space), "
                         f"got {tuple(ensemble.shape)} and {tuple(truth.shape)}")
    if ensemble.shape[1] < 2:
        raise ValueError("spread_skill_ratio needs M >= 2 members")
    x, y = ensemble.double(), truth.double()
    return _per_state(x.var(1, correction=1)).mean(-1), _per_state(x.mean(1) - y).square().mean(-1)


def pooled_spread_skill(variance: Tensor, squared_error: Tensor, members: int) -> Tensor:
    """``sqrt((M + 1) / M) * spread / skill`` with spread² and skill² the means of :func:`spread_skill_terms`'
    ``variance`` and ``squared_error`` over dim 0 (e.g. trajectories; pass them flattened to pool everything)."""
    return math.sqrt((members + 1) / members) * (variance.mean(0) / squared_error.mean(0)).sqrt()


def spread_skill_ratio(ensemble: Tensor, truth: Tensor) -> Tensor:
    """Spread-skill ratio of trajectory ensembles ``(B, M, C, T, *space)`` against ``truth`` ``(B, C, T, *space)``.

    Per state ``(T,)``: ``spread = sqrt(mean over B, C, space of the unbiased (M - 1) ensemble variance)``,
    ``skill = sqrt(mean over B, C, space of (ensemble mean - truth)²)`` and
    ``ratio = sqrt((M + 1) / M) * spread / skill`` (Fortin et al. 2014: for an ensemble whose members and truth are
    exchangeable draws of one distribution, ``E skill² = (1 + 1/M) E spread²``, so a calibrated ensemble gives
    about 1; < 1 is under-dispersed/over-confident, > 1 over-dispersed). Unitless; needs M >= 2 (``inf`` where
    the skill is 0, NaN where both are). :func:`spread_skill_terms` and :func:`pooled_spread_skill` are its two
    halves, for accumulating over batches.
    """
    return pooled_spread_skill(*spread_skill_terms(ensemble, truth), ensemble.shape[1])


def energy_spectrum(x: Tensor, spatial_dims: int) -> tuple[Tensor, Tensor]:
    """Energy per integer wavenumber of periodic fields ``x`` ``(..., *space)``: ``(k (K,), E (..., K))``, float64.

    ``spatial_dims=1`` (``space = (R,)``): ``E_k = c_k |x̂_k|² / R²`` from ``torch.fft.rfft`` for
    ``k = 0..R//2`` (grid-index units, cycles per domain), ``c_k = 2`` for the interior modes that stand for
    both ``±k`` and 1 for ``k = 0`` and the Nyquist mode of even R. ``spatial_dims=2`` (``(H, W)``): the shell
    sums of :func:`pdegen.metrics.spectrum.radial_power_spectrum`. In both, by Parseval ``sum_k E_k = mean(x²)``
    over space (no 1/2 factor), and a cosine of integer wavenumber n puts all its energy in bin n.
    """
    if spatial_dims == 2:
        if x.ndim < 2:
            raise ValueError(f"energy_spectrum: 2-D fields need (..., H, W), got shape {tuple(x.shape)}")
        return radial_power_spectrum(x)
    if spatial_dims != 1:
        raise ValueError(f"energy_spectrum: spatial_dims must be 1 or 2, got {spatial_dims}")
    if x.ndim < 1:
        raise ValueError("energy_spectrum: 1-D fields need (..., R)")
    resolution = x.shape[-1]
    energy = torch.fft.rfft(x.double(), dim=-1).abs().square() / resolution**2
    num_modes = energy.shape[-1]
    weights = torch.full((num_modes,), 2.0, dtype=torch.float64, device=x.device)
    weights[0] = 1.0
    if resolution % 2 == 0:
        weights[-1] = 1.0
    return torch.arange(num_modes, device=x.device), energy * weights


def spectrum_error(prediction: Tensor, truth: Tensor, spatial_dims: int, k_min: int = 1, k_max: int | None = None,
                   floor: float = 1e-12) -> Tensor:
    """Log energy-spectrum error per state ``(T,)``: ``mean over k of |log(E_pred(k) / E_true(k))|``, unitless.

    ``prediction`` is ``(B, C, T, *space)`` or an ensemble ``(B', M, C, T, *space)``; ``truth`` is
    ``(B, C, T, *space)`` (batch sizes may differ). At each state the :func:`energy_spectrum` of each field is
    summed over channels (the total energy, e.g. kinetic energy for velocity channels) and averaged over the batch
    (and the members) before the log ratio, so it compares the mean spectra, not per-sample ones. The mean is over
    wavenumbers ``k_min <= k <= k_max`` (default: all but k = 0, the spatial mean, whose energy is often ~0 and
    would only add noise; ``k_max=None`` is the largest bin). ``log(0)`` is guarded by flooring both spectra at
    ``floor`` times the truth's total energy at that state (a relative floor of 1e-12 caps one bin's term at
    about 27.6; bins where both spectra lie below it contribute 0). The caller averages over T for a scalar.
    """
    if truth.ndim != 3 + spatial_dims:
        raise ValueError(f"spectrum_error: truth must be (B, C, T, *space) with {spatial_dims} spatial dims, "
                         f"got {tuple(truth.shape)}")
    if prediction.ndim not in (truth.ndim, truth.ndim + 1) or prediction.shape[-(truth.ndim - 1):] != truth.shape[1:]:
        raise ValueError(f"spectrum_error: prediction {tuple(prediction.shape)} must be (B, C, T, *space) or "
                         f"(B, M, C, T, *space) matching truth {tuple(truth.shape)} in C, T and space")
    if floor <= 0:
        raise ValueError(f"spectrum_error: floor must be positive, got {floor}")
    _, pred_spectrum = energy_spectrum(prediction, spatial_dims)
    _, true_spectrum = energy_spectrum(truth, spatial_dims)
    # (..., C, T, K): sum over channels, average over the leading batch (and member) dims -> (T, K)
    pred_spectrum = pred_spectrum.sum(-3).flatten(0, -3).mean(0)
    true_spectrum = true_spectrum.sum(-3).flatten(0, -3).mean(0)
    num_bins = true_spectrum.shape[-1]
    k_max = num_bins - 1 if k_max is None else k_max
    if not 0 <= k_min <= k_max < num_bins:
        raise ValueError(f"spectrum_error: need 0 <= k_min <= k_max < {num_bins}, got k_min={k_min}, k_max={k_max}")
    tiny = torch.finfo(torch.float64).tiny
    level = (floor * true_spectrum.sum(-1, keepdim=True)).clamp_min(tiny)
    pred_spectrum = torch.maximum(pred_spectrum[:, k_min:k_max + 1], level)
    true_spectrum = torch.maximum(true_spectrum[:, k_min:k_max + 1], level)
    return (pred_spectrum.log() - true_spectrum.log()).abs().mean(-1)
