"""Shared fixtures: small Darcy problems and an isolated working directory for CLI runs."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("MPLBACKEND", "Agg")
torch.set_num_threads(min(2, torch.get_num_threads()))


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


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """Run a CLI test inside its own directory (data caches, runs/ and checkpoints land there)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


# data generation at full size takes minutes for the time-dependent families on a CPU: settings that
# shorten it without changing the layout a config trains on, by config file stem
CHEAPER_DATA = {
    "kolmogorov": ["--data.init_args.pde.init_args.sim_resolution=64", "--data.init_args.pde.init_args.burn_in=0.4"],
    "ks": ["--data.init_args.pde.init_args.burn_in=4.0"],
}


@pytest.fixture
def cheaper_data():
    return CHEAPER_DATA
