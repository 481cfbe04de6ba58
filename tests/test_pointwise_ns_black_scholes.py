"""Point-wise Navier–Stokes (Kovasznay, Taylor–Green) and Black–Scholes: the closed forms solve the
equations and conditions, perturbations do not; condition points lie on their faces; invariants
(Taylor–Green energy decay, put–call parity, a finite-difference check); the pressure gauge; validation."""

from __future__ import annotations

import math

import pytest
import torch

from pdegen.pdes.pointwise.black_scholes import BlackScholesCall
from pdegen.pdes.pointwise.navier_stokes import KovasznayFlow, TaylorGreenVortex

PROBLEMS = [KovasznayFlow(), TaylorGreenVortex(), BlackScholesCall()]


def perturbed(problem):
    """The reference plus 0.01 cos(first input) cos(second input) in its first output (nonzero on every face)."""
    def fn(coords):
        bump = 0.01 * torch.cos(coords[:, 0]) * torch.cos(coords[:, 1])
        return problem.reference(coords) + torch.nn.functional.pad(bump[:, None], (0, len(problem.outputs) - 1))
    return fn


def on_faces(problem, name, points):
    """Whether every point of condition ``name`` lies on a face where it holds."""
    lo, hi = torch.tensor(problem.lower, dtype=points.dtype), torch.tensor(problem.upper, dtype=points.dtype)
    at = {"ic": [(2, lo)], "terminal": [(1, hi)], "bc": [(0, lo), (0, hi)] + ([(1, lo), (1, hi)] if
          problem.name != "black_scholes" else [])}[name]
    return torch.stack([points[:, axis] == bound[axis] for axis, bound in at]).any(0).all()


@pytest.mark.parametrize("problem", PROBLEMS, ids=lambda p: p.name)
def test_reference_solves_the_problem(problem):
    points = {key: value.double() for key, value in problem.sample_points(256, 64, seed=1).items()}
    exact = problem.residuals(problem.reference, points)
    wrong = problem.residuals(perturbed(problem), points)
    scale = problem.reference(points["pde"]).abs().max()
    assert exact["pde"].shape == (256, {"kovasznay": 3, "taylor_green": 3, "black_scholes": 1}[problem.name])
    assert exact["pde"].abs().max() <= 1e-9 * scale
    assert wrong["pde"].abs().max() > 1e-3 * scale
    for name in problem.conditions:
        assert exact[name].abs().max() <= 1e-10 * scale
        assert wrong[name].abs().max() > 1e-4 * scale


@pytest.mark.parametrize("problem", PROBLEMS, ids=lambda p: p.name)
def test_sample_points_shapes_and_faces(problem):
    points = problem.sample_points(100, 41, seed=2)
    d = len(problem.inputs)
    assert points.keys() == {"pde", *problem.conditions}
    assert points["pde"].shape == (100, d)
    lo, hi = torch.tensor(problem.lower, dtype=torch.float32), torch.tensor(problem.upper, dtype=torch.float32)
    for name in problem.conditions:
        assert points[name].shape == (41, d)
        assert ((points[name] >= lo) & (points[name] <= hi)).all()
        assert on_faces(problem, name, points[name]), name
    assert torch.equal(points["bc"], problem.sample_points(100, 41, seed=2)["bc"])


def test_wall_points_spread_over_the_edges():
    """Kovasznay's bc points on each edge in proportion to its length (1.5, 2, 1.5, 2 of 7)."""
    problem = KovasznayFlow()
    points = problem.sample_condition("bc", 700, "sobol", torch.Generator().manual_seed(0))
    x, y = points.unbind(1)
    counts = [int((x == -0.5).sum()), int((x == 1.0).sum()), int((y == -0.5).sum()), int((y == 1.5).sum())]
    assert all(abs(count - expected) <= 3 for count, expected in zip(counts, [200, 200, 150, 150])), counts


def test_black_scholes_bc_halves():
    problem = BlackScholesCall()
    points = problem.sample_condition("bc", 11, "uniform", None)
    assert int((points[:, 0] == 0).sum()) == 6 and int((points[:, 0] == 4).sum()) == 5
    assert problem.sample_condition("bc", 1, "sobol", None).shape == (1, 2)


def test_taylor_green_energy_decays():
    """Mean kinetic energy over the period (exact on an 8² grid) is ¼ e^{-4νt}."""
    problem = TaylorGreenVortex(nu=0.1)
    axis = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
    times = torch.linspace(0, 1, 5, dtype=torch.float64)
    x, y, t = torch.meshgrid(axis, axis, times, indexing="ij")
    uvp = problem.reference(torch.stack([x, y, t], -1).reshape(-1, 3)).reshape(8, 8, 5, 3)
    energy = 0.5 * (uvp[..., 0] ** 2 + uvp[..., 1] ** 2).mean((0, 1))
    torch.testing.assert_close(energy, 0.25 * torch.exp(-4 * 0.1 * times), rtol=1e-13, atol=0)
    assert energy[-1] / energy[0] < 0.7


