"""The point-wise Burgers and Allen–Cahn PINN problems: residuals on exact fields, references against
independent solves, conditions, input checks."""

from __future__ import annotations

import math

import pytest
import torch

from pdegen.pdes import Burgers
from pdegen.pdes.pointwise.allen_cahn import AllenCahnPINN
from pdegen.pdes.pointwise.base import space_time_derivatives
from pdegen.pdes.pointwise.burgers import BurgersPINN


def uniform(n: int, lower: tuple[float, float], upper: tuple[float, float], seed: int = 0) -> torch.Tensor:
    """``n`` float64 points uniform in the box ``[lower, upper]``."""
    lo, hi = torch.tensor(lower, dtype=torch.float64), torch.tensor(upper, dtype=torch.float64)
    return lo + (hi - lo) * torch.rand(n, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.fixture(scope="module")
def burgers():
    return BurgersPINN()


@pytest.fixture(scope="module")
def allen_cahn():
    return AllenCahnPINN()


# ---------------------------------------------------------------------------------------------- Burgers
def test_burgers_reference_solves_the_pde_before_the_shock(burgers):
    """Central differences (h = 1e-4) of the closed form at t in [0.05, 0.2]: the residual is their
    O(h²) error, 2.6e-7 of max |u_t|; and autograd through the quadrature gives ~rounding everywhere."""
    coords = uniform(300, (-0.95, 0.05), (0.95, 0.2))
    x, t, h = coords[:, 0], coords[:, 1], 1e-4

    def u(dx: float, dt: float) -> torch.Tensor:
        return burgers.reference(torch.stack([x + dx, t + dt], 1))[:, 0]

    u_t = (u(0, h) - u(0, -h)) / (2 * h)
    u_x = (u(h, 0) - u(-h, 0)) / (2 * h)
    u_xx = (u(h, 0) - 2 * u(0, 0) + u(-h, 0)) / h**2
    residual = u_t + u(0, 0) * u_x - burgers.viscosity * u_xx
    assert residual.abs().max() < 2e-6 * u_t.abs().max()

    whole = uniform(500, (-1.0, 1e-3), (1.0, 1.0), seed=1)  # shock included
    assert burgers.pde_residual(whole, burgers.reference).abs().max() < 1e-11


def test_burgers_pde_residual_is_zero_on_a_viscous_shock(burgers):
    """``u = c - a tanh(a (x - c t) / 2ν)`` is an exact travelling wave; a perturbation is seen."""
    c, a, nu = 0.3, 0.5, burgers.viscosity

    def shock(p: torch.Tensor) -> torch.Tensor:
        return (c - a * torch.tanh(a * (p[:, 0] - c * p[:, 1]) / (2 * nu))).unsqueeze(1)

    coords = burgers.sample_points(400, 1, seed=2)["pde"].double()
    assert burgers.pde_residual(coords, shock).abs().max() < 1e-10

    def perturbed(p: torch.Tensor) -> torch.Tensor:
        return shock(p) + 1e-3 * torch.sin(math.pi * p[:, :1]) * p[:, 1:]

    assert burgers.pde_residual(coords, perturbed).abs().max() > 1e-4


def test_burgers_reference_matches_a_spectral_solve(burgers):
    """pdegen's periodic ``Burgers`` solver on [0, 1) solves the same problem rescaled: ``x = 2x' - 1``,
    ``u = 2u'``, ``ν' = ν / 4``, ``u'(x', 0) = ½ sin(2πx')`` (−sin(πx) is 2-periodic and odd about ±1)."""
    resolution = 256
    solver = Burgers(resolution=resolution, num_times=3, viscosity=burgers.viscosity / 4, final_time=0.2,
                     steps_per_output=200)
    nodes = torch.arange(resolution, dtype=torch.float64) / resolution
    spectral = 2 * solver.solve((0.5 * torch.sin(2 * math.pi * nodes))[None])[0, 0]
    for row, t in ((1, 0.1), (2, 0.2)):
        coords = torch.stack([2 * nodes - 1, torch.full_like(nodes, t)], 1)
        assert (burgers.reference(coords)[:, 0] - spectral[row]).abs().max() < 1e-10


def test_burgers_conditions_hold_for_the_reference(burgers):
    points = burgers.sample_points(8, 64, seed=3)
    bc = points["bc"]
    assert (bc[:32, 0] == -1).all() and (bc[32:, 0] == 1).all()
    assert ((bc[:, 1] >= 0) & (bc[:, 1] <= 1)).all() and (points["ic"][:, 1] == 0).all()
    residuals = burgers.residuals(burgers.reference, {name: points[name].double() for name in ("ic", "bc")})
    assert residuals["ic"].shape == (64, 1) and residuals["ic"].abs().max() == 0
    assert residuals["bc"].shape == (64, 1) and residuals["bc"].abs().max() < 1e-14
    zero = burgers.condition_residual("ic", points["ic"].double(), lambda p: torch.zeros_like(p[:, :1]))
    assert zero.abs().max() > 0.5


def test_burgers_rejects_bad_input(burgers):
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        burgers.reference(torch.zeros(4, 3))
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        burgers.pde_residual(torch.zeros(4), lambda p: p)
    with pytest.raises(ValueError, match="t >= 0"):
        burgers.reference(torch.tensor([[0.0, -0.1]]))
    with pytest.raises(ValueError, match="unknown condition"):
        burgers.sample_condition("periodic", 4, "sobol", None)
    with pytest.raises(ValueError, match="viscosity"):
        BurgersPINN(viscosity=0.0)
    with pytest.raises(ValueError, match="quadrature_points"):
        BurgersPINN(quadrature_points=1000)


# ---------------------------------------------------------------------------------------------- Allen–Cahn
def test_allen_cahn_pde_residual_is_zero_on_exact_solutions(allen_cahn):
    """The steady front ``tanh(√(5/2d) (x - x0))`` and the uniform state ``(1 + (1/u0² - 1) e^{-10t})^{-1/2}``
    solve the equation exactly; perturbations are seen."""
    d = allen_cahn.diffusion
    coords = allen_cahn.sample_points(400, 1, seed=4)["pde"].double()

    def front(p: torch.Tensor) -> torch.Tensor:
        return torch.tanh(math.sqrt(5 / (2 * d)) * (p[:, :1] - 0.3))

    def uniform_state(p: torch.Tensor) -> torch.Tensor:
        return (1 + (1 / 0.3**2 - 1) * torch.exp(-10 * p[:, 1:])) ** -0.5 + 0 * p[:, :1]

    for exact in (front, uniform_state):
        assert allen_cahn.pde_residual(coords, exact).abs().max() < 1e-10
        assert allen_cahn.pde_residual(coords, lambda p, f=exact: f(p) * (1 + 1e-3 * p[:, 1:])).abs().max() > 1e-4


def test_allen_cahn_reference_converges(allen_cahn):
    """1024 against 2048 modes (default) and dt = 5e-4 against 1e-3; the early-time error of the IC's kink
    stays near x = ±1."""
    x = torch.linspace(-1, 1, 1001, dtype=torch.float64)

    def at(problem: AllenCahnPINN, t: float) -> torch.Tensor:
        return problem.reference(torch.stack([x, torch.full_like(x, t)], 1))[:, 0]

    coarse, fine_step = AllenCahnPINN(reference_resolution=1024), AllenCahnPINN(reference_dt=5e-4)
    assert (at(coarse, 1.0) - at(allen_cahn, 1.0)).abs().max() < 1e-8
    assert (at(coarse, 0.5) - at(allen_cahn, 0.5)).abs().max() < 1e-6
    assert (at(fine_step, 1.0) - at(allen_cahn, 1.0)).abs().max() < 1e-10
    inner = x.abs() <= 0.9
    assert (at(coarse, 0.1) - at(allen_cahn, 0.1))[inner].abs().max() < 1e-10
    # the cubic-in-t interpolant with its spectral x derivatives nearly solves the equation
    coords = uniform(500, (-1.0, 0.05), (1.0, 1.0), seed=5)
    assert allen_cahn.pde_residual(coords, allen_cahn.reference).abs().max() < 1e-6


def test_allen_cahn_reference_satisfies_the_initial_condition(allen_cahn):
    points = allen_cahn.sample_points(8, 64, seed=6)
    assert allen_cahn.condition_residual("ic", points["ic"].double(), allen_cahn.reference).abs().max() == 0
    # just after t = 0 the 2048-mode series differs from x² cos(πx) only at the kink x = ±1
    x = torch.linspace(-1, 1, 1001, dtype=torch.float64)
    gap = (allen_cahn.reference(torch.stack([x, torch.full_like(x, 1e-9)], 1))[:, 0] - x**2 * torch.cos(math.pi * x))
    assert gap.abs().max() < 5e-4 and gap[x.abs() <= 0.9].abs().max() < 1e-5


def test_allen_cahn_periodic_bc(allen_cahn):
    coords = allen_cahn.sample_condition("bc", 64, "sobol", torch.Generator().manual_seed(7)).double()
    assert (coords[:, 0] == -1).all()
    coords[:, 1] = coords[:, 1].clamp_min(1e-3)  # at t = 0 the reference is the kinked IC itself
    residual = allen_cahn.condition_residual("bc", coords, allen_cahn.reference)
    assert residual.shape == (64, 2) and residual.abs().max() < 1e-9
    not_periodic = allen_cahn.condition_residual("bc", coords, lambda p: p[:, :1] * (1 + p[:, 1:]))
    assert (not_periodic[:, 0] + 2 * (1 + coords[:, 1])).abs().max() < 1e-12 and (not_periodic[:, 1] == 0).all()
    kinked = allen_cahn.condition_residual("bc", coords, lambda p: p[:, :1] ** 2 * torch.cos(math.pi * p[:, :1]))
    assert torch.allclose(kinked[:, 1], torch.full_like(kinked[:, 1], 4.0))


def test_allen_cahn_rejects_bad_input(allen_cahn):
    for call in (lambda: allen_cahn.reference(torch.zeros(5, 1)),
                 lambda: allen_cahn.pde_residual(torch.zeros(2, 5), lambda p: p[:, :1]),
                 lambda: allen_cahn.condition_residual("bc", torch.zeros(3, 2, 1), lambda p: p[:, :1])):
        with pytest.raises(ValueError, match=r"\(N, 2\)"):
            call()
    with pytest.raises(ValueError, match=r"t in \[0, 1.0\]"):
        allen_cahn.reference(torch.tensor([[0.0, 1.5]]))
    with pytest.raises(ValueError, match="unknown condition"):
        allen_cahn.condition_residual("dirichlet", torch.zeros(3, 2), lambda p: p[:, :1])
    with pytest.raises(ValueError, match="reference_dt"):
        AllenCahnPINN(reference_dt=3e-4)
    with pytest.raises(ValueError, match="reference_resolution"):
        AllenCahnPINN(reference_resolution=1001)
    with pytest.raises(ValueError, match="final_time must be a positive multiple of 0.001"):
        AllenCahnPINN(final_time=1.0005)


def test_allen_cahn_final_time_solves_the_same_trajectory_further():
    """The reference over [0, 1.5] is the default one continued: equal on [0, 1] (the same steps), and a solution
    past t = 1: its autograd PDE residual there is ~1e-7 (d = 0.05, so 64 modes resolve the fronts; the spectra
    of [0, 1] extrapolated instead give 0.47)."""
    short, long = AllenCahnPINN(reference_resolution=64), AllenCahnPINN(reference_resolution=64, final_time=1.5)
    assert long.upper == (1.0, 1.5) and long.params["final_time"] == 1.5
    generator = torch.Generator().manual_seed(0)

    def points(n: int, t0: float, t1: float) -> torch.Tensor:
        unit = torch.rand(n, 2, dtype=torch.float64, generator=generator)
        return unit * torch.tensor([2.0, t1 - t0]) + torch.tensor([-1.0, t0])

    coords = points(200, 0.0, 1.0)
    torch.testing.assert_close(long.reference(coords), short.reference(coords), rtol=0, atol=1e-13)
    smooth = AllenCahnPINN(diffusion=0.05, reference_resolution=64, final_time=1.5)
    assert smooth.pde_residual(points(300, 1.02, 1.5), smooth.reference).abs().max() < 1e-5


def test_derivatives_of_a_polynomial():
    """The shared helper: ``u = x³ t²`` gives ``u_t = 2x³t``, ``u_x = 3x²t²``, ``u_xx = 6xt²``."""
    coords = uniform(20, (-1.0, 0.0), (1.0, 1.0), seed=8)
    u, u_t, u_x, u_xx = space_time_derivatives(coords, lambda p: (p[:, :1] ** 3) * p[:, 1:] ** 2)
    x, t = coords[:, 0], coords[:, 1]
    for got, want in ((u, x**3 * t**2), (u_t, 2 * x**3 * t), (u_x, 3 * x**2 * t**2), (u_xx, 6 * x * t**2)):
        assert torch.allclose(got, want, atol=1e-14)
