"""``pdegen predict`` input: sample indices for generators (:class:`SampleRequest`), trajectories and observations
from a user's file for forecasters (:class:`ForecastRequest`)."""

from __future__ import annotations

from typing import Any

import h5py
import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from pdegen.io import read_channels, read_info
from pdegen.pdes import PDE


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


class ForecastRequest(L.LightningDataModule):
    """``pdegen predict`` input for a forecaster (a :class:`~pdegen.modules.WindowForecaster`): trajectories to
    forecast, and sparse observations to assimilate, from a user's HDF5 file in pdegen's dataset layout (one
    dataset per channel ``(N, T, *space)`` in physical units, the PDE in the attributes: what ``pdegen-data
    generate`` and :class:`~pdegen.io.DatasetWriter` write).

    - Forecasting: each trajectory is forecast from its first ``initial_states`` states (default: the model's
      ``history``) to ``num_states`` states (default: the file's T). States past the initial ones are not read
      and may be NaN (a file of initial conditions).
    - Data assimilation: a dataset ``mask`` in the file, bool or 0/1, ``(N, T, *space)`` (every channel observed
      at the same entries) or ``(N, C, T, *space)``, marks the observed entries (values elsewhere are ignored
      and may be NaN); the forecasts span the file's T states, and the initial states are the leading states the
      mask observes everywhere (or the first ``initial_states``).

    Each trajectory gets ``members`` forecasts: item i is member i mod ``members`` of trajectory i // ``members``,
    its noise drawn from (``seed``, i) alone, so the output does not depend on the batch size or the number of
    processes. A file that contradicts itself (a mask of another shape or count, NaN where observed or in the
    initial states) fails at setup; the model refuses a file of another family or grid and too few initial
    states for its history.
    """

    def __init__(self, file: str, num_states: int | None = None, initial_states: int | None = None,
                 members: int = 1, batch_size: int = 8, seed: int = 0) -> None:
        super().__init__()
        for name, value, least in (("members", members, 1), ("batch_size", batch_size, 1),
                                   ("num_states", num_states, 1), ("initial_states", initial_states, 0)):
            if value is not None and (int(value) != value or value < least):
                raise ValueError(f"{name} must be an integer >= {least}, got {value}")
        self.file, self.num_states, self.initial_states = file, num_states, initial_states
        self.members, self.batch_size, self.seed = int(members), int(batch_size), seed
        self.file_pde: PDE | None = None
        """The PDE the file's attributes name (its ``num_states`` the file's T)."""
        self.items: list[dict[str, Tensor]] = []
        self.given: int | None = None

    def setup(self, stage: str) -> None:
        info = read_info(self.file)
        self.file_pde = info.pde
        with h5py.File(info.path, "r") as f:
            values = torch.from_numpy(read_channels(f, info)).double()
            mask = torch.from_numpy(f["mask"][()]) if "mask" in f else None
        given = self.initial_states
        if given is not None and given > values.shape[2]:
            raise ValueError(f"initial_states={given} but {self.file} holds {values.shape[2]} states")
        extra: dict[str, Tensor] = {}
        if mask is not None:
            mask = self._checked_mask(mask, values)
            if self.num_states not in (None, values.shape[2]):
                raise ValueError(f"{self.file}: observations span its {values.shape[2]} states, but num_states is "
                                 f"{self.num_states}: leave num_states out (the forecasts span the observations)")
            if not bool(torch.isfinite(values[mask]).all()):
                bad = int((mask & ~torch.isfinite(values)).flatten(1).any(1).nonzero()[0])
                raise ValueError(f"{self.file}: trajectory {bad} has NaN or inf values where its mask says observed: "
                                 "fix the values or unmark those entries in 'mask'")
            if given is None:  # the leading states observed everywhere, in every trajectory
                whole = mask.flatten(3).all(-1).all(1).all(0)
                given = values.shape[2] if bool(whole.all()) else int(whole.int().argmin())
        elif self.num_states is not None:
            extra["num_states"] = torch.tensor(self.num_states)
        if given is not None:
            initial = values[:, :, :given]
            if not bool(torch.isfinite(initial).all()):
                bad = int((~torch.isfinite(initial)).flatten(1).any(1).nonzero()[0])
                raise ValueError(f"{self.file}: the initial states (the first {given}) of trajectory {bad} are not "
                                 "finite (nan or inf): give every initial state in full, or set initial_states")
            extra["initial_states"] = torch.tensor(given)
        self.given = given
        self.items = [{"trajectory": values[i]} | extra
                      | ({} if mask is None else {"mask": mask[i], "observed": torch.where(mask[i], values[i], 0.0)})
                      for i in range(len(values))]

    def _checked_mask(self, mask: Tensor, values: Tensor) -> Tensor:
        """The file's mask as bool ``values.shape``: one mask for every channel is broadcast."""
        if mask.dtype != torch.bool and not bool(((mask == 0) | (mask == 1)).all()):
            raise ValueError(f"{self.file}: 'mask' must be bool or 0/1 (True: observed), got values other than 0 and 1")
        if len(mask) != len(values):
            raise ValueError(f"{self.file}: 'mask' holds {len(mask)} trajectories but the values hold {len(values)}: "
                             "one mask per trajectory")
        shapes = (tuple(values.shape[:1] + values.shape[2:]), tuple(values.shape))
        if tuple(mask.shape) not in shapes:
            raise ValueError(f"{self.file}: 'mask' has shape {tuple(mask.shape)}, the values {tuple(values.shape)} "
                             f"(trajectories, channels, states, *space): give it shape {shapes[0]} (every channel) "
                             f"or {shapes[1]}")
        mask = mask.bool()
        return (mask if mask.ndim == values.ndim else mask[:, None]).expand_as(values).clone()

    def provenance(self) -> dict[str, Any]:
        """What the written file records about the request."""
        return {"file": str(self.file), "members": self.members, "seed": self.seed,
                "initial_states": "the model's history" if self.given is None else self.given}

    def predict_dataloader(self) -> DataLoader:
        return DataLoader(_Members(self.items, self.members), batch_size=self.batch_size)


class _Members(Dataset):
    """Item i: the request of trajectory i // members, with its index i."""

    def __init__(self, items: list[dict[str, Tensor]], members: int) -> None:
        self.items, self.members = items, members

    def __len__(self) -> int:
        return len(self.items) * self.members

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        return self.items[index // self.members] | {"index": torch.tensor(index)}