def test_black_scholes_put_call_parity_and_finite_differences():
    problem = BlackScholesCall()
    sigma, rate, strike, maturity = 0.2, 0.05, 1.0, 1.0
    spots, times = [0.5, 0.9, 1.0, 1.3, 2.5], [0.0, 0.4, 0.9]
    coords = torch.tensor([[s, t] for s in spots for t in times], dtype=torch.float64)
    call = problem.reference(coords)[:, 0]

    def ndtr(z):
        return 0.5 * (1 + math.erf(z / math.sqrt(2)))

    for (s, t), c in zip(coords.tolist(), call.tolist()):
        tau = maturity - t
        d1 = (math.log(s / strike) + (rate + sigma**2 / 2) * tau) / (sigma * math.sqrt(tau))
        put = strike * math.exp(-rate * tau) * ndtr(-(d1 - sigma * math.sqrt(tau))) - s * ndtr(-d1)
        assert c - put == pytest.approx(s - strike * math.exp(-rate * tau), abs=1e-13)

    h = 1e-4  # central differences, error O(h²) ~ 1e-7 against terms O(0.1)
    value = lambda ds, dt: problem.reference(coords + torch.tensor([ds, dt], dtype=torch.float64))[:, 0]  # noqa: E731
    v_t = (value(0, h) - value(0, -h)) / (2 * h)
    v_s = (value(h, 0) - value(-h, 0)) / (2 * h)
    v_ss = (value(h, 0) - 2 * call + value(-h, 0)) / h**2
    spot = coords[:, 0]
    residual = v_t + 0.5 * sigma**2 * spot**2 * v_ss + rate * spot * v_s - rate * call
    assert residual.abs().max() < 1e-5


def test_black_scholes_reference_edges():
    problem = BlackScholesCall()
    spots = torch.tensor([0.0, 0.5, 1.0, 2.0, 4.0], dtype=torch.float64)
    at_maturity = problem.reference(torch.stack([spots, torch.ones_like(spots)], 1))[:, 0]
    assert torch.equal(at_maturity, (spots - 1).clamp(min=0))
    coords = with_grad_coords([[0.0, 0.3], [0.0, 1.0], [1.0, 1.0]])
    at_zero = problem.reference(coords)
    assert torch.equal(at_zero[:2, 0], torch.zeros(2, dtype=torch.float64))
    (grad,) = torch.autograd.grad(at_zero.sum(), coords)
    assert torch.isfinite(grad).all()


def with_grad_coords(rows):
    return torch.tensor(rows, dtype=torch.float64, requires_grad=True)


@pytest.mark.parametrize("problem", [KovasznayFlow(), TaylorGreenVortex()], ids=lambda p: p.name)
def test_pressure_gauge(problem):
    """The residuals ignore a pressure constant; align removes it (per time level when unsteady)."""
    grid = problem.grid(6)

    def gauge(coords):  # an arbitrary pressure offset, a function of t when unsteady
        t = coords[:, 2] if problem.time_axis is not None else torch.zeros(len(coords), dtype=coords.dtype)
        return 3.0 + torch.sin(t)

    def shifted(coords):
        out = problem.reference(coords)
        return torch.cat([out[:, :2], out[:, 2:] + gauge(coords)[:, None]], dim=1)

    torch.testing.assert_close(problem.pde_residual(grid, shifted), problem.pde_residual(grid, problem.reference))
    exact, moved = problem.reference(grid), shifted(grid)
    torch.testing.assert_close(problem.align(grid, moved), exact, rtol=0, atol=1e-12)
    if problem.time_axis is not None:
        with pytest.raises(ValueError, match="grid"):
            problem.align(problem.sample_points(20, 1)["pde"], moved[:20])


@pytest.mark.parametrize("problem", PROBLEMS, ids=lambda p: p.name)
def test_bad_coordinates_and_outputs(problem):
    wide = torch.zeros(5, len(problem.inputs) + 1, dtype=torch.float64)
    with pytest.raises(ValueError, match="coordinates must be"):
        problem.reference(wide)
    with pytest.raises(ValueError, match="coordinates must be"):
        problem.reference(torch.zeros(5, dtype=torch.float64))
    with pytest.raises(ValueError, match="coordinates must be"):
        problem.pde_residual(wide, problem.reference)
    with pytest.raises(ValueError, match="coordinates must be"):
        problem.condition_residual("bc", wide, problem.reference)
    with pytest.raises(ValueError, match="unknown condition"):
        problem.sample_condition("inlet", 4, "sobol", None)
    with pytest.raises(ValueError, match="fn must return"):
        problem.pde_residual(torch.rand(4, len(problem.inputs), dtype=torch.float64), lambda c: c[:, :1].repeat(1, 2))


def test_validation():
    kovasznay, _, black_scholes = PROBLEMS
    with pytest.raises(ValueError, match="S = 0 or S = s_max"):
        black_scholes.condition_residual("bc", torch.tensor([[1.0, 0.5]]), black_scholes.reference)
    with pytest.raises(ValueError, match="values must be"):
        kovasznay.align(kovasznay.grid(3), torch.zeros(9, 2))
    for make in (lambda: KovasznayFlow(reynolds=0), lambda: TaylorGreenVortex(nu=-1),
                 lambda: TaylorGreenVortex(t_end=0), lambda: BlackScholesCall(sigma=0),
                 lambda: BlackScholesCall(s_max=0.5)):
        with pytest.raises(ValueError):
            make()
