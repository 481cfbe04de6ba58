"""A generate-or-load LightningDataModule shared by every PDE family."""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Literal

import lightning as L
import torch
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from pdegen.datagen import generate_dataset
from pdegen.io import DatasetInfo, load_samples, read_info
from pdegen.metrics import reference_residual_scales
from pdegen.pdes import PDE
from pdegen.seeding import seeded_generator

from .samples import FileSamples, TensorSamples, channel_stats


class EpochShuffle(Sampler[int]):
    """A random order of ``range(size)`` drawn from ``seed`` and the epoch (Lightning calls
    :meth:`set_epoch` before each epoch): a run resumed from a checkpoint sees the batches the
    uninterrupted run would have seen, which a global-RNG shuffle does not give. ``dataset``: a dataset
    that changes with the epoch (``set_epoch``, e.g. fresh noise) is told the epoch too."""

    def __init__(self, size: int, seed: int, dataset: Dataset | None = None) -> None:
        self.size, self.seed, self.epoch = size, seed, 0
        self.on_epoch = getattr(dataset, "set_epoch", None)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if self.on_epoch is not None:
            self.on_epoch(epoch)

    def __len__(self) -> int:
        return self.size

    def __iter__(self):
        return iter(torch.randperm(self.size, generator=seeded_generator("shuffle", self.seed, self.epoch)).tolist())


def _evaluation_sampler(dataset: Dataset) -> Sampler | None:
    """Under DDP, each rank's share of an evaluation split with no sample repeated (Lightning's default
    sampler pads the last shard with repeats, which would count them twice in the metrics)."""
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    if distributed and torch.distributed.get_world_size() > 1:
        return UnrepeatedDistributedSampler(dataset, shuffle=False)
    return None


