"""Clusters on a 2D mesh: which vCPU is where, how far apart clusters are, where pages go.

Cluster ``c`` sits at mesh position ``(x, y) = (c // y_size, c % y_size)`` (ALMOS-MKH's
``cxy = x << y_width | y`` with the fields packed densely).  Distances are Manhattan hops.
A mesh may have more positions than the VM has clusters: the extra positions are *empty*
clusters (no cores, no memory), which only matter to DATA placement (``vmm_page_allocate``).
"""

from __future__ import annotations

import numpy as np

from pfsim.config.schema import ClusterConfig
from pfsim.errors import ConfigError

# ALMOS-MKH vseg types, in the source's enumeration order (vseg.h vseg_type_t)
CODE, DATA, STACK, ANON, FILE, REMOTE = 0, 1, 2, 3, 4, 5
TYPE_CODES = {"code": CODE, "data": DATA, "stack": STACK, "anon": ANON, "file": FILE,
              "remote": REMOTE}
TYPE_NAMES = {code: name for name, code in TYPE_CODES.items()}
PRIVATE_TYPES = (CODE, STACK)
"""The page-fault code tests the *type* (STACK or CODE), not VSEG_PRIVATE
(``vmm_handle_page_fault``, ``vmm_handle_cow``)."""


def default_mesh(clusters: int) -> tuple[int, int]:
    """The squarest ``(x_size, y_size)`` with ``y_size`` a power of two dividing ``clusters``."""
    y_size = 1
    while (2 * y_size) ** 2 <= clusters and clusters % (2 * y_size) == 0:
        y_size *= 2
    return clusters // y_size, y_size


def remote_cost(base: int, hop: int, distance: int) -> int:
    """Extra time (ns) of an operation ``distance`` hops away: 0 when local."""
    return 0 if distance == 0 else base + hop * (distance - 1)


class Topology:
    """The clusters of one VM.

    Args:
        clusters: number of clusters (each with ``vcpus // clusters`` vCPUs).
        vcpus: number of vCPUs.
        config: the ``guest.vmm`` section.
    """

    def __init__(self, clusters: int, vcpus: int, config: ClusterConfig) -> None:
        self.n = clusters
        self.per_cluster = vcpus // clusters
        x_size, y_size = config.mesh if config.mesh is not None else default_mesh(clusters)
        if x_size * y_size < clusters:
            raise ConfigError("guest.vmm.mesh", f"{x_size}x{y_size} has fewer positions than "
                              f"guest.clusters ({clusters})")
        self.x_size, self.y_size = x_size, y_size
        self.mesh_positions = x_size * y_size
        self.modulo = config.distrib_index == "modulo"
        xs = np.arange(clusters) // y_size
        ys = np.arange(clusters) % y_size
        self.distance = (np.abs(xs[:, None] - xs[None, :])
                         + np.abs(ys[:, None] - ys[None, :])).astype(np.int64)
        """Hops between clusters, ``[n, n]``."""

    def cluster_of(self, cpu: int) -> int:
        """The cluster holding vCPU ``cpu``."""
        return cpu // self.per_cluster

    def vcpus_of(self, cluster: int) -> range:
        return range(cluster * self.per_cluster, (cluster + 1) * self.per_cluster)

    def position(self, cluster: int) -> tuple[int, int]:
        return cluster // self.y_size, cluster % self.y_size

    def distrib_index(self, vpn: int) -> int:
        """The mesh position a DATA page goes to, before the empty-cluster fallback
        (``vmm_page_allocate``): ``vpn & (x_size*y_size - 1)``, or ``vpn % clusters`` with
        ``distrib_index = modulo``."""
        if self.modulo:
            return vpn % self.n
        return vpn & (self.mesh_positions - 1)
