"""One seed derivation for seeded draws: SHA-1 of the parts' JSON.

A draw that must repeat across processes, ranks, resumes and Python versions gets its generator from
:func:`derive_seed` of what it depends on (the run's seed, the epoch, a sample's index, a settings
record), unlike ``hash()``, whose tuple hashing may change between Python versions and which randomises
strings per process. Every seeded draw of training and sampling goes through it: the training shuffle
(``EpochShuffle``), each step's ``training_generator``, ``indexed_noise`` and the generated training data
(:mod:`datamodules.generated`); the first part names the draw, so two draws from the same numbers differ.
Dataset generation keeps its per-block numpy ``SeedSequence`` (:func:`pdegen.datagen.block_generator`),
so that a cached dataset file stays what its name says.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import torch


def derive_seed(*parts: Any) -> int:
    """A seed in ``[0, 2**63)`` from JSON-serialisable ``parts`` (ints, strings, lists, dicts)."""
    digest = hashlib.sha1(json.dumps(parts, sort_keys=True).encode()).digest()
    return int.from_bytes(digest[:8], "little") % 2**63


def seeded_generator(*parts: Any, device: torch.device | str | None = None) -> torch.Generator:
    """A ``torch.Generator`` on ``device`` (default CPU) seeded by :func:`derive_seed` of ``parts``."""
    return torch.Generator(device=device or "cpu").manual_seed(derive_seed(*parts))
