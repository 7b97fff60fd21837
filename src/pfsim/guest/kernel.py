"""The guest kernel: builds processes from the config and owns memory, files, OOM and panic.

What a running task *does* is in :mod:`pfsim.guest.executor`; how faults are resolved is in
:mod:`pfsim.guest.fault`; the page tables belong to the VMM the kernel is built with
(:mod:`pfsim.guest.vmm`: flat, or the cluster VMM chosen by the composition root).  This module
holds the state they share and the rare, global actions: killing a process (SIGSEGV, OOM),
panicking the VM, reading file pages from disk.
"""

from __future__ import annotations

from typing import Any


from pfsim.config.schema import Config, ProcessConfig, VsegConfig
from pfsim.engine import Priority, RandomStreams, Simulator
from pfsim.errors import ConfigError
from pfsim.guest.balloon import Balloon
from pfsim.guest.executor import TaskExec, VcpuExecutor
from pfsim.guest.fault import FaultHandler
from pfsim.guest.fork import ProcessOps
from pfsim.guest.kthread import KernelThread
from pfsim.machine.latency import new_histograms
from pfsim.guest.mm import CODE_BASE, MMAP_BASE, STACK_TOP, TASK_SIZE_MAX, AddressSpace, Vma
from pfsim.guest.pagecache import BlockDevice, File, ReadRequest
from pfsim.guest.process import Process
from pfsim.guest.readahead import Folio, RaState
from pfsim.guest.reclaim import Reclaim
from pfsim.guest.reclaim_compiled import CompiledReclaim
from pfsim.guest.vmm import Vmm
from pfsim.machine.frames import PAGECACHE
from pfsim.sched import Scheduler, Task, TaskState
from pfsim.sched.policy import make_policy
from pfsim.sched.tick import tick_nsec
from pfsim.units import PAGE_SHIFT, PAGE_SIZE

THREAD_STACK_SIZE = 16 << 10
"""Initial size of the automatic per-thread stack (it grows on demand up to stack_max)."""

_DEFAULT_PROT = {"code": "rx", "data": "rw", "stack": "rw", "anon": "rw", "file": "rw", "remote": "rw"}


def _page_up(n: int) -> int:
    return (n + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)


