"""Residual norms, ensemble moment errors and marginal W1 distances against closed forms."""

from __future__ import annotations

import math

import pytest
import scipy.stats
import torch

from pdegen.metrics import MarginalWasserstein, MomentErrors, PDEResidualNorm, region_norms
from pdegen.pdes import Darcy


def test_region_norms_of_constant_fields(small_darcy):
    """A constant 1 has L2 norm sqrt(area) inside (unit square) and sqrt(perimeter) on the boundary."""
    n = small_darcy.grid.shape[0]
    h = 1.0 / (n - 1)
    ones = torch.ones(3, 1, n, n, dtype=torch.float64)
    norms = region_norms(small_darcy, ones)
    assert torch.allclose(norms["interior"], torch.full((3,), math.sqrt((n - 2) ** 2 * h * h), dtype=torch.float64))
    assert torch.allclose(norms["boundary"], torch.full((3,), math.sqrt((4 * n - 4) * h), dtype=torch.float64))
    assert abs(norms["interior"][0].item() - 1.0) < 2.5 * h
    assert abs(norms["boundary"][0].item() - 2.0) < 2.5 * h


def test_residual_metric_is_zero_on_solver_output_and_not_on_noise(small_darcy):
    x = small_darcy.generate(4, generator=torch.Generator().manual_seed(0))
    metric = PDEResidualNorm(small_darcy)
    metric.update(x)
    exact = metric.compute()
    assert exact["interior_rel"] < 1e-9 and exact["boundary"] == 0.0
    metric.reset()
    noisy = x.clone()
    noisy[:, 1] += 1e-3 * torch.randn_like(noisy[:, 1], dtype=torch.float64)
    metric.update(noisy)
    perturbed = metric.compute()
    assert perturbed["interior_rel"] > 1e-3 and perturbed["boundary"] > 0
    assert set(perturbed) == {"interior", "interior_rel", "boundary", "boundary_rel"}


