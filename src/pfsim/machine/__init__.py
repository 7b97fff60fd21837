"""The machine layer: what the guest and the host of one VM share, below both.

A VM's memory is seen by two kernels at once: the guest's page tables map virtual pages to
guest frames (gfns), the host's second-level page table (EPT) maps gfns to host frames.  The
compiled per-access loop walks both, and each async-PF protocol is a guest half and a host half
talking through an ABI.  What both sides must agree on lives here, so that neither
:mod:`pfsim.guest` nor :mod:`pfsim.hypervisor` imports the other:

* :mod:`~pfsim.machine.pte`: the PTE and VMA flag bits of a guest page-table slot;
* :mod:`~pfsim.machine.frames`: guest frame kinds and the zero page's frame number;
* :mod:`~pfsim.machine.hostmem_layout`: the rows of the host's packed per-gfn and per-frame
  arrays and the states of a gfn in the host (never touched, resident, on swap...);
* :mod:`~pfsim.machine.scan`: the compiled per-access loop over both page tables (the guest's
  common faults, the host's first touches and reclaim bookkeeping);
* :mod:`~pfsim.machine.vmexit`: what the host decided about an EPT violation;
* :mod:`~pfsim.machine.apf_kvm_abi`, :mod:`~pfsim.machine.apf_s390_abi`: the async-PF
  paravirtual ABIs (x86 KVM, s390 pfault);
* :mod:`~pfsim.machine.checked`: the debug hook of the four async-PF protocol halves.

Layers (lowest first): engine → machine → sched → guest, hypervisor → cluster → compiled →
the composition root (``tests/test_layers.py`` checks it).  This package imports only
:mod:`pfsim.errors` and :mod:`pfsim.units`, besides numpy and numba.
"""
