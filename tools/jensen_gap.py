"""Jensen's gap of a constraint imposed on the posterior mean, on a 2-D Gaussian mixture with an exact score.

    python tools/jensen_gap.py --output-dir runs/jensen_gap

DiffusionPDE/PIDM-style guidance penalises the residual of the posterior mean, R(E[x₀|x_σ]), while the data
satisfy the constraint in the sense E[R(x₀)|x_σ] ≈ 0. The two differ (Jensen's gap, PIDDM, arXiv 2505.22391)
unless R is affine. Here the data are mixtures of K small isotropic Gaussians (std ``--std``) whose modes lie on
a constraint set:

* circle (nonlinear): R(x) = |x|² − r², modes on the circle of radius r;
* line (linear):      R(x) = a·x − b (|a| = 1), modes on that line.

``--num-samples`` exact PF-ODE trajectories (Heun on the Karras schedule, ``--num-steps`` levels from
σ = 80 to 0.002, float64, exact denoiser; checked against scipy's DOP853 solve) are followed, and at every σ
the exact posterior p(x₀|x_σ) = Σ_k r_k N(m_k, v_k I) (GaussianMixtureDenoiser.posterior) gives per sample,
in closed form,

* |R(E[x₀|x_σ])|: the residual of the posterior mean,
* E[R(x₀)²|x_σ]^½: the posterior RMS residual (the root mean square, not E|R|, because it has a closed form
  for both constraints: E[R²] = Var R + (E R)² with R's mean and variance per Gaussian component),
* |E[R(x₀)|x_σ] − R(E[x₀|x_σ])|: Jensen's gap itself; for the circle it equals tr Cov[x₀|x_σ], for the line 0.

Writes jensen_gap.md (a table at a dozen σ values, means over the samples), jensen_gap.json (the full curves)
and jensen_gap.png to ``--output-dir``, and prints the table. Runs in a few seconds on a CPU.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from torch import Tensor  # noqa: E402

from pdegen.diffusion import GaussianMixtureDenoiser, Heun, MixturePosterior, karras_sigmas  # noqa: E402
from pdegen.io import write_text_atomic  # noqa: E402
from pdegen.plotting import save_figure  # noqa: E402

SIGMA_MAX, SIGMA_MIN = 80.0, 0.002


class Constraint(Protocol):
    name: str

    def residual(self, x: Tensor) -> Tensor:
        """R(x) for points (..., 2): (...)."""

    def moments(self, mean: Tensor, var: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and variance of R(x₀) for x₀ ~ N(mean, var I), mean (..., d), var (...)."""

    def modes(self, k: int) -> Tensor:
        """``k`` points (k, 2) on the constraint set."""

    def describe(self) -> str: ...


@dataclass(frozen=True)
class Circle:
    """R(x) = |x|² − r²: quadratic, so E[R(x₀)] − R(E[x₀]) = tr Cov[x₀]."""

    radius: float = 1.0
    name: str = "circle"

    def residual(self, x: Tensor) -> Tensor:
        return x.square().sum(-1) - self.radius**2

    def moments(self, mean: Tensor, var: Tensor) -> tuple[Tensor, Tensor]:
        """|m|² + d v − r² and Var |x₀|² = 2 d v² + 4 v |m|² (a scaled noncentral χ²)."""
        d, sq = mean.shape[-1], mean.square().sum(-1)
        return sq + d * var - self.radius**2, 2 * d * var**2 + 4 * var * sq

    def modes(self, k: int) -> Tensor:
        angles = torch.arange(k, dtype=torch.float64) * 2 * math.pi / k
        return self.radius * torch.stack([angles.cos(), angles.sin()], dim=1)

    def describe(self) -> str:
        return f"R(x) = |x|² − {self.radius:g}², modes evenly spaced on the circle"


@dataclass(frozen=True)
class Line:
    """R(x) = a·x − b with a unit normal a: affine, so E[R(x₀)] = R(E[x₀]) exactly."""

    normal: tuple[float, float] = (0.6, 0.8)
    offset: float = 0.5
    half_length: float = 1.5
    name: str = "line"

    def residual(self, x: Tensor) -> Tensor:
        return x @ torch.tensor(self.normal, dtype=x.dtype) - self.offset

    def moments(self, mean: Tensor, var: Tensor) -> tuple[Tensor, Tensor]:
        """a·m − b and |a|² v."""
        return self.residual(mean), var * sum(a * a for a in self.normal)

    def modes(self, k: int) -> Tensor:
        a = torch.tensor(self.normal, dtype=torch.float64)
        along = torch.linspace(-self.half_length, self.half_length, k, dtype=torch.float64)
        return self.offset * a + along[:, None] * torch.stack([-a[1], a[0]])

    def describe(self) -> str:
        return f"R(x) = ({self.normal[0]:g}, {self.normal[1]:g})·x − {self.offset:g}, modes evenly spaced on the line"


