"""The configuration schema: every key, its type, its default and its unit live here only.

Sizes are strings with units (``"64MiB"``) and become bytes; durations (``"16us"``) become
integer nanoseconds.  Unknown keys are refused.  Cross-field rules (a step naming a vseg the
process does not have, a vCPU that does not exist) are checked in :mod:`pfsim.config.load`.
"""

from __future__ import annotations

import functools
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    ValidationInfo,
    field_validator,
    model_validator,
)

from pfsim.units import parse_address, parse_size, parse_time

INT64_MAX = (1 << 63) - 1
ADDRESS_MAX = (1 << 64) - 1
MAX_TIME_NS = 1 << 53
"""Longest time a config may give (about 104 days).  The simulated clock is a signed 64-bit
count of nanoseconds; this bound leaves room for the sums of times a run makes."""
MAX_COST_NS = 1_000_000_000
"""Longest CPU cost or device latency of one operation (1 s)."""
PID_MAX_LIMIT = 4 * 1024 * 1024
"""Most threads a 64-bit Linux system can have (PID_MAX_LIMIT, include/linux/threads.h)."""
MAX_TEXT = 256
"""Longest name or file name."""


def _size(value: object) -> object:
    return parse_size(value) if isinstance(value, (str, int, float)) else value


def _time(value: object) -> object:
    return parse_time(value) if isinstance(value, (str, int, float)) else value


def _addr(value: object) -> object:
    return parse_address(value) if isinstance(value, (str, int)) else value


Size = Annotated[StrictInt, BeforeValidator(_size), Field(ge=0)]
"""Bytes, written as ``"4KiB"``, ``"64MiB"``..."""
Time = Annotated[StrictInt, BeforeValidator(_time), Field(ge=0, le=MAX_TIME_NS)]
"""Integer nanoseconds, written as ``"100ns"``, ``"16us"``, ``"2ms"``, ``"1s"``."""
Cost = Annotated[StrictInt, BeforeValidator(_time), Field(ge=0, le=MAX_COST_NS)]
"""CPU time or latency of one operation: a Time of at most 1 s."""
Address = Annotated[StrictInt, BeforeValidator(_addr), Field(ge=0)]
"""An unsigned 64-bit address (``"0xffff888000000000"`` or an integer), below 2**64."""
Ratio = Annotated[float, Field(ge=0.0, le=1.0)]
Bandwidth = Annotated[StrictInt, BeforeValidator(_size), Field(ge=4096)]
"""Bytes per second, at least one 4 KiB page per second."""


NPY_MAGIC = b"\x93NUMPY"
"""The first bytes of every .npy file (numpy.lib.format.MAGIC_PREFIX)."""


def _npy_shortfall(path: str) -> str | None:
    """What a .npy file whose header reads lacks, when its data is shorter than the header
    announces (numpy's own error is about mmap lengths); None otherwise."""
    import math
    import os

    from numpy.lib import format as npy

    try:
        with open(path, "rb") as handle:
            version = npy.read_magic(handle)
            read = npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0
            shape, _fortran, dtype = read(handle)
            held = os.fstat(handle.fileno()).st_size - handle.tell()
    except (OSError, ValueError):
        return None
    count = math.prod(shape)
    needed = count * dtype.itemsize
    if held >= needed:
        return None
    return (f"its header announces {count:,} {dtype} page numbers ({needed:,} bytes of data), "
            f"the file holds {held:,}")


def npy_trace_length(path: object) -> int:
    """Accesses in the ``.npy`` trace at ``path`` (a 1-D integer array); ValueError otherwise."""
    import numpy as np  # lazy: only configs with a trace step need it

    if not isinstance(path, str):
        return 1  # the type error is reported on the field
    try:
        with open(path, "rb") as handle:
            magic = handle.read(len(NPY_MAGIC))
    except FileNotFoundError:
        raise ValueError(f"trace: no such file {path!r}") from None
    except OSError as exc:
        raise ValueError(f"trace: cannot read {path!r} ({exc.strerror or exc})") from None
    if magic != NPY_MAGIC:  # numpy would call it pickled data and suggest allow_pickle
        raise ValueError(f"trace: {path!r} is not a .npy array of page numbers (pfsim trace "
                         "record writes one): it does not start with the .npy magic string")
    try:
        pages = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        short = _npy_shortfall(path)
        if short is not None:
            raise ValueError(f"trace: {path!r} is truncated: {short}") from None
        raise ValueError(f"trace: {path!r} is not a .npy array of page numbers (pfsim trace "
                         f"record writes one): {exc}") from None
    if pages.ndim != 1 or pages.dtype.kind not in "iu" or pages.size == 0:
        raise ValueError(f"trace: {path!r} holds a {pages.dtype} array of shape {pages.shape}; "
                         "expected a non-empty 1-D array of integer page numbers")
    return int(pages.size)


def _lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


