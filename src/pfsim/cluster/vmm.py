"""The ALMOS-MKH VMM of one VM: what the guest kernel and the vCPU executor call.

:class:`ClusterVmm` implements the guest's VMM interface (:class:`pfsim.guest.vmm.Vmm`); the
composition root builds the guest kernel with it instead of the flat VMM when the config asks
for clusters (``guest.clusters > 1`` or ``guest.vmm.model = "almos"``,
:func:`pfsim.config.cluster_checks.almos_enabled`).  The executor then runs each thread's
accesses against its cluster's page-table copy (:meth:`ClusterVmm.scan`), sends refused
accesses to :meth:`ClusterVmm.exception`, and the kernel calls :meth:`attach_process`,
:meth:`thread_exit` and :meth:`release_process` at the process's life events.  Fork, munmap
and exec are in :mod:`pfsim.cluster.lifecycle`.

Threads never change cluster (ALMOS-MKH has no thread migration between clusters): a thread
without a pinned vCPU is pinned when it is created to the least loaded vCPU (fewest live
threads placed there), like the DQDT would choose.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from pfsim.cluster.costs import cost_vector
from pfsim.cluster.fault import KERNEL_PANIC, NON_FATAL, USER_ERROR, AlmosFaults
from pfsim.cluster.gpt import COPY_COUNTER_NAMES, EXECUTABLE, MAPPED, WRITABLE, ProcessGpt
from pfsim.cluster.invariants import check_all
from pfsim.cluster.lifecycle import almos_exec, almos_fork, almos_munmap
from pfsim.cluster.memory import ClusterMem
from pfsim.cluster.release import release_copy, release_vseg
from pfsim.cluster.scan import (
    P_BANK,
    P_FAST,
    P_FETCH,
    P_LIMIT,
    P_LOCAL,
    P_LOOKAHEAD,
    P_MESH,
    P_MODULO,
    P_REF,
    P_SIZE,
    P_SPENT,
    P_START,
    P_STOP,
    P_T0,
    P_THINK,
    T_ALLOCATED,
    T_FALSE_COST,
    T_FALSE_NR,
    T_GLOBAL_COST,
    T_GLOBAL_NR,
    T_LOCAL_COST,
    T_LOCAL_NR,
    T_MIN_FLT,
    T_NWAITS,
    T_PT2_WAITS,
    T_PTE_WAIT_NS,
    T_PTE_WAITS,
    T_REMOTE,
    T_RPCS,
    T_RW_WAIT_NS,
    T_RW_WAITS,
    T_SIZE,
    T_SPANS,
    run_cluster_accesses,
)
from pfsim.cluster.topology import TYPE_CODES, Topology
from pfsim.config.schema import Config, ProcessConfig
from pfsim.guest.fault import Access, FaultResult
from pfsim.guest.mm import TASK_SIZE_MAX
from pfsim.guest.process import Process
from pfsim.guest.vmm import Vmm
from pfsim.machine.trace_records import K_LOCK_WAIT, LOCK_PT2, LOCK_PTE, LOCK_RWLOCK, M_DROPPED
from pfsim.units import PAGE_SIZE

WAITS_PER_SCAN = 4096
"""Lock waits one run of the compiled loop notes for the trace (more are counted as dropped)."""
_LOCK_OF = {T_PTE_WAITS: LOCK_PTE, T_PT2_WAITS: LOCK_PT2, T_RW_WAITS: LOCK_RWLOCK}

if TYPE_CHECKING:
    from pfsim.guest.executor import TaskExec
    from pfsim.guest.kernel import GuestKernel
    from pfsim.sched import Task

_TOUT_FIELDS = ((T_MIN_FLT, "min_flt"), (T_FALSE_NR, "false_pgfault_nr"),
                (T_LOCAL_NR, "local_pgfault_nr"),
                (T_GLOBAL_NR, "global_pgfault_nr"), (T_FALSE_COST, "false_pgfault_cost"),
                (T_LOCAL_COST, "local_pgfault_cost"), (T_GLOBAL_COST, "global_pgfault_cost"),
                (T_REMOTE, "remote_accesses"), (T_RPCS, "rpcs"), (T_PTE_WAITS, "pte_lock_waits"),
                (T_PTE_WAIT_NS, "pte_lock_wait_ns"), (T_PT2_WAITS, "pt2_lock_waits"),
                (T_RW_WAITS, "rwlock_waits"), (T_RW_WAIT_NS, "rwlock_wait_ns"))
_TOUT_NAMES = dict(_TOUT_FIELDS)


class ClusterVmm(Vmm):
    """The clusters of one VM and the VMM copies of its processes.

    Args:
        kernel: the guest kernel (its ``mem`` must be a :class:`ClusterMem`).
    """

    touches_in_time_order = True  # faults take PTE locks and the rwlock in simulated time
    reclaims = False  # ALMOS-MKH has no swap, no page-cache reclaim, no OOM killer

    @classmethod
    def new_memory(cls, config: Config) -> ClusterMem:
        """The banked guest memory of a clustered VM."""
        guest = config.guest
        return ClusterMem(guest.memory // PAGE_SIZE,
                          max(1, guest.mm.kernel_reserved // PAGE_SIZE), guest.clusters)

    def __init__(self, kernel: GuestKernel) -> None:
        guest = kernel.config.guest
        self.kernel = kernel
        self.config = guest.vmm
        self.topology = Topology(guest.clusters, guest.vcpus, guest.vmm)
        self.mem: ClusterMem = kernel.mem  # type: ignore[assignment]
        self.costs = cost_vector(guest)
        self.fast = guest.fast_faults
        self.rng = kernel.streams.generator("vmm/placement")
        self.ra_pages = max(1, guest.disk.readahead // PAGE_SIZE)
        self.outcomes = {NON_FATAL: 0, USER_ERROR: 0, KERNEL_PANIC: 0}
        self.cow_races = 0
        self.halted: list[dict[str, Any]] = []
        self.load = [0] * guest.vcpus
        """Live threads pinned to each vCPU (the DQDT's view)."""
        self.placed: dict[Task, int] = {}
        self.fork_failures = 0
        self.faults = AlmosFaults(self)
        self.check = kernel.config.sim.check_invariants
        """Check the invariants (docs/clusters.md) after each exception handled in Python
        (``sim.check_invariants``)."""
        self.tout = np.zeros(T_SIZE, dtype=np.int64)
        self.params = np.zeros(P_SIZE, dtype=np.int64)
        self.params[P_BANK] = self.mem.bank
        self.params[P_MESH] = self.topology.mesh_positions
        self.params[P_MODULO] = int(self.topology.modulo)
        self.params[P_LOOKAHEAD] = self.config.lookahead
        self.mem_args = (self.mem.kind, self.mem.rf, self.mem.free2d, self.mem.bank_counts,
                         self.topology.distance, self.costs)
        self.spans = [np.zeros_like(log) for log in kernel.executor.log]
        """Per vCPU: the (raise, end) times of the faults its current segment resolved."""
        self.nspans = [0] * guest.vcpus
        self.waits = np.zeros((3, 0), dtype=np.int64)
        """The lock waits of one run of the compiled loop, when the run is traced."""

    # ------------------------------------------------------------------ processes

    def place_thread(self, task: Task, cluster: int | None = None) -> int:
        """Pin ``task`` (unless already pinned) to the least loaded vCPU, of ``cluster`` if
        given; returns its cluster."""
        if task.allowed_cpu is None:
            cpus = (self.topology.vcpus_of(cluster) if cluster is not None
                    else range(len(self.load)))
            task.allowed_cpu = min(cpus, key=lambda cpu: (self.load[cpu], cpu))
        self.load[task.allowed_cpu] += 1
        self.placed[task] = task.allowed_cpu
        return self.topology.cluster_of(task.allowed_cpu)

    def unplace(self, task: Task) -> None:
        """``task`` is gone: it no longer loads its vCPU."""
        cpu = self.placed.pop(task, None)
        if cpu is not None:
            self.load[cpu] -= 1

    def attach_process(self, process: Process, proc: ProcessConfig) -> None:
        """Place a new process's threads, build its copies, register its vsegs (where exec and
        ``vmm_create_vseg`` put them): code, data and mmap vsegs in the reference VSL, each
        thread's stack in its cluster's."""
        threads = process.threads
        if proc.cluster is not None:
            ref = proc.cluster
            if threads:
                self.place_thread(threads[0], ref)
        else:
            ref = self.place_thread(threads[0]) if threads else 0
        for task in threads[1:]:
            self.place_thread(task)
        process.cluster = ref
        clusters = {v.name: v.cluster for v in proc.vsegs if v.cluster is not None}
        gpt = ProcessGpt(process.mm, self.topology, ref, clusters)
        process.vmm = gpt
        gpt.copy_exists[ref] = True
        stacks = {task.data.stack.name for task in threads if task.data.stack is not None}
        for v, vma in enumerate(gpt.vsegs):
            if vma.name not in stacks:
                gpt.vsl[ref, v] = 1
        for task in threads:
            cluster = self.topology.cluster_of(task.allowed_cpu)
            gpt.copy_exists[cluster] = True
            if task.data.stack is not None:
                gpt.vsl[cluster, gpt.vseg_index(task.data.stack.name)] = 1

    def thread_exit(self, texec: TaskExec) -> None:
        """A thread is destroyed: its stack vseg leaves its cluster's VSL, pages freed
        (``vmm_remove_vseg``)."""
        task = texec.task
        self.unplace(task)
        gpt: ProcessGpt | None = texec.process.vmm
        if gpt is None or texec.stack is None or not texec.process.alive:
            return
        cluster = self.topology.cluster_of(task.allowed_cpu)
        v = gpt.vseg_index(texec.stack.name)
        if gpt.vsl[cluster, v]:
            release_vseg(self, gpt, cluster, v)
            gpt.vsl[cluster, v] = 0

    def release_process(self, process: Process) -> None:
        """The process is gone: destroy every copy (``vmm_destroy``, with the release rules of
        ``vmm_remove_vseg``), then its PT2s."""
        for task in process.threads:
            self.unplace(task)
        gpt: ProcessGpt | None = process.vmm
        if gpt is None:
            return
        for copy in range(gpt.n):
            if gpt.copy_exists[copy]:
                release_copy(self, gpt, copy)
        process.mm.rss = 0

    def fork(self, cpu: int, texec: TaskExec, child: Process, step: Any, t: int) -> int:
        """``process_make_fork`` (:func:`~pfsim.cluster.lifecycle.almos_fork`), in the cluster
        ``step.cluster`` when given; -1 (counted) when the page tables find no frame."""
        cost = almos_fork(self, cpu, texec, child, step.cluster, t)
        if cost < 0:
            self.fork_failures += 1
        return cost

    def munmap(self, cpu: int, texec: TaskExec, name: str) -> int:
        return almos_munmap(self, cpu, texec, name)

    def exec(self, cpu: int, texec: TaskExec) -> int:
        return almos_exec(self, cpu, texec)

    # ------------------------------------------------------------------ the executor's calls

    def scan(self, cpu: int, texec: TaskExec, t: int, end: int, limit: int, out: np.ndarray,
             log: np.ndarray) -> tuple[int, int]:
        """Run the compiled loop for ``texec`` on ``cpu``; apply its counts."""
        gpt: ProcessGpt = texec.process.vmm
        tout = self.tout
        tout[:] = 0
        params = self.params
        params[P_START] = texec.pos
        params[P_STOP] = end
        params[P_T0] = t
        params[P_THINK] = texec.think
        params[P_SPENT] = texec.spent
        params[P_LIMIT] = limit
        params[P_FETCH] = texec.fetch
        params[P_FAST] = self.fast and texec.tried_slot < 0  # a retried mapper fault: Python
        params[P_LOCAL] = cpu // self.topology.per_cluster
        params[P_REF] = gpt.ref
        recorder = self.kernel.executor.recorder
        if recorder.on and self.waits.shape[1] == 0:
            self.waits = np.zeros((3, WAITS_PER_SCAN), dtype=np.int64)
        stop = run_cluster_accesses(texec.slots, texec.writes, texec.vpns, params,
                                    *gpt.kernel_args, *self.mem_args, out, log, self.spans[cpu],
                                    self.waits, tout, self.kernel.latency)
        if tout[T_NWAITS]:
            self._record_waits(cpu, texec.task.tid, int(tout[T_NWAITS]))
        self.nspans[cpu] = int(tout[T_SPANS])
        nonzero = np.flatnonzero(tout).tolist()
        if nonzero:
            counters = texec.counters
            for index in nonzero:
                name = _TOUT_NAMES.get(index)
                if name is not None:
                    setattr(counters, name, getattr(counters, name) + int(tout[index]))
            faults = int(tout[T_MIN_FLT])
            counters.pgfault += faults
            self.outcomes[NON_FATAL] += faults
            self.mem.allocated_total += int(tout[T_ALLOCATED])
        return int(out[0]), stop

    def _record_waits(self, cpu: int, tid: int, n: int) -> None:
        """The lock waits the compiled loop noted, as trace records."""
        recorder = self.kernel.executor.recorder
        kept = min(n, self.waits.shape[1])
        for start, end, index in self.waits[:, :kept].T.tolist():
            recorder.add(start, K_LOCK_WAIT, cpu, tid, end=end, aux=_LOCK_OF[index])
        recorder.meta[M_DROPPED] += n - kept

    def fault_in_progress(self, cpu: int, now: int) -> int:
        """End time of a fault the compiled loop resolved on ``cpu`` that is under way at
        ``now`` (0 if none): an interrupt should wait for it, as the handler would finish."""
        spans = self.spans[cpu]
        for k in range(self.nspans[cpu]):
            if spans[0, k] <= now < spans[1, k]:
                return int(spans[1, k])
        return 0

    def usable(self, cpu: int, texec: TaskExec, slot: int, write: bool, fetch: bool,
               t: int) -> bool:
        """Would the MMU of ``cpu`` let this access through at time ``t``?"""
        if slot < 0:
            return False
        pte = texec.process.vmm.visible(self.topology.cluster_of(cpu), slot, t)
        need = MAPPED | (WRITABLE if write else 0) | (EXECUTABLE if fetch else 0)
        return (pte & need) == need

    def touch_allowed(self, cpu: int, texec: TaskExec, access: Access, t: int) -> bool:
        if access.addr >= TASK_SIZE_MAX:
            return not access.user and self.kernel.faults.kernel_mapped(access.addr)
        slot = texec.process.mm.slot_of(access.addr)
        return self.usable(cpu, texec, slot, access.write, access.fetch, t)

    def exception(self, cpu: int, texec: TaskExec, access: Access, t: int) -> FaultResult:
        result = self.faults.exception(cpu, texec, access, t)
        if self.check:
            check_all(self.kernel)
        return result

    def core_halted(self, cpu: int, detail: dict[str, Any]) -> None:
        self.halted.append({"vcpu": cpu, "cluster": self.topology.cluster_of(cpu), **detail})

    def check_invariants(self) -> None:
        check_all(self.kernel)

    # ------------------------------------------------------------------ results

    def process_result(self, process: Process) -> dict[str, Any]:
        """The cluster part of a process's result entry."""
        gpt: ProcessGpt | None = process.vmm
        if gpt is None:
            return {}
        placement = {vma.name: [int(x) for x in gpt.placement[v]]
                     for v, vma in enumerate(gpt.vsegs) if gpt.placement[v].any()}
        mapped = gpt.gfn[(gpt.state & MAPPED) != 0]
        resident = np.unique(mapped[self.mem.kind[mapped] == 1]) if mapped.size else mapped
        return {"reference_cluster": gpt.ref, "copies": gpt.as_dict(), "pages_placed": placement,
                "rss_pages": int(resident.size)}

    def vm_result(self) -> dict[str, Any]:
        """Per-cluster memory and the VM-wide outcome counts."""
        mem = self.mem
        topo = self.topology
        clusters = []
        for c in range(topo.n):
            lo, hi = c * mem.bank, (c + 1) * mem.bank
            kinds = mem.kind[lo:hi]
            clusters.append({
                "cluster": c, "position": list(topo.position(c)), "vcpus": list(topo.vcpus_of(c)),
                "frames": int(mem.bank), "free_frames": int(mem.nfree2d[c]),
                "frames_allocated_total": int(mem.allocated_by_bank[c]),
                "user_pages": int(np.count_nonzero(kinds == 1)),
                "page_cache_pages": int(np.count_nonzero(kinds == 2)),
                "pt2_pages": int(np.count_nonzero(kinds == 5)),
            })
        cfg = self.config
        return {
            "model": "almos", "mesh": [topo.x_size, topo.y_size], "clusters": clusters,
            "outcomes": dict(self.outcomes), "cow_races": self.cow_races,
            "fork_failures": self.fork_failures,
            "halted_vcpus": list(self.halted),
            "switches": {"distrib_index": cfg.distrib_index, "remote_ops": cfg.remote_ops,
                         "vsl_lock": cfg.vsl_lock, "oom_rule": cfg.oom_rule,
                         "cow_oom_policy": cfg.cow_oom_policy,
                         "cow_race_is_user_error": cfg.cow_race_is_user_error,
                         "cow_update_unmapped_copies": cfg.cow_update_unmapped_copies},
        }


__all__ = ["COPY_COUNTER_NAMES", "ClusterVmm", "TYPE_CODES"]
