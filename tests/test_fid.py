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
from pdegen.pdes import Darcy

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


def test_frechet_distance_equals_the_scipy_sqrtm_formula_on_random_features():
    g = torch.Generator().manual_seed(0)
    real = torch.randn(300, 6, generator=g, dtype=torch.float64)
    fake = torch.randn(300, 6, generator=g, dtype=torch.float64) @ torch.randn(6, 6, generator=g, dtype=torch.float64)
    fake = fake + 0.5
    mu_r, mu_f = real.mean(0).numpy(), fake.mean(0).numpy()
    cov_r, cov_f = np.cov(real.numpy(), rowvar=False), np.cov(fake.numpy(), rowvar=False)
    expected = np.sum((mu_r - mu_f) ** 2) + np.trace(cov_r + cov_f - 2 * scipy.linalg.sqrtm(cov_r @ cov_f).real)
    assert frechet(Identity(6), real, fake) == pytest.approx(expected, rel=1e-6)
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
    assert surrogate.num_features == 16 * 4 and surrogate(real[:3]).shape == (3, 64)
    same = frechet(surrogate, real, other)
    std = real.std(dim=(0, 2, 3), keepdim=True)
    noisy = [frechet(surrogate, real, other + level * std * torch.randn(other.shape, generator=g, dtype=other.dtype))
             for level in (0.3, 1.0, 3.0)]
    blurred = [frechet(surrogate, real, blur(other, width)) for width in (3, 5, 7)]
    wrong = [frechet(surrogate, real, Darcy(resolution=16, a_high=a_high).generate(128, g)) for a_high in (9.0, 6.0)]
    for distances in (noisy, blurred, wrong):
        assert same < distances[0] and all(a < b for a, b in zip(distances, distances[1:])), (same, distances)
    assert same < 0.05 * noisy[-1] and same < 0.05 * wrong[-1], "two draws of one law are near zero"


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
    assert torch.isfinite(fitted.trainer.callback_metrics["val/fid"]) and fitted.trainer.callback_metrics["val/fid"] > 0
    tested = main(["test", *teacher, *fid, "--ckpt_path", "last"])
    assert tested.trainer.callback_metrics["test/fid"] > 0
    # any user module by class_path: here raw pixels (torch.nn.Flatten, its feature count probed)
    pixels = ["--trainer.callbacks+=pdegen.callbacks.FIDCallback", "--trainer.callbacks.num_samples=8",
              '--trainer.callbacks.features={"class_path": "torch.nn.Flatten"}']
    tested = main(["test", *teacher, *pixels, "--ckpt_path", "last"])
    (callback,) = [c for c in tested.trainer.callbacks if isinstance(c, FIDCallback)]
    assert isinstance(callback.extractor, torch.nn.Flatten) and tested.trainer.callback_metrics["test/fid"] > 0


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