LOWER = BeforeValidator(_lower)
"""Choice names are matched without case (``"LRU"`` is ``"lru"``); every choice is lower case."""


class _Section(BaseModel):
    """Every table of the config: unknown keys refused, no type coercion, finite floats,
    integers within 64 bits, printable names."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False,
                              use_attribute_docstrings=True)

    @field_validator("*", mode="after")
    @classmethod
    def _bounded(cls, value: Any, info: ValidationInfo) -> Any:
        _check_bounded(value, ADDRESS_MAX if _is_address(cls, info.field_name) else INT64_MAX)
        return value


@functools.cache
def _is_address(model: type[BaseModel], name: str | None) -> bool:
    """Does field ``name`` of ``model`` hold an :data:`Address` (unsigned 64 bits)?"""
    field = model.model_fields.get(name or "")
    return field is not None and _addr.__name__ in repr(field.annotation) + repr(field.metadata)


def _check_bounded(value: Any, largest: int = INT64_MAX) -> None:
    if isinstance(value, bool):
        return
    if isinstance(value, int) and not -INT64_MAX - 1 <= value <= largest:
        number = str(value) if value.bit_length() <= 128 else f"a {value.bit_length()}-bit number"
        what = "a 64-bit address" if largest == ADDRESS_MAX else "a signed 64-bit integer"
        raise ValueError(f"{number} does not fit in {what} (at most {largest})")
    if isinstance(value, str):
        if len(value) > MAX_TEXT:
            raise ValueError(f"a name of {len(value)} characters; at most {MAX_TEXT} are allowed")
        if not value.isprintable():
            raise ValueError(f"{value[:40]!r} holds a non-printable character; names are "
                             "printable text")
    if isinstance(value, list):
        for item in value:
            _check_bounded(item)


class SimConfig(_Section):
    """Run control."""

    seed: Annotated[StrictInt, Field(ge=0)] = 0
    """Seed of every random stream of the run (``--seed`` overrides it)."""
    duration: Time | None = None
    """Stop the run at this simulated time; None runs until every task has exited."""
    sample: Time = 10_000_000
    """Record the counters every this much simulated time (result.json ``samples``: work,
    accesses and faults per task, busy/stalled/idle per vCPU, host memory and swap); 0 records
    none.  Sampling never changes the run (this key is not in the config digest)."""
    check_invariants: StrictBool = False
    """Check model invariants after every protocol event (slow; always on in tests)."""
    engine: Annotated[Literal["compiled", "reference"], LOWER] = "compiled"
    """compiled: the host-overcommit event loop (EPT violations, reclaim, swap, async PF,
    scheduling) runs in compiled code where it applies (its first use compiles it, once, in
    about a minute; cached afterwards); scenarios outside it run on the reference path.
    reference: the readable Python model runs every event.  Both give the same result.json
    (this key is not in the config digest)."""


class SchedConfig(_Section):
    """Guest scheduler parameters (the host scheduler uses the same policy)."""

    policy: Annotated[Literal["cfs", "eevdf", "rr"], LOWER] = "cfs"
    """cfs: Linux 2.6.32's fair scheduler (vruntime, sleeper credit, wake-up preemption);
    eevdf: Linux 6.6's (lag, eligibility, virtual deadlines); rr: round robin with a fixed
    ``timeslice`` and no wake-up preemption (docs/model.md "Scheduler")."""
    timeslice: Time = 3_000_000
    """Round-robin time slice of a task on a CPU (rr only)."""
    latency: Time = 6_000_000
    """CFS sched_latency: the period in which every runnable task runs once."""
    min_granularity: Time = 750_000
    """CFS sched_min_granularity: past latency / min_granularity runnable tasks the period is
    this times their number (each then gets this much)."""
    wakeup_granularity: Time = 1_000_000
    """CFS sched_wakeup_granularity: how far ahead (in vruntime) a woken task must be to
    preempt the running one."""
    base_slice: Annotated[Time, Field(ge=1)] = 750_000
    """EEVDF normalized sched_base_slice: the CPU time a task asks for at a time, before
    ``tunable_scaling``."""
    tunable_scaling: Annotated[Literal["none", "log", "linear"], LOWER] = "log"
    """EEVDF sched_tunable_scaling: base_slice times 1, 1 + log2(CPUs) or CPUs (CPUs capped
    at 8; the guest's vCPUs, the host's CPUs)."""
    context_switch: Cost = 2_000
    """CPU time of one real context switch (prev != next)."""
    idle_balance: StrictBool = True
    """An idle CPU pulls a runnable task from the busiest run queue."""


class FaultCosts(_Section):
    """CPU time of each step of the guest fault path (defaults: estimates anchored on published
    fault and TLB-shootdown timings, docs/model.md "Costs")."""

    entry: Cost = 300
    """Exception entry, error-code decode, VMA lookup and return to the faulting context."""
    zero_page: Cost = 500
    """Map the shared zero page on a read of untouched anonymous memory."""
    anon_page: Cost = 1_500
    """Allocate and zero a page (anonymous write, write after zero page)."""
    cow_copy: Cost = 2_500
    """Allocate a page and copy 4 KiB (COW break of a shared page)."""
    cow_reuse: Cost = 400
    """Make an exclusively owned page writable again (COW without copy)."""
    file_map: Cost = 700
    """Map a page-cache page (file read fault that hits the cache)."""
    fault_around_page: Cost = 40
    """Each extra page mapped by fault-around."""
    signal: Cost = 2_000
    """Deliver SIGSEGV and start killing the process."""
    tlb_shootdown: Cost = 1_500
    """IPI round trip to the other vCPUs running the mm (fork write-protect, munmap)."""
    fork: Cost = 40_000
    """Fixed CPU time of fork(): new process and thread descriptors, VMA copies."""
    fork_page: Cost = 20
    """Each page-table entry fork() copies (and write-protects for copy-on-write)."""
    reclaim_page: Cost = 200
    """Reclaim work per page scanned: isolate it, walk its reverse map, test and clear the
    accessed bits, unmap or move it (charged to the allocating task in direct reclaim)."""
    swap_page: Cost = 1_000
    """do_swap_page without the I/O: look up the swap cache, map the page, free the slot."""


class DiskConfig(_Section):
    """Guest block device that backs FILE, CODE and DATA vsegs (page-cache misses)."""

    latency: Cost = 100_000
    """Per-request latency."""
    bandwidth: Bandwidth = 1 << 30
    """Bytes per second once a request is being served."""
    readahead: Size = 128 << 10
    """Readahead window (read_ahead_kb, ra_pages; default 128 KiB = 32 pages): the read-around
    of a page-cache miss on an mmap fault and the largest asynchronous window."""
    fault_around: Size = 64 << 10
    """Fault-around window (fault_around_bytes, default 64 KiB = 16 pages); 4KiB disables it."""


class PageCacheConfig(_Section):
    """The guest page cache of file-backed vsegs."""

    large_folios: StrictBool = True
    """Readahead fills the page cache with large folios whose order grows by 2 per
    asynchronous window up to 2 MiB, and a read fault maps the whole folio (Linux 6.18
    ``page_cache_ra_order``, ``filemap_map_pages``, ``finish_fault``), as ext4 (since 6.16)
    and XFS do; false: order-0 pages only (filesystems without large-folio support)."""


class MMConfig(_Section):
    """Guest memory-management policy."""

    zero_page: StrictBool = True
    """Map the shared zero page on a first read of anonymous memory."""
    stack_guard_gap: Size = 1 << 20
    """Gap kept below a growing stack (stack_guard_gap = 256 pages)."""
    oom: Annotated[Literal["kill-largest", "panic"], LOWER] = "kill-largest"
    """When no frame is free: kill the process with the largest RSS, or panic the VM."""
    kernel_reserved: Size = 8 << 20
    """Guest memory the kernel keeps for itself (not available to user pages)."""
    smap: StrictBool = True
    """Supervisor-mode access prevention: a kernel access to user memory outside a uaccess
    helper (a touch step with mode = "kernel" and fixup = false) oopses."""
    swappiness: Annotated[StrictInt, Field(ge=0, le=200)] = 60
    """vm.swappiness: the relative I/O cost of swapping anonymous pages against dropping file
    pages in reclaim (0: anon only when file pages run out; 100: equal; up to 200)."""
    min_free_kbytes: Annotated[StrictInt, Field(ge=0)] | None = None
    """vm.min_free_kbytes: the min watermark in KiB; None: Linux's default, sqrt(16 x user
    memory in KiB) clamped to [128, 262144] (mm/page_alloc.c calculate_min_free_kbytes)."""
    watermark_scale_factor: Annotated[StrictInt, Field(ge=1, le=3000)] = 10
    """vm.watermark_scale_factor: the low and high watermarks sit this many 1/10000ths of
    user memory above min (and at least min/4 above it)."""


class ClusterCosts(_Section):
    """CPU time of the steps of the ALMOS-MKH fault, COW and fork paths (no ALMOS-MKH fault, RPC
    or remote-access latency is published, so every default is an estimate to calibrate).

    A ``remote_*`` cost is what an operation on another cluster's memory adds to the local
    one, for a neighbouring cluster; each extra mesh hop adds ``hop``.  Page allocation and
    zeroing/copying reuse ``guest.costs.anon_page`` and ``guest.costs.cow_copy``
    (``[guest.vmm.costs]``).
    """

    pte_op: Cost = 20
    """One local PTE read, atomic compare-and-swap or write (lock, set, unlock)."""
    vsl_lookup: Cost = 60
    """Search the local vseg list under its read lock."""
    vseg_copy: Cost = 400
    """Allocate a local vseg descriptor and initialise it from the reference one."""
    pt2_alloc: Cost = 1_500
    """Allocate and zero a second-level page table (PT2) in the page table's cluster."""
    remote_op: Cost = 80
    """Extra for one word read, write or CAS in a neighbouring cluster's memory."""
    remote_page: Cost = 1_000
    """Extra for zeroing or copying a 4 KiB page in (or from) a neighbouring cluster."""
    remote_access: Cost = 40
    """Extra time of a user load or store to a page held by a neighbouring cluster."""
    hop: Cost = 10
    """Added to every remote cost for each mesh hop beyond the first."""
    rpc: Cost = 5_000
    """RPC round trip to a neighbouring cluster (enqueue, IPI, server thread, reply)."""


