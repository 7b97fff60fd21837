"""Workingset refault detection (Linux 5.15 mm/workingset.c ``workingset_refault``), as a mixin
of :class:`pfsim.guest.reclaim.Reclaim`.

Eviction (``workingset_eviction``) stores the node's ``nonresident_age`` in the page's shadow
entry (the swap slot's or the file page's); the age advances at every eviction and activation.
A page read back whose shadow is present is a refault; its refault distance (the age now minus
the shadow's) is compared with the workingset size.
"""

from __future__ import annotations

from pfsim.guest.lru import LRU_ACTIVE_ANON, LRU_ACTIVE_FILE, LRU_INACTIVE_ANON, LRU_INACTIVE_FILE


class Workingset:
    """``workingset_refault``."""

    def _refault(self, file: bool, eviction: int, workingset: bool, frame: int) -> bool:
        """``workingset_refault``: count it; True (activate) when the refault distance is at
        most the workingset size."""
        kind = "file" if file else "anon"
        self.stats[f"workingset_refault_{kind}"] += 1
        nr = self.lru.nr
        distance = self.nonresident_age - eviction
        size = int(nr[LRU_ACTIVE_FILE])
        if not file:
            size += int(nr[LRU_INACTIVE_FILE])
        if self.swap is not None and self.swap.nfree > 0:
            size += int(nr[LRU_ACTIVE_ANON])
            if file:
                size += int(nr[LRU_INACTIVE_ANON])
        if distance > size:
            return False
        self.nonresident_age += 1
        self.stats[f"workingset_activate_{kind}"] += 1
        if workingset:
            self.workingset[frame] = True
            self._note_cost(file, 1)  # lru_note_cost_page
            self.stats[f"workingset_restore_{kind}"] += 1
        return True
