"""Page-replacement policies replayed over traces, and exact LRU stack distances.

``REGISTRY`` maps each policy name to its class; :func:`make_policy` builds one for a frame
count; :func:`simulate` and :func:`hits` replay a whole array of page numbers (tests, scripts).
For streaming many policies and sizes over one pass of a trace see :mod:`pfsim.tracedriven`.
"""

from __future__ import annotations

import numpy as np

from pfsim.errors import ConfigError
from pfsim.replacement.arc import ArcPolicy
from pfsim.replacement.base import Policy
from pfsim.replacement.clock import ClockPolicy
from pfsim.replacement.clockpro import ClockProPolicy
from pfsim.replacement.fifo import FifoPolicy
from pfsim.replacement.linux import LinuxPolicy
from pfsim.replacement.lirs import LirsPolicy
from pfsim.replacement.lru import LruPolicy
from pfsim.replacement.mglru import MglruPolicy
from pfsim.replacement.opt import OptPolicy
from pfsim.replacement.pageids import PageIds
from pfsim.replacement.random import RandomPolicy
from pfsim.replacement.s3fifo import S3FifoPolicy
from pfsim.replacement.sieve import SievePolicy
from pfsim.replacement.twoq import TwoQPolicy

REGISTRY: dict[str, type[Policy]] = {
    "2q": TwoQPolicy,
    "arc": ArcPolicy,
    "clock": ClockPolicy,
    "clockpro": ClockProPolicy,
    "fifo": FifoPolicy,
    "linux": LinuxPolicy,
    "lirs": LirsPolicy,
    "lru": LruPolicy,
    "mglru": MglruPolicy,
    "opt": OptPolicy,
    "random": RandomPolicy,
    "s3fifo": S3FifoPolicy,
    "sieve": SievePolicy,
}

__all__ = ["REGISTRY", "PageIds", "Policy", "hits", "make_policy", "policy_names", "simulate"]


def policy_names() -> list[str]:
    """Every policy name, sorted."""
    return sorted(REGISTRY)


def make_policy(name: str, frames: int, *, seed: int = 0) -> Policy:
    """The policy called ``name`` at ``frames`` frames, seeded with ``seed`` (random choices).

    Raises:
        ConfigError: ``name`` is not in :data:`REGISTRY`; the message lists the valid names.
    """
    policy_class = REGISTRY.get(name)
    if policy_class is None:
        raise ConfigError(None, f"unknown replacement policy {name!r}; valid policies: "
                                f"{', '.join(policy_names())}")
    return policy_class(frames, seed=seed)


def _replay(name: str, pages, frames: int, seed: int, record: bool) -> tuple[Policy, np.ndarray]:
    pages = np.ascontiguousarray(pages, dtype=np.int64)
    if pages.ndim != 1:
        raise ValueError(f"expected a 1-D array of page numbers, got shape {pages.shape}")
    page_ids = PageIds(pages.size)
    ids = page_ids.map(pages)
    policy = make_policy(name, frames, seed=seed)
    record_to = np.zeros(ids.size, dtype=np.uint8) if record else None
    policy.feed(ids, page_ids.n_pages, record_to)
    policy.finish()
    return policy, record_to if record else np.zeros(0, dtype=np.uint8)


def simulate(name: str, pages, frames: int, *, seed: int = 0) -> int:
    """Faults of policy ``name`` over the page numbers ``pages`` in ``frames`` frames."""
    return _replay(name, pages, frames, seed, record=False)[0].faults


def hits(name: str, pages, frames: int, *, seed: int = 0) -> np.ndarray:
    """Per request of ``pages``, 1 (``uint8``) if policy ``name`` hit and 0 if it faulted."""
    return _replay(name, pages, frames, seed, record=True)[1]