class ClusterConfig(_Section):
    """The ALMOS-MKH multi-cluster VMM (trunk/kernel/mm/vmm.c of the 2019-2020 ALMOS-MKH tree),
    table ``[guest.vmm]``, used when ``guest.clusters`` is above 1 or ``model = "almos"``.  Each
    switch below settles a point the ALMOS-MKH sources leave uncertain; the default is the most
    likely behaviour (docs/clusters.md)."""

    model: Annotated[Literal["auto", "almos"], LOWER] = "auto"
    """auto: the flat kernel when clusters = 1, the ALMOS-MKH VMM otherwise; almos: the
    ALMOS-MKH VMM even with one cluster."""
    mesh: list[Annotated[StrictInt, Field(ge=1)]] | None = None
    """[x_size, y_size] of the 2D mesh (x_size * y_size >= clusters; positions beyond
    ``clusters`` are empty clusters); default: the squarest power-of-two split of clusters."""
    distrib_index: Annotated[Literal["mask", "modulo"], LOWER] = "mask"
    """DATA page placement index: vpn & (x_size*y_size - 1) as in ``vmm_page_allocate``, or
    vpn % clusters."""
    remote_ops: Annotated[Literal["direct", "rpc"], LOWER] = "direct"
    """direct (2020): remote vseg lookups, page allocations and PTE updates are direct remote
    accesses; rpc (2018-2019): they are RPC_VMM_GET_VSEG, RPC_PMEM_GET_PAGES and
    RPC_VMM_GLOBAL_UPDATE_PTE round trips (docs/clusters.md)."""
    vsl_lock: Annotated[Literal["rwlock", "queuelock"], LOWER] = "rwlock"
    """Lock of each copy's vseg list: remote_rwlock (2019, readers share) or remote_queuelock
    (2020 headers suggest it; every holder is exclusive) (docs/clusters.md)."""
    oom_rule: Annotated[Literal["2020", "2018"], LOWER] = "2020"
    """No page for a page fault: 2020 KERNEL_PANIC (the faulting core halts); 2018 USER_ERROR
    (the process is killed) (``vmm_handle_page_fault``; docs/clusters.md)."""
    cow_oom_policy: Annotated[Literal["kill_process", "panic_core"], LOWER] = "kill_process"
    """No page for a copy-on-write copy: the COW branch reports USER_ERROR (kill) or the
    KERNEL_PANIC it got (halt the core) (``vmm_handle_cow``, ``hal_mmu_exception``)."""
    cow_race_is_user_error: StrictBool = True
    """Two clusters write one COW page together: the loser finds COW already cleared and gets
    USER_ERROR (``vmm_handle_cow`` as read), or resumes without a copy when false (ALMOS-MKH
    scenario 23 of docs/scenarios.md)."""
    lookahead: Time = 20_000
    """The compiled loop resolves a thread's page faults at most this far past the start of
    its segment; later ones wait for the next segment, so the faults of concurrent threads
    are handled nearly in time order (0: strictly in time order, slowest)."""
    cow_update_unmapped_copies: StrictBool = False
    """A COW publication also writes the entry into copies where it is not mapped (false:
    only mapped copies are updated; the others pull it on a later false fault)
    (``vmm_global_update_pte``)."""
    costs: ClusterCosts = ClusterCosts()
    """CPU time of the ALMOS-MKH fault, COW and fork steps (table ``[guest.vmm.costs]``)."""


