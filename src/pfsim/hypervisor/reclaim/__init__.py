"""Host reclaim policies: which resident page leaves when a fault needs a frame.

``REGISTRY`` maps each policy name to its class; :func:`get_policy` builds one by name.
"""

from __future__ import annotations

from pfsim.errors import ConfigError
from pfsim.hypervisor.reclaim.base import DenseTrace, ReclaimPolicy
from pfsim.hypervisor.reclaim.clock import ClockPolicy
from pfsim.hypervisor.reclaim.fifo import FifoPolicy
from pfsim.hypervisor.reclaim.lru import LruPolicy
from pfsim.hypervisor.reclaim.opt import OptPolicy
from pfsim.hypervisor.reclaim.random import RandomPolicy

REGISTRY: dict[str, type[ReclaimPolicy]] = {
    "clock": ClockPolicy,
    "fifo": FifoPolicy,
    "lru": LruPolicy,
    "opt": OptPolicy,
    "random": RandomPolicy,
}

__all__ = ["REGISTRY", "DenseTrace", "ReclaimPolicy", "get_policy"]


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
