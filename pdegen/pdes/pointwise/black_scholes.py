"""The Black–Scholes equation for a European call, in calendar time, for PINNs.

Units: the spot ``S`` and the price ``V`` in currency (the strike ``K`` sets the scale), ``t`` in years,
the volatility σ per √year, the risk-free rate r per year. The residual ``(N, 1)``

    V_t + ½ σ² S² V_SS + r S V_S - r V

is in currency per year.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .base import Field, PointwiseProblem, space_time_derivatives


def call_price(spot: Tensor, time_to_maturity: Tensor, sigma: float, rate: float, strike: float) -> Tensor:
    """The Black–Scholes price (float64, differentiable) of a European call, ``S N(d1) - K e^{-rτ} N(d2)``:
    exactly the payoff ``max(S - K, 0)`` at ``τ = 0`` and 0 at ``S = 0``, without evaluating ``log 0``."""
    spot, tau = torch.broadcast_tensors(spot.to(torch.float64), time_to_maturity.to(torch.float64))
    live = (tau > 0) & (spot > 0)
    s, tau_live = torch.where(live, spot, 1.0), torch.where(live, tau, 1.0)  # finite placeholders elsewhere
    spread = sigma * torch.sqrt(tau_live)
    d1 = (torch.log(s / strike) + (rate + sigma**2 / 2) * tau_live) / spread
    price = s * torch.special.ndtr(d1) - strike * torch.exp(-rate * tau_live) * torch.special.ndtr(d1 - spread)
    return torch.where(live, price, (spot - strike).clamp(min=0))


class BlackScholesCall(PointwiseProblem):
    """A European call on S ∈ [0, S_max], t ∈ [0, T] (defaults σ = 0.2, r = 0.05, K = 1, T = 1, S_max = 4K).

    Conditions: ``"terminal"``: V(S, T) = max(S - K, 0); ``"bc"``: V(0, t) = 0 and the far field
    V(S_max, t) = S_max - K e^{-r(T - t)} (half the points on each side). The far field is the large-S
    asymptote: the exact price exceeds it by the put price, < 1e-11 at the defaults (a smaller S_max
    raises that mismatch)."""

    name = "black_scholes"
    inputs = ("S", "t")
    outputs = ("V",)
    conditions = ("terminal", "bc")

    def __init__(self, sigma: float = 0.2, rate: float = 0.05, strike: float = 1.0, maturity: float = 1.0,
                 s_max: float | None = None):
        s_max = 4.0 * strike if s_max is None else s_max
        for label, value in (("sigma", sigma), ("strike", strike), ("maturity", maturity)):
            if not value > 0:
                raise ValueError(f"black_scholes: {label} must be positive, got {value}")
        if not math.isfinite(rate):
            raise ValueError(f"black_scholes: rate must be finite, got {rate}")
        if not s_max > strike:
            raise ValueError(f"black_scholes: s_max must exceed the strike {strike} (a few strikes, the default "
                             f"4 * strike), got {s_max}")
        self.sigma, self.rate, self.strike, self.maturity = float(sigma), float(rate), float(strike), float(maturity)
        self.s_max = float(s_max)

    @property
    def lower(self) -> tuple[float, ...]:
        return (0.0, 0.0)

    @property
    def upper(self) -> tuple[float, ...]:
        return (self.s_max, self.maturity)

    @property
    def params(self) -> dict:
        return {"sigma": self.sigma, "rate": self.rate, "strike": self.strike, "maturity": self.maturity,
                "s_max": self.s_max}

    def pde_residual(self, coords: Tensor, fn: Field) -> Tensor:
        self.check_coords(coords)
        value, v_t, v_s, v_ss = space_time_derivatives(coords, lambda x: self._evaluate(x, fn))
        spot = coords[:, 0].to(value.dtype)
        residual = v_t + 0.5 * self.sigma**2 * spot**2 * v_ss + self.rate * spot * v_s - self.rate * value
        return residual[:, None]

    def sample_condition(self, name: str, n: int, method: str, generator: torch.Generator | None) -> Tensor:
        self.check_condition(name)
        if name == "terminal":
            return self.face(1, self.maturity, n, method, generator)
        sides = [(value, count) for value, count in ((0.0, n - n // 2), (self.s_max, n // 2)) if count > 0]
        return torch.cat([self.face(0, value, count, method, generator) for value, count in sides])

    def condition_residual(self, name: str, coords: Tensor, fn: Field) -> Tensor:
        self.check_condition(name)
        self.check_coords(coords)
        prediction = self._evaluate(coords, fn)
        spot, t = coords.to(torch.float64).unbind(1)
        if name == "terminal":
            target = (spot - self.strike).clamp(min=0)
        else:
            far = (spot - self.s_max).abs() <= 1e-6 * self.s_max
            if not (far | (spot.abs() <= 1e-6 * self.s_max)).all():
                raise ValueError(f"black_scholes: 'bc' points must lie on S = 0 or S = s_max = {self.s_max}; "
                                 "draw them with sample_condition('bc', ...)")
            target = torch.where(far, self.s_max - self.strike * torch.exp(-self.rate * (self.maturity - t)), 0.0)
        return prediction - target[:, None].to(prediction.dtype)

    def reference(self, coords: Tensor) -> Tensor:
        self.check_coords(coords)
        spot, t = coords.unbind(1)
        return call_price(spot, self.maturity - t, self.sigma, self.rate, self.strike)[:, None]

    def _evaluate(self, coords: Tensor, fn: Field) -> Tensor:
        out = fn(coords)
        if out.shape != (len(coords), 1):
            raise ValueError(f"black_scholes: fn must return (N, 1) column (V,), got shape {tuple(out.shape)}")
        return out