class PDEDataModule(L.LightningDataModule):
    """Samples of one PDE in physical units, generated once into ``cache_dir`` or read from ``file``.

    ``generate_device``: where the reference solver runs ("auto": the GPU when there is one).
    Samples are read from the file when a batch asks for them (:class:`~datamodules.samples.FileSamples`:
    memory per process independent of the file's size; ``in_memory: true`` reads each split once instead, for
    small sets) and served in float64, so ground-truth residuals stay at round-off level (``storage_dtype:
    float32`` halves the file of a generated set, at float32 round-off); the model casts batches to its own
    precision. The split is a seeded permutation
    (``split_seed``) into train/val/test fractions ``splits``; the training batches are shuffled by
    ``seed`` and the epoch (:class:`EpochShuffle`), so a resumed fit sees the same batches. Under DDP
    the file is generated once, by global rank 0 (``cache_dir`` must be on a filesystem every node
    sees), and each rank reads the samples its sampler gives it; the evaluation splits are sharded without repeats.
    ``test_pde``: a separate test set of ``test_num_samples`` trajectories of the same family that differ only in
    ``num_states`` (forecasts evaluated on longer trajectories than the training ones), generated with seed + 1.
    ``normalizer_stats`` gives the per-channel mean and std of the training split (one streaming pass, by every
    rank) and ``residual_scales``
    the data's residual normalisation; the model copies both, so they travel in its checkpoint.
    """

    def __init__(self, pde: PDE, num_samples: int = 1000, seed: int = 0, cache_dir: str = "data",
                 file: str | None = None, splits: tuple[float, float, float] = (0.8, 0.1, 0.1),
                 split_seed: int = 0, batch_size: int = 32, eval_batch_size: int | None = None,
                 num_workers: int = 0, generate_device: str = "auto", test_pde: PDE | None = None,
                 test_num_samples: int = 128, in_memory: bool = False,
                 storage_dtype: Literal["float64", "float32"] = "float64") -> None:
        super().__init__()
        if test_pde is not None:
            self._check_test_pde(pde, test_pde, splits)
        self.prepare_data_per_node = False  # generated once, by global rank 0, into a shared cache_dir
        if len(splits) != 3 or any(s < 0 for s in splits) or abs(sum(splits) - 1.0) > 1e-6:
            raise ValueError(f"splits must be three non-negative fractions summing to 1, got {splits}")
        if num_samples < 3 and file is None:
            raise ValueError(f"num_samples must be at least 3 to fill train/val/test, got {num_samples}")
        self.pde = pde
        self.num_samples = num_samples
        self.seed = seed
        self.cache_dir = Path(cache_dir)
        self.file = file
        self.splits = tuple(splits)
        self.split_seed = split_seed
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.generate_device = generate_device
        self.test_pde, self.test_num_samples = test_pde, int(test_num_samples)
        self.in_memory, self.storage_dtype = in_memory, storage_dtype
        self.datasets: dict[str, TensorSamples | FileSamples] = {}

    @staticmethod
    def _check_test_pde(pde: PDE, test_pde: PDE, splits) -> None:
        """A separate test set may differ from the training data only in the number of stored states."""
        if type(test_pde) is not type(pde) or "num_states" not in pde.physics():
            raise ValueError(f"test_pde ({test_pde.name}) must be the same time-dependent family as pde ({pde.name})")
        differs = pde.physics_differences(test_pde, ignore=("num_states",))
        if differs:
            raise ValueError(f"test_pde may differ from pde only in num_states (longer test trajectories); it differs "
                             f"in {differs} (pde's value first)")
        if splits[2] != 0:
            raise ValueError(f"with a test_pde the test split is its own file: set splits' test fraction to 0, e.g. "
                             f"splits: [{splits[0] + splits[2]:g}, {splits[1]:g}, 0]")

    @property
    def path(self) -> Path:
        """The dataset file: ``file`` if given, else a name derived from the PDE parameters and seed."""
        if self.file is not None:
            return Path(self.file)
        return self._cache_path(self.pde, self.num_samples, self.seed)

    def _cache_path(self, pde: PDE, num_samples: int, seed: int) -> Path:
        digest = hashlib.sha1(json.dumps(pde.physics(), sort_keys=True).encode()).hexdigest()[:10]
        precision = "" if self.storage_dtype == "float64" else "_float32"
        return self.cache_dir / f"{pde.name}_{digest}_n{num_samples}_seed{seed}{precision}.h5"

    @property
    def test_path(self) -> Path | None:
        """The separate test file of ``test_pde`` (its trajectories drawn with seed + 1), or ``None``."""
        if self.test_pde is None:
            return None
        return self._cache_path(self.test_pde, self.test_num_samples, self.seed + 1)

    def prepare_data(self) -> None:
        device = self.generate_device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if self.file is None and not self.path.exists():
            generate_dataset(self.pde, self.num_samples, self.seed, self.path, device=device, dtype=self.storage_dtype)
        if self.test_path is not None and not self.test_path.exists():
            generate_dataset(self.test_pde, self.test_num_samples, self.seed + 1, self.test_path, device=device,
                             dtype=self.storage_dtype)

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        info = read_info(self.path)
        if info.pde.physics() != self.pde.physics():
            raise ValueError(f"{self.path} holds {info.pde.physics()}, but the config asks for "
                             f"{self.pde.physics()}: point `file` at a matching dataset or fix the PDE settings")
        permutation = torch.randperm(info.num_samples, generator=torch.Generator().manual_seed(self.split_seed))
        sizes = [int(round(f * info.num_samples)) for f in self.splits[:2]]
        bounds = [0, sizes[0], sizes[0] + sizes[1], info.num_samples]
        data = load_samples(self.path, dtype=torch.float64)[0] if self.in_memory else None  # read once
        for name, lo, hi in zip(("train", "val", "test"), bounds[:-1], bounds[1:]):
            self.datasets[name] = self._samples(info, permutation[lo:hi], data)
        del data
        if self.test_path is not None:
            self.datasets["test"] = self._samples(read_info(self.test_path))
        if len(self.datasets["train"]) < 2:
            raise ValueError(f"the training split has {len(self.datasets['train'])} samples; raise num_samples")

    def _samples(self, info: DatasetInfo, rows: Tensor | None = None,
                 data: Tensor | None = None) -> TensorSamples | FileSamples:
        """The samples ``rows`` (default: all) of the dataset file ``info`` describes: read when asked, or, with
        ``in_memory``, taken from its whole ``data`` (read now if not given)."""
        rows = torch.arange(info.num_samples) if rows is None else rows
        if self.in_memory:
            return TensorSamples((load_samples(info.path, dtype=torch.float64)[0] if data is None else data)[rows])
        return FileSamples(info.path, info.pde.channels, rows, info.pde.grid.shape)

    @functools.cached_property
    def normalizer_stats(self) -> tuple[Tensor, Tensor]:
        """Per-channel (mean, std) of the training split, float64, from one streaming pass over it."""
        self.setup()
        return channel_stats(self.datasets["train"])

    residual_scale_samples = 64
    """Training samples :attr:`residual_scales` averages over (enough for a mean, bounded in memory)."""

    @functools.cached_property
    def residual_scales(self) -> dict[str, float]:
        """The fixed normalisation of every residual loss (:func:`pdegen.metrics.residual_loss`): the mean
        squared region norms of ``pde.residual_scale`` over the first :attr:`residual_scale_samples`
        training samples. Teachers copy them into their checkpoint; students and baselines take the teacher's."""
        self.setup()
        train = self.datasets["train"]
        return reference_residual_scales(self.pde, train.take(range(min(len(train), self.residual_scale_samples))))

    def _loader(self, split: str, dataset: Dataset | None = None) -> DataLoader:
        self.setup()
        dataset = dataset if dataset is not None else self.datasets[split]
        if len(dataset) == 0:
            raise ValueError(f"the {split} split is empty: raise num_samples or its fraction in `splits`")
        shuffle = split == "train"
        # a model's own data: in memory and changing by epoch, so no worker copies
        workers = self.num_workers if dataset is self.datasets[split] else 0
        return DataLoader(dataset, batch_size=self.batch_size if shuffle else self.eval_batch_size,
                          sampler=EpochShuffle(len(dataset), self.seed, dataset) if shuffle
                          else _evaluation_sampler(dataset),
                          num_workers=workers, drop_last=False, persistent_workers=workers > 0)

    def train_dataloader(self) -> DataLoader:
        """The training split, or what the model trains on instead: a model with ``training_data(samples)``
        (a :class:`~pdegen.modules.GeneratorModule`: e.g. a student's noise or its teacher's pairs, see
        :mod:`datamodules.generated`) gets the training split and returns the dataset to serve."""
        model = self.trainer.lightning_module if self.trainer is not None else None
        self.setup()
        samples = self.datasets["train"]
        return self._loader("train", model.training_data(samples) if hasattr(model, "training_data") else samples)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test")
