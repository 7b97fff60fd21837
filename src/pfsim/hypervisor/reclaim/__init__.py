"""Host reclaim inside a running simulation: which resident page leaves when a fault needs a frame.

``RESIDENT`` maps each policy name to its class.  The same policies replayed alone over a trace
(and OPT, which needs the future) are in :mod:`pfsim.replacement`.
"""

from __future__ import annotations

from pfsim.hypervisor.reclaim.clock import ClockResident
from pfsim.hypervisor.reclaim.fifo import FifoResident
from pfsim.hypervisor.reclaim.lru import LruResident
from pfsim.hypervisor.reclaim.random import RandomResident
from pfsim.hypervisor.reclaim.resident import ResidentPolicy

RESIDENT: dict[str, type[ResidentPolicy]] = {
    "clock": ClockResident,
    "fifo": FifoResident,
    "lru": LruResident,
    "random": RandomResident,
}

__all__ = ["RESIDENT", "ResidentPolicy"]
