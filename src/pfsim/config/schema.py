"""The configuration schema: every key, its type, its default and its unit live here only.

Sizes are strings with units (``"64MiB"``) and become bytes; durations (``"16us"``) become
integer nanoseconds.  Unknown keys are refused.  Cross-field rules (a step naming a vseg the
process does not have, a vCPU that does not exist) are checked in :mod:`pfsim.config.load`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, StrictInt

from pfsim.units import parse_address, parse_size, parse_time


def _size(value: object) -> object:
    return parse_size(value) if isinstance(value, (str, int)) else value


def _time(value: object) -> object:
    return parse_time(value) if isinstance(value, (str, int)) else value


def _addr(value: object) -> object:
    return parse_address(value) if isinstance(value, (str, int)) else value


Size = Annotated[StrictInt, BeforeValidator(_size), Field(ge=0)]
"""Bytes, written as ``"4KiB"``, ``"64MiB"``..."""
Time = Annotated[StrictInt, BeforeValidator(_time), Field(ge=0)]
"""Integer nanoseconds, written as ``"100ns"``, ``"16us"``, ``"2ms"``, ``"1s"``."""
Address = Annotated[StrictInt, BeforeValidator(_addr), Field(ge=0)]
Ratio = Annotated[float, Field(ge=0.0, le=1.0, strict=False)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class SimConfig(_Section):
    """Run control."""

    seed: StrictInt = 0
    """Seed of every random stream of the run (``--seed`` overrides it)."""
    duration: Time | None = None
    """Stop the run at this simulated time; None runs until every task has exited."""
    check_invariants: StrictBool = False
    """Check model invariants after every protocol event (slow; always on in tests)."""


class SchedConfig(_Section):
    """Guest scheduler parameters (the host scheduler uses the same policy)."""

    policy: Literal["cfs", "rr"] = "cfs"
    """cfs: Linux's fair scheduler (vruntime, sleeper credit, wake-up preemption);
    rr: round robin with a fixed ``timeslice`` and no wake-up preemption."""
    timeslice: Time = 3_000_000
    """Round-robin time slice of a task on a CPU (rr only)."""
    latency: Time = 6_000_000
    """CFS sched_latency: the period in which every runnable task runs once."""
    min_granularity: Time = 750_000
    """CFS sched_min_granularity: the shortest slice."""
    wakeup_granularity: Time = 1_000_000
    """CFS sched_wakeup_granularity: how far ahead (in vruntime) a woken task must be to
    preempt the running one."""
    context_switch: Time = 2_000
    """CPU time of one real context switch (prev != next)."""
    idle_balance: StrictBool = True
    """An idle CPU pulls a runnable task from the busiest run queue."""


class FaultCosts(_Section):
    """CPU time of each step of the guest fault path (defaults from linux-semantics.md §7)."""

    entry: Time = 300
    """Exception entry, error-code decode, VMA lookup and return to the faulting context."""
    zero_page: Time = 500
    """Map the shared zero page on a read of untouched anonymous memory."""
    anon_page: Time = 1_500
    """Allocate and zero a page (anonymous write, write after zero page)."""
    cow_copy: Time = 2_500
    """Allocate a page and copy 4 KiB (COW break of a shared page)."""
    cow_reuse: Time = 400
    """Make an exclusively owned page writable again (COW without copy)."""
    file_map: Time = 700
    """Map a page-cache page (file read fault that hits the cache)."""
    fault_around_page: Time = 40
    """Each extra page mapped by fault-around."""
    signal: Time = 2_000
    """Deliver SIGSEGV and start killing the process."""
    tlb_shootdown: Time = 1_500
    """IPI round trip to the other vCPUs running the mm (fork write-protect, munmap)."""


class DiskConfig(_Section):
    """Guest block device that backs FILE, CODE and DATA vsegs (page-cache misses)."""

    latency: Time = 100_000
    """Per-request latency."""
    bandwidth: Size = 1 << 30
    """Bytes per second once a request is being served."""
    readahead: Size = 128 << 10
    """Read-around window of a page-cache miss on an mmap fault (ra_pages, default 32 pages)."""
    fault_around: Size = 64 << 10
    """Fault-around window (fault_around_bytes, default 64 KiB = 16 pages); 4KiB disables it."""


class MMConfig(_Section):
    """Guest memory-management policy."""

    zero_page: StrictBool = True
    """Map the shared zero page on a first read of anonymous memory."""
    stack_guard_gap: Size = 1 << 20
    """Gap kept below a growing stack (stack_guard_gap = 256 pages)."""
    oom: Literal["kill-largest", "panic"] = "kill-largest"
    """When no frame is free: kill the process with the largest RSS, or panic the VM."""
    kernel_reserved: Size = 8 << 20
    """Guest memory the kernel keeps for itself (not available to user pages)."""
    smap: StrictBool = True
    """Supervisor-mode access prevention: a kernel access to user memory outside a uaccess
    helper (a touch step with mode = "kernel" and fixup = false) oopses."""


class GuestConfig(_Section):
    """The virtual machine seen from inside."""

    vcpus: Annotated[StrictInt, Field(ge=1, le=4096)] = 1
    memory: Size = 256 << 20
    clusters: Annotated[StrictInt, Field(ge=1, le=1024)] = 1
    """Number of clusters (1 = a flat kernel)."""
    syscall: Time = 300
    """Entry and exit cost of a system call."""
    copy_page: Time = 250
    """Kernel copy of one user page in copy_to_user / copy_from_user."""
    fast_faults: StrictBool = True
    """Resolve the common anonymous faults inside the compiled access loop (same results as
    the Python fault path, which stays the reference; false sends every fault through it)."""
    sched: SchedConfig = SchedConfig()
    costs: FaultCosts = FaultCosts()
    disk: DiskConfig = DiskConfig()
    mm: MMConfig = MMConfig()


class SwapConfig(_Section):
    """The host swap device.  ``device`` picks a preset (linux-semantics.md §7.2); any value
    given here overrides the preset's."""

    device: Literal["zram", "nvme", "sata-ssd", "hdd"] = "nvme"
    latency: Time | None = None
    """Per-request service latency (preset: zram 1.7us, nvme 16us, sata-ssd 100us, hdd 8ms)."""
    distribution: Literal["fixed", "exponential", "lognormal"] = "fixed"
    """How each request's latency is drawn around ``latency`` (its mean)."""
    sigma: Annotated[float, Field(gt=0.0, le=4.0, strict=False)] = 0.5
    """Lognormal shape parameter."""
    bandwidth: Size | None = None
    """Bytes per second of transfer (preset: zram 8GiB, nvme 2GiB, sata-ssd 500MiB, hdd 150MiB)."""
    queue_depth: Annotated[StrictInt, Field(ge=1)] | None = None
    """Requests served at once (preset: zram 1, nvme 64, sata-ssd 32, hdd 1)."""
    page_cluster: Annotated[StrictInt, Field(ge=0, le=6)] | None = None
    """Swap readahead reads 2**page_cluster slots (preset 3; zram 0: synchronous, no readahead)."""
    synchronous: StrictBool | None = None
    """SWP_SYNCHRONOUS_IO: a swap-in completes inside the faulting thread, so KVM never sees
    NEEDS_IO and no async PF happens (preset: zram only)."""


