"""Forecast metrics (pdegen.metrics.forecast) against closed forms."""

from __future__ import annotations

import math

import pytest
import torch

from pdegen.metrics.forecast import (
    crps_ensemble,
    energy_spectrum,
    high_correlation_time,
    spectrum_error,
    spread_skill_ratio,
    state_correlation,
    state_rmsd,
)


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------------------------- correlation


@pytest.mark.parametrize("space", [(32,), (8, 12)])
def test_correlation_affine_and_sign(space):
    g = _generator(1)
    x = torch.randn(2, 2, 3, *space, generator=g, dtype=torch.float64)
    torch.testing.assert_close(state_correlation(x, 2.5 * x + 3.0), torch.ones(2, 3, dtype=torch.float64))
    torch.testing.assert_close(state_correlation(-x, x), -torch.ones(2, 3, dtype=torch.float64))
    assert state_correlation(x, x).shape == (2, 3)


def test_correlation_closed_form_orthogonal_component():
    grid = torch.arange(64, dtype=torch.float64) / 64
    truth = torch.cos(2 * math.pi * grid).reshape(1, 1, 1, 64)
    prediction = truth + torch.sin(2 * math.pi * grid).reshape(1, 1, 1, 64)
    torch.testing.assert_close(state_correlation(prediction, truth), torch.full((1, 1), 2**-0.5, dtype=torch.float64))


def test_correlation_independent_fields_near_zero():
    g = _generator(2)
    x, y = torch.randn(2, 1, 4, 64, 64, generator=g), torch.randn(2, 1, 4, 64, 64, generator=g)
    assert state_correlation(x, y).abs().max() < 0.05  # ~ 5 sigma for 4096 points


def test_correlation_invariant_to_per_state_offsets():
    g = _generator(3)
    x, y = torch.randn(3, 2, 4, 16, generator=g), torch.randn(3, 2, 4, 16, generator=g)
    offsets = 10 * torch.randn(3, 2, 4, 1, generator=g)
    base = state_correlation(x, y)
    assert base.abs().max() > 0.05  # a non-trivial reference value
    torch.testing.assert_close(state_correlation(x + offsets, y), base)
    torch.testing.assert_close(state_correlation(x, y - offsets), base)


def test_correlation_responds_to_each_state():
    g = _generator(4)
    x = torch.randn(2, 1, 5, 128, generator=g, dtype=torch.float64)
    corrupted = x.clone()
    corrupted[:, :, 2] = torch.randn(2, 1, 128, generator=g, dtype=torch.float64)
    corr = state_correlation(corrupted, x)
    keep = torch.tensor([0, 1, 3, 4])
    torch.testing.assert_close(corr[:, keep], torch.ones(2, 4, dtype=torch.float64))
    assert corr[:, 2].abs().max() < 0.5


def test_correlation_constant_fields_are_zero_not_nan():
    g = _generator(5)
    x = torch.randn(1, 1, 3, 16, generator=g, dtype=torch.float64)
    constant = x.clone()
    constant[:, :, 1] = 0.3
    corr = state_correlation(constant, x)
    assert torch.isfinite(corr).all()
    assert corr[0, 1] == 0 and corr[0, 0] == pytest.approx(1.0) and corr[0, 2] == pytest.approx(1.0)
    assert state_correlation(torch.zeros(1, 1, 2, 8), torch.zeros(1, 1, 2, 8)).eq(0).all()


def test_correlation_shape_mismatch_raises():
    with pytest.raises(ValueError):
        state_correlation(torch.zeros(1, 1, 2, 8), torch.zeros(1, 1, 3, 8))


# ---------------------------------------------------------------------------------------------------- rmsd


def test_rmsd_closed_forms():
    g = _generator(6)
    x = torch.randn(2, 2, 3, 6, 6, generator=g)
    torch.testing.assert_close(state_rmsd(x + 0.7, x), torch.full((2, 3), 0.7, dtype=torch.float64))
    shifted = x.clone()
    shifted[:, 0] += 2.0  # one of two channels off by 2 -> sqrt(4 / 2)
    shifted[:, :, 1] += 1.0  # state 1: channel 0 off by 3, channel 1 by 1 -> sqrt((9 + 1) / 2)
    expected = torch.tensor([math.sqrt(2), math.sqrt(5), math.sqrt(2)], dtype=torch.float64).expand(2, 3)
    torch.testing.assert_close(state_rmsd(shifted, x), expected)


# ----------------------------------------------------------------------------------- high-correlation time


CURVES = torch.tensor([[0.99, 0.95, 0.90, 0.85, 0.70, 0.60],
                       [0.99, 0.90, 0.75, 0.95, 0.95, 0.95]], dtype=torch.float64)


def test_high_correlation_time_per_trajectory():
    times = high_correlation_time(CURVES, dt=0.5, convention="per_trajectory")
    # first crossing at state 4 -> 2.0; at state 2 -> 1.0 (the later recovery does not count)
    torch.testing.assert_close(times, torch.tensor([2.0, 1.0], dtype=torch.float64))
    assert times.mean().item() == pytest.approx(1.5)