def residual_statistics(constraint: Constraint, posterior: MixturePosterior) -> dict[str, Tensor]:
    """Per sample, exactly: R(E[x₀|x_σ]), E[R(x₀)|x_σ] and E[R(x₀)²|x_σ]^½."""
    mean, var = constraint.moments(posterior.means, posterior.variances)
    r = posterior.responsibilities
    return {"at_posterior_mean": constraint.residual(posterior.mean()), "expected": (r * mean).sum(1),
            "expected_rms": (r * (var + mean.square())).sum(1).sqrt()}


def trajectories(gmm: GaussianMixtureDenoiser, noise: Tensor, num_steps: int) -> tuple[Tensor, Tensor]:
    """σ levels (S,) from 80 to 0.002 and the Heun PF-ODE states (S, B, 2) from x_T = 80 ε."""
    sigmas = karras_sigmas(num_steps, SIGMA_MIN, SIGMA_MAX, append_zero=False)
    states = [SIGMA_MAX * noise.double()]
    Heun()(gmm, states[0], sigmas, callback=lambda step: states.append(step["x"]))
    return sigmas, torch.stack(states)


@contextmanager
def one_thread() -> Iterator[None]:
    """Run torch on one thread: for (B, 2) tensors more threads only add synchronisation (on a busy 2-core
    machine two threads made the denoiser ~15× slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@one_thread()
def evaluate(constraint: Constraint, noise: Tensor, args: argparse.Namespace) -> dict:
    """Follow the trajectories of the mixture on ``constraint`` and tabulate the residuals along them."""
    gmm = GaussianMixtureDenoiser(constraint.modes(args.modes), args.std)
    sigmas, states = trajectories(gmm, noise, args.num_steps)
    exact_end = gmm.flow(SIGMA_MAX * noise, SIGMA_MAX, SIGMA_MIN)
    posteriors = [gmm.posterior(x, s) for x, s in zip(states, sigmas)]
    stats = [residual_statistics(constraint, p) for p in posteriors]
    curves = {
        "posterior_mean_residual": [float(s["at_posterior_mean"].abs().mean()) for s in stats],
        "expected_rms_residual": [float(s["expected_rms"].mean()) for s in stats],
        "jensen_gap": [float((s["expected"] - s["at_posterior_mean"]).abs().mean()) for s in stats],
    }
    prior = MixturePosterior(gmm.weights[None], gmm.means[None], gmm.stds[None] ** 2)  # the data: σ = 0, no x_σ
    return {
        "name": constraint.name, "description": constraint.describe(), "constraint": constraint,
        "modes": gmm.means.tolist(),
        "data_rms_residual": float(residual_statistics(constraint, prior)["expected_rms"]),
        "heun_vs_dop853_max_error": float((states[-1] - exact_end).abs().max()),
        "sigma": sigmas.tolist(), **curves,
        "states": states, "posterior_means": torch.stack([p.mean() for p in posteriors]),
    }


def table_indices(sigmas: list[float], count: int = 12) -> list[int]:
    """Indices of the schedule's levels nearest to ``count`` log-spaced σ from σ_max to σ_min."""
    log_sigma = torch.tensor(sigmas).log()
    targets = torch.linspace(math.log(SIGMA_MAX), math.log(SIGMA_MIN), count, dtype=torch.float64)
    return sorted({int((log_sigma - t).abs().argmin()) for t in targets})


