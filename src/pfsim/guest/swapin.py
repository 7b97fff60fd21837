"""The guest's swap-in path (Linux 5.15 mm/memory.c ``do_swap_page``, mm/swap_state.c
``swap_cluster_readahead``, mm/swapfile.c ``free_swap_and_cache``, ``reuse_swap_page``), as a
mixin of :class:`pfsim.guest.reclaim.Reclaim`."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from pfsim.engine import Priority
from pfsim.guest.fault import Action, FaultResult
from pfsim.guest.lru import LRU_ACTIVE_ANON, LRU_INACTIVE_ANON
from pfsim.guest.swap import SwapRead
from pfsim.machine.frames import ANON
from pfsim.machine.pte import PTE_ACCESSED, PTE_EXEC, PTE_PRESENT, PTE_SWAP

if TYPE_CHECKING:
    from pfsim.guest.mm import Vma
    from pfsim.guest.steps import TaskExec


class SwapIn:
    """``do_swap_page`` and the swap cache's frees."""

    def do_swap_page(self, texec: TaskExec, vma: Vma, slot: int, write: bool,
                     cost: int) -> FaultResult:
        """``do_swap_page`` (Linux 5.15 mm/memory.c): the PTE holds a swap entry."""
        kernel = self.kernel
        mem = kernel.mem
        mm = texec.process.mm
        swap = self.swap
        assert swap is not None
        entry = -2 - int(mm.gfn[slot])
        frame = int(swap.cache[entry])
        if frame >= 0 and entry in swap.pending:  # being read (readahead): wait, retry minor
            return FaultResult(Action.WAIT_IO, cost, request=swap.pending[entry],
                               detail={"major": False})
        if frame < 0 and swap.synchronous and swap.count[entry] == 1:
            # SWP_SYNCHRONOUS_IO (zram): no swap cache, the read happens in this thread
            frame = kernel.alloc_frame(texec, ANON, onto_lru=False)
            if frame < 0:
                return FaultResult(Action.KILLED, cost)
            done = swap.device.submit(self.sim.now, 1, write=False)
            swap.swap_ins += 1
            self._swapped_in(entry, frame)
            swap.swap_free(np.array([entry]))
            bits = PTE_ACCESSED | (vma.pte_bits() if write else
                                   PTE_PRESENT | (PTE_EXEC if vma.executable else 0))
            mm.gfn[slot] = frame
            mm.state[slot] = bits
            mm.rss += 1
            self.rmap_note(mm, slot, frame)
            kernel.faults.touched.append(frame)
            wait = max(0, done - self.sim.now)
            return FaultResult(Action.RETRY, cost + wait + self.swap_page_cost,
                               detail={"major": True})
        if frame < 0:  # swapin_readahead → swap_cluster_readahead
            slots: list[int] = []
            frames: list[int] = []
            for other in swap.readahead_window(entry):
                if other == entry:
                    got = kernel.alloc_frame(texec, ANON, onto_lru=False)
                    if got < 0:
                        return FaultResult(Action.KILLED, cost)
                    if swap.cache[entry] >= 0 or mm.state[slot] != PTE_SWAP:
                        mem.put(got)  # reclaim or another task changed things: retry
                        return FaultResult(Action.RETRY, cost)
                else:
                    got = self.alloc_nowait(ANON)
                    if got < 0:
                        break
                swap.add_to_cache(other, got)
                slots.append(other)
                frames.append(got)
            done = swap.device.submit(kernel.dma_start(frames), len(slots), write=False)
            swap.swap_ins += len(slots)
            self.stats["swap_ra"] += len(slots) - 1
            request = SwapRead(slots, frames, done)
            for other in slots:
                swap.pending[other] = request
            self.sim.at(done, self._swapin_done, request, priority=Priority.URGENT)
            # this fault started the read: VM_FAULT_MAJOR, so its retry counts as major
            return FaultResult(Action.WAIT_IO, cost, request=request, detail={"major": True})
        # the page is in the swap cache: map it
        mem.get(frame)
        swap.swap_free(np.array([entry]))
        # mk_pte(page, vma->vm_page_prot): young (x86's protections hold _PAGE_ACCESSED)
        bits = PTE_PRESENT | PTE_ACCESSED | (PTE_EXEC if vma.executable else 0)
        if write and self.try_free_swap(frame):  # reuse_swap_page: exclusive, writable
            bits = vma.pte_bits() | PTE_ACCESSED
        elif swap.full:  # vm_swap_full: drop the swap copy (try_to_free_swap), keep read-only
            self.try_free_swap(frame)
        mm.gfn[slot] = frame
        mm.state[slot] = bits
        mm.rss += 1
        self.rmap_note(mm, slot, frame)
        return FaultResult(Action.RETRY, cost + self.swap_page_cost)

    def _free_swap_cache(self, frame: int) -> None:
        """``try_to_free_swap``: leave the swap cache if no swap entry refers to the slot."""
        swap = self.swap
        slot = swap.slot_of(frame)
        if slot >= 0 and swap.count[slot] == 0 and slot not in swap.pending:
            swap.delete_from_cache(frame)
            self.kernel.mem.put(frame)

    def try_free_swap(self, frame: int) -> bool:
        """``reuse_swap_page`` for a page about to be written: when its one mapping is the
        only user (no swap entry left, not shared), it leaves the swap cache (freeing the
        slot) and may be written in place.  True when the page is now exclusive."""
        swap = self.swap
        mem = self.kernel.mem
        if swap is None or swap.slot_of(frame) < 0:
            return bool(mem.refcount[frame] == 1)
        slot = swap.slot_of(frame)
        if swap.count[slot] == 0 and mem.refcount[frame] == 2 and slot not in swap.pending:
            swap.delete_from_cache(frame)
            mem.put(frame)
            return True
        return False

    def _swapped_in(self, slot: int, frame: int) -> None:
        """The page of ``slot`` is in ``frame``: refault check, then onto the LRU."""
        swap = self.swap
        lru = LRU_INACTIVE_ANON
        if swap.shadow[slot] >= 0:
            if self._refault(False, int(swap.shadow[slot]), bool(swap.shadow_workingset[slot]),
                             frame):
                lru = LRU_ACTIVE_ANON
            swap.shadow[slot] = -1
        self.lru.add(np.array([frame]), lru)

    def _swapin_done(self, request: SwapRead) -> None:
        kernel = self.kernel
        swap = self.swap
        host = kernel.executor.host
        for slot, frame in zip(request.slots, request.frames, strict=True):
            swap.pending.pop(slot, None)
            if host is not None:
                host.backfill(frame)
            if swap.count[slot] == 0 and kernel.mem.refcount[frame] == 1:
                swap.delete_from_cache(frame)  # every PTE holding it went away meanwhile
                kernel.mem.put(frame)
                continue
            self._swapped_in(slot, frame)
        self._wake(request)

    def _wake(self, request: SwapRead) -> None:
        """The tasks waiting for ``request`` run again."""
        self.kernel.wake_waiters(request.waiters)

    def free_swap_entries(self, slots: np.ndarray) -> None:
        """PTEs holding ``slots`` went away (exit, munmap, exec): ``free_swap_and_cache``."""
        if self.swap is None or slots.size == 0:
            return
        mem = self.kernel.mem
        for slot in self.swap.swap_free(slots).tolist():
            if slot in self.swap.pending:
                continue  # freed when its read completes
            frame = int(self.swap.cache[slot])
            if mem.refcount[frame] == 1:
                self.swap.delete_from_cache(frame)
                mem.put(frame)
