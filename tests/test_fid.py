"""Fréchet distance: the formula against scipy, the physics features' behaviour, FIDCallback through the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn.functional as F

from pdegen.callbacks.fid import FIDCallback, FrechetInceptionDistance, feature_extractor
from pdegen.modules import FeatureSurrogate
from pdegen.pdes import Burgers, Darcy

ROOT = Path(__file__).resolve().parents[1]


class Identity(torch.nn.Module):
    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features

    def forward(self, x):
        return x


def frechet(extractor: torch.nn.Module, real: torch.Tensor, fake: torch.Tensor) -> float:
    metric = FrechetInceptionDistance(feature=extractor, normalize=True, input_img_size=tuple(real.shape[1:]))
    with torch.no_grad():
        metric.update(real, real=True)
        metric.update(fake, real=False)
        return float(metric.compute())


def frechet_reference(real_features: torch.Tensor, fake_features: torch.Tensor) -> float:
    """``‖μ_r − μ_f‖² + tr Σ_r + tr Σ_f − 2 tr (Σ_r^½ Σ_f Σ_r^½)^½`` in numpy from symmetric
    eigendecompositions: independent of torchmetrics, and stable for the rank-deficient covariances of
    fewer samples than features (where scipy's sqrtm of Σ_r Σ_f is not)."""
    real, fake = real_features.double().numpy(), fake_features.double().numpy()
    cov_r, cov_f = np.cov(real, rowvar=False), np.cov(fake, rowvar=False)
    values, vectors = np.linalg.eigh(cov_r)
    root = (vectors * np.sqrt(values.clip(min=0))) @ vectors.T
    cross = np.linalg.eigvalsh(root @ cov_f @ root).clip(min=0)
    mean = np.sum((real.mean(0) - fake.mean(0)) ** 2)
    return float(mean + np.trace(cov_r) + np.trace(cov_f) - 2 * np.sqrt(cross).sum())


def test_frechet_distance_equals_the_scipy_sqrtm_formula_on_random_features():
    g = torch.Generator().manual_seed(0)
    real = torch.randn(300, 6, generator=g, dtype=torch.float64)
    fake = torch.randn(300, 6, generator=g, dtype=torch.float64) @ torch.randn(6, 6, generator=g, dtype=torch.float64)
    fake = fake + 0.5
    mu_r, mu_f = real.mean(0).numpy(), fake.mean(0).numpy()
    cov_r, cov_f = np.cov(real.numpy(), rowvar=False), np.cov(fake.numpy(), rowvar=False)
    expected = np.sum((mu_r - mu_f) ** 2) + np.trace(cov_r + cov_f - 2 * scipy.linalg.sqrtm(cov_r @ cov_f).real)
    assert frechet(Identity(6), real, fake) == pytest.approx(expected, rel=1e-6)
    assert frechet_reference(real, fake) == pytest.approx(expected, rel=1e-9)
    assert frechet(Identity(6), real, real) == pytest.approx(0, abs=1e-8)


@pytest.fixture(scope="module")
def darcy_surrogate():
    """A small FeatureSurrogate trained on 256 Darcy 16² samples (300 Adam steps)."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    pde = Darcy(resolution=16)
    train = pde.generate(256, g)
    surrogate = FeatureSurrogate(channels=2, width=16, modes=6, n_layers=3)
    surrogate.attach_pde(pde)
    surrogate.normalizer.set_stats(*surrogate.normalizer.stats_of(train))
    optimizer = torch.optim.Adam(surrogate.parameters(), lr=3e-3)
    for _ in range(300):
        loss, rel_l2 = surrogate._loss_terms(train[torch.randint(0, 256, (32,), generator=g)])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert rel_l2 < 0.2, "the surrogate learns the solution operator a -> u"
    return surrogate.eval(), g


def blur(x: torch.Tensor, width: int) -> torch.Tensor:
    kernel = torch.ones(x.shape[1], 1, width, width, dtype=x.dtype) / width**2
    return F.conv2d(F.pad(x, (width // 2,) * 4, mode="replicate"), kernel, groups=x.shape[1])


def test_physics_features_distance_is_near_zero_for_the_same_law_and_grows_with_each_perturbation(darcy_surrogate):
    surrogate, g = darcy_surrogate
    pde = Darcy(resolution=16)
    real, other = pde.generate(128, g), pde.generate(128, g)
    assert surrogate.num_features == (16 + 2) * 4 and surrogate(real[:3]).shape == (3, 72)
    same = frechet(surrogate, real, other)
    std = real.std(dim=(0, 2, 3), keepdim=True)
    noisy = [frechet(surrogate, real, other + level * std * torch.randn(other.shape, generator=g, dtype=other.dtype))
             for level in (0.3, 1.0, 3.0)]
    blurred = [frechet(surrogate, real, blur(other, width)) for width in (3, 5, 7)]
    wrong = [frechet(surrogate, real, Darcy(resolution=16, a_high=a_high).generate(128, g)) for a_high in (9.0, 6.0)]
    for distances in (noisy, blurred, wrong):
        assert same < distances[0] and all(a < b for a, b in zip(distances, distances[1:])), (same, distances)
    assert same < 0.05 * noisy[-1] and same < 0.05 * wrong[-1], "two draws of one law are near zero"


def test_physics_features_see_the_solution_and_its_coupling_to_the_input_not_only_the_input(darcy_surrogate):
    """Darcy's coefficient a kept, its solution u changed: u replaced by N(0, 100²) noise changes the
    features; noise on u alone raises the distance monotonically with its size; and each sample's u
    swapped for another sample's (a and u each keep their law, only their coupling breaks) puts the
    distance far above the same-law floor. Features of the input part alone miss all three."""
    surrogate, _ = darcy_surrogate
    g = torch.Generator().manual_seed(1)
    pde = Darcy(resolution=16)
    real, other = pde.generate(128, g), pde.generate(128, g)
    unknown = ~pde.input_mask
    assert unknown[1].all() and not unknown[0].any(), "u is the whole unknown part"
    garbage = torch.where(unknown, 100 * torch.randn(other.shape, generator=g, dtype=other.dtype), other)
    with torch.no_grad():
        assert (surrogate(garbage) - surrogate(other)).abs().max() > 1
    same = frechet(surrogate, real, other)
    assert frechet(surrogate, real, garbage) > 1e4 * same
    noise = real.std(dim=(0, 2, 3), keepdim=True) * torch.randn(other.shape, generator=g, dtype=other.dtype) * unknown
    noisy = [frechet(surrogate, real, other + level * noise) for level in (0.1, 0.3, 1.0)]
    assert same < noisy[0] and all(a < b for a, b in zip(noisy, noisy[1:])), (same, noisy)
    assert same < 0.05 * noisy[-1]
    swapped = torch.stack([other[:, 0], other[torch.randperm(len(other), generator=g), 1]], dim=1)
    assert frechet(surrogate, real, swapped) > 10 * same


def test_physics_features_see_the_later_time_levels_of_a_trajectory():
    """Burgers (16 points, 8 stored times; the input part is the initial state): noise on one later time
    level alone changes the features, and noise on all times t > 0, the initial state kept, raises the
    distance monotonically with its size. The surrogate is an untrained (seeded) FNO, as training one
    costs minutes on a CPU: this checks that the completion error is pooled over every non-input entry,
    later times included, not that it measures physics (the trained Darcy surrogate's tests do that)."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    pde = Burgers(resolution=16, num_times=8)
    surrogate = FeatureSurrogate(channels=1, width=8, modes=4, n_layers=2)
    surrogate.attach_pde(pde)
    real, other = pde.generate(64, g), pde.generate(64, g)
    surrogate.normalizer.set_stats(*surrogate.normalizer.stats_of(real))
    surrogate.eval()
    later = torch.ones(pde.sample_shape, dtype=torch.bool)
    later[:, 0] = False
    assert torch.equal(~pde.input_mask, later)
    noise = real.std() * torch.randn(other.shape, generator=g, dtype=other.dtype)
    last = other.clone()
    last[:, :, -1] += 0.1 * noise[:, :, -1]
    with torch.no_grad():
        assert (surrogate(last) - surrogate(other)).abs().max() > 1e-3
        assert surrogate(other).shape == (64, surrogate.num_features) == (64, (8 + 1) * 4)
    same = frechet(surrogate, real, other)
    noisy = [frechet(surrogate, real, other + level * noise * later) for level in (0.1, 0.3, 1.0)]
    assert same < noisy[0] and all(a < b for a, b in zip(noisy, noisy[1:])), (same, noisy)
    assert same < 0.05 * noisy[-1]


def test_feature_extractors_fail_clearly_without_their_files(tmp_path):
    missing = "inception.pth. not found: pdegen downloads nothing.*pt_inception-2015-12-05-6726825d.pth"
    with pytest.raises(FileNotFoundError, match=missing):
        feature_extractor("inception", inception_weights=str(tmp_path / "inception.pth"))
    with pytest.raises(FileNotFoundError, match="lightning_configs/features/<family>.yaml"):
        FIDCallback(features=str(tmp_path / "missing.ckpt"))
    with pytest.raises(ValueError, match="num_samples must be at least 2"):
        FIDCallback(features=Identity(3), num_samples=1)


TINY = ["--data.init_args.pde.init_args.resolution=16", "--data.init_args.num_samples=40",
        "--data.init_args.batch_size=8", "--trainer.max_epochs=2", "--trainer.limit_train_batches=2",
        "--trainer.enable_progress_bar=false"]


def assert_logged_fid_is_recomputed(cli, stage: str, extractor: torch.nn.Module) -> None:
    """``{stage}/fid`` equals the Fréchet distance, computed here from ``extractor``'s features, between
    the stage's first 8 held-out samples and the module's 8 samples of seed 0 (the callback's draw)."""
    loader = cli.datamodule.test_dataloader() if stage == "test" else cli.datamodule.val_dataloader()
    real = torch.cat(list(loader))[:8].double()
    fake = cli.model.sample(8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = frechet_reference(extractor(real), extractor(fake))
    assert float(cli.trainer.callback_metrics[f"{stage}/fid"]) == pytest.approx(expected, rel=1e-5)


def test_features_command_then_fid_of_a_generator_through_the_cli(workdir):
    from pdegen.cli import main

    main(["fit", "--config", str(ROOT / "lightning_configs/quickstart/features_darcy.yaml"), *TINY,
          "--model.init_args.modes=6"])
    checkpoint = workdir / "runs/quickstart_features/checkpoints/last.ckpt"
    loaded = feature_extractor(str(checkpoint))
    assert isinstance(loaded, FeatureSurrogate) and loaded.pde.describe() == Darcy(resolution=16).describe()
    fid = ["--trainer.callbacks+=pdegen.callbacks.FIDCallback", f"--trainer.callbacks.features={checkpoint}",
           "--trainer.callbacks.num_samples=8"]
    teacher = ["--config", str(ROOT / "lightning_configs/quickstart/darcy.yaml"), *TINY,
               "--model.init_args.net.init_args.base_channels=8", "--model.init_args.num_steps=4",
               "--trainer.check_val_every_n_epoch=1", "--trainer.callbacks.init_args.num_samples=8"]
    fitted = main(["fit", *teacher, *fid])
    assert_logged_fid_is_recomputed(fitted, "val", loaded)
    tested = main(["test", *teacher, *fid, "--ckpt_path", "last"])
    assert_logged_fid_is_recomputed(tested, "test", loaded)
    # any user module by class_path: here raw pixels (torch.nn.Flatten, its feature count probed)
    pixels = ["--trainer.callbacks+=pdegen.callbacks.FIDCallback", "--trainer.callbacks.num_samples=8",
              '--trainer.callbacks.features={"class_path": "torch.nn.Flatten"}']
    tested = main(["test", *teacher, *pixels, "--ckpt_path", "last"])
    (callback,) = [c for c in tested.trainer.callbacks if isinstance(c, FIDCallback)]
    assert isinstance(callback.extractor, torch.nn.Flatten)
    assert_logged_fid_is_recomputed(tested, "test", torch.nn.Flatten())


FEATURE_CONFIGS = sorted((ROOT / "lightning_configs/features").glob("*.yaml")) + [
    ROOT / "lightning_configs/quickstart/features_darcy.yaml"]


@pytest.mark.parametrize("config", FEATURE_CONFIGS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_features_config_trains_a_step(config, workdir, cheaper_data):
    from pdegen.cli import main

    cheaper = ["--data.init_args.num_samples=12", "--data.init_args.batch_size=4", "--data.init_args.num_workers=0",
               "--trainer.accelerator=cpu", "--trainer.enable_progress_bar=false", "--model.init_args.width=4",
               "--model.init_args.modes=4", "--model.init_args.n_layers=1",
               *cheaper_data.get(config.stem.removeprefix("features_"), [])]
    cli = main(["fit", "--config", str(config), "--trainer.fast_dev_run=true", *cheaper])
    assert cli.trainer.state.finished and cli.model.pde.name == cli.datamodule.pde.name
