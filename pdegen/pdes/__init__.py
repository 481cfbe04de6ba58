"""The physics: one file per PDE family (residual operator + reference solver + input sampler)."""

from __future__ import annotations

import difflib
import inspect
import types
import typing
from typing import Any

from .base import PDE, Grid
from .burgers import Burgers
from .darcy import Darcy
from .darcy_pidm import DarcyPIDM
from .helmholtz import Helmholtz
from .kolmogorov import KolmogorovFlow
from .ks import KuramotoSivashinsky
from .poisson import Poisson

PDES: dict[str, type[PDE]] = {
    cls.name: cls for cls in (Darcy, DarcyPIDM, Poisson, Helmholtz, Burgers, KuramotoSivashinsky, KolmogorovFlow)
}


def pde_parameters(name: str) -> dict[str, inspect.Parameter]:
    """The parameters a PDE family takes (its constructor's), by name."""
    if name not in PDES:
        close = difflib.get_close_matches(name, PDES, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown PDE {name!r}{hint}: known families are {sorted(PDES)}")
    return dict(list(inspect.signature(PDES[name].__init__).parameters.items())[1:])


def get_pde(name: str, **params: Any) -> PDE:
    """Build a PDE by its registered name, e.g. ``get_pde("darcy", resolution=128)``; an unknown parameter or
    a value of the wrong type (a string where a number belongs) is a ``ValueError`` naming the valid ones."""
    accepted = pde_parameters(name)
    hints = typing.get_type_hints(PDES[name].__init__)
    for key, value in params.items():
        if key not in accepted:
            close = difflib.get_close_matches(key, accepted, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ValueError(f"{name} has no parameter {key!r}: {hint}its parameters are {', '.join(accepted)}")
        if not _fits(value, hints.get(key)):
            raise ValueError(f"{name}: {key}={value!r} is not a valid {_type_name(hints[key])} "
                             f"(default {accepted[key].default!r})")
    return PDES[name](**params)


def _fits(value: Any, hint: Any) -> bool:
    """Whether ``value`` has the simple type ``hint`` names (int, float, bool, str, their unions with None)."""
    options = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    if not all(option in (int, float, bool, str, type(None)) for option in options):
        return True  # not a simple type: the constructor checks it
    if isinstance(value, bool):
        return bool in options
    return any(isinstance(value, option) for option in options if option is not bool) or (
        float in options and isinstance(value, int)) or (int in options and isinstance(value, float)
                                                         and value.is_integer())


def _type_name(hint: Any) -> str:
    return " or ".join(getattr(option, "__name__", str(option)) for option in
                       (typing.get_args(hint) or (hint,)) if option is not type(None)) or str(hint)


__all__ = ["PDE", "PDES", "Burgers", "Darcy", "DarcyPIDM", "Grid", "Helmholtz", "KolmogorovFlow",
           "KuramotoSivashinsky", "Poisson", "get_pde", "pde_parameters"]
