"""x86 KVM async-PF paravirtual ABI shared by the guest half and the host half.

The MSR bits and the shared per-CPU area come from arch/x86/include/uapi/asm/kvm_para.h
(``kvm_vcpu_pv_apf_data``, MSR_KVM_ASYNC_PF_EN/_INT/_ACK); ``hash_32`` from
include/linux/hash.h (both sides hash with it: the guest's sleep table and the host's gfn
hash, :mod:`pfsim.hypervisor.apf_gfn_hash`).
"""

from __future__ import annotations

from dataclasses import dataclass

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
