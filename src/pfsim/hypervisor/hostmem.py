"""One VM's memory as the host sees it: the second-level page table and the host frames.

Per guest frame (gfn) the host keeps where its contents are (NEVER, RESIDENT, SWAPCACHE,
SWAPPED, INIO: :mod:`pfsim.machine.hostmem_layout`, with the layout of the arrays below).

The VM may hold at most ``limit`` host frames.  When a fault needs a frame and none is free,
the reclaim policy picks ``batch`` victims; a dirty victim (written since it last came from
swap, or never swapped) is written to swap first, and its frame cannot be reused before that
write completes (each frame carries the time it becomes free).

Every array is allocated zeroed and written only where used (the note in
:mod:`pfsim.machine.hostmem_layout`): a 1 TiB guest that touches 1 GiB costs the host model
about what 1 GiB of gfns and frames needs, not 1 TiB's worth.

Per-access bookkeeping the policies need (dirty and referenced bits, the LRU list) is updated
by the compiled access loop (:mod:`pfsim.machine.scan`) in the arrays held here.
"""

from __future__ import annotations

import heapq
from typing import TYPE_CHECKING

import numpy as np

from pfsim.errors import InvariantViolation
from pfsim.hypervisor.reclaim import RESIDENT as RESIDENT_POLICIES
from pfsim.machine.hostmem_layout import (
    B_DIRTY,
    B_EPT,
    B_REF,
    B_WHERE,
    F_FREE,
    F_GFN,
    INIO,
    L_HFN,
    NEVER,
    RESIDENT,
    S_INSERT,
    S_GFN_HWM,
    S_HWM,
    S_LRU_HEAD,
    S_LRU_TAIL,
    S_NFREE,
    S_NSTACK,
    S_TOUCH,
    SMALL_FIELDS,
    SWAPCACHE,
    SWAPPED,
)

if TYPE_CHECKING:
    from pfsim.hypervisor.reclaim.resident import ResidentPolicy


