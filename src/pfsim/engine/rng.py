"""Named random streams derived from one seed.

Each consumer asks for a stream by name (``"workload/db/0"``); the stream's seed is a pure
function of (run seed, name), so adding a consumer never shifts another's numbers and no
global random state exists.
"""

from __future__ import annotations

import hashlib

import numpy as np


class RandomStreams:
    """Factory of independent, reproducible :class:`numpy.random.Generator` objects."""

    def __init__(self, seed: int) -> None:
        self.seed = int(seed)

    def key(self, name: str) -> tuple[int, ...]:
        """The spawn key that identifies ``name`` (stable across runs and platforms)."""
        digest = hashlib.sha256(name.encode()).digest()
        return tuple(int.from_bytes(digest[i:i + 4], "little") for i in range(0, 16, 4))

    def generator(self, name: str) -> np.random.Generator:
        """A new generator for ``name``; the same name always gives the same sequence."""
        sequence = np.random.SeedSequence(entropy=self.seed, spawn_key=self.key(name))
        return np.random.Generator(np.random.PCG64(sequence))
