"""The cost and switch vector shared by the Python fault path and the compiled loop.

Both read the same ``int64`` array, indexed by the constants below, so the two paths cannot
drift apart on a cost.  Every value is nanoseconds except the ``SW_*`` switches (0 or 1).
"""

from __future__ import annotations

import numpy as np

from pfsim.config.schema import GuestConfig

(K_ENTRY, K_PTE_OP, K_VSL_LOOKUP, K_VSEG_COPY, K_PT2_ALLOC, K_REMOTE_OP, K_REMOTE_PAGE,
 K_REMOTE_ACCESS, K_HOP, K_RPC, K_ZERO_FILL, K_COPY_FILL, K_FILE_MAP, K_COW_REUSE,
 K_SIGNAL, K_FORK, K_FORK_PAGE, SW_RPC, SW_QUEUELOCK) = range(19)
NCOSTS = 19


def cost_vector(guest: GuestConfig) -> np.ndarray:
    """The costs of ``guest.costs`` and ``guest.vmm.costs`` plus the two switches the
    compiled loop needs, as one array."""
    fault = guest.costs
    vmm = guest.vmm
    c = vmm.costs
    costs = np.zeros(NCOSTS, dtype=np.int64)
    costs[K_ENTRY] = fault.entry
    costs[K_PTE_OP] = c.pte_op
    costs[K_VSL_LOOKUP] = c.vsl_lookup
    costs[K_VSEG_COPY] = c.vseg_copy
    costs[K_PT2_ALLOC] = c.pt2_alloc
    costs[K_REMOTE_OP] = c.remote_op
    costs[K_REMOTE_PAGE] = c.remote_page
    costs[K_REMOTE_ACCESS] = c.remote_access
    costs[K_HOP] = c.hop
    costs[K_RPC] = c.rpc
    costs[K_ZERO_FILL] = fault.anon_page
    costs[K_COPY_FILL] = fault.cow_copy
    costs[K_FILE_MAP] = fault.file_map
    costs[K_COW_REUSE] = fault.cow_reuse
    costs[K_SIGNAL] = fault.signal
    costs[K_FORK] = fault.fork
    costs[K_FORK_PAGE] = fault.fork_page
    costs[SW_RPC] = 1 if vmm.remote_ops == "rpc" else 0
    costs[SW_QUEUELOCK] = 1 if vmm.vsl_lock == "queuelock" else 0
    return costs