class SwapConfig(_Section):
    """The host swap device.  ``device`` picks a preset (measured latencies, estimated bandwidths:
    docs/hypervisor.md "Swap device"); any value given here overrides the preset's."""

    device: Annotated[Literal["zram", "nvme", "sata-ssd", "hdd"], LOWER] = "nvme"
    """Preset of the swap device; the keys below override its values."""
    latency: Cost | None = None
    """Per-request service latency (preset: zram 1.7us, nvme 16us, sata-ssd 100us, hdd 8ms)."""
    distribution: Annotated[Literal["fixed", "exponential", "lognormal"], LOWER] = "fixed"
    """How each request's latency is drawn around ``latency`` (its mean)."""
    sigma: Annotated[float, Field(gt=0.0, le=4.0)] = 0.5
    """Lognormal shape parameter."""
    bandwidth: Bandwidth | None = None
    """Bytes per second of transfer (preset: zram 8GiB, nvme 2GiB, sata-ssd 500MiB, hdd 150MiB)."""
    queue_depth: Annotated[StrictInt, Field(ge=1)] | None = None
    """Requests served at once (preset: zram 1, nvme 64, sata-ssd 32, hdd 1)."""
    page_cluster: Annotated[StrictInt, Field(ge=0, le=6)] | None = None
    """Swap readahead reads 2**page_cluster slots (preset 3; zram 0: synchronous, no readahead)."""
    synchronous: StrictBool | None = None
    """SWP_SYNCHRONOUS_IO: a swap-in completes inside the faulting thread, so KVM never sees
    NEEDS_IO and no async PF happens (preset: zram only)."""


