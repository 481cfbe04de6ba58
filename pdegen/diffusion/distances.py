"""Per-sample distances d(x, y) -> (B,) for distillation losses: L2, L1, pseudo-Huber, LPIPS.

Inputs are normalised fields (unit std per channel) of shape ``(B, ...)``; every distance
reduces over all non-batch dimensions. ``get_distance(name)`` builds one from its YAML name.
"""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor, nn


class Distance(nn.Module):
    """Base: ``forward(x, y) -> (B,)``, zero iff x = y (LPIPS excepted, which is only a pseudo-metric)."""

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        if x.shape != y.shape:
            raise ValueError(f"distance between tensors of different shapes {tuple(x.shape)} and {tuple(y.shape)}")
        return self.per_sample(x, y)

    def per_sample(self, x: Tensor, y: Tensor) -> Tensor:
        raise NotImplementedError


class L2Distance(Distance):
    """Mean squared difference over the elements of each sample: ‖x − y‖² / dim."""

    def per_sample(self, x: Tensor, y: Tensor) -> Tensor:
        return (x - y).square().flatten(1).mean(dim=1)


class L1Distance(Distance):
    """Mean absolute difference over the elements of each sample: ‖x − y‖₁ / dim."""

    def per_sample(self, x: Tensor, y: Tensor) -> Tensor:
        return (x - y).abs().flatten(1).mean(dim=1)


class PseudoHuberDistance(Distance):
    """sqrt(‖x − y‖² + c²) − c (Song & Dhariwal 2023, improved consistency training): quadratic for
    ‖x − y‖ ≪ c, linear beyond. ``c`` defaults to 0.00054·sqrt(dim), their choice for unit-scale data."""

    def __init__(self, c: float | None = None) -> None:
        super().__init__()
        if c is not None and c <= 0:
            raise ValueError(f"the pseudo-Huber constant c must be positive, got {c}")
        self.c = c

    def per_sample(self, x: Tensor, y: Tensor) -> Tensor:
        diff = (x - y).flatten(1)
        c = self.c if self.c is not None else 0.00054 * math.sqrt(diff.shape[1])
        squared = diff.square().sum(dim=1)
        return squared / ((squared + c**2).sqrt() + c)  # = sqrt(‖d‖² + c²) − c without cancellation


class LPIPSDistance(Distance):
    """LPIPS (Zhang et al. 2018) on each channel of 2-D fields ``(B, C, H, W)``, averaged over channels.

    Each channel is shown to the network as a grey image (repeated to RGB), bilinearly resized to
    ``resolution``² (224, the VGG input size), values as they are (normalised fields are roughly in
    [−1, 1], LPIPS's range). Needs the optional ``lpips`` extra (``pip install "pdegen[lpips]"``) and
    its VGG weights in the local torch cache; the network is frozen and kept out of the state dict.
    """

    def __init__(self, net: str = "vgg", resolution: int = 224) -> None:
        super().__init__()
        try:
            import lpips
        except ImportError as err:  # torchvision is a dependency of lpips
            raise ImportError(
                "distance 'lpips' needs the optional lpips package (and torchvision): "
                "pip install 'pdegen[lpips]', or choose distance: l2, l1 or pseudo_huber"
            ) from err
        model = lpips.LPIPS(net=net, verbose=False).eval().requires_grad_(False)
        self._model = [model]  # a list keeps it out of parameters(), the state dict and the EMA copy
        self.resolution = resolution

    def per_sample(self, x: Tensor, y: Tensor) -> Tensor:
        if x.ndim != 4:
            raise ValueError(f"LPIPS compares 2-D fields (B, C, H, W), got {tuple(x.shape)}; "
                             "use l2, l1 or pseudo_huber")
        model = self._model[0].to(x.device)
        b, c, h, w = x.shape
        size = (self.resolution, self.resolution)

        def images(t: Tensor) -> Tensor:
            grey = t.reshape(b * c, 1, h, w).float()
            return F.interpolate(grey, size=size, mode="bilinear", align_corners=False).expand(-1, 3, -1, -1)

        return model(images(x), images(y)).reshape(b, c).mean(dim=1).to(x.dtype)


DISTANCES: dict[str, type[Distance]] = {
    "l2": L2Distance, "l1": L1Distance, "pseudo_huber": PseudoHuberDistance, "lpips": LPIPSDistance,
}


def get_distance(name: str, **kwargs) -> Distance:
    """The distance called ``name`` (a key of :data:`DISTANCES`), built with ``kwargs``."""
    if name not in DISTANCES:
        raise ValueError(f"unknown distance {name!r}; choose one of {sorted(DISTANCES)}")
    return DISTANCES[name](**kwargs)
