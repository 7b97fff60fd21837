"""A virtio-balloon driver in the guest (Linux 5.15 drivers/virtio/virtio_balloon.c).

When the host sets a target (``[guest.balloon]``: ``target`` at ``at``, then ``schedule``),
the driver's work item (``update_balloon_size_func``) moves the balloon towards it in chunks
of at most VIRTIO_BALLOON_ARRAY_PFNS_MAX = 256 pages:

* ``fill_balloon``: allocate a page (``balloon_page_alloc``: a movable user allocation with
  __GFP_NORETRY, so it may wake kswapd and reclaim directly once, but never OOM-kills), pin it
  in the balloon, and after the chunk tell the host (the inflate queue); the host frees the
  frames and swap slots behind those pages without any I/O.  When an allocation fails the
  driver stops the chunk, sleeps 200 ms ("Out of puff!", ``msleep(200)``), tells the host
  about the pages it got, and tries again.
* ``leak_balloon``: give pages back to the guest's free memory (most recently ballooned
  first); the host backs them again on their next touch.

The work item runs in a kworker, a kernel thread of the guest scheduler bound to vCPU 0
(:mod:`pfsim.guest.kthread`): each chunk is applied when the kworker has the vCPU, then the
kworker runs the chunk's CPU time (``reclaim_page`` per page, plus the reclaim it did), taking
it from the tasks that would have run there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from pfsim.engine import Priority
from pfsim.guest.kthread import SLEEP, KernelThread
from pfsim.machine.frames import BALLOON
from pfsim.units import PAGE_SIZE

if TYPE_CHECKING:
    from pfsim.guest.kernel import GuestKernel

VIRTIO_BALLOON_ARRAY_PFNS_MAX = 256
OUT_OF_PUFF_NS = 200_000_000
"""fill_balloon's msleep(200) after a failed allocation."""


class Balloon:
    """The balloon driver of one guest kernel (flat VMM).

    Args:
        kernel: the guest kernel.
    """

    def __init__(self, kernel: GuestKernel) -> None:
        self.kernel = kernel
        self.sim = kernel.sim
        cfg = kernel.config.guest.balloon
        self.pages: list[int] = []
        self.target = 0
        self.busy = False
        self.inflated = 0
        self.deflated = 0
        self.alloc_failures = 0
        self.page_cost = kernel.config.guest.costs.reclaim_page
        self.puffed = False
        self.untold: list[int] = []
        """Pages of a chunk that ran out of puff: the host is told after the msleep."""
        self.worker = KernelThread(kernel, "kworker/0:1", self._work, allowed_cpu=0)
        """The kworker of system_freezable_wq that runs the work item: bound to vCPU 0, the
        vCPU taking the config-change interrupt (a per-CPU workqueue runs work on the CPU that
        queued it)."""
        changes = [(cfg.at, cfg.target)] + [(c.at, c.target) for c in cfg.schedule]
        for at, target in changes:
            self.sim.at(at, self._set_target, target // PAGE_SIZE, priority=Priority.NORMAL)

    def _set_target(self, pages: int) -> None:
        """The host changed ``num_pages`` (``virtballoon_changed``, the config-change
        interrupt): the work item is queued (``queue_work(system_freezable_wq, ...)``), which
        wakes the kworker unless the item is already running (it sees the new target at its
        next chunk)."""
        self.target = pages
        if not self.busy:
            self.busy = True
            self.worker.wake()

    def _work(self) -> int:
        """``update_balloon_size_func``, run by the kworker when it has vCPU 0 and the CPU
        time of its last chunk is run: one chunk towards the target, applied now, whose CPU
        time (``reclaim_page`` per page moved, plus the reclaim it did) the kworker then runs.
        A chunk whose allocation failed is told to the host only after ``fill_balloon``'s
        ``msleep(200)``, which follows its CPU time, as ``tell_host`` follows the sleep in
        Linux.  SLEEP when the target is reached (the work item is not queued again)."""
        if self.kernel.panic is not None:
            self.busy = False
            return SLEEP
        if self.puffed:  # "Out of puff!": msleep(200), then the rest of fill_balloon
            self.puffed = False
            return self.worker.sleep_for(OUT_OF_PUFF_NS)
        if self.untold:
            self._tell_host(self.untold)
            self.untold = []
        diff = self.target - len(self.pages)
        if diff == 0:
            self.busy = False
            return SLEEP
        if diff > 0:
            got, work = self.fill(min(diff, VIRTIO_BALLOON_ARRAY_PFNS_MAX))
            self.puffed = got < min(diff, VIRTIO_BALLOON_ARRAY_PFNS_MAX)
            return max(1, work) * self.page_cost
        count = self.leak(min(-diff, VIRTIO_BALLOON_ARRAY_PFNS_MAX))
        return max(1, count) * self.page_cost

    def fill(self, count: int) -> tuple[int, int]:
        """``fill_balloon``: (pages added, pages of work including reclaim)."""
        kernel = self.kernel
        reclaim = kernel.reclaim
        assert reclaim is not None
        added: list[int] = []
        work = 0
        for _ in range(count):
            gfn, scanned = reclaim.alloc_noretry(BALLOON)
            work += 1 + scanned
            if gfn < 0:
                self.alloc_failures += 1
                break
            added.append(gfn)
        if added:
            self.pages.extend(added)
            self.inflated += len(added)
            if len(added) < count:
                self.untold = added  # told after the msleep
            else:
                self._tell_host(added)
        return len(added), work

    def _tell_host(self, pages: list[int]) -> None:
        """``tell_host(vb, vb->inflate_vq)``: the host discards the pages."""
        host = self.kernel.executor.host
        if host is not None:
            host.balloon_inflate(np.array(pages, dtype=np.int64))

    def leak(self, count: int) -> int:
        """``leak_balloon``: the most recently ballooned pages go back to the free memory."""
        mem = self.kernel.mem
        back = self.pages[-count:]
        del self.pages[-count:]
        for gfn in reversed(back):
            mem.put(gfn)
        self.deflated += len(back)
        return len(back)

    def result(self) -> dict[str, Any]:
        return {"balloon_pages": len(self.pages), "balloon_target": self.target,
                "balloon_inflated": self.inflated, "balloon_deflated": self.deflated,
                "balloon_alloc_failures": self.alloc_failures,
                "balloon_cpu_ns": self.worker.cpu_ns}