def markdown(results: list[dict], args: argparse.Namespace) -> str:
    lines = ["# Jensen's gap: residual of the posterior mean vs the posterior's residual", "",
             f"2-D Gaussian mixtures, {args.modes} modes of std {args.std:g} on a constraint set; "
             f"{args.num_samples} exact PF-ODE trajectories (Heun, {args.num_steps} Karras levels "
             f"σ = {SIGMA_MAX:g} → {SIGMA_MIN:g}, float64, seed {args.seed}); posterior p(x₀|x_σ) in closed form. "
             "Means over the samples of |R(E[x₀|x_σ])|, of the posterior RMS residual E[R(x₀)²|x_σ]^½ and of "
             "Jensen's gap |E[R(x₀)|x_σ] − R(E[x₀|x_σ])|.", ""]
    lines += [f"* **{r['name']}**: {r['description']}; RMS residual of the data {r['data_rms_residual']:.3g}; "
              f"max |Heun − DOP853| at σ = {SIGMA_MIN:g}: {r['heun_vs_dop853_max_error']:.1e}" for r in results]
    columns = ("|R(E[x₀|x_σ])|", "E[R(x₀)²|x_σ]^½", "gap")
    header = " | ".join(f"{r['name']}: {col}".replace("|", r"\|") for r in results for col in columns)
    lines += ["", f"| σ | {header} |", "|---" * (1 + 3 * len(results)) + "|"]
    for i in table_indices(results[0]["sigma"]):
        cells = [f"{r[key][i]:.3e}" for r in results
                 for key in ("posterior_mean_residual", "expected_rms_residual", "jensen_gap")]
        lines.append(f"| {results[0]['sigma'][i]:.4g} | " + " | ".join(cells) + " |")
    lines += ["", "For the affine R the gap is round-off: E[R(x₀)|x_σ] = a·E[x₀|x_σ] − b = R(E[x₀|x_σ]), so "
              "penalising the posterior mean's residual penalises the posterior's mean residual; E[R²|x_σ]^½ "
              "exceeds |R(E[x₀|x_σ])| only by the posterior variance along a, not by a bias. Poisson's Δu − f is "
              "affine in u like this. For the quadratic R the gap is exactly tr Cov[x₀|x_σ] ≥ 0: at large σ the "
              "posterior is the whole mixture, E[x₀|x_σ] sits near the centre of the circle and |R(E[x₀|x_σ])| ≈ r² "
              "although the posterior's residual stays at the data's level; the gap falls as the posterior settles "
              "on one mode (σ below the mode spacing) and vanishes as σ → 0, where the posterior collapses onto "
              "x_σ. Darcy's −∇·(a∇u) is bilinear in (a, u): over a joint posterior of (a, u) its gap is "
              "−∇·Cov(a, ∇u), nonzero like the circle's."]
    return "\n".join(lines) + "\n"


def plot(results: list[dict], path: Path, num_paths: int = 12) -> Path:
    """Residuals vs σ (top) and trajectories with their posterior means (bottom), one column per constraint."""
    fig, axes = plt.subplots(2, len(results), figsize=(5.5 * len(results), 10), squeeze=False)
    for (top, bottom), r in zip(axes.T, results):
        sigma = r["sigma"]
        top.plot(sigma, r["posterior_mean_residual"], label="|R(E[x₀|x_σ])|")
        top.plot(sigma, r["expected_rms_residual"], label="E[R(x₀)²|x_σ]^½")
        top.plot(sigma, [max(g, 1e-20) for g in r["jensen_gap"]], "--", label="|E[R(x₀)|x_σ] − R(E[x₀|x_σ])|")
        top.set(xscale="log", yscale="log", xlabel="σ", ylabel="mean over samples", title=r["description"])
        top.invert_xaxis()
        top.legend(fontsize=8)
        states, means = r["states"][:, :num_paths].numpy(), r["posterior_means"][:, :num_paths].numpy()
        for j in range(states.shape[1]):
            line, = bottom.plot(states[:, j, 0], states[:, j, 1], lw=0.8, alpha=0.6)
            bottom.plot(means[:, j, 0], means[:, j, 1], ".", ms=2, color=line.get_color())
        grid = torch.linspace(-2.5, 2.5, 201, dtype=torch.float64)
        plane = torch.stack(torch.meshgrid(grid, grid, indexing="xy"), dim=-1)
        bottom.contour(grid, grid, r["constraint"].residual(plane), levels=[0.0], colors="grey", linewidths=0.8)
        modes = torch.tensor(r["modes"])
        bottom.plot(modes[:, 0], modes[:, 1], "k*", ms=9, label="modes")
        bottom.plot([], [], "k-", lw=0.8, label="x_σ (PF-ODE)")
        bottom.plot([], [], "k.", ms=3, label="E[x₀|x_σ]")
        bottom.set(xlim=(-2.5, 2.5), ylim=(-2.5, 2.5), aspect="equal", title=f"{r['name']}: trajectories")
        bottom.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    return save_figure(fig, path)


def json_ready(result: dict) -> dict:
    return {k: v for k, v in result.items() if k not in ("constraint", "states", "posterior_means")}


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output-dir", type=Path, default=Path("runs/jensen_gap"))
    parser.add_argument("--num-samples", type=int, default=512)
    parser.add_argument("--num-steps", type=int, default=1024, help="Karras levels from σ = 80 to 0.002")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--modes", type=int, default=6, help="mixture components per constraint set")
    parser.add_argument("--std", type=float, default=0.05, help="std of each component")
    args = parser.parse_args(argv)
    noise = torch.randn(args.num_samples, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(args.seed))
    results = [evaluate(constraint, noise, args) for constraint in (Circle(), Line())]
    text = markdown(results, args)
    out = args.output_dir
    write_text_atomic(out / "jensen_gap.md", text)
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    write_text_atomic(out / "jensen_gap.json", json.dumps({"settings": settings,
                                                           "constraints": [json_ready(r) for r in results]}, indent=1))
    plot(results, out / "jensen_gap.png")
    print(text)
    print(f"wrote {out}/jensen_gap.md, jensen_gap.json, jensen_gap.png")
    return results


if __name__ == "__main__":
    main()
