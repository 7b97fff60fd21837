"""A swap device (the host's and the guest's): latency, bandwidth and queue depth, with presets.

A request occupies one of ``queue_depth`` service slots for its latency, then transfers its
pages over a channel shared by all requests at ``bandwidth``.  Requests start in submission
order (FIFO), so every completion time is known when the request is submitted; the caller
schedules the completion event.

Both sides use it: the host for ``[hypervisor.swap]`` (re-exported by
:mod:`pfsim.hypervisor.swap`) and the guest kernel for ``[guest.swap]``, which is why it sits
in the machine layer.

Presets (published per-4 KiB read latencies, estimated bandwidths; sources in docs/hypervisor.md):

==========  ========  ==========  ===========  ============  ===========
device      latency   bandwidth   queue depth  page_cluster  synchronous
==========  ========  ==========  ===========  ============  ===========
zram        1.7 us    8 GiB/s     1            0             yes
nvme        16 us     2 GiB/s     64           3             no
sata-ssd    100 us    500 MiB/s   32           3             no
hdd         8 ms      150 MiB/s   1            3             no
==========  ========  ==========  ===========  ============  ===========
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np

from pfsim.config.schema import SwapConfig
from pfsim.machine.trace_records import K_SWAP_IO, OFF, TraceRecorder
from pfsim.units import NS_PER_S, PAGE_SIZE


@dataclass(frozen=True)
class SwapParams:
    latency_ns: int
    bandwidth: int
    queue_depth: int
    page_cluster: int
    synchronous: bool
    distribution: str = "fixed"
    sigma: float = 0.5


PRESETS = {
    "zram": SwapParams(1_700, 8 << 30, 1, 0, True),
    "nvme": SwapParams(16_000, 2 << 30, 64, 3, False),
    "sata-ssd": SwapParams(100_000, 500 << 20, 32, 3, False),
    "hdd": SwapParams(8_000_000, 150 << 20, 1, 3, False),
}


def swap_params(config: SwapConfig) -> SwapParams:
    """The preset named by ``config.device`` with the explicitly given fields applied."""
    base = PRESETS[config.device]
    return SwapParams(
        latency_ns=base.latency_ns if config.latency is None else config.latency,
        bandwidth=base.bandwidth if config.bandwidth is None else config.bandwidth,
        queue_depth=base.queue_depth if config.queue_depth is None else config.queue_depth,
        page_cluster=base.page_cluster if config.page_cluster is None else config.page_cluster,
        synchronous=base.synchronous if config.synchronous is None else config.synchronous,
        distribution=config.distribution,
        sigma=config.sigma,
    )


class SwapDevice:
    """FIFO device with ``queue_depth`` parallel slots and one transfer channel."""

    def __init__(self, params: SwapParams, rng: np.random.Generator) -> None:
        self.params = params
        self.rng = rng
        self._slots = [0] * params.queue_depth  # min-heap of slot free times
        self._channel_free = 0
        self.reads = 0
        self.writes = 0
        self.pages_read = 0
        self.pages_written = 0
        self.busy_until = 0
        self.recorder: TraceRecorder = OFF
        """Where requests are recorded when the run is traced."""

    def _latency(self) -> int:
        p = self.params
        if p.distribution == "fixed":
            return p.latency_ns
        if p.distribution == "exponential":
            return int(self.rng.exponential(p.latency_ns))
        mu = np.log(p.latency_ns) - p.sigma**2 / 2  # mean = latency
        return int(self.rng.lognormal(mu, p.sigma))

    def submit(self, now: int, npages: int, write: bool) -> int:
        """Queue a request of ``npages`` pages; returns its completion time (ns)."""
        start = max(now, heapq.heappop(self._slots))
        transfer = (npages * PAGE_SIZE * NS_PER_S) // max(1, self.params.bandwidth)
        begin = max(start + self._latency(), self._channel_free)
        done = begin + transfer
        self._channel_free = done
        heapq.heappush(self._slots, done)
        self.busy_until = max(self.busy_until, done)
        if write:
            self.writes += 1
            self.pages_written += npages
        else:
            self.reads += 1
            self.pages_read += npages
        if self.recorder.on:
            self.recorder.add(now, K_SWAP_IO, -1, -1, 0, npages, done, 1 if write else 0)
        return done
