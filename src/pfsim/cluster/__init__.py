"""ALMOS-MKH multi-cluster virtual memory (trunk/kernel/mm/vmm.c of the 2019-2020 ALMOS-MKH tree;
docs/clusters.md).

vCPUs are grouped into clusters, each with its own memory bank.  Every process has a
reference cluster holding the complete vseg list (VSL) and page table (GPT); the other
clusters where it runs keep partial copies filled on demand by false page faults.  The
modules:

* :mod:`~pfsim.cluster.topology`: mesh, distances, page placement, remote costs;
* :mod:`~pfsim.cluster.memory`: per-cluster frame banks and the pending-fork counters;
* :mod:`~pfsim.cluster.gpt`: per-process page-table copies, vseg lists, lock timelines;
* :mod:`~pfsim.cluster.locks`: PTE locks and the remote rwlock in simulated time;
* :mod:`~pfsim.cluster.fault`: ``vmm_handle_page_fault`` and ``vmm_handle_cow`` (reference);
* :mod:`~pfsim.cluster.scan`: the compiled access loop with the common faults;
* :mod:`~pfsim.cluster.vmm`: the per-VM object the guest kernel and executor call (the guest's
  VMM interface, :class:`pfsim.guest.vmm.Vmm`);
* :mod:`~pfsim.cluster.lifecycle`: fork, exit, munmap and exec on page-table copies;
* :mod:`~pfsim.cluster.invariants`: the invariants of docs/clusters.md as pure functions;
* :mod:`~pfsim.cluster.result`: the cluster part of result.json.

The cluster config checks and :func:`~pfsim.config.cluster_checks.almos_enabled` are in
:mod:`pfsim.config.cluster_checks`; the composition root (:mod:`pfsim.simulation`) builds the
guest kernel with :class:`~pfsim.cluster.vmm.ClusterVmm` when a config enables clusters.
"""
