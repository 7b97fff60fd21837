"""Host reclaim policies: which resident page leaves when a fault needs a frame.

``REGISTRY`` maps each policy name to its class; :func:`get_policy` builds one by name.
"""

from __future__ import annotations

from pfsim.errors import ConfigError
from pfsim.hypervisor.reclaim.base import DenseTrace, ReclaimPolicy
from pfsim.hypervisor.reclaim.clock import ClockPolicy, ClockResident
from pfsim.hypervisor.reclaim.fifo import FifoPolicy, FifoResident
from pfsim.hypervisor.reclaim.lru import LruPolicy, LruResident
from pfsim.hypervisor.reclaim.opt import OptPolicy
from pfsim.hypervisor.reclaim.random import RandomPolicy, RandomResident
from pfsim.hypervisor.reclaim.resident import ResidentPolicy

REGISTRY: dict[str, type[ReclaimPolicy]] = {
    "clock": ClockPolicy,
    "fifo": FifoPolicy,
    "lru": LruPolicy,
    "opt": OptPolicy,
    "random": RandomPolicy,
}

RESIDENT: dict[str, type[ResidentPolicy]] = {
    "clock": ClockResident,
    "fifo": FifoResident,
    "lru": LruResident,
    "random": RandomResident,
}
"""The same policies inside a running simulation (OPT needs the future: replay only)."""

__all__ = ["REGISTRY", "RESIDENT", "DenseTrace", "ReclaimPolicy", "ResidentPolicy", "get_policy"]


def get_policy(name: str, *, seed: int = 0) -> ReclaimPolicy:
    """The reclaim policy called ``name``, seeded with ``seed`` (used by ``random`` only).

    Raises:
        ConfigError: ``name`` is not in :data:`REGISTRY`; the message lists the valid names.
    """
    policy_class = REGISTRY.get(name)
    if policy_class is None:
        raise ConfigError(None, f"unknown reclaim policy {name!r}; valid policies: "
                                f"{', '.join(sorted(REGISTRY))}")
    return policy_class(seed=seed)