def test_residual_metric_averages_over_batches(small_darcy):
    x = small_darcy.generate(4, generator=torch.Generator().manual_seed(1))
    x[:, 1] += 1e-2 * torch.randn(x[:, 1].shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    whole, parts = PDEResidualNorm(small_darcy), PDEResidualNorm(small_darcy)
    whole.update(x)
    parts.update(x[:1])
    parts.update(x[1:])
    for key, value in whole.compute().items():
        assert torch.allclose(value, parts.compute()[key])


def test_moment_errors_closed_form():
    """Sets with exact per-point means m1, m2 and stds s1, s2 give MMSE = mean (m1-m2)^2, SMSE = mean (s1-s2)^2."""
    grid = (4, 5)
    base = torch.tensor([-1.0, 1.0]).repeat(50)  # mean 0, population std 1, exactly
    field = base.view(-1, 1, 1, 1).expand(100, 2, *grid)
    m1, m2 = torch.rand(2, *grid), torch.rand(2, *grid)
    s1, s2 = 0.5 + torch.rand(2, *grid), 0.5 + torch.rand(2, *grid)
    metric = MomentErrors(2, grid)
    metric.update(generated=m1 + s1 * field)
    metric.update(reference=m2 + s2 * field[:60])
    metric.update(reference=m2 + s2 * field[60:])
    result = metric.compute()
    assert torch.allclose(result["mmse"], (m1 - m2).pow(2).mean(dim=(1, 2)).double(), atol=1e-12)
    assert torch.allclose(result["smse"], (s1 - s2).pow(2).mean(dim=(1, 2)).double(), atol=1e-12)


def test_moment_errors_reject_wrong_shape_and_too_few_samples():
    metric = MomentErrors(2, (4, 4))
    with pytest.raises(ValueError, match="expected"):
        metric.update(generated=torch.zeros(3, 1, 4, 4))
    metric.update(generated=torch.zeros(1, 2, 4, 4), reference=torch.zeros(5, 2, 4, 4))
    with pytest.raises(RuntimeError, match="at least 2 generated"):
        metric.compute()


def test_darcy_resolution_128_metric():
    pde = Darcy(resolution=128)
    x = pde.generate(1, generator=torch.Generator().manual_seed(0))
    metric = PDEResidualNorm(pde)
    metric.update(x)
    assert metric.compute()["interior_rel"] < 1e-8


def _scipy_w1(generated, reference):
    """Per-channel scipy W1 over all values, divided by the population std of the reference values."""
    w1 = [scipy.stats.wasserstein_distance(generated[:, c].ravel().numpy(), reference[:, c].ravel().numpy())
          / reference[:, c].double().std(correction=0).item() for c in range(generated.shape[1])]
    return torch.tensor(w1, dtype=torch.float64)


def _w1(generated=None, reference=None, num_channels=1, max_values_per_sample=4096):
    metric = MarginalWasserstein(num_channels, max_values_per_sample)
    metric.update(generated=generated, reference=reference)
    return metric.compute()["w1"]


def test_marginal_w1_matches_scipy_and_batches_fed_in_pieces():
    """Different set sizes, 3 channels: W1 / population std of the reference equals scipy, whole or in pieces."""
    g = torch.Generator().manual_seed(0)
    generated = torch.randn(5, 3, 4, 6, generator=g) * torch.tensor([1.0, 3.0, 0.2]).view(1, 3, 1, 1) + 0.5
    reference = torch.rand(7, 3, 4, 6, generator=g) * torch.tensor([2.0, 5.0, 0.1]).view(1, 3, 1, 1)
    expected = _scipy_w1(generated, reference)
    whole = _w1(generated, reference, num_channels=3)
    assert whole.shape == (3,) and whole.dtype == torch.float64
    assert torch.allclose(whole, expected, rtol=1e-10, atol=0)
    parts = MarginalWasserstein(3)
    parts.update(generated=generated[:2])
    parts.update(reference=reference[:3])
    parts.update(generated=generated[2:], reference=reference[3:])
    assert torch.allclose(parts.compute()["w1"], expected, rtol=1e-10, atol=0)
    # the states gather by concatenation (as DDP does): two half metrics merged give the whole result
    other = MarginalWasserstein(3)
    other.update(generated=generated[:1], reference=reference[:4])
    rest = MarginalWasserstein(3)
    rest.update(generated=generated[1:], reference=reference[4:])
    other.merge_state(rest)
    assert torch.allclose(other.compute()["w1"], expected, rtol=1e-10, atol=0)


def test_marginal_w1_closed_forms_shift_and_scale():
    """N(mu, 1) vs N(0, 1) gives W1 = mu; scaling and shifting both sides leaves the normalised W1 unchanged."""
    g = torch.Generator().manual_seed(1)
    reference = torch.randn(100, 1, 32, 32, generator=g, dtype=torch.float64)
    generated = torch.randn(100, 1, 32, 32, generator=g, dtype=torch.float64) + 0.7
    w1 = _w1(generated, reference)
    assert w1.ndim == 0 and abs(w1.item() - 0.7) < 0.02
    assert torch.allclose(_w1(37.0 * generated - 5.0, 37.0 * reference - 5.0), w1, rtol=1e-9, atol=0)
    assert abs(_w1(37.0 * generated, reference).item() - 0.7) > 1.0  # scaling one side only is a real difference


def test_marginal_w1_zero_identical_symmetric_and_sample_order_free():
    g = torch.Generator().manual_seed(2)
    a = torch.randn(6, 2, 8, 8, generator=g)
    b = 2.0 * torch.rand(9, 2, 8, 8, generator=g)
    assert torch.equal(_w1(a, a.clone(), 2), torch.zeros(2, dtype=torch.float64))
    std_a = a.double().transpose(0, 1).flatten(1).std(1, correction=0)
    std_b = b.double().transpose(0, 1).flatten(1).std(1, correction=0)
    assert torch.allclose(_w1(a, b, 2) * std_b, _w1(b, a, 2) * std_a, rtol=1e-10, atol=0)  # unnormalised W1 symmetric
    for m in (4096, 16):  # exact and subsampled: the kept index set does not depend on sample order
        perm = torch.randperm(6, generator=g)
        assert torch.allclose(_w1(a[perm], b, 2, m), _w1(a, b, 2, m), rtol=1e-12, atol=0)
        assert torch.allclose(_w1(a, b.flip(0), 2, m), _w1(a, b, 2, m), rtol=1e-12, atol=0)


def test_marginal_w1_flags_a_smooth_field_against_two_valued_data():
    """Data two-valued {3, 12} (p = 1/2), generator uniform in [3, 12] with the same per-point mean maps.

    F_ref = 1/2 on [3, 12), F_gen(x) = (x - 3)/9, so W1 = integral_3^12 |1/2 - (x - 3)/9| dx = 9/4 = 2.25;
    the reference std is 4.5, so w1 = 0.5. Moment errors see no difference in the means.
    """
    g = torch.Generator().manual_seed(3)
    pattern = torch.where(torch.rand(8, 1, 16, 16, generator=g) < 0.5, 3.0, 12.0).double()
    reference = torch.cat([pattern, 15.0 - pattern])  # every point: 3 in half the samples, 12 in the other half
    n = 8 * 16 * 16
    uniform = 3.0 + 9.0 * (torch.randperm(n, generator=g).double() + 0.5) / n  # evenly spread over [3, 12]
    generated = torch.cat([uniform.view(8, 1, 16, 16), 15.0 - uniform.view(8, 1, 16, 16)])
    moments = MomentErrors(1, (16, 16))
    moments.update(generated=generated, reference=reference)
    assert moments.compute()["mmse"] < 1e-20
    assert abs(reference.std(correction=0).item() - 4.5) < 1e-12
    assert abs(_w1(generated, reference).item() - 0.5) < 1e-3
    assert abs(scipy.stats.wasserstein_distance(generated.ravel().numpy(), reference.ravel().numpy()) - 2.25) < 1e-3
    two_valued = torch.where(torch.rand(16, 1, 16, 16, generator=g) < 0.5, 3.0, 12.0)  # a data-like generator
    assert _w1(two_valued, reference).item() < 0.05


def test_marginal_w1_subsample_bounds_memory_and_is_exact_when_it_fits():
    g = torch.Generator().manual_seed(4)
    generated, reference = torch.randn(3, 2, 8, 8, generator=g), torch.rand(5, 2, 8, 8, generator=g)
    small = MarginalWasserstein(2, max_values_per_sample=10)
    small.update(generated=generated, reference=reference)
    assert small.values("generated").shape == (3 * 10, 2) and small.values("reference").shape == (5 * 10, 2)
    kept = small.values("generated").view(3, 10, 2)
    for i in range(3):  # each sample keeps 10 distinct values of its own, at the same points for every channel
        for c in range(2):
            assert torch.isin(kept[i, :, c], generated[i, c].double().ravel()).all()
            assert kept[i, :, c].unique().numel() == 10
        assert torch.equal(kept[i, :, 0], generated[i, 0].double().ravel()[small.subsample_indices(64)])
    assert torch.equal(small.compute()["w1"], _w1(generated, reference, 2, 10))  # deterministic
    pieces = MarginalWasserstein(2, max_values_per_sample=10)
    for i in range(5):  # one sample at a time: the same kept values as in one batch
        pieces.update(generated=generated[i:i + 1] if i < 3 else None, reference=reference[i:i + 1])
    assert torch.equal(pieces.compute()["w1"], small.compute()["w1"])
    exact = _scipy_w1(generated, reference)
    for m in (64, 1000):
        assert torch.allclose(_w1(generated, reference, 2, m), exact, rtol=1e-10, atol=0)
    assert not torch.allclose(_w1(generated, reference, 2, 10), exact, rtol=1e-3, atol=0)


def test_marginal_w1_subsample_does_not_alias_with_the_grid():
    """Values = last-axis coordinate 0..7 on a (4, 8, 8) grid: a stride-8 subsample would keep only zeros."""
    coordinate = torch.arange(8.0)
    generated = coordinate.expand(3, 1, 4, 8, 8)
    reference = coordinate.expand(3, 1, 8)  # 8 points: kept whole
    assert _w1(generated, reference, 1, 4096).item() == 0.0
    assert _w1(generated, reference, 1, 32).item() < 0.5  # a strided pick gives 3.5 / std(0..7) = 1.53


@pytest.mark.filterwarnings("ignore:The ``compute`` method of metric MarginalWasserstein was called before")
def test_marginal_w1_zero_std_rule_and_errors():
    constant = torch.full((4, 1, 3, 3), 5.0)
    assert abs(_w1(constant + 2.0, constant).item() - 2.0) < 1e-12  # constant reference: W1 in physical units
    assert _w1(constant, constant).item() == 0.0
    assert _w1(torch.zeros(2, 1, 3), torch.zeros(3, 1, 3)).item() == 0.0
    metric = MarginalWasserstein(2)
    with pytest.raises(ValueError, match="expected"):
        metric.update(generated=torch.zeros(3, 1, 4, 4))
    with pytest.raises(ValueError, match="expected"):
        metric.update(reference=torch.zeros(3))
    with pytest.raises(ValueError, match="max_values_per_sample"):
        MarginalWasserstein(2, max_values_per_sample=0)
    with pytest.raises(RuntimeError, match="generated values"):
        metric.compute()
    metric.update(generated=torch.zeros(3, 2, 4, 4))
    with pytest.raises(RuntimeError, match="reference values"):
        metric.compute()
    metric.update(reference=torch.ones(3, 2, 4, 4))
    metric.compute()
    metric.reset()
    with pytest.raises(RuntimeError, match="generated values"):
        metric.compute()
