"""Point-wise problems for PINNs: a box domain, residuals of a coordinate network by autograd,
initial/boundary conditions as loss terms, and a reference solution (see :mod:`.base`)."""

from __future__ import annotations

from typing import Any

from .allen_cahn import AllenCahnPINN
from .base import Field, PointwiseProblem, gradient, sample_box, space_time_derivatives, with_grad
from .black_scholes import BlackScholesCall
from .burgers import BurgersPINN
from .navier_stokes import KovasznayFlow, TaylorGreenVortex

PROBLEMS: dict[str, type[PointwiseProblem]] = {
    cls.name: cls for cls in (BurgersPINN, AllenCahnPINN, KovasznayFlow, TaylorGreenVortex, BlackScholesCall)
}


def get_problem(name: str, **params: Any) -> PointwiseProblem:
    """Build a point-wise problem by its registered name, e.g. ``get_problem("kovasznay", reynolds=20)``."""
    try:
        cls = PROBLEMS[name]
    except KeyError:
        raise ValueError(f"unknown point-wise problem {name!r}: known problems are {sorted(PROBLEMS)}") from None
    return cls(**params)


__all__ = ["PROBLEMS", "AllenCahnPINN", "BlackScholesCall", "BurgersPINN", "Field", "KovasznayFlow", "PointwiseProblem",
           "TaylorGreenVortex", "get_problem", "gradient", "sample_box", "space_time_derivatives", "with_grad"]
