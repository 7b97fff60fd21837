"""How much memory simulating a scenario takes, estimated before anything is allocated.

A scenario that cannot fit (``guest.memory = "64TiB"`` asks for 16 G frames of bookkeeping)
is refused with the estimate and the key that drives it, instead of failing in the middle of
building the machine with numpy's ``_ArrayMemoryError`` or being killed by the OOM killer.

The coefficients are bytes of the simulator's own arrays per unit of the scenario, measured
as the peak resident memory of a run of a large case above what the process held before it
(``VmHWM`` of /proc/self/status, restarted through /proc/self/clear_refs) and rounded up:

===========================  ===========  ==================================================
unit                         bytes        measured on (8-16 GiB guests, numpy 2.4, numba 0.68)
===========================  ===========  ==================================================
guest frame, flat kernel     64           11 (refcount, kind, free stack, checks) + about 48
                                          of page reclaim per frame used (LRU list and
                                          stamp, its queue entry, reverse-map hint, flags)
guest frame used, host model +64          +43 per gfn and +13 per host frame, written only
                                          where used (the host's arrays are zeroed too)
guest frame, clusters        24           14
touched page (sparse slot)   24           10 (state, gfn, vflags), up to twice that in the
                             (per 512)    doubling arrays, three times while they are copied
touched page, clusters       36 + 56 per  21 (slot facts) + 37 per copy (state, gfn, four times,
                             copy         all rows written when the arrays grow), times 1.5
                                          while the old and the doubled arrays coexist
trace-step access            4            4 (dense page ids, one array per trace file)
thread                       16 KiB       25-28 KiB with its stack's slots (task, executor)
===========================  ===========  ==================================================

The page tables are sparse (:mod:`pfsim.guest.mm`, and the cluster kernel's VMM copies in
:mod:`pfsim.cluster.gpt`, which follow them): they hold the 512-slot leaves of the pages
touched, not the vsegs' reserved ranges.  What a run touches is not known
before it runs; the estimate takes for each vseg the smaller of its pages and the guest's
frames (every written page needs a frame; a read-only sweep of more distinct pages than the
guest has frames, mapped to the zero page, is the case not covered).

The flat kernel's frame arrays are zeroed numpy arrays, which the host maps on first write,
and frames are handed out lowest first (:mod:`pfsim.guest.memory`): only the frames a run
uses cost memory.  The estimate bounds them by the vsegs' pages and each thread's stack limit,
twice over (fork's copies on write), plus the kernel's reserve.

plus :data:`BASELINE` for the interpreter, numpy, numba and the compiled code.
``tests/test_footprint.py`` measures a large case against its estimate.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pfsim.config import Config
from pfsim.config.cluster_checks import almos_enabled
from pfsim.errors import ResourceError
from pfsim.units import PAGE_SIZE

BASELINE = 256 << 20
PER_FRAME = 64
PER_FRAME_HOST = 40
PER_FRAME_CLUSTERS = 24
PER_SLOT = 24
FRAME_TABLE_BYTES = 5  # refcount and kind of every frame, plus its free-stack entry (4 or 8)
LEAF_PAGES = 512
PER_SLOT_CLUSTERS = 36
PER_SLOT_COPY = 56
PER_TRACE_ACCESS = 4
PER_THREAD = 16 << 10
STACK_RESERVE = 8 << 20  # a thread stack reserves slots down to its stack_max (default 8 MiB)


@dataclass(frozen=True)
class Footprint:
    """An estimate: total bytes and the config key of its largest term."""

    total: int
    key: str
    key_bytes: int
    frame_tables: int = 0
    """Address space the guest's frame arrays reserve (written only where used)."""