class HostCosts(_Section):
    """CPU time the host spends on the vCPU's behalf (estimates of linux-semantics.md §7.3)."""

    ept_violation: Time = 2_500
    """VM exit, EPT walk, map and re-entry for a page already in host memory."""
    host_fault: Time = 1_500
    """Host anonymous first-touch fault (allocate and zero), on top of the EPT violation."""
    swapcache_hit: Time = 800
    """Map a page found in the host swap cache (readahead brought it in)."""
    apf_inject: Time = 1_500
    """Set up an async PF and inject 'page not present' into the guest."""
    page_ready: Time = 1_000
    """Deliver 'page ready' (kvm: interrupt + ACK; s390: completion interrupt) and wake."""
    swap_out: Time = 1_000
    """Host CPU time to unmap and queue one dirty page for writeback."""


class HypervisorConfig(_Section):
    """The host: CPUs running the vCPU threads, memory granted to the VM, swap, async PF."""

    enabled: StrictBool = False
    """Model the host (false: vCPUs always run and guest memory is always backed)."""
    host_cpus: Annotated[StrictInt, Field(ge=1, le=4096)] = 4
    host_tasks: Annotated[StrictInt, Field(ge=0)] = 0
    """Always-runnable host threads competing with the vCPU threads for host CPUs."""
    memory_limit: Size | None = None
    """Host memory granted to the VM (a memory cgroup limit); None: as much as the guest has."""
    reclaim: Literal["fifo", "lru", "clock", "random"] = "lru"
    reclaim_batch: Annotated[StrictInt, Field(ge=1, le=4096)] = 32
    """Pages reclaimed at once when the VM reaches its limit."""
    async_pf: Literal["off", "halt", "kvm", "s390"] = "off"
    """off: the vCPU stalls for a swap-in; halt: host-side halt, interrupts still delivered;
    kvm: x86 paravirtual async PF; s390: pfault."""
    apf_debug: StrictBool = False
    """Check the async-PF protocol invariants after every protocol event."""
    timeslice: Time = 6_000_000
    """Host scheduler slice for vCPU threads and host tasks."""
    context_switch: Time = 3_000
    costs: HostCosts = HostCosts()
    swap: SwapConfig = SwapConfig()