class GuestSwapConfig(SwapConfig):
    """The guest's own swap device (table ``[guest.swap]``): the keys and presets of
    ``[hypervisor.swap]``, plus ``none`` (the default: no guest swap, so anonymous memory
    cannot be reclaimed) and ``size``."""

    device: Annotated[Literal["none", "zram", "nvme", "sata-ssd", "hdd"], LOWER] = "none"
    """Preset of the guest swap device, or none (no swap); the keys below override its values."""
    size: Size | None = None
    """Swap space (whole 4KiB pages); None: as large as guest.memory."""


class BalloonChange(_Section):
    """A later balloon target (``[[guest.balloon.schedule]]``)."""

    at: Time
    """When the host sets this target."""
    target: Size
    """Balloon size from then on (lower than before: the balloon deflates)."""


class BalloonConfig(_Section):
    """A virtio-balloon driver in the guest (drivers/virtio/virtio_balloon.c): the host asks
    for ``target`` bytes back at ``at``; the guest allocates (reclaiming if it must) and pins
    that many pages and hands them over; the host frees their frames and swap slots with no
    I/O.  A lower target later (``schedule``) deflates it: the guest gets the pages back."""

    target: Size = 0
    """Balloon size the host asks for (0: no balloon)."""
    at: Time = 0
    """When the host sets ``target``."""
    schedule: list[BalloonChange] = []
    """Later targets, in time order."""


class GuestConfig(_Section):
    """The virtual machine seen from inside."""

    vcpus: Annotated[StrictInt, Field(ge=1, le=4096)] = 1
    """Number of virtual CPUs."""
    memory: Size = 256 << 20
    """Guest physical memory (a whole number of 4KiB pages), kernel_reserved included."""
    clusters: Annotated[StrictInt, Field(ge=1, le=1024)] = 1
    """Number of clusters (1 = a flat kernel)."""
    syscall: Cost = 300
    """Entry and exit cost of a system call."""
    copy_page: Cost = 250
    """Kernel copy of one user page in copy_to_user / copy_from_user."""
    fast_faults: StrictBool = True
    """Resolve the common anonymous faults inside the compiled access loop (same results as
    the Python fault path, which stays the reference; false sends every fault through it)."""
    sched: SchedConfig = SchedConfig()
    """The guest scheduler."""
    hz: Annotated[StrictInt, Field(ge=24, le=10_000)] = 250
    """The guest kernel's CONFIG_HZ: the scheduler tick comes every TICK_NSEC = (1 s + hz / 2) /
    hz (include/linux/jiffies.h), at multiples of it from boot.  With ``tick`` on, a slice
    ends at the first tick at or past its end (cfs: past it, check_preempt_tick); it also
    bounds the lag an EEVDF task keeps across a sleep to max(2 x slice, TICK_NSEC)
    (update_entity_lag)."""
    tick: Annotated[Literal["nohz_idle", "periodic", "off"], LOWER] = "nohz_idle"
    """The guest's periodic scheduler tick (docs/hypervisor.md "The guest tick and steal
    time").  nohz_idle (CONFIG_NO_HZ_IDLE, the default of current distribution kernels): a
    running task's slice is checked only at a tick (no HRTICK), a vCPU the host holds in an
    async-PF halt is woken by the next tick, an idle vCPU gets no tick; periodic: the same,
    and an idle vCPU is woken by every tick too (with a hypervisor: its thread wakes and halts
    again); off: no tick, a slice ends exactly at its end and a halted vCPU is woken at the
    slice end when another task waits (pfsim before the tick was modelled)."""
    steal_time: StrictBool = True
    """Paravirtual steal time (CONFIG_PARAVIRT_TIME_ACCOUNTING with KVM's steal clock, on in a
    current KVM guest): the time a vCPU's thread waited runnable for a host CPU (the vCPU's
    ``steal_ns``) is taken out of the run time charged to the guest task current on it
    (update_rq_clock_task), so it neither grows that task's vruntime nor uses up its slice.
    false: that time is charged to the current task.  Without a hypervisor there is no steal."""
    costs: FaultCosts = FaultCosts()
    """CPU time of the steps of the guest fault path."""
    disk: DiskConfig = DiskConfig()
    """The guest's block device (page-cache misses)."""
    pagecache: PageCacheConfig = PageCacheConfig()
    """The guest page cache (large folios)."""
    mm: MMConfig = MMConfig()
    """Guest memory-management policy (zero page, OOM, reserved memory, SMAP, reclaim)."""
    swap: GuestSwapConfig = GuestSwapConfig()
    """The guest's swap device (absent or device = "none": no guest swap)."""
    balloon: BalloonConfig = BalloonConfig()
    """A virtio-balloon driver: target size and schedule (table ``[guest.balloon]``)."""
    vmm: ClusterConfig = ClusterConfig()
    """The ALMOS-MKH multi-cluster VMM: mesh, costs and the switches of uncertain behaviour."""