def estimate(config: Config) -> Footprint:
    """Bytes of memory simulating ``config`` takes (see the module docstring)."""
    guest = config.guest
    frames = guest.memory // PAGE_SIZE
    clusters = almos_enabled(config)
    per_slot = PER_SLOT_CLUSTERS + PER_SLOT_COPY * guest.clusters if clusters else PER_SLOT
    terms: dict[str, int] = {}
    traces: set[str] = set()  # trace files already counted (one array each, shared)

    def add(key: str, size: int) -> None:
        terms[key] = terms.get(key, 0) + size

    per_frame = PER_FRAME_CLUSTERS if clusters else PER_FRAME
    used = frames
    if not clusters:  # frames above the watermark are never written (mapped lazily)
        mapped = sum(-(-vseg.size // PAGE_SIZE) for proc in config.processes
                     for vseg in proc.vsegs)
        stacks = sum(group.count for proc in config.processes for group in proc.threads
                     if group.stack) * (STACK_RESERVE // PAGE_SIZE)
        used = min(frames, guest.mm.kernel_reserved // PAGE_SIZE + 2 * (mapped + stacks))
    add("guest.memory", used * per_frame)
    if config.hypervisor.enabled:  # the host's arrays are zeroed too: the gfns used cost
        add("guest.memory", used * PER_FRAME_HOST)
    for p, proc in enumerate(config.processes):
        for v, vseg in enumerate(proc.vsegs):
            reserve = max(vseg.size, vseg.stack_max if vseg.type == "stack" else 0)
            pages = -(-reserve // PAGE_SIZE)
            pages = min(pages, frames) + LEAF_PAGES  # sparse: at most the touched leaves
            add(f"processes[{p}].vsegs[{v}].size", pages * per_slot)
        for t, group in enumerate(proc.threads):
            stack = LEAF_PAGES * per_slot if group.stack else 0
            add(f"processes[{p}].threads[{t}].count", group.count * (PER_THREAD + stack))
            for key, accesses in _traces(group.steps, f"processes[{p}].threads[{t}]", traces):
                add(key, accesses * PER_TRACE_ACCESS)
    add("hypervisor.host_tasks", config.hypervisor.host_tasks * PER_THREAD)
    key = max(terms, key=lambda k: terms[k])
    tables = frames * (FRAME_TABLE_BYTES + (4 if frames <= 1 << 31 else 8))
    return Footprint(BASELINE + sum(terms.values()), key, terms[key], tables)


def _traces(steps: list[Any], where: str, seen: set[str]) -> list[tuple[str, int]]:
    """(key, accesses) of every trace file of ``steps`` not in ``seen`` (added to it)."""
    found = []
    for s, step in enumerate(steps):
        here = f"{where}.steps[{s}]"
        if step.op == "access" and step.trace is not None and step.trace not in seen:
            seen.add(step.trace)
            try:
                accesses = Path(step.trace).stat().st_size // 8  # int64 page numbers
            except OSError:
                accesses = 0
            found.append((f"{here}.trace", accesses))
        elif step.op == "fork":
            found.extend(_traces(step.steps, here, seen))
    return found


def available_memory() -> int | None:
    """Bytes this process may still use: MemAvailable, lowered by a cgroup v2 memory limit;
    None where neither can be read."""
    available = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = int(Path("/sys/fs/cgroup/memory.current").read_text().strip())
        if limit != "max":
            room = max(0, int(limit) - used)
            available = room if available is None else min(available, room)
    except (OSError, ValueError):
        pass
    return available


def commit_limit() -> int | None:
    """Memory plus swap (MemTotal + SwapTotal): with Linux's default heuristic overcommit an
    allocation larger than that is refused outright; None where /proc/meminfo is unreadable."""
    try:
        fields = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
        return (int(fields["MemTotal"].split()[0]) + int(fields["SwapTotal"].split()[0])) * 1024
    except (OSError, ValueError, KeyError, IndexError):
        return None


def check_resources(config: Config, available: int | None = None,
                    limit: int | None = None) -> Footprint:
    """Refuse ``config`` when its estimate exceeds the memory available, or its frame arrays
    exceed the machine's memory and swap (``limit``) even though they are written lazily.

    Raises:
        ResourceError: one line with the estimate, the driving key and what is available.
    """
    footprint = estimate(config)
    limit = commit_limit() if limit is None else limit
    if limit is not None and footprint.frame_tables > limit:
        raise ResourceError(
            f"guest.memory: simulating this scenario needs about {_gib(footprint.frame_tables)} "
            f"of address space for the frame tables of a {_gib(config.guest.memory)} guest, "
            f"more than the {_gib(limit)} of memory and swap this machine has available; make "
            "guest.memory smaller")
    available = available_memory() if available is None else available
    if available is not None and footprint.total > available:
        raise ResourceError(
            f"{footprint.key}: simulating this scenario needs about {_gib(footprint.total)} of "
            f"memory ({_gib(footprint.key_bytes)} of it for {footprint.key}), more than the "
            f"{_gib(available)} this machine has available; make {footprint.key} smaller")
    return footprint


def _gib(size: int) -> str:
    if size >= 1 << 40:
        return f"{size / (1 << 40):,.1f} TiB"
    return f"{size / (1 << 30):.1f} GiB"
