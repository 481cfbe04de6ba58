"""Fréchet distance between generated and held-out fields, on a pluggable feature extractor."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from torch import Tensor, nn
from torchmetrics.image.fid import FrechetInceptionDistance

from pdegen.callbacks.heldout import HeldOutEvaluation
from pdegen.callbacks.outputs import progress_shown

INCEPTION_FILE = "pt_inception-2015-12-05-6726825d.pth"
"""The torch-fidelity InceptionV3 weights file ``features: inception`` reads (never downloaded)."""


class InceptionFeatures(nn.Module):
    """InceptionV3 pool features (2048) of 3-channel images in [0, 1], from local weights only."""

    num_features = 2048

    def __init__(self, weights: str | None) -> None:
        super().__init__()
        if weights is None or not Path(weights).is_file():
            raise FileNotFoundError(
                f"InceptionV3 weights {weights!r} not found: pdegen downloads nothing at run time. Put "
                f"torch-fidelity's {INCEPTION_FILE} on this machine and pass its path as inception_weights, or use "
                "the physics features (a FeatureSurrogate checkpoint) for PDE fields")
        try:
            from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
        except ImportError as error:
            raise ImportError('InceptionV3 features need torch-fidelity: pip install torch-fidelity') from error
        self.net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=weights)
        self.net.eval()

    def forward(self, images: Tensor) -> Tensor:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"InceptionV3 features take RGB images (B, 3, H, W) in [0, 1], got {tuple(images.shape)}")
        return self.net((images.clamp(0, 1) * 255).to(torch.uint8))[0].reshape(len(images), -1)


def feature_extractor(features: str | nn.Module, inception_weights: str | None = None) -> nn.Module:
    """``features`` as a module: ``"inception"`` (local weights), a FeatureSurrogate checkpoint path, or a module."""
    if isinstance(features, nn.Module):
        return features
    if features == "inception":
        return InceptionFeatures(inception_weights)
    path = Path(features)
    if not path.is_file():
        raise FileNotFoundError(
            f"feature extractor checkpoint {features!r} not found: train one with `pdegen fit --config "
            "lightning_configs/features/<family>.yaml`, or give features: inception (with inception_weights) or a "
            "module by class_path")
    from pdegen.modules.checkpoints import load_module
    from pdegen.modules.features import FeatureSurrogate

    return load_module(FeatureSurrogate, path)


class FIDCallback(HeldOutEvaluation):
    """At the end of each validation (every ``every_n_epochs``) and test epoch, the Fréchet distance
    ``‖μ_g − μ_r‖² + tr(Σ_g + Σ_r − 2 (Σ_g Σ_r)^½)`` between the features of ``num_samples`` samples
    of the module (seed ``seed`` + rank) and of up to ``num_samples`` held-out ground-truth samples
    (torchmetrics' ``FrechetInceptionDistance`` with a custom extractor, states synchronised across
    DDP ranks), logged as ``{stage}/fid``.

    ``features``: the path of a :class:`~pdegen.modules.FeatureSurrogate` checkpoint (physics features
    of PDE fields: the default), ``"inception"`` for RGB image data (InceptionV3 pool features from
    ``inception_weights``, a local file: nothing is downloaded), or any ``nn.Module`` mapping
    physical-unit samples ``(B, C, *grid)`` to ``(B, F)`` (by class_path in the YAML). A distance is
    only comparable between runs with the same extractor and sample count (it is biased upwards by
    finite samples: two draws of the same data give a small positive value).
    """

    def __init__(self, features: str | nn.Module, num_samples: int = 64, every_n_epochs: int = 1, seed: int = 0,
                 inception_weights: str | None = None) -> None:
        if num_samples < 2:
            raise ValueError(f"num_samples must be at least 2 for a covariance, got {num_samples}")
        super().__init__(every_n_epochs)
        self.extractor = feature_extractor(features, inception_weights).eval().requires_grad_(False)
        self.num_samples, self.seed = num_samples, seed
        self.metric: FrechetInceptionDistance | None = None
        self._count = 0

    def begin(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self.metric is None:
            shape = tuple(pl_module.sample_shape)
            self.metric = FrechetInceptionDistance(feature=self.extractor, normalize=True, input_img_size=shape)
        self.metric = self.metric.to(pl_module.device)
        self.metric.reset()
        self._count = 0

    def add_reference(self, batch: Tensor) -> None:
        batch = batch[: max(0, self.num_samples - self._count)]
        if len(batch):
            self.metric.update(batch.double(), real=True)
            self._count += len(batch)

    def evaluate(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        generator = torch.Generator(device=pl_module.device).manual_seed(self.seed + trainer.global_rank)
        with progress_shown(trainer, "samples for the FID"):
            samples = pl_module.sample(self.num_samples, generator=generator)
        self.metric.update(samples, real=False)
        pl_module.log(f"{stage}/fid", self.metric.compute().float(), batch_size=1, sync_dist=False)