class HostCosts(_Section):
    """CPU time the host spends on the vCPU's behalf (estimates from published VM-exit costs:
    docs/hypervisor.md "Host costs")."""

    ept_violation: Cost = 2_500
    """VM exit, EPT walk, map and re-entry for a page already in host memory."""
    host_fault: Cost = 1_500
    """Host anonymous first-touch fault (allocate and zero), on top of the EPT violation."""
    swapcache_hit: Cost = 800
    """Map a page found in the host swap cache (readahead brought it in)."""
    apf_inject: Cost = 1_500
    """Set up an async PF and inject 'page not present' into the guest."""
    page_ready: Cost = 1_000
    """Deliver 'page ready' (kvm: interrupt + ACK; s390: completion interrupt) and wake."""


class HypervisorConfig(_Section):
    """The host: CPUs running the vCPU threads, memory granted to the VM, swap, async PF."""

    enabled: StrictBool = False
    """Model the host (false: vCPUs always run and guest memory is always backed)."""
    host_cpus: Annotated[StrictInt, Field(ge=1, le=4096)] = 4
    """Physical CPUs of the host that run the vCPU threads and the host tasks."""
    host_tasks: Annotated[StrictInt, Field(ge=0, le=PID_MAX_LIMIT)] = 0
    """Always-runnable host threads competing with the vCPU threads for host CPUs."""
    memory_limit: Size | None = None
    """Host memory granted to the VM (a memory cgroup limit); None: as much as the guest has."""
    reclaim: Annotated[Literal["fifo", "lru", "clock", "random"], LOWER] = "lru"
    """Host page-replacement policy when the VM reaches ``memory_limit``."""
    reclaim_batch: Annotated[StrictInt, Field(ge=1, le=4096)] = 32
    """Pages reclaimed at once when the VM reaches its limit."""
    async_pf: Annotated[Literal["off", "halt", "kvm", "s390"], LOWER] = "off"
    """off: the vCPU stalls for a swap-in; halt: host-side halt, interrupts still delivered;
    kvm: x86 paravirtual async PF; s390: pfault."""
    apf_debug: StrictBool = False
    """Check the async-PF protocol invariants after every protocol event."""
    timeslice: Time = 6_000_000
    """Host scheduler slice for vCPU threads and host tasks."""
    context_switch: Cost = 3_000
    """CPU time of one host context switch between vCPU threads or host tasks."""
    costs: HostCosts = HostCosts()
    """CPU time the host spends on the vCPU's behalf."""
    swap: SwapConfig = SwapConfig()
    """The host swap device."""


VsegType = Annotated[Literal["code", "data", "stack", "anon", "file", "remote"], LOWER]
def _non_empty(value: str) -> str:
    if not value:
        raise ValueError("a name may not be empty")
    return value


Name = Annotated[str, AfterValidator(_non_empty)]
"""A process, vseg or forked child's name: not empty (it keys the results and the tables).
(An after-validator, not ``min_length``: with a length constraint pydantic parses the text
itself and calls a lone surrogate unparsable instead of letting the printable check name it.)"""


class VsegConfig(_Section):
    """A virtual segment (VMA) of a process."""

    name: Name
    """Name steps use to refer to the vseg (not empty, unique in its process)."""
    type: VsegType
    """code (private file mapping, rx), data (private file mapping, rw), stack (grows down to
    stack_max), anon (anonymous memory), file (shared file mapping), remote (ALMOS-MKH:
    anonymous memory placed in a chosen cluster)."""
    size: Annotated[StrictInt, BeforeValidator(_size), Field(gt=0)]
    """Length in bytes (rounded up to whole pages); a stack's initial size."""
    base: Address | None = None
    """Start address (page aligned); chosen by the layout when absent. For a stack, its top."""
    prot: Annotated[Literal["r", "rw", "rx", "rwx"], LOWER] | None = None
    """Access rights; default by type: code rx, all others rw."""
    file: str | None = None
    """Backing file name for code, data and file vsegs (shared page cache); default: private."""
    cached: StrictBool = True
    """The backing file is in the page cache when the run starts."""
    advice: Annotated[Literal["normal", "random", "sequential"], LOWER] = "normal"
    """madvise() advice of a file-backed vseg: normal (read-around and readahead), random
    (MADV_RANDOM, VM_RAND_READ: no readahead), sequential (MADV_SEQUENTIAL, VM_SEQ_READ:
    readahead from the faulting page)."""
    stack_max: Size = 8 << 20
    """Stack rlimit (RLIMIT_STACK): the most a stack vseg may grow to."""
    cluster: Annotated[StrictInt, Field(ge=0)] | None = None
    """ALMOS clusters: where the pages of an anon vseg (the mmap caller's cluster) or a remote
    vseg (the cluster the user names) are placed; default: the process's reference cluster."""