class HostMemory:
    """Second-level page table and host frames of one VM.

    Args:
        nframes: guest frames (gfns) of the VM.
        limit: host frames the VM may use.
        policy: reclaim policy name; ``batch``: victims per reclaim.
        rng: generator for the random policy.
    """

    def __init__(self, nframes: int, limit: int, policy: str, batch: int,
                 rng: np.random.Generator) -> None:
        self.nframes = nframes
        self.limit = limit
        self.batch = batch
        self.gfn_bits = np.zeros((4, nframes), dtype=np.uint8)
        self.gfn_links = np.zeros((3, nframes), dtype=np.int32)
        """hfn and LRU links of a gfn, meaningful while it holds a frame (LRU: while listed)."""
        self.frames = np.zeros((3, limit), dtype=np.int32)
        """gfn of each frame below the S_HWM watermark (-1: free), the free stack, the ring."""
        self.small = np.zeros(SMALL_FIELDS, dtype=np.int64)
        self.ept = self.gfn_bits[B_EPT]  # 1: mapped, guest access allowed
        self.where = self.gfn_bits[B_WHERE]
        self.dirty = self.gfn_bits[B_DIRTY]
        self.referenced = self.gfn_bits[B_REF]
        self.hfn = self.gfn_links[L_HFN]
        self.frame_gfn = self.frames[F_GFN]
        self.free_stack = self.frames[F_FREE]
        self.small[S_NFREE] = limit  # all above the watermark (0): lowest first
        self.small[S_LRU_HEAD] = self.small[S_LRU_TAIL] = -1
        self.frame_free_at = np.zeros(limit, dtype=np.int64)
        self.swap_slot1 = np.zeros(nframes, dtype=np.int64)
        """One-based swap slot of each gfn (0: none), so that the zeroed array means none."""
        self.readahead_flag = np.zeros(nframes, dtype=np.bool_)  # PG_readahead on a swap-cache page
        self._free_slots: list[int] = []  # heap: the lowest free slot is reused first
        self.ra_hits = 0
        self._prev_offset = -1
        self._prev_window = 0
        self.pinned = np.zeros(nframes, dtype=np.bool_)
        self._slot_gfn = np.zeros(nframes, dtype=np.int64)  # by slot below _next_slot; -1: free
        self._next_slot = 0
        self.policy: ResidentPolicy = RESIDENT_POLICIES[policy](self, rng)
        self.small[S_INSERT] = self.policy.insert
        self.small[S_TOUCH] = self.policy.touch
        # counters
        self.evictions = 0
        self.swap_outs = 0
        self.swap_ins = 0
        self.readahead_pages = 0
        self.ept_violations = 0
        self.host_minor = 0
        self.host_major = 0
        self.balloon_freed_frames = 0
        self.balloon_freed_slots = 0

    # ------------------------------------------------------------------ frames

    @property
    def resident(self) -> int:
        return self.limit - int(self.small[S_NFREE])

    def _pop_free(self) -> int:
        """The last frame freed, or else the lowest never used (a full free stack's order)."""
        self.small[S_NFREE] -= 1
        stacked = int(self.small[S_NSTACK])
        if stacked > 0:
            self.small[S_NSTACK] = stacked - 1
            return int(self.free_stack[stacked - 1])
        frame = int(self.small[S_HWM])
        self.small[S_HWM] = frame + 1
        return frame

    def _push_free(self, frame: int) -> None:
        stacked = int(self.small[S_NSTACK])
        self.free_stack[stacked] = frame
        self.small[S_NSTACK] = stacked + 1
        self.small[S_NFREE] += 1

    @property
    def gfns_used(self) -> int:
        """One above the highest gfn ever backed: the others are NEVER, with no frame."""
        return int(self.small[S_GFN_HWM])

    def swap_slot(self, gfn: int) -> int:
        """The swap slot holding ``gfn``'s copy, -1 if none."""
        return int(self.swap_slot1[gfn]) - 1

    def pin(self, gfn: int) -> None:
        """Back ``gfn`` now and never reclaim it (the guest's zero page)."""
        frame, _ = self.take_frame(0)
        self._install(gfn, frame, RESIDENT)
        self.ept[gfn] = 1
        self.pinned[gfn] = True
        self.policy.unlink(gfn)

    def take_frame(self, now: int) -> tuple[int, list[tuple[int, int]]]:
        """A free host frame, reclaiming a batch if none is free.

        Returns:
            (frame, (gfn, frame) pairs evicted now); the frame may still be under writeback: it is usable
            from ``frame_free_at[frame]``.
        """
        evicted: list[tuple[int, int]] = []
        if not self.has_free_frame():
            evicted = self.reclaim(self.batch)
        if not self.has_free_frame():
            raise InvariantViolation("host reclaim found no victim: every frame is pinned or in I/O")
        return self._pop_free(), evicted

    def reclaim(self, count: int) -> list[tuple[int, int]]:
        """Evict up to ``count`` pages chosen by the policy; returns (gfn, frame) pairs (the
        caller writes the dirty ones to swap and sets their frames' free times)."""
        victims = self.policy.select_victims(count)
        evicted: list[tuple[int, int]] = []
        for gfn in victims:
            if self.pinned[gfn] or self.where[gfn] not in (RESIDENT, SWAPCACHE):
                raise InvariantViolation(f"policy chose gfn {gfn} which cannot be evicted")
            frame = int(self.hfn[gfn])
            self.frame_gfn[frame] = -1
            self.hfn[gfn] = -1
            self.ept[gfn] = 0
            self.where[gfn] = SWAPPED
            self.referenced[gfn] = 0
            self._push_free(frame)
            evicted.append((gfn, frame))
            self.evictions += 1
        return evicted

    def needs_writeback(self, gfn: int) -> bool:
        """True when an evicted page has no valid copy in swap (dirty or never swapped)."""
        return bool(self.dirty[gfn]) or self.swap_slot1[gfn] == 0

    def free_slot(self, gfn: int) -> bool:
        """Free ``gfn``'s swap slot, if it has one (its copy is stale or no longer wanted);
        returns whether it had one."""
        slot = self.swap_slot(gfn)
        if slot < 0:
            return False
        self._slot_gfn[slot] = -1
        heapq.heappush(self._free_slots, slot)
        self.swap_slot1[gfn] = 0
        return True

    def wrote_back(self, gfn: int) -> None:
        """The page now has a fresh copy in a swap slot (its stale slot, if any, is freed; the
        lowest free slot is reused, so swap space stays as small as the swapped set)."""
        self.free_slot(gfn)
        if self._free_slots:
            slot = heapq.heappop(self._free_slots)
        else:
            slot = self._next_slot
            self._next_slot += 1
        self._slot_gfn[slot] = gfn
        self.swap_slot1[gfn] = slot + 1
        self.dirty[gfn] = 0
        self.swap_outs += 1

    @property
    def swap_slots_used(self) -> int:
        return self._next_slot - len(self._free_slots)

    def _install(self, gfn: int, frame: int, where: int) -> None:
        self.small[S_GFN_HWM] = max(int(self.small[S_GFN_HWM]), gfn + 1)
        self.frame_gfn[frame] = gfn
        self.hfn[gfn] = frame
        self.where[gfn] = where
        self.policy.inserted(gfn)

    def discard(self, gfns: np.ndarray) -> None:
        """Drop ``gfns`` (the guest ballooned them): their frames go back to the free list and
        their swap slots are freed, without I/O; they become never-touched.  Pages being read
        in are left alone (the read completes as usual)."""
        dropped = []
        for gfn in gfns.tolist():
            where = int(self.where[gfn])
            if self.pinned[gfn] or where == INIO:
                continue
            if where in (RESIDENT, SWAPCACHE):
                frame = int(self.hfn[gfn])
                self.frame_gfn[frame] = -1
                self.hfn[gfn] = -1
                self.ept[gfn] = 0
                self._push_free(frame)
                self.balloon_freed_frames += 1
                dropped.append(gfn)
            if self.free_slot(gfn):
                self.balloon_freed_slots += 1
            self.where[gfn] = NEVER
            self.dirty[gfn] = 0
            self.referenced[gfn] = 0
            self.readahead_flag[gfn] = False
        self.policy.unlink_many(dropped)

    # ------------------------------------------------------------------ faults

    def map_new(self, gfn: int, frame: int) -> None:
        """First touch: a zeroed host page, mapped (it has no swap copy: dirty)."""
        self._install(gfn, frame, RESIDENT)
        self.ept[gfn] = 1
        self.dirty[gfn] = 1

    def map_cached(self, gfn: int) -> None:
        """A swap-cache page becomes mapped (minor fault); a readahead hit if it was read ahead."""
        if self.where[gfn] != SWAPCACHE:
            raise InvariantViolation(f"gfn {gfn} is not in the swap cache")
        if self.readahead_flag[gfn]:
            self.readahead_flag[gfn] = False
            self.ra_hits += 1
        self.where[gfn] = RESIDENT
        self.ept[gfn] = 1

    def start_swapin(self, gfn: int, frame: int) -> None:
        """A read from swap into ``frame`` begins."""
        self.frame_gfn[frame] = gfn
        self.hfn[gfn] = frame
        self.where[gfn] = INIO

    def finish_swapin(self, gfn: int, mapped: bool) -> None:
        """The read completed: the page is mapped (the faulting read) or in the swap cache."""
        if self.where[gfn] != INIO:
            raise InvariantViolation(f"gfn {gfn} finished a swap-in it was not doing")
        self.where[gfn] = RESIDENT if mapped else SWAPCACHE
        self.ept[gfn] = 1 if mapped else 0
        self.readahead_flag[gfn] = not mapped
        self.dirty[gfn] = 0
        self.policy.inserted(gfn)
        self.swap_ins += 1

    def swapin_window(self, slot: int, max_pages: int) -> int:
        """Swap readahead window in slots (mm/swap_state.c ``__swapin_nr_pages``): grows with
        the readahead hits since the last swap-in (rounded up to a power of two, at least 4),
        falls to 1 without hits unless the access is next to the previous one, shrinks by at
        most half per swap-in, never above ``max_pages``."""
        hits, self.ra_hits = self.ra_hits, 0
        pages = hits + 2
        if pages == 2:
            if slot not in (self._prev_offset + 1, self._prev_offset - 1):
                pages = 1
        else:
            roundup = 4
            while roundup < pages:
                roundup <<= 1
            pages = roundup
        pages = min(pages, max_pages)
        pages = max(pages, self._prev_window // 2)
        self._prev_window = pages
        self._prev_offset = slot
        return pages

    def readahead_candidates(self, gfn: int, page_cluster: int) -> list[int]:
        """Other gfns in the aligned block of swap slots around ``gfn``'s slot (the adaptive
        window, at most 2**page_cluster) that are still only on swap (cluster readahead)."""
        if page_cluster <= 0:
            return []
        slot = self.swap_slot(gfn)
        window = self.swapin_window(slot, 1 << page_cluster)
        if window <= 1:
            return []
        first = slot & ~(window - 1)
        out = []
        for s in range(first, min(first + window, self._next_slot)):
            other = int(self._slot_gfn[s])
            if (other >= 0 and other != gfn and self.swap_slot1[other] == s + 1
                    and self.where[other] == SWAPPED):
                out.append(other)
        return out

    def has_free_frame(self) -> bool:
        return self.small[S_NFREE] > 0

    def check(self) -> None:
        """Frames held == pages in RESIDENT, SWAPCACHE or INIO; EPT maps only RESIDENT pages.

        Reads the frames below the watermark and the gfns below the highest ever backed: O(what
        the run used), not O(guest memory)."""
        used = self.frame_gfn[:int(self.small[S_HWM])]
        held = np.count_nonzero(used >= 0)
        nstack = int(self.small[S_NSTACK])
        if (nstack + held != len(used) or held != self.resident
                or np.any(used[self.free_stack[:nstack]] != -1)):
            raise InvariantViolation("host frames out of step with the free frames")
        top = self.gfns_used
        where = self.where[:top]
        states = np.isin(where, (RESIDENT, SWAPCACHE, INIO))
        if held != int(np.count_nonzero(states)):
            raise InvariantViolation("host frames out of step with page states")
        linked = np.flatnonzero(states)
        if np.any(self.frame_gfn[self.hfn[linked]] != linked):
            raise InvariantViolation("gfn -> frame -> gfn links disagree")
        if np.any(self.ept[:top].astype(bool) != (where == RESIDENT)):
            raise InvariantViolation("EPT maps a page that is not resident")
