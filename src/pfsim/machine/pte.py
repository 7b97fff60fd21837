"""The bits of a guest page-table slot, as every reader of a page table sees them.

An address space (:class:`pfsim.guest.mm.AddressSpace`) keeps per slot the PTE flags
(``state``), the frame (``gfn``) and the flags of the VMA the slot belongs to (``vflags``).
The guest's fault path, the compiled access loops (guest and compiled core) and the cluster VMM
all test these bits.
"""

from __future__ import annotations

# PTE flag bits kept per slot
PTE_PRESENT = 0x01
PTE_WRITE = 0x02
PTE_EXEC = 0x04
PTE_ZERO = 0x08  # maps the shared zero page
PTE_NOVMA = 0x10  # slot reserved (stack growth room) but outside the VMA today
PTE_ACCESSED = 0x20  # _PAGE_ACCESSED: set by every completed access, cleared by reclaim
PTE_SWAP = 0x40  # not present, holds a swap entry: ``gfn`` is -2 - swap slot

# VMA flag bits kept per slot (for the compiled fault fast path)
VM_ANON = 0x01
VM_WRITE = 0x02
VM_EXEC = 0x04
VM_READ = 0x08
VM_SHARED = 0x10