class _Step(_Section):
    pass


class _Target(_Step):
    vseg: str | None = None
    """Vseg the step works on (its whole extent unless offset/length say otherwise)."""
    addr: Address | None = None
    """Absolute start address instead of a vseg (may lie outside every vseg)."""
    offset: Size = 0
    """Start of the range within the vseg, in bytes."""
    length: Size | None = None
    """Length of the range in bytes (default: from offset to the end of the vseg)."""
    split: StrictBool = False
    """The threads of the group divide the range: thread i of n works on the i-th 1/n of it."""


class AccessStep(_Target):
    """User-mode loads and stores over a range, one page number per access."""

    op: Literal["access"]
    """Step kind: ``access``."""
    pattern: Annotated[Literal["sequential", "uniform", "zipf", "hotcold", "trace"],
                       LOWER] = "uniform"
    """sequential (byte k*stride, wrapping), uniform (every page equally likely), zipf (page of
    rank r with probability ~ 1/r**alpha), hotcold (a moving hot set, see hot_fraction), trace
    (the pages of the file named by ``trace``; giving ``trace`` sets it)."""
    trace: str | None = None
    """A ``.npy`` array of page numbers (as ``pfsim trace record`` writes it; a path relative to
    the current directory) replayed instead of a pattern: its pages, numbered in order of first
    appearance, are the range's pages in that order (wrapping round the range when the trace
    has more distinct pages than the range). Without accesses or duration the step makes as
    many accesses as the trace holds; asked for more, the trace starts over."""
    accesses: Annotated[StrictInt, Field(gt=0)] | None = None
    """Number of accesses (give this or duration)."""
    duration: Time | None = None
    """Run accesses for this much simulated time from the start of the step (give this or
    accesses)."""
    write_ratio: Ratio = 0.0
    """Probability that an access is a store (0 to 1)."""
    think: Annotated[Time, Field(gt=0)] = 100
    """CPU time of one access including the work around it."""
    stride: Annotated[StrictInt, BeforeValidator(_size), Field(gt=0)] = 64
    """Sequential pattern: bytes between consecutive accesses (wraps at the end)."""
    alpha: Annotated[float, Field(gt=0.0, le=100.0)] = 0.99
    """Zipf exponent (any positive value; 1.0 is classic Zipf)."""
    hot_fraction: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.1
    """Hot/cold pattern: fraction of the range that is hot (between 0 and 1)."""
    hot_probability: Ratio = 0.9
    """Hot/cold pattern: probability that an access goes to the hot set."""
    phase: Annotated[StrictInt, Field(gt=0)] = 100_000
    """Hot/cold pattern: accesses per phase; the hot set moves at each phase."""
    fetch: StrictBool = False
    """Instruction fetches (error-code INSTR bit) instead of data reads."""

    @model_validator(mode="before")
    @classmethod
    def _trace_step(cls, data: Any) -> Any:
        """``trace`` sets the pattern and, without accesses or duration, the access count."""
        if not isinstance(data, dict) or data.get("trace") is None:
            if isinstance(data, dict) and _lower(data.get("pattern")) == "trace":
                raise ValueError("pattern 'trace' needs trace = 'FILE.npy'")
            return data
        if "pattern" in data and _lower(data["pattern"]) != "trace":
            raise ValueError("give either a pattern or a trace, not both")
        length = npy_trace_length(data["trace"])
        data = {**data, "pattern": "trace"}
        if data.get("accesses") is None and data.get("duration") is None:
            data["accesses"] = length
        return data


class ComputeStep(_Step):
    """CPU-bound work that touches no new memory and counts work units."""

    op: Literal["compute"]
    """Step kind: ``compute``."""
    units: Annotated[StrictInt, Field(gt=0)] | None = None
    """Number of work units (give this or duration)."""
    duration: Time | None = None
    """Compute for this much simulated time from the start of the step (give this or units)."""
    unit: Annotated[Time, Field(gt=0)] = 1_000
    """CPU time of one work unit."""


class SyscallStep(_Target):
    """read()/write()-like calls: the kernel copies to (read) or from (write) a user buffer."""

    op: Literal["syscall"]
    """Step kind: ``syscall``."""
    kind: Annotated[Literal["read", "write"], LOWER] = "read"
    """read: the kernel copies into the user buffer (copy_to_user); write: it copies from it
    (copy_from_user)."""
    repeat: Annotated[StrictInt, Field(gt=0)] = 1
    """Number of calls."""