def test_high_correlation_time_mean_curve_differs():
    # mean curve [0.99, 0.925, 0.825, 0.9, 0.825, 0.775] first <= 0.8 at state 5
    time = high_correlation_time(CURVES, dt=0.5, convention="mean_curve")
    assert time.shape == () and time.item() == pytest.approx(2.5)
    assert time.item() != high_correlation_time(CURVES, dt=0.5, convention="per_trajectory").mean().item()


def test_high_correlation_time_edges():
    never = torch.ones(3, 7)
    torch.testing.assert_close(high_correlation_time(never, 0.1, convention="per_trajectory"),
                               torch.full((3,), 0.7, dtype=torch.float64))
    assert high_correlation_time(never, 0.1, convention="mean_curve").item() == pytest.approx(0.7)
    at_threshold = torch.tensor([[0.9, 0.8, 0.9], [0.5, 0.9, 0.9]], dtype=torch.float64)  # equal counts as crossing
    torch.testing.assert_close(high_correlation_time(at_threshold, 2.0, convention="per_trajectory"),
                               torch.tensor([2.0, 0.0], dtype=torch.float64))
    assert high_correlation_time(at_threshold, 1.0, 0.6, convention="per_trajectory").tolist() == [3.0, 0.0]


@pytest.mark.parametrize("kwargs", [dict(convention="median"), dict(convention="per_trajectory", threshold=0.0),
                                    dict(convention="mean_curve", threshold=1.0),
                                    dict(convention="mean_curve", threshold=1.5),
                                    dict(convention="per_trajectory", dt=0.0),
                                    dict(convention="per_trajectory", dt=-1.0)])
def test_high_correlation_time_bad_arguments(kwargs):
    kwargs = dict(dict(dt=0.5), **kwargs)
    with pytest.raises(ValueError, match="convention|threshold|dt"):
        high_correlation_time(CURVES, **kwargs)


def test_high_correlation_time_bad_ndim_and_convention_message():
    for bad in (CURVES[0], CURVES[None]):
        with pytest.raises(ValueError, match="B, T"):
            high_correlation_time(bad, 0.5, convention="per_trajectory")
    with pytest.raises(ValueError, match="per_trajectory.*mean_curve"):
        high_correlation_time(CURVES, 0.5, convention="mean")


# ----------------------------------------------------------------------------------------------------- CRPS


def _crps_brute_force(ensemble: torch.Tensor, truth: torch.Tensor, fair: bool) -> torch.Tensor:
    members = ensemble.shape[1]
    x, y = ensemble.double(), truth.double()
    skill = (x - y[:, None]).abs().mean(1)
    pairs = (x[:, :, None] - x[:, None, :]).abs().sum((1, 2))
    return skill - 0.5 * pairs / (members * (members - 1) if fair else members**2)


def test_crps_single_member_is_absolute_error():
    g = _generator(7)
    x, y = torch.randn(3, 1, 2, 5, 8, generator=g), torch.randn(3, 2, 5, 8, generator=g)
    torch.testing.assert_close(crps_ensemble(x, y, fair=False), (x[:, 0] - y).abs().flatten(1).mean(1).double())
    with pytest.raises(ValueError, match="M >= 2"):
        crps_ensemble(x, y)


@pytest.mark.parametrize("fair", [True, False])
def test_crps_matches_brute_force(fair):
    g = _generator(8)
    x, y = torch.randn(2, 7, 2, 3, 5, generator=g, dtype=torch.float64), torch.randn(2, 2, 3, 5, generator=g)
    pointwise = _crps_brute_force(x, y, fair)
    torch.testing.assert_close(crps_ensemble(x, y, fair=fair), pointwise.flatten(1).mean(1), rtol=0, atol=1e-12)
    per_state = crps_ensemble(x, y, fair=fair, per_state=True)
    assert per_state.shape == (2, 3)
    torch.testing.assert_close(per_state, pointwise.mean((1, 3)), rtol=0, atol=1e-12)


def test_crps_gaussian_closed_form():
    g = _generator(9)
    points, members, mu, s = 64, 4000, 0.3, 1.7
    y = mu + s * torch.linspace(-2.0, 2.0, points, dtype=torch.float64)[None]
    ensemble = mu + s * torch.randn(1, members, points, generator=g, dtype=torch.float64)
    z = (y - mu) / s
    normal = torch.distributions.Normal(0.0, 1.0)
    closed = s * (z * (2 * normal.cdf(z) - 1) + 2 * normal.log_prob(z).exp() - 1 / math.sqrt(math.pi))
    estimate = crps_ensemble(ensemble, y)
    assert estimate.item() == pytest.approx(closed.mean().item(), abs=0.01)  # sampling error ~ 0.003
    assert estimate.item() < (ensemble - y[:, None]).abs().mean().item() - 0.3  # the pair term matters here


