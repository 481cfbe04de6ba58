"""Shared fixtures: small Darcy problems and an isolated working directory for CLI runs."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest
import torch

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("MPLBACKEND", "Agg")
torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="session")
def load_tool():
    """``load_tool(name)``: ``tools/<name>.py`` as a fresh module, its settings free to change in place (registered
    in sys.modules as ``tools_<name>``: dataclasses look their module up there)."""

    def load(name: str):
        path = Path(__file__).resolve().parents[1] / "tools" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(f"tools_{name}", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        return module

    return load


@pytest.fixture(scope="session")
def small_darcy():
    from pdegen.pdes import Darcy

    return Darcy(resolution=16)


@pytest.fixture(scope="session")
def darcy_file(tmp_path_factory, small_darcy):
    """A 48-sample Darcy 16² dataset written once per test session."""
    from pdegen.datagen import generate_dataset

    path = tmp_path_factory.mktemp("data") / "darcy16.h5"
    generate_dataset(small_darcy, 48, seed=3, output=path, progress=False)
    return path


@pytest.fixture(scope="session")
def shared_data_cache(tmp_path_factory):
    """One folder of generated datasets for the whole session: a DataModule's cache file is named by the PDE's
    physics, the sample count and the seed, so tests asking for the same data generate it once."""
    return tmp_path_factory.mktemp("data_cache")


@pytest.fixture
def workdir(tmp_path, monkeypatch, shared_data_cache):
    """Run a CLI test inside its own directory (runs/ and checkpoints land there; its ``data`` folder, the
    configs' cache_dir, is the session's shared dataset cache)."""
    (tmp_path / "data").symlink_to(shared_data_cache, target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    return tmp_path


# data generation at full size takes minutes for the time-dependent families on a CPU: settings that
# shorten it without changing the layout a config trains on, by config file stem (or folder/stem)
CHEAPER_DATA = {
    "kolmogorov": ["--data.init_args.pde.init_args.sim_resolution=64", "--data.init_args.pde.init_args.burn_in=0.4"],
    "ks": ["--data.init_args.pde.init_args.burn_in=4.0"],
    **{f"conditional/{stem}": ["--data.init_args.pde.init_args.burn_in=4.0", "--data.init_args.test_num_samples=2",
                               "--data.init_args.test_pde.init_args.burn_in=4.0"]
       for stem in ("ks", "ks_joint", "ks_amortised", "ks_mse", "ks_cpu")},
    **{f"conditional/{stem}": [f"--data.init_args.{pde}.init_args.{setting}" for pde in ("pde", "test_pde")
                               for setting in ("sim_resolution=64", "burn_in=0.4")]
       + ["--data.init_args.test_num_samples=2"] for stem in ("kolmogorov", "kolmogorov_joint", "kolmogorov_cpu")},
}


@pytest.fixture
def cheaper_data():
    return CHEAPER_DATA


def fewer_callback_samples(config: str | os.PathLike, directory: os.PathLike, num_samples: int = 8) -> list[str]:
    """``--config`` arguments that run ``config``'s own callbacks with at most ``num_samples`` samples each (the
    evaluation sizes of a real run; a CLI test proves what runs and what is reported, not the statistics)."""
    import yaml

    from pdegen.io import read_config

    callbacks = read_config(config).get("trainer", {}).get("callbacks", [])
    for callback in callbacks:
        settings = callback.get("init_args") or {}
        if "num_samples" in settings:
            settings["num_samples"] = min(settings["num_samples"], num_samples)
    path = Path(directory) / f"fewer_samples_{Path(config).stem}.yaml"
    path.write_text(yaml.safe_dump({"trainer": {"callbacks": callbacks}}))
    return ["--config", str(path)]


@pytest.fixture
def fewer_samples(tmp_path):
    """:func:`fewer_callback_samples` writing its YAML into the test's directory."""
    return lambda config, num_samples=8: fewer_callback_samples(config, tmp_path, num_samples)
