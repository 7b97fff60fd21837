"""The x86 host's per-vCPU hash of gfns with an async PF outstanding.

``vcpu->arch.apf.gfns`` (src: arch/x86/kvm/x86.c ``kvm_add_async_pf_gfn``,
``kvm_async_pf_gfn_slot``, ``kvm_del_async_pf_gfn``): 64 slots, linear probing, backward-shift
deletion, empty slot = ``~0``.
"""

from __future__ import annotations

from pfsim.errors import InvariantViolation
from pfsim.hypervisor.async_pf import ASYNC_PF_PER_VCPU
from pfsim.machine.apf_kvm_abi import U32, hash_32

GFN_EMPTY = (1 << 64) - 1
"""Empty gfn-hash slot (``~0`` as ``gfn_t``)."""
APF_HASH_BITS = 6  # order_base_2(ASYNC_PF_PER_VCPU)


class GfnHash:
    """``vcpu->arch.apf.gfns``: 64 slots, linear probing, backward-shift deletion."""

    __slots__ = ("slots",)

    def __init__(self) -> None:
        self.slots = [GFN_EMPTY] * ASYNC_PF_PER_VCPU

    @staticmethod
    def home(gfn: int) -> int:
        """``kvm_async_pf_hash_fn``."""
        return hash_32(gfn & U32, APF_HASH_BITS)

    def reset(self) -> None:
        """``kvm_async_pf_hash_reset``."""
        self.slots = [GFN_EMPTY] * ASYNC_PF_PER_VCPU

    def _slot(self, gfn: int) -> int:
        key = self.home(gfn)
        for _ in range(ASYNC_PF_PER_VCPU):
            if self.slots[key] in (gfn, GFN_EMPTY):
                break
            key = (key + 1) & (ASYNC_PF_PER_VCPU - 1)
        return key

    def find(self, gfn: int) -> bool:
        """``kvm_find_async_pf_gfn``."""
        return self.slots[self._slot(gfn)] == gfn

    def add(self, gfn: int) -> None:
        """``kvm_add_async_pf_gfn`` (the queue limit guarantees a free slot)."""
        if GFN_EMPTY not in self.slots:
            raise InvariantViolation("gfn hash full: kvm_add_async_pf_gfn would spin forever")
        key = self.home(gfn)
        while self.slots[key] != GFN_EMPTY:
            key = (key + 1) & (ASYNC_PF_PER_VCPU - 1)
        self.slots[key] = gfn

    def delete(self, gfn: int) -> bool:
        """``kvm_del_async_pf_gfn``; False where Linux WARNs once (gfn missing)."""
        i = j = self._slot(gfn)
        if self.slots[i] != gfn:
            return False
        mask = ASYNC_PF_PER_VCPU - 1
        while True:
            self.slots[i] = GFN_EMPTY
            while True:
                j = (j + 1) & mask
                if self.slots[j] == GFN_EMPTY:
                    return True
                k = self.home(self.slots[j])
                # move slots[j] back to i unless its home k lies cyclically in ]i, j]
                if not ((i < k <= j) if i <= j else (i < k or k <= j)):
                    break
            self.slots[i] = self.slots[j]
            i = j

    def contents(self) -> dict[int, int]:
        """slot -> gfn for every occupied slot."""
        return {i: g for i, g in enumerate(self.slots) if g != GFN_EMPTY}

    def check(self, where: str) -> None:
        """Every entry is reachable from its home slot without crossing an empty slot."""
        for i, gfn in enumerate(self.slots):
            if gfn == GFN_EMPTY:
                continue
            key = self.home(gfn)
            while key != i:
                if self.slots[key] == GFN_EMPTY:
                    raise InvariantViolation(f"{where}: gfn {gfn:#x} in slot {i} unreachable")
                key = (key + 1) & (ASYNC_PF_PER_VCPU - 1)