class GuestKernel:
    """One virtual machine's kernel.

    Args:
        config: the validated scenario.
        sim: the event loop.
        streams: the run's named random streams.
        vmm: the class of the VMM, chosen by the composition root
            (:class:`~pfsim.guest.flat_vmm.FlatVmm`, or the ALMOS-MKH cluster VMM).
    """

    def __init__(self, config: Config, sim: Simulator, streams: RandomStreams,
                 vmm: type[Vmm]) -> None:
        self.config = config
        self.sim = sim
        self.streams = streams
        guest = config.guest
        self.smap = guest.mm.smap
        self.mem = vmm.new_memory(config)
        self.disk = BlockDevice(guest.disk.latency, guest.disk.bandwidth)
        self.scheduler = Scheduler(sim, guest.vcpus, guest.sched.timeslice,
                                   guest.sched.context_switch, guest.sched.idle_balance, "guest",
                                   policy=make_policy(guest.sched, guest.sched.timeslice,
                                                      guest.vcpus, guest.hz))
        if guest.tick != "off":  # the periodic tick ends slices (pfsim.sched.tick)
            self.scheduler.tick_ns = tick_nsec(guest.hz)
            self.scheduler.tick_strict = guest.sched.policy == "cfs"
        self.executor = VcpuExecutor(self)
        self.scheduler.executor = self.executor
        self.scheduler.on_preempt = self.executor.preempt
        self.faults = FaultHandler(self)
        self.vmm: Vmm = vmm(self)
        """Page tables, the compiled access loop and the life-cycle steps' page-table work."""
        self.procs = ProcessOps(self)
        """fork, exit, wait, munmap and exec steps (both kernels)."""
        self.reclaim: Reclaim | None = None
        """LRU lists, watermarks, kswapd, direct reclaim and guest swap (flat kernel only;
        its scans compiled on the compiled engine, the readable reference otherwise)."""
        if self.vmm.reclaims:
            compiled = config.sim.engine == "compiled"
            self.reclaim = CompiledReclaim(self) if compiled else Reclaim(self)
        balloon = config.guest.balloon
        self.balloon: Balloon | None = None
        if self.reclaim is not None and (balloon.target or balloon.schedule):
            self.balloon = Balloon(self)
        self.kthreads: list[KernelThread] = []
        """The guest's kernel threads (kswapd0 with reclaim, the balloon's kworker)."""
        if self.reclaim is not None:
            self.kthreads.append(self.reclaim.kswapd)
        if self.balloon is not None:
            self.kthreads.append(self.balloon.worker)
        self.files: dict[str, File] = {}
        self.processes: list[Process] = []
        self.filling: list[int] = []
        """Frames :meth:`add_folios` took for pages it has not submitted yet (the faulting
        page's allocation may reclaim meanwhile: they are being read in, as locked pages
        added to the page cache are in Linux's ``page_cache_ra_unbounded``)."""
        self.outcome = "ok"
        self.panic: dict[str, Any] | None = None
        self.oom_kills = 0
        self.latency = new_histograms()
        """Minor, major and async-PF latency histograms (pfsim.machine.latency)."""
        self._next_pid = 1
        self.pending_spawns = len(config.processes)
        for proc in config.processes:
            self.sim.at(proc.start, self._spawn, proc, priority=Priority.NORMAL)

    # ------------------------------------------------------------------ building

    def _spawn(self, proc: ProcessConfig) -> None:
        self.pending_spawns -= 1
        if self.panic is not None:
            return
        process = self.build_process(proc)
        for task in process.threads:
            self.scheduler.add_task(task)

    def build_process(self, proc: ProcessConfig) -> Process:
        """Create the process of ``proc`` (address space, threads) and add it to
        ``processes``; its threads are not yet runnable."""
        pid = self._next_pid
        self._next_pid += 1
        mm = AddressSpace()
        process = Process(pid=pid, name=proc.name, mm=mm, started_ns=self.sim.now)
        where = f"processes[{self.config.processes.index(proc)}]"
        layout = {"code": CODE_BASE, "mmap": MMAP_BASE, "stack": STACK_TOP}
        for v, vseg in enumerate(proc.vsegs):
            self._add_vseg(process, vseg, f"{where}.vsegs[{v}]", layout)
        index = 0
        for g, group in enumerate(proc.threads):
            for member in range(group.count):
                tid = pid * 1000 + index
                task = Task(tid, f"{proc.name}/{index}", owner=process, allowed_cpu=group.cpu)
                stack = None
                if group.stack:
                    stack = self._thread_stack(process, layout, f"{where}.threads[{g}]", index)
                task.data = TaskExec(self, task, process, group.steps, stack, index,
                                     (member, group.count))
                process.threads.append(task)
                index += 1
        self.processes.append(process)
        self.vmm.attach_process(process, proc)  # clusters: pins threads, builds copies
        return process

    def _add_vseg(self, process: Process, vseg: VsegConfig, where: str, layout: dict[str, int],
                  thread: int | None = None) -> Vma:
        size = _page_up(vseg.size)
        prot = vseg.prot or _DEFAULT_PROT[vseg.type]
        if vseg.type == "stack":
            top = vseg.base if vseg.base is not None else layout["stack"]
            stack_max = _page_up(vseg.stack_max)
            start, end, reserve = top - size, top, top - stack_max
            if vseg.base is None:
                layout["stack"] = reserve - 2 * self.config.guest.mm.stack_guard_gap
        else:
            stack_max = 0
            if vseg.base is not None:
                start = vseg.base
            elif vseg.type in ("code", "data"):
                start = layout["code"]
                layout["code"] = start + size + PAGE_SIZE
            else:
                start = layout["mmap"]
                layout["mmap"] = start + size + PAGE_SIZE
            end, reserve = start + size, start
        if end > TASK_SIZE_MAX + PAGE_SIZE:
            raise ConfigError(f"{where}.size", f"vseg {vseg.name!r} ends at {end:#x}, above the "
                              "user address space (128TiB, 0x800000000000)")
        clash = process.mm.overlaps(reserve, end)
        if clash is not None and thread is not None:  # where: the thread group
            raise ConfigError(f"{where}.stack", f"the stack of thread {thread} ({vseg.name!r}) "
                              f"overlaps vseg {clash.name!r}")
        if clash is not None:
            raise ConfigError(f"{where}.base", f"vseg {vseg.name!r} overlaps vseg {clash.name!r}")
        file = None
        if vseg.type in ("code", "data", "file"):
            name = vseg.file or f"{process.name}:{vseg.name}"
            file = self.files.get(name)
            if file is None:
                file = File(name, size >> PAGE_SHIFT)
                file.ra = RaState(ra_pages=self.config.guest.disk.readahead // PAGE_SIZE)
                self.files[name] = file
                if vseg.cached:
                    self._fill_cache(file, 0, file.npages)
            else:
                file.grow(size >> PAGE_SHIFT)
        vma = Vma(name=vseg.name, type=vseg.type, start=start, end=end, reserve_start=reserve,
                  readable="r" in prot, writable="w" in prot, executable="x" in prot,
                  shared=vseg.type == "file", file=file, pgoff=0, stack_max=stack_max,
                  advice=vseg.advice)
        process.mm.add_vma(vma)
        return vma

    def _thread_stack(self, process: Process, layout: dict[str, int], where: str,
                      thread: int) -> Vma:
        cfg = VsegConfig(name=f"stack.{len(process.threads)}", type="stack", size=THREAD_STACK_SIZE)
        return self._add_vseg(process, cfg, where, layout, thread=thread)

    def _fill_cache(self, file: File, first: int, last: int) -> None:
        frames = []
        for page in range(first, last):
            gfn = self.mem.alloc(PAGECACHE)
            if gfn < 0:
                raise ConfigError("processes", f"file {file.name!r} does not fit in guest memory "
                                  "as a cached file; set cached = false or raise guest.memory")
            file.frame[page] = gfn
            frames.append(gfn)
        if self.reclaim is not None:
            self.reclaim.file_pages_added(file, list(range(first, last)), frames)

    # ------------------------------------------------------------------ memory

    def alloc_frame(self, texec: TaskExec, kind: int, onto_lru: bool = True) -> int:
        """A free frame, reclaiming (kswapd, direct reclaim: :mod:`pfsim.guest.reclaim`) and
        then OOM-killing if needed; -1 when the faulting task itself died (or the VM
        panicked).  A new anonymous frame goes on the inactive anon list unless ``onto_lru``
        is false (a swap-in joins it when its read completes).  Under a VMM that does not
        reclaim (the ALMOS-MKH clusters: no swap and no OOM killer either): -1 as soon as no
        frame is free."""
        if self.reclaim is None:
            return self.mem.alloc(kind)
        while True:
            gfn = self.reclaim.alloc(texec, kind, onto_lru)
            if gfn >= 0:
                return gfn
            if self.config.guest.mm.oom == "panic":
                self.kernel_panic({"reason": "Out of memory", "tid": texec.task.tid})
                return -1
            victim = self._oom_victim()
            if victim is None:
                self.kernel_panic({"reason": "Out of memory and no killable process",
                                   "tid": texec.task.tid})
                return -1
            self.oom_kills += 1
            self.kill_process(victim, "oom", {"signal": "SIGKILL", "by": "oom-killer"})
            if victim is texec.process:
                return -1

    def _oom_victim(self) -> Process | None:
        best = None
        for process in self.processes:
            if process.alive and process.mm.rss > 0 and (best is None or process.mm.rss > best.mm.rss):
                best = process
        return best

    def add_folios(self, texec: TaskExec, file: File, folios: list[Folio],
                   page: int | None) -> ReadRequest | None:
        """Add ``folios`` (from :mod:`pfsim.guest.readahead`) to the page cache of ``file`` and
        read them in one disk request (``read_pages``); the pending request is returned.

        ``page`` is the page the faulting task waits for: its frame may reclaim or OOM-kill
        (``alloc_frame``), the others are best effort (readahead allocations do not reclaim,
        ``__GFP_NORETRY``); a folio whose frames cannot all be had is dropped, and None is
        returned when ``page`` itself could not get one.
        """
        pages: list[int] = []
        frames: list[int] = []
        self.filling = frames  # taken, not yet submitted: reclaim's checks count them as read in
        try:
            return self._add_folios(texec, file, folios, page, pages, frames)
        finally:
            self.filling = []

    def _add_folios(self, texec: TaskExec, file: File, folios: list[Folio], page: int | None,
                    pages: list[int], frames: list[int]) -> ReadRequest | None:
        for folio in folios:
            holds_page = page is not None and folio.index <= page < folio.index + folio.npages
            taken: list[int] = []
            for _p in range(folio.npages):
                # readahead keeps the min watermark's reserve and wakes kswapd below low
                gfn = (self.reclaim.alloc_nowait(PAGECACHE) if self.reclaim is not None
                       else self.mem.alloc(PAGECACHE))
                if gfn < 0:
                    break
                taken.append(gfn)
            if len(taken) < folio.npages:  # readahead is best effort
                for gfn in taken:
                    self.mem.put(gfn)
                if not holds_page:
                    continue
                assert page is not None
                gfn = self.alloc_frame(texec, PAGECACHE)  # the faulting page: reclaim, OOM
                if gfn < 0:
                    for frame in frames:
                        self.mem.put(frame)
                    return None
                folio, taken = Folio(page, 0), [gfn]
            file.folio_order[folio.index:folio.index + folio.npages] = folio.order
            file.readahead_mark[folio.index] = folio.readahead
            pages.extend(range(folio.index, folio.index + folio.npages))
            frames.extend(taken)
        if not pages:
            return None
        return self._submit(file, pages, frames)

    def start_read(self, texec: TaskExec, file: File, page: int, ra_pages: int) -> ReadRequest | None:
        """Synchronous mmap read-around (the ALMOS-MKH cluster VMM's file mapper; the Linux
        fault path uses :mod:`pfsim.guest.readahead` through :meth:`add_folios`) for a page-cache miss on ``page`` (mm/filemap.c
        ``filemap_fault``).

        Reads the ``ra_pages`` window starting at ``page - ra_pages/2`` (pages already cached
        or in flight are skipped) and marks the page ``ra_pages/4`` before the window's end
        PG_readahead.  None when the faulting page itself cannot get a frame.
        """
        first = max(0, page - ra_pages // 2)
        last = min(file.npages, first + ra_pages)
        return self._read_window(texec, file, first, last, page, ra_pages)

    def async_readahead(self, texec: TaskExec, file: File, marked: int, ra_pages: int) -> None:
        """A fault found PG_readahead on ``marked``: read the next window without waiting."""
        file.readahead_mark[marked] = False
        first = marked + max(1, ra_pages // 4)
        last = min(file.npages, first + ra_pages)
        if first < last:
            self._read_window(texec, file, first, last, None, ra_pages)

    def _read_window(self, texec: TaskExec, file: File, first: int, last: int, page: int | None,
                     ra_pages: int) -> ReadRequest | None:
        pages: list[int] = []
        frames: list[int] = []
        for p in range(first, last):
            if file.cached(p) or p in file.pending:
                continue
            if p == page:
                gfn = self.alloc_frame(texec, PAGECACHE)
            elif self.reclaim is not None:  # readahead: no reclaim for it, min reserve kept
                gfn = self.reclaim.alloc_nowait(PAGECACHE)
            else:
                gfn = self.mem.alloc(PAGECACHE)
            if gfn < 0:
                if p == page:
                    for frame in frames:
                        self.mem.put(frame)
                    return None
                continue  # readahead is best effort
            pages.append(p)
            frames.append(gfn)
        if not pages:
            return None
        mark = last - max(1, ra_pages // 4)
        if first <= mark < last and mark != page:
            file.readahead_mark[mark] = True
        return self._submit(file, pages, frames)

    def dma_start(self, frames: list[int]) -> int:
        """When a disk read into ``frames`` can start: now, or with a host, once the host has
        every frame resident (it swaps in those it had swapped out: ``dma_write``)."""
        start = self.sim.now
        host = self.executor.host
        if host is not None:
            for frame in frames:
                start = max(start, host.dma_write(frame)[0])
        return start

    def _submit(self, file: File, pages: list[int], frames: list[int]) -> ReadRequest:
        """Queue the read of ``pages`` of ``file`` into ``frames`` on the disk."""
        done = self.disk.submit(self.dma_start(frames), len(pages))
        request = ReadRequest(file, pages[0], pages, done)
        for p in pages:
            file.pending[p] = request
        file.reads += 1
        self.sim.at(done, self._read_done, request, frames, priority=Priority.URGENT)
        return request

    def _read_done(self, request: ReadRequest, frames: list[int]) -> None:
        file = request.file
        host = self.executor.host
        for p, gfn in zip(request.pages, frames, strict=True):
            file.frame[p] = gfn
            file.pending.pop(p, None)
            if host is not None:
                host.backfill(gfn)
        if self.reclaim is not None:
            self.reclaim.file_pages_added(file, request.pages, frames)
        self.wake_waiters(request.waiters)

    def wake_waiters(self, waiters: list[Task]) -> None:
        """The tasks waiting for a read (page cache or swap) run again: each that is still
        alive is woken, and the list emptied (after a panic nothing runs any more)."""
        if self.panic is not None:
            return
        for task in waiters:
            if task.state != TaskState.DEAD:
                self.scheduler.wake_up(task)
        waiters.clear()

    # ------------------------------------------------------------------ kill / exit / panic

    def kill_process(self, process: Process, reason: str, signal: dict[str, Any] | None) -> None:
        """Kill every thread of ``process`` now and free its memory."""
        if not process.alive:
            return
        process.exit_reason = reason
        process.signal = signal
        for task in process.threads:
            if task.state == TaskState.DEAD:
                continue
            self.executor.kill_task(task)
        self.exit_process(process)

    def exit_process(self, process: Process) -> None:
        """Release the address space of a process whose threads are all dead."""
        if not process.alive:
            return
        process.alive = False
        process.exited_ns = self.sim.now
        self.vmm.release_process(process)
        self.procs.process_exited(process)
        if self.pending_spawns == 0 and not any(p.alive for p in self.processes):
            self.sim.stop()  # the workload is over (host threads may still be runnable)

    def halt_core(self, cpu: int, detail: dict[str, Any]) -> None:
        """ALMOS-MKH KERNEL_PANIC (2020 rule, ``hal_do_exception`` → ``hal_core_sleep``): the
        faulting core sleeps forever; its current thread never runs again, the other cores go
        on."""
        self.vmm.core_halted(cpu, {"time_ns": self.sim.now, **detail})
        self.executor.halt_vcpu(cpu)

    def kernel_panic(self, detail: dict[str, Any]) -> None:
        """Oops with no fixup: the VM stops; its outcome becomes ``kernel_panic``."""
        if self.panic is not None:
            return
        self.outcome = "kernel_panic"
        self.panic = {"time_ns": self.sim.now, **detail}
        self.executor.halt_all()

    def shootdown_cost(self, texec: TaskExec) -> int:
        """TLB shootdown cost when another thread of the mm runs on another vCPU."""
        for task in texec.process.threads:
            if task is not texec.task and task.on_cpu:
                return self.config.guest.costs.tlb_shootdown
        return 0