class TouchStep(_Step):
    """One access at an absolute address, in user or kernel mode."""

    op: Literal["touch"]
    """Step kind: ``touch``."""
    addr: Address
    """The address accessed (hex string or integer)."""
    write: StrictBool = False
    """A store instead of a load."""
    think: Annotated[Time, Field(gt=0)] = 100
    """CPU time of the access including the work around it."""
    mode: Annotated[Literal["user", "kernel"], LOWER] = "user"
    """user: a user-mode access; kernel: a kernel access to the address (see fixup)."""
    fixup: StrictBool = True
    """Kernel mode only: the access has an exception-table entry (a uaccess helper)."""


class SleepStep(_Step):
    """Block interruptibly for a while (a timer wake-up)."""

    op: Literal["sleep"]
    """Step kind: ``sleep``."""
    duration: Time
    """How long the thread sleeps."""


class ForkStep(_Step):
    """fork(): a child process gets a copy-on-write copy of the address space; its one
    thread (with a copy of this thread's stack) runs ``steps``."""

    op: Literal["fork"]
    """Step kind: ``fork``."""
    steps: list[Step] = Field(min_length=1)
    """What the child's thread does (at least one step)."""
    name: Name | None = None
    """The child's name in the results, not empty (default: parent name, '.', fork index)."""
    cluster: Annotated[StrictInt, Field(ge=0)] | None = None
    """ALMOS place_fork(): the child's owner and reference cluster (default: the DQDT choice,
    the cluster with the fewest live threads)."""
    cpu: Annotated[StrictInt, Field(ge=0)] | None = None
    """Pin the child's thread to this vCPU (default: the least loaded one of its cluster)."""


class ExitStep(_Step):
    """exit(): the whole process exits now; its other threads are killed."""

    op: Literal["exit"]
    """Step kind: ``exit``."""


class WaitStep(_Step):
    """wait(): block until ``count`` children have exited and reap them (default: every
    child not reaped yet)."""

    op: Literal["wait"]
    """Step kind: ``wait``."""
    count: Annotated[StrictInt, Field(ge=1)] | None = None
    """Children to wait for (default: every child not reaped yet)."""


class MunmapStep(_Step):
    """munmap() of a whole vseg, in every page-table copy."""

    op: Literal["munmap"]
    """Step kind: ``munmap``."""
    vseg: str
    """The vseg to unmap (a vseg of the process that is not a stack)."""


class ExecStep(_Step):
    """exec(): every other thread is killed and every vseg but code, data and this thread's
    stack is removed; those are emptied (nothing mapped) and the thread goes on."""

    op: Literal["exec"]
    """Step kind: ``exec``."""


Step = Annotated[
    AccessStep | ComputeStep | SyscallStep | TouchStep | SleepStep | ForkStep | ExitStep
    | WaitStep | MunmapStep | ExecStep,
    Field(discriminator="op"),
]
ForkStep.model_rebuild()


class ThreadConfig(_Section):
    """A group of identical threads of a process."""

    count: Annotated[StrictInt, Field(ge=1, le=PID_MAX_LIMIT)] = 1
    """Number of threads in the group (at most PID_MAX_LIMIT, 4194304)."""
    cpu: Annotated[StrictInt, Field(ge=0)] | None = None
    """Pin the threads to this vCPU (default: any vCPU)."""
    stack: StrictBool = True
    """Give each thread its own STACK vseg."""
    steps: list[Step] = Field(min_length=1)
    """What each thread of the group does, in order; the thread exits after the last step."""


class ProcessConfig(_Section):
    """A process: an address space and its threads."""

    name: Name
    """Name of the process in the results (unique, not empty, printable, at most 256
    characters)."""
    start: Time = 0
    """Simulated time at which the process is created."""
    vsegs: list[VsegConfig] = []
    """The process's virtual segments (VMAs); thread stacks are added automatically."""
    threads: list[ThreadConfig] = Field(min_length=1)
    """Groups of identical threads (at least one)."""
    cluster: Annotated[StrictInt, Field(ge=0)] | None = None
    """ALMOS clusters: the owner (= reference) cluster, where the process is created; default:
    the cluster of the first thread group's vCPU when pinned, else cluster 0."""


class Config(_Section):
    """A whole scenario."""

    sim: SimConfig = SimConfig()
    """Run control: seed, duration, engine."""
    guest: GuestConfig = GuestConfig()
    """The virtual machine: vCPUs, memory, scheduler, fault costs, disk, memory policy."""
    hypervisor: HypervisorConfig = HypervisorConfig()
    """The host under the VM (off unless ``enabled = true``)."""
    processes: list[ProcessConfig] = Field(min_length=1)
    """The processes the guest runs (at least one)."""
