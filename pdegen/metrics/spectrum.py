"""Radially averaged power spectra of 2-D fields (torch.fft)."""

from __future__ import annotations

import torch
from torch import Tensor


def radial_power_spectrum(x: Tensor) -> tuple[Tensor, Tensor]:
    """Power of fields ``x`` ``(..., H, W)`` per integer wavenumber shell: ``(k (K,), power (..., K))``.

    ``|x̂(k)|² / (H W)²`` of the 2-D DFT (the fields' periodic extension, no window), summed over the
    wavevectors with ``round(|k|) = k`` in grid-index units (k = 0 is the mean; K - 1 the largest |k|).
    By Parseval the shells sum to the fields' mean square ``mean(x²)``; a plane wave of integer
    wavenumber n puts all its power in shell n.
    """
    height, width = x.shape[-2:]
    power = torch.fft.fft2(x.double()).abs().square() / (height * width) ** 2
    ky = torch.fft.fftfreq(height, 1 / height, dtype=torch.float64, device=x.device)
    kx = torch.fft.fftfreq(width, 1 / width, dtype=torch.float64, device=x.device)
    shell = torch.sqrt(ky[:, None] ** 2 + kx[None, :] ** 2).round().long().flatten()
    num_shells = int(shell.max()) + 1
    flat = power.flatten(-2)
    spectrum = torch.zeros(*flat.shape[:-1], num_shells, dtype=torch.float64, device=x.device)
    spectrum.index_add_(-1, shell, flat)
    return torch.arange(num_shells, device=x.device), spectrum