# -------------------------------------------------------------------------------------------- spread-skill


def _ensemble_and_truth(spread_scale: float, seed: int = 10):
    g = _generator(seed)
    batch, members, states, size = 4000, 5, 3, 8
    mean = 3 * torch.randn(batch, 1, 1, 1, size, generator=g, dtype=torch.float64)
    sigma = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64).reshape(1, 1, 1, states, 1)
    members_ = mean + spread_scale * sigma * torch.randn(batch, members, 1, states, size, generator=g,
                                                          dtype=torch.float64)
    truth = (mean + sigma * torch.randn(batch, 1, 1, states, size, generator=g, dtype=torch.float64))[:, 0]
    return members_, truth, members


def test_spread_skill_calibrated_is_one():
    ensemble, truth, _ = _ensemble_and_truth(1.0)
    ratio = spread_skill_ratio(ensemble, truth)
    assert ratio.shape == (3,)
    torch.testing.assert_close(ratio, torch.ones(3, dtype=torch.float64), rtol=0, atol=0.03)


def test_spread_skill_under_dispersed():
    ensemble, truth, members = _ensemble_and_truth(0.5)
    expected = math.sqrt((members + 1) / members) * 0.5 / math.sqrt(1 + 0.25 / members)  # ~0.53
    ratio = spread_skill_ratio(ensemble, truth)
    assert (ratio < 0.7).all()
    torch.testing.assert_close(ratio, torch.full((3,), expected, dtype=torch.float64), rtol=0, atol=0.03)


def test_spread_skill_needs_two_members():
    with pytest.raises(ValueError):
        spread_skill_ratio(torch.zeros(2, 1, 1, 3, 4), torch.zeros(2, 1, 3, 4))


# ------------------------------------------------------------------------------------------------- spectra


@pytest.mark.parametrize("resolution", [32, 33])
def test_energy_spectrum_1d_parseval(resolution):
    g = _generator(11)
    x = torch.randn(2, 3, resolution, generator=g, dtype=torch.float64)
    k, energy = energy_spectrum(x, 1)
    assert k.tolist() == list(range(resolution // 2 + 1)) and energy.shape == (2, 3, resolution // 2 + 1)
    torch.testing.assert_close(energy.sum(-1), x.square().mean(-1))


def test_energy_spectrum_1d_single_cosine_and_nyquist():
    grid = torch.arange(32, dtype=torch.float64)
    for n in (3, 16):
        x = 1.5 * torch.cos(2 * math.pi * n * grid / 32 + (0.4 if n != 16 else 0.0))
        _, energy = energy_spectrum(x, 1)
        expected = torch.zeros(17, dtype=torch.float64)
        expected[n] = x.square().mean()  # 1.5² / 2 for n = 3, 1.5² at Nyquist
        torch.testing.assert_close(energy, expected, rtol=0, atol=1e-12)


def test_energy_spectrum_2d_parseval_and_bad_dims():
    x = torch.randn(2, 12, 16, generator=_generator(12), dtype=torch.float64)
    _, energy = energy_spectrum(x, 2)
    torch.testing.assert_close(energy.sum(-1), x.square().mean((-2, -1)))
    with pytest.raises(ValueError):
        energy_spectrum(x, 3)


def test_spectrum_error_closed_forms():
    g = _generator(13)
    truth = torch.randn(3, 2, 4, 32, generator=g, dtype=torch.float64)
    torch.testing.assert_close(spectrum_error(truth, truth, 1), torch.zeros(4, dtype=torch.float64))
    ensemble = truth[:, None].expand(3, 5, 2, 4, 32)
    torch.testing.assert_close(spectrum_error(ensemble, truth, 1), torch.zeros(4, dtype=torch.float64))
    # a uniform scale a multiplies every bin by a²
    torch.testing.assert_close(spectrum_error(2.0 * truth, truth, 1), torch.full((4,), 2 * math.log(2.0),
                                                                                  dtype=torch.float64))


def test_spectrum_error_high_frequency_removed():
    g = _generator(14)
    truth = torch.randn(4, 1, 3, 32, generator=g, dtype=torch.float64)
    spectrum = torch.fft.rfft(truth)
    spectrum[..., 12:] = 0
    smooth = torch.fft.irfft(spectrum, n=32)
    errors = spectrum_error(smooth, truth, 1)
    assert (errors > 1.0).all()
    # closed form: bins 12..16 (5 of the 16 bins k >= 1) are at the floor 1e-12 * total energy
    _, true_energy = energy_spectrum(truth, 1)
    mean_energy = true_energy.mean(0)[0]  # (T, K)
    level = 1e-12 * mean_energy.sum(-1, keepdim=True)
    expected = (mean_energy[:, 12:] / level).log().sum(-1) / 16
    torch.testing.assert_close(errors, expected, rtol=1e-9, atol=1e-6)
    assert spectrum_error(smooth, truth, 1, k_max=11).abs().max() < 1e-9
