"""x86 KVM async-PF paravirtual ABI shared by guest and host, and the host's gfn hash.

The MSR bits and the shared per-CPU area come from arch/x86/include/uapi/asm/kvm_para.h
(linux-semantics.md §2.1); ``hash_32`` from include/linux/hash.h; :class:`GfnHash` is
``vcpu->arch.apf.gfns`` (src: arch/x86/kvm/x86.c ``kvm_add_async_pf_gfn``,
``kvm_async_pf_gfn_slot``, ``kvm_del_async_pf_gfn``): 64 slots, linear probing,
backward-shift deletion, empty slot = ``~0``.
"""

from __future__ import annotations

from dataclasses import dataclass

from pfsim.errors import InvariantViolation
from pfsim.hypervisor.async_pf import ASYNC_PF_PER_VCPU

KVM_ASYNC_PF_ENABLED = 1 << 0
KVM_ASYNC_PF_SEND_ALWAYS = 1 << 1
KVM_ASYNC_PF_DELIVERY_AS_PF_VMEXIT = 1 << 2
KVM_ASYNC_PF_DELIVERY_AS_INT = 1 << 3
KVM_PV_REASON_PAGE_NOT_PRESENT = 1
KVM_PV_REASON_PAGE_READY = 2
HYPERVISOR_CALLBACK_VECTOR = 0xF3
BROADCAST_TOKEN = 0xFFFFFFFF
"""Page-ready token ~0: wake every sleeper of the receiving CPU."""
U32 = 0xFFFFFFFF
GOLDEN_RATIO_32 = 0x61C88647
GFN_EMPTY = (1 << 64) - 1
"""Empty gfn-hash slot (``~0`` as ``gfn_t``)."""
APF_HASH_BITS = 6  # order_base_2(ASYNC_PF_PER_VCPU)


def hash_32(val: int, bits: int) -> int:
    """Linux ``hash_32``: multiply by GOLDEN_RATIO_32 in u32 and keep the top ``bits``."""
    return ((val * GOLDEN_RATIO_32) & U32) >> (32 - bits)


@dataclass
class PvApfData:
    """``struct kvm_vcpu_pv_apf_data``: per-CPU area shared by guest and host.

    ``flags`` (host writes PAGE_NOT_PRESENT, guest reads and zeroes), ``token`` (host writes a
    page-ready token, guest zeroes it: 0 = slot free), ``enabled`` (guest-private).
    """

    flags: int = 0
    token: int = 0
    enabled: int = 0


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
