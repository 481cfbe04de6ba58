"""``pdegen predict`` input for generators: how many samples to draw, as batches of sample indices."""

from __future__ import annotations

import lightning as L
import torch
from torch.utils.data import DataLoader


class SampleRequest(L.LightningDataModule):
    """``num_samples`` sample indices ``0 .. num_samples - 1`` in batches of ``batch_size``: a generator's
    ``predict_step`` draws one sample per index, its noise seeded by ``seed`` and the index alone (the
    same file whatever the batch size or the number of processes). The generator's PDE and normaliser
    come from its checkpoint, so no dataset is read."""

    def __init__(self, num_samples: int = 64, batch_size: int = 16, seed: int = 0) -> None:
        super().__init__()
        if num_samples < 1 or batch_size < 1:
            raise ValueError(f"num_samples and batch_size must be >= 1, got {num_samples} and {batch_size}")
        self.num_samples, self.batch_size, self.seed = num_samples, batch_size, seed

    def predict_dataloader(self) -> DataLoader:
        return DataLoader(torch.arange(self.num_samples), batch_size=self.batch_size)
