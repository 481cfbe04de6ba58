"""The declared dependencies: what the code imports is declared, the tested versions lie within the
declared bounds, and neuraloperator's layers still take the arguments pdegen passes them."""

from __future__ import annotations

import ast
import importlib.metadata
import inspect
import sys
from collections.abc import Iterable
from pathlib import Path

import pytest
from packaging.requirements import Requirement

tomllib = pytest.importorskip("tomllib")

ROOT = Path(__file__).resolve().parents[1]
LOCAL = {"pdegen", "datamodules", "conftest", "tests"} | {p.stem for p in (ROOT / "tools").glob("*.py")}  # siblings
NOT_INSTALLED = {"torch_fidelity": "torch-fidelity", "lpips": "lpips"}  # optional extras absent here


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _requirements(extras: Iterable[str] | None = None) -> list[Requirement]:
    """The package's own requirements and those of ``extras`` (default: every extra)."""
    project = _project()
    groups = project["optional-dependencies"]
    lines = [*project["dependencies"], *(line for extra in (groups if extras is None else extras)
                                         for line in groups[extra])]
    return [Requirement(line) for line in lines]


def _canonical(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def _imported_modules(folder: str) -> set[str]:
    names = set()
    for path in (ROOT / folder).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - LOCAL


@pytest.mark.parametrize("folder, extras", [("pdegen", None), ("datamodules", ()), ("tools", None),
                                            ("tests", None)])
def test_every_imported_package_is_declared(folder: str, extras: tuple[str, ...] | None) -> None:
    """A third-party import in ``folder`` comes from a distribution pyproject declares (the package's
    own dependencies, or an extra where the code may use an optional one)."""
    declared = {_canonical(r.name) for r in _requirements(extras)}
    distributions = importlib.metadata.packages_distributions()
    undeclared = {}
    for module in _imported_modules(folder):
        names = distributions.get(module) or [NOT_INSTALLED.get(module, module)]
        if not declared & {_canonical(name) for name in names}:
            undeclared[module] = names
    assert not undeclared, f"imported in {folder}/ but not declared in pyproject.toml: {undeclared}"


def test_tested_versions_lie_within_the_declared_bounds() -> None:
    """constraints.txt (what CI installs) satisfies every declared requirement it pins, and pins every
    one that CI installs: a bound the tested set breaks, or a dependency left unpinned, fails here."""
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            pins[_canonical(name)] = version.strip()
    installed_by_ci = _requirements(extras=("dev", "onnx"))  # .ci/run: pip install -e ".[dev,onnx]"
    unpinned = [str(r) for r in installed_by_ci if _canonical(r.name) not in pins]
    assert not unpinned, f"constraints.txt pins none of {unpinned}: regenerate it (its header says how)"
    outside = {r.name: pins[_canonical(r.name)] for r in _requirements()
               if _canonical(r.name) in pins and not r.specifier.contains(pins[_canonical(r.name)], prereleases=True)}
    assert not outside, f"tested versions outside pyproject's bounds: {outside}"


def test_neuraloperator_layers_take_the_arguments_pdegen_passes() -> None:
    """pdegen.nets.fno and the FNO feature extractor call these layers positionally and by keyword, and
    reach into FNOBlocks' norm slots; neuraloperator has renamed such things between releases."""
    from neuralop.layers.channel_mlp import ChannelMLP
    from neuralop.layers.embeddings import GridEmbedding2D
    from neuralop.layers.fno_block import FNOBlocks
    from neuralop.layers.normalization_layers import AdaIN
    from neuralop.layers.padding import DomainPadding
    from neuralop.models import FNO

    expected = {  # leading positional parameters, then keywords pdegen passes
        ChannelMLP: (["in_channels", "out_channels"], ["hidden_channels", "n_layers"]),
        GridEmbedding2D: (["in_channels"], []),
        FNOBlocks: (["in_channels", "out_channels", "n_modes"], ["n_layers"]),
        AdaIN: (["embed_dim", "in_channels"], ["mlp"]),
        DomainPadding: (["domain_padding"], []),
        FNO: ([], ["n_modes", "in_channels", "out_channels", "hidden_channels", "n_layers"]),
    }
    for layer, (positional, keywords) in expected.items():
        parameters = list(inspect.signature(layer.__init__).parameters)[1:]
        assert parameters[:len(positional)] == positional, f"{layer.__name__}{inspect.signature(layer.__init__)}"
        assert set(keywords) <= set(parameters), f"{layer.__name__} lost {set(keywords) - set(parameters)}"
    blocks = FNOBlocks(4, 4, [2, 2], n_layers=2)
    assert blocks.n_norms == 2 and hasattr(blocks, "set_ada_in_embeddings") and hasattr(blocks, "norm")
    assert hasattr(FNO(n_modes=(2, 2), in_channels=1, out_channels=1, hidden_channels=4, n_layers=1), "projection")
