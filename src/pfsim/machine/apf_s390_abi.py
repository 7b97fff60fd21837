"""s390 pfault ABI shared by the guest half and the host half.

The external-interrupt code and subcodes of the pfault interrupts, the PSW and CR0 bits that
decide whether a fault may be asynchronous, and the DIAG 0x258 parameter block
(src: arch/s390/mm/pfault.c ``struct pfault_refbk``, ``__pfault_init``,
arch/s390/kvm/diag.c ``__diag_page_ref_service``, arch/s390/kvm/interrupt.c).
"""

from __future__ import annotations

from dataclasses import dataclass

EXT_IRQ_CP_SERVICE = 0x2603
PFAULT_INIT = 0x0600
PFAULT_DONE = 0x0680
PF_COMPLETE = 0x0080
PSW_MASK_EXT = 1 << 56  # 0x0100000000000000: external interrupts enabled
PSW_MASK_PSTATE = 1 << 48  # 0x0001000000000000: problem (user) state
CR0_SERVICE_SIGNAL_SUBMASK = 0x200
DIAG258_ZARCH = 0x8000000000000000


def psw_mask(problem_state: bool, ext_enabled: bool = True) -> int:
    """A guest PSW mask with the two bits pfault cares about."""
    return (PSW_MASK_PSTATE if problem_state else 0) | (PSW_MASK_EXT if ext_enabled else 0)


@dataclass(frozen=True)
class PfaultRefbk:
    """The DIAG 0x258 parameter block (``struct pfault_refbk`` / KVM's ``prs_parm``)."""

    diagc: int = 0x258
    fcode: int = 0
    """0 = TOKEN (establish), 1 = CANCEL."""
    dwlen: int = 5
    versn: int = 2
    gaddr: int = 0
    """Guest real address of the 8-byte token."""
    selmk: int = 0
    cmpmk: int = 0
    reserved: int = 0
    """Must be 0x8000000000000000 for TOKEN ("z/Arch"), 0 for CANCEL."""