VsegType = Literal["code", "data", "stack", "anon", "file", "remote"]


class VsegConfig(_Section):
    """A virtual segment (VMA) of a process."""

    name: str
    type: VsegType
    size: Annotated[StrictInt, BeforeValidator(_size), Field(gt=0)]
    base: Address | None = None
    """Start address (page aligned); chosen by the layout when absent. For a stack, its top."""
    prot: Literal["r", "rw", "rx", "rwx"] | None = None
    """Access rights; default by type: code rx, all others rw."""
    file: str | None = None
    """Backing file name for code, data and file vsegs (shared page cache); default: private."""
    cached: StrictBool = True
    """The backing file is in the page cache when the run starts."""
    stack_max: Size = 8 << 20
    """Stack rlimit (RLIMIT_STACK): the most a stack vseg may grow to."""


class _Step(_Section):
    pass


class _Target(_Step):
    vseg: str | None = None
    """Vseg the step works on (its whole extent unless offset/length say otherwise)."""
    addr: Address | None = None
    """Absolute start address instead of a vseg (may lie outside every vseg)."""
    offset: Size = 0
    length: Size | None = None
    split: StrictBool = False
    """The threads of the group divide the range: thread i of n works on the i-th 1/n of it."""


class AccessStep(_Target):
    """User-mode loads and stores over a range, one page number per access."""

    op: Literal["access"]
    pattern: Literal["sequential", "uniform", "zipf", "hotcold"] = "uniform"
    accesses: Annotated[StrictInt, Field(gt=0)] | None = None
    duration: Time | None = None
    write_ratio: Ratio = 0.0
    think: Annotated[StrictInt, BeforeValidator(_time), Field(gt=0)] = 100
    """CPU time of one access including the work around it."""
    stride: Annotated[StrictInt, BeforeValidator(_size), Field(gt=0)] = 64
    """Sequential pattern: bytes between consecutive accesses (wraps at the end)."""
    alpha: Annotated[float, Field(gt=0.0, strict=False)] = 0.99
    """Zipf exponent (any positive value; 1.0 is classic Zipf)."""
    hot_fraction: Annotated[float, Field(gt=0.0, lt=1.0, strict=False)] = 0.1
    hot_probability: Ratio = 0.9
    phase: Annotated[StrictInt, Field(gt=0)] = 100_000
    """Hot/cold pattern: accesses per phase; the hot set moves at each phase."""
    fetch: StrictBool = False
    """Instruction fetches (error-code INSTR bit) instead of data reads."""


class ComputeStep(_Step):
    """CPU-bound work that touches no new memory and counts work units."""

    op: Literal["compute"]
    units: Annotated[StrictInt, Field(gt=0)] | None = None
    duration: Time | None = None
    unit: Annotated[StrictInt, BeforeValidator(_time), Field(gt=0)] = 1_000
    """CPU time of one work unit."""


class SyscallStep(_Target):
    """read()/write()-like calls: the kernel copies to (read) or from (write) a user buffer."""

    op: Literal["syscall"]
    kind: Literal["read", "write"] = "read"
    repeat: Annotated[StrictInt, Field(gt=0)] = 1


class TouchStep(_Step):
    """One access at an absolute address, in user or kernel mode."""

    op: Literal["touch"]
    addr: Address
    write: StrictBool = False
    think: Annotated[StrictInt, BeforeValidator(_time), Field(gt=0)] = 100
    mode: Literal["user", "kernel"] = "user"
    fixup: StrictBool = True
    """Kernel mode only: the access has an exception-table entry (a uaccess helper)."""


class SleepStep(_Step):
    """Block interruptibly for a while (a timer wake-up)."""

    op: Literal["sleep"]
    duration: Time


Step = Annotated[
    AccessStep | ComputeStep | SyscallStep | TouchStep | SleepStep, Field(discriminator="op")
]


class ThreadConfig(_Section):
    """A group of identical threads of a process."""

    count: Annotated[StrictInt, Field(ge=1)] = 1
    cpu: Annotated[StrictInt, Field(ge=0)] | None = None
    """Pin the threads to this vCPU (default: any vCPU)."""
    stack: StrictBool = True
    """Give each thread its own STACK vseg."""
    steps: list[Step] = Field(min_length=1)


class ProcessConfig(_Section):
    """A process: an address space and its threads."""

    name: str
    start: Time = 0
    """Simulated time at which the process is created."""
    vsegs: list[VsegConfig] = []
    threads: list[ThreadConfig] = Field(min_length=1)


class Config(_Section):
    """A whole scenario."""

    sim: SimConfig = SimConfig()
    guest: GuestConfig = GuestConfig()
    hypervisor: HypervisorConfig = HypervisorConfig()
    processes: list[ProcessConfig] = Field(min_length=1)
