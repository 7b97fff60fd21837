"""Run a scenario on the compiled core: build its arrays from the reference objects at time 0,
run the compiled event loop (returning to Python only to generate access chunks and to grow
arrays), then write the final state back into the reference objects, whose ``_result`` makes
result.json.  The reference path (``sim.engine = "reference"``) never comes here.

:func:`unsupported` says why a scenario is outside the compiled core (it then runs on the
reference path, with the same result); the core may also find so while running (a guest fault
it does not model): the scenario is then run again on the reference path.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from pfsim.compiled import apf_kvm, apf_s390, machine
from pfsim.compiled import state as S
from pfsim.compiled.view import View
from pfsim.config.schema import AccessStep, ComputeStep, Config, SleepStep
from pfsim.engine.arrayheap import EV_TIME, H_NOW, H_SEQ, H_SIZE, grow_heap, heap_push, new_heap
from pfsim.guest.reclaim import watermarks
from pfsim.guest.steps import CHUNK, FOREVER
from pfsim.sched import TaskState
from pfsim.sched.policy import Eevdf, Fair
from pfsim.units import PAGE_SIZE

if TYPE_CHECKING:
    from pfsim.simulation import Simulation

LAT_CAP = 1 << 16
EVENTS_PER_CALL = 1 << 18


class Fallback(Exception):  # noqa: N818 - a control-flow signal, not an error
    """The compiled core cannot run this scenario: run the reference path."""


def guest_pressure(config: Config) -> str | None:
    """Why the guest might reclaim: its access steps may touch (one page per access, at most
    the whole vseg) more frames than are
    free above the low watermark (kswapd would wake; guest reclaim is not in the core)."""
    guest = config.guest
    frames = guest.memory // PAGE_SIZE
    user = frames - max(1, guest.mm.kernel_reserved // PAGE_SIZE)
    _, low, _ = watermarks(user, guest.mm.min_free_kbytes, guest.mm.watermark_scale_factor)
    need = 0
    for proc in config.processes:  # each access touches at most one page of its vseg
        pages = {vseg.name: -(-vseg.size // PAGE_SIZE) for vseg in proc.vsegs}
        reach = dict.fromkeys(pages, 0)
        for group in proc.threads:
            for step in group.steps:
                if isinstance(step, AccessStep) and step.vseg in reach:
                    bound = pages[step.vseg] if step.accesses is None else step.accesses * group.count
                    reach[step.vseg] += bound
        need += sum(min(pages[name], reach[name]) for name in pages)
    if need > user - low:
        return (f"guest memory pressure: the vsegs need {need} pages, {user - low} are free "
                "above the low watermark (guest page reclaim runs on the reference path)")
    return None


def unsupported(config: Config) -> str | None:
    """Why ``config`` is outside the compiled core, or None when the core covers it."""
    if not config.hypervisor.enabled:
        return "no hypervisor (the guest-only path is already compiled per access)"
    if config.guest.clusters > 1 or config.guest.vmm.model == "almos":
        return "ALMOS-MKH clusters"
    if config.guest.swap.device != "none":
        return "guest swap (guest page reclaim runs on the reference path)"
    if config.guest.balloon.target or config.guest.balloon.schedule:
        return "a guest balloon (it runs on the reference path)"
    pressure = guest_pressure(config)
    if pressure is not None:
        return pressure
    # sim.check_invariants checks cluster page tables and fork; neither is in the core.
    # hypervisor.apf_debug is honoured: the protocol state is checked after every event.
    for proc in config.processes:
        kinds = {v.name: v.type for v in proc.vsegs}
        if any(kind != "anon" for kind in kinds.values()):
            return f"process {proc.name!r} maps a non-anonymous vseg"
        for group in proc.threads:
            for step in group.steps:
                if isinstance(step, AccessStep):
                    if step.vseg is None or step.vseg not in kinds or step.fetch:
                        return f"process {proc.name!r} has an access step outside its anon vsegs"
                elif not isinstance(step, (ComputeStep, SleepStep)):
                    return f"process {proc.name!r} has a {step.op!r} step"
    return None


# ---------------------------------------------------------------- build


def _copy_scheduler(m: Any, sid: int, sched: Any, task_ids: dict[int, int]) -> None:
    base = int(m.sp[sid, S.SP_RQ_BASE])
    policy = sched.policy
    m.sp[sid, S.SP_POLICY] = policy.number
    m.sp[sid, S.SP_TIMESLICE] = policy.timeslice_ns
    if isinstance(policy, Fair):
        m.sp[sid, S.SP_LATENCY] = policy.latency
        m.sp[sid, S.SP_MIN_GRAN] = policy.min_granularity
        m.sp[sid, S.SP_WAKEUP_GRAN] = policy.wakeup_granularity
        m.sp[sid, S.SP_NR_LATENCY] = policy.nr_latency
    if isinstance(policy, Eevdf):
        m.sp[sid, S.SP_BASE_SLICE] = policy.base_slice
        m.sp[sid, S.SP_LAG_LIMIT] = policy.lag_limit
    m.sp[sid, S.SP_SWITCH] = sched.switch_ns
    m.sp[sid, S.SP_TICK] = sched.tick_ns
    m.sp[sid, S.SP_TICK_STRICT] = sched.tick_strict
    m.sp[sid, S.SP_IDLE_BALANCE] = sched.idle_balance
    m.sp[sid, S.SP_NOTIFIER_KEY] = sched.notifier_key
    m.sp[sid, S.SP_NCPUS] = len(sched.cpus)
    for rq in sched.cpus:
        r = base + rq.index
        m.rq[S.RQ_CURRENT, r] = -1 if rq.current is None else task_ids[id(rq.current)]
        m.rq[S.RQ_QLEN, r] = len(rq.queue)
        for i, task in enumerate(rq.queue):
            m.rqq[r, i] = task_ids[id(task)]
        m.rq[S.RQ_SLICE_END, r] = rq.slice_end
        m.rq[S.RQ_PREEMPT_COUNT, r] = rq.preempt_count
        m.rq[S.RQ_HAS_IDLE_SINCE, r] = rq.idle_since is not None
        m.rq[S.RQ_IDLE_SINCE, r] = rq.idle_since or 0
        m.rq[S.RQ_IDLE_NS, r] = rq.idle_ns
        m.rq[S.RQ_SWITCHES, r] = rq.context_switches
        m.rq[S.RQ_KICK_PENDING, r] = rq.kick_pending
        m.rq[S.RQ_ONLINE, r] = rq.online
        m.rq[S.RQ_MIN_VRUNTIME, r] = rq.min_vruntime
        m.rq[S.RQ_EXEC_START, r] = rq.exec_start
        m.rq[S.RQ_STEAL_SEEN, r] = rq.steal_seen
        m.rq[S.RQ_SLICE_STEAL, r] = rq.slice_steal


def _copy_task(m: Any, t: int, task: Any) -> None:
    m.tk[S.TK_STATE, t] = int(task.state)
    m.tk[S.TK_USAGE, t] = task.usage
    m.tk[S.TK_FREED, t] = task.freed
    m.tk[S.TK_CPU, t] = -1 if task.cpu is None else task.cpu
    m.tk[S.TK_ALLOWED, t] = -1 if task.allowed_cpu is None else task.allowed_cpu
    m.tk[S.TK_ON_CPU, t] = task.on_cpu
    m.tk[S.TK_RUNTIME, t] = task.runtime_ns
    m.tk[S.TK_SWITCHES_IN, t] = task.switches_in
    m.tk[S.TK_VRUNTIME, t] = task.vruntime
    m.tk[S.TK_DEADLINE, t] = task.deadline
    m.tk[S.TK_VLAG, t] = task.vlag
    m.tk[S.TK_TID, t] = task.tid
    m.tk[S.TK_NOTIFIER, t] = -1


class CompiledRun:
    """The compiled core attached to a freshly built :class:`~pfsim.simulation.Simulation`."""

    def __init__(self, simulation: Simulation) -> None:
        self.simulation = simulation
        config = simulation.config
        kernel = simulation.kernel
        host = simulation.host
        assert host is not None
        self.kernel, self.host, self.config = kernel, host, config
        sim = simulation.sim
        # the processes, built in the order their spawn events will run
        order = sorted(range(len(config.processes)), key=lambda i: config.processes[i].start)
        spawn_index = {}
        for k, i in enumerate(order):
            spawn_index[id(config.processes[i])] = k
            kernel.build_process(config.processes[i])
        processes = kernel.processes
        self.processes = list(processes)
        guest_tasks = [t for p in processes for t in p.threads]
        host_tasks = [*host.threads, *host.noise]
        ng, nv, nh = len(guest_tasks), config.guest.vcpus, config.hypervisor.host_cpus
        ntask = ng + len(host_tasks)
        self.guest_tasks, self.host_tasks, self.ng = guest_tasks, host_tasks, ng
        task_ids = {id(t): i for i, t in enumerate([*guest_tasks, *host_tasks])}
        bases, (mstate, mgfn, mvflags) = _gather_tables(processes)
        self.slot_base = {id(p): b for p, b in zip(processes, bases, strict=True)}
        # steps and chunk buffers
        steps: list[list[int]] = []
        self.streams: dict[int, tuple[Any, int, Any, int]] = {}  # step row -> stream info
        nbuf = 0
        tx = np.zeros((S.TX_FIELDS, max(1, ng)), dtype=np.int64)
        for t, task in enumerate(guest_tasks):
            texec = task.data
            tx[S.TX_TASK, t] = t
            tx[S.TX_PROC, t] = processes.index(texec.process)
            tx[S.TX_STEP0, t] = len(steps)
            tx[S.TX_NSTEPS, t] = len(texec.steps)
            tx[S.TX_STEP_INDEX, t] = -1
            tx[S.TX_APF_SINCE, t] = -1
            for index, step in enumerate(texec.steps):
                if isinstance(step, AccessStep):
                    stream, base_vpn = texec.access_stream(step, index)
                    self.streams[len(steps)] = (stream, base_vpn, texec, step.accesses)
                    steps.append([S.STEP_ACCESS, _opt(step.duration), _opt(step.accesses),
                                  step.think, nbuf, nbuf + 1])
                    nbuf += 2
                elif isinstance(step, ComputeStep):
                    steps.append([S.STEP_COMPUTE, _opt(step.duration), _opt(step.units),
                                  step.unit, -1, -1])
                else:
                    steps.append([S.STEP_SLEEP, step.duration, S.NONE, 1, -1, -1])
        steps_arr = np.array(steps if steps else [[0] * S.ST_FIELDS], dtype=np.int64)
        cslots = np.zeros((max(1, nbuf), CHUNK), dtype=np.int64)
        cwrites = np.zeros((max(1, nbuf), CHUNK), dtype=np.bool_)
        clen = np.zeros(max(1, nbuf), dtype=np.int64)
        ev, heap, evfree, hg = new_heap(1 << 14)
        memory = host.memory
        nframes = memory.nframes
        swap = host.swap
        wcap = 256 * nv + 256
        bcap = 256 * nv + 256
        kvm = apf_kvm.new_kvm_state(nv, max(1, ng))
        s390 = apf_s390.new_s390_state(nv, max(1, ng))
        m = S.Machine(
            ev=ev, heap=heap, evfree=evfree, hg=hg,
            g=np.zeros(S.G_FIELDS, dtype=np.int64), cf=np.zeros(S.CF_FIELDS, dtype=np.int64),
            tk=np.zeros((S.TK_FIELDS, ntask), dtype=np.int64),
            rq=np.zeros((S.RQ_FIELDS, nv + nh), dtype=np.int64),
            rqq=np.zeros((nv + nh, ntask + 1), dtype=np.int64),
            sp=np.zeros((2, S.SP_FIELDS), dtype=np.int64),
            vc=np.zeros((S.VC_FIELDS, nv), dtype=np.int64),
            irq=np.zeros((2, nv, S.IRQ_CAP + 1, 2), dtype=np.int64),
            flog=np.stack([a for a in kernel.executor.log]),
            hc=np.zeros((S.HC_FIELDS, nh), dtype=np.int64),
            tx=tx, steps=steps_arr, cslots=cslots, cwrites=cwrites, clen=clen,
            creq=np.zeros((S.REQ_CAP, 3), dtype=np.int64),
            pr=np.zeros((S.PR_FIELDS, max(1, len(processes))), dtype=np.int64),
            mstate=mstate, mgfn=mgfn, mvflags=mvflags, refcount=kernel.mem.refcount,
            gkind=kernel.mem.kind, gfree=kernel.mem.free_stack, gnfree=kernel.mem.nfree,
            gcosts=kernel.executor.costs, out=kernel.executor.out,
            hbits=memory.gfn_bits, hlinks=memory.gfn_links, hframes=memory.frames,
            hfree_at=memory.frame_free_at, hsmall=memory.small,
            hm=np.zeros(S.HM_FIELDS, dtype=np.int64),
            evicted=np.zeros(2 * max(1, memory.batch), dtype=np.int64), swap_slot1=memory.swap_slot1,
            ra_flag=memory.readahead_flag, pinned=memory.pinned, slot_gfn=memory._slot_gfn,
            free_slots=np.zeros(nframes + 1, dtype=np.int64),
            sw=np.zeros(S.SW_FIELDS, dtype=np.int64),
            swq=np.array(swap._slots, dtype=np.int64), lat=np.zeros(LAT_CAP, dtype=np.int64),
            whead1=np.zeros(nframes, dtype=np.int64), wtail=np.zeros(nframes, dtype=np.int64),
            wtr=np.zeros((4, wcap), dtype=np.int64), wfree=np.arange(wcap - 1, -1, -1, dtype=np.int64),
            bt=np.zeros((bcap, 2 + (1 << 6)), dtype=np.int64),
            bfree=np.arange(bcap - 1, -1, -1, dtype=np.int64),
            rstate=np.zeros(1, dtype=np.uint64), kvm=kvm, s390=s390,
            comp=np.zeros((2, 256), dtype=np.int64), woken=np.zeros(max(1, ntask), dtype=np.int64),
            tr=simulation.recorder.rec, trm=simulation.recorder.meta,
            hist=kernel.latency,
        )
        self.m = m
        self.view = View(m)  # what the compiled functions receive (one pointer)
        g = m.g
        g[S.G_NG], g[S.G_NV], g[S.G_NH], g[S.G_NTASK] = ng, nv, nh, ntask
        g[S.G_MODE] = ("off", "halt", "kvm", "s390").index(config.hypervisor.async_pf)
        g[S.G_PENDING_SPAWNS] = kernel.pending_spawns
        if config.sim.duration is not None:
            g[S.G_UNTIL], g[S.G_HAS_UNTIL] = config.sim.duration, 1
        costs, hcosts = config.guest.costs, config.hypervisor.costs
        cf = m.cf
        cf[S.CF_ENTRY], cf[S.CF_ZERO_PAGE_COST] = costs.entry, costs.zero_page
        cf[S.CF_ANON_PAGE], cf[S.CF_COW_REUSE] = costs.anon_page, costs.cow_reuse
        cf[S.CF_ZERO_PAGE], cf[S.CF_FAST] = config.guest.mm.zero_page, config.guest.fast_faults
        cf[S.CF_EPT], cf[S.CF_HOST_FAULT] = hcosts.ept_violation, hcosts.host_fault
        cf[S.CF_SWAPCACHE_HIT], cf[S.CF_APF_INJECT] = hcosts.swapcache_hit, hcosts.apf_inject
        cf[S.CF_PAGE_READY] = hcosts.page_ready
        cf[S.CF_SYNCHRONOUS] = host.swap_params.synchronous
        cf[S.CF_PAGE_CLUSTER] = host.swap_params.page_cluster
        cf[S.CF_BATCH], cf[S.CF_LIMIT] = memory.batch, memory.limit
        cf[S.CF_POLICY] = ("fifo", "lru", "clock", "random").index(config.hypervisor.reclaim)
        cf[S.CF_STEAL] = kernel.scheduler.steal_clock is not None
        cf[S.CF_PERIODIC] = config.guest.tick == "periodic"
        # schedulers and tasks
        m.sp[S.GUEST, S.SP_RQ_BASE], m.sp[S.HOST, S.SP_RQ_BASE] = 0, nv
        for t, task in enumerate([*guest_tasks, *host_tasks]):
            _copy_task(m, t, task)
        for c in range(nv):
            m.tk[S.TK_NOTIFIER, ng + c] = c
        _copy_scheduler(m, S.GUEST, kernel.scheduler, task_ids)
        _copy_scheduler(m, S.HOST, host.sched, task_ids)
        executor = kernel.executor
        for c in range(nv):
            vc = m.vc[:, c]
            vc[S.VC_EPOCH], vc[S.VC_PAUSED] = executor.epoch[c], executor.paused[c]
            vc[S.VC_OWED], vc[S.VC_NEED_RESCHED] = executor.owed[c], executor.need_resched[c]
            vc[S.VC_HELD], vc[S.VC_OFF_AT] = executor.held[c], executor.off_at[c]
            vc[S.VC_ON_CPU], vc[S.VC_VMODE], vc[S.VC_SINCE] = (host.on_cpu[c], host.vmode[c],
                                                                host.since[c])
            for k in range(4):
                vc[S.VC_TIME_RUNNING + k] = host.time_in[c][k]
            vc[S.VC_CHARGED_STALL], vc[S.VC_HALT_EPOCH] = host.charged_stall[c], host.halt_epoch[c]
            vc[S.VC_WAITING_GFN], vc[S.VC_IRQ_PENDING] = host.waiting_gfn[c], host.irq_pending[c]
            vc[S.VC_THREAD] = ng + c
            if executor.pending_irqs[c] or executor.segment[c] is not None:
                raise Fallback("executor state at time 0")
        for h in range(nh):
            m.hc[S.HC_HEPOCH, h] = host.hepoch[h]
        for k, p in enumerate(processes):
            first = guest_tasks.index(p.threads[0])
            m.pr[S.PR_T0, k], m.pr[S.PR_NT, k] = first, len(p.threads)
            m.pr[S.PR_SLOT0, k], m.pr[S.PR_NSLOTS, k] = bases[k], len(p.mm.state)
            m.pr[S.PR_EXITED_NS, k] = -1
            m.pr[S.PR_RSS, k] = p.mm.rss
        # host memory scalars, swap slots and device
        hm = m.hm
        for row, name in ((S.HM_EVICTIONS, "evictions"), (S.HM_SWAP_OUTS, "swap_outs"),
                          (S.HM_SWAP_INS, "swap_ins"), (S.HM_READAHEAD, "readahead_pages"),
                          (S.HM_EPT_VIOLATIONS, "ept_violations"), (S.HM_HOST_MINOR, "host_minor"),
                          (S.HM_HOST_MAJOR, "host_major"), (S.HM_RA_HITS, "ra_hits"),
                          (S.HM_PREV_OFFSET, "_prev_offset"), (S.HM_PREV_WINDOW, "_prev_window"),
                          (S.HM_NEXT_SLOT, "_next_slot")):
            hm[row] = getattr(memory, name)
        free_slots = sorted(memory._free_slots)
        hm[S.HM_NFREE_SLOTS] = len(free_slots)
        m.free_slots[:len(free_slots)] = free_slots
        hm[S.HM_HAND] = getattr(memory.policy, "hand", 0)
        m.rstate[0] = np.uint64(getattr(memory.policy, "state", 0))
        hm[S.HM_WFREE], hm[S.HM_BFREE] = wcap, bcap
        hm[S.HM_SYNC_FALLBACKS], hm[S.HM_HALTS] = host.sync_fallbacks, host.halts
        hm[S.HM_NFRAMES] = nframes
        if host.io_waiters:
            raise Fallback("swap-ins in flight at time 0")
        params = host.swap_params
        sw = m.sw
        sw[S.SW_CHANNEL_FREE], sw[S.SW_READS], sw[S.SW_WRITES] = (swap._channel_free, swap.reads,
                                                                 swap.writes)
        sw[S.SW_PAGES_READ], sw[S.SW_PAGES_WRITTEN] = swap.pages_read, swap.pages_written
        sw[S.SW_BUSY_UNTIL], sw[S.SW_LATENCY] = swap.busy_until, params.latency_ns
        sw[S.SW_BANDWIDTH], sw[S.SW_QD] = params.bandwidth, params.queue_depth
        sw[S.SW_RANDOM_LATENCY] = params.distribution != "fixed"
        self._draw_latencies()
        # the async-PF protocols' boot handshake (as ApfMode.setup did on the objects)
        apf_kvm.kvm_setup(View(kvm), nv)
        apf_s390.s390_setup(View(s390), nv)
        # the chunk 0 of every access step
        for row in self.streams:
            self._fill(row, 0)
        # the events already scheduled (process spawns, host idle dispatches)
        hg[H_NOW] = sim.now
        for time_ns, prio, seq, callback, args in sorted(sim._heap):
            name = getattr(callback, "__name__", "")
            if name == "_spawn":
                kind, a0, a1 = S.EV_SPAWN, spawn_index[id(args[0])], 0
            elif name == "_idle_dispatch" and callback.__self__ is host.sched:
                kind, a0, a1 = S.EV_IDLE_DISPATCH, S.HOST, args[0]
            elif name == "_idle_dispatch":
                kind, a0, a1 = S.EV_IDLE_DISPATCH, S.GUEST, args[0]
            else:
                raise Fallback(f"event {name} at time 0")
            hg[H_SEQ] = seq - 1
            heap_push(ev, heap, evfree, hg, time_ns, prio, kind, a0, a1, 0)
        hg[H_SEQ] = sim._seq
        self.spawn_order = order
        self.allocated_base = kernel.mem.allocated_total

    # ---------------------------------------------------------------- services

    def _draw_latencies(self) -> None:
        m, swap, params = self.m, self.host.swap, self.host.swap_params
        if params.distribution == "fixed":
            return
        pos, length = int(m.sw[S.SW_LAT_POS]), int(m.sw[S.SW_LAT_LEN])
        left = m.lat[pos:length].copy()
        m.lat[:len(left)] = left
        need = LAT_CAP - len(left)
        if params.distribution == "exponential":
            draws = swap.rng.exponential(params.latency_ns, size=need)
        else:
            mu = np.log(params.latency_ns) - params.sigma**2 / 2
            draws = swap.rng.lognormal(mu, params.sigma, size=need)
        m.lat[len(left):] = draws.astype(np.int64)
        m.sw[S.SW_LAT_POS], m.sw[S.SW_LAT_LEN] = 0, LAT_CAP

    def _fill(self, row: int, chunk: int) -> None:
        """Generate chunk ``chunk`` of step ``row``'s stream into its buffer."""
        m = self.m
        stream, base_vpn, texec, count = self.streams[row]
        n = CHUNK if count is None else min(CHUNK, count - chunk * CHUNK)
        if n <= 0:
            return
        buf = int(m.steps[row, S.ST_BUF0 if chunk % 2 == 0 else S.ST_BUF1])
        pages, stores = stream.next_chunk(n)
        mm = texec.process.mm
        slots = mm.slots_of(pages, base_vpn)
        if mm.state.base is not m.mstate:  # its table outgrew its part: gather them again
            self._regather()
            m = self.m
        m.cslots[buf, :n] = np.where(slots >= 0, slots + self.slot_base[id(texec.process)], -1)
        m.cwrites[buf, :n] = stores
        m.clen[buf] = n

    def _regather(self) -> None:
        """Concatenate the page tables again after one grew (new leaves allocated by a chunk's
        translation), moving the slots already in the chunk buffers to the new bases."""
        m = self.m
        bases, (mstate, mgfn, mvflags) = _gather_tables(self.processes)
        moved = {id(p): new - self.slot_base[id(p)] for p, new in zip(self.processes, bases,
                                                                       strict=True)}
        for row, (_stream, _base, texec, _count) in self.streams.items():
            shift = moved[id(texec.process)]
            for column in (S.ST_BUF0, S.ST_BUF1):
                buffer = m.cslots[int(m.steps[row, column])]
                buffer[buffer >= 0] += shift
        for k, p in enumerate(self.processes):
            m.pr[S.PR_SLOT0, k], m.pr[S.PR_NSLOTS, k] = bases[k], len(p.mm.state)
        self.slot_base = {id(p): b for p, b in zip(self.processes, bases, strict=True)}
        self.m = m._replace(mstate=mstate, mgfn=mgfn, mvflags=mvflags)
        self.view = View(self.m)

    def run(self, progress: Callable[[int], None] | None = None, sampler: Any = None) -> None:
        """Run to the end; with a :class:`~pfsim.sampling.Sampler`, stop at each of its times
        (the core's ``until``) to let it read the counters, and go on."""
        m = self.m
        debug = self.config.hypervisor.apf_debug
        until = self.config.sim.duration
        self._limit(until, sampler)
        while True:
            machine.run_events(self.view, 1 if debug else EVENTS_PER_CALL)
            if m.g[S.G_ERR]:
                break
            if debug:
                self.check_protocol()
            serviced = False
            if m.g[S.G_NREQ]:
                for i in range(int(m.g[S.G_NREQ])):
                    self._fill(int(m.creq[i, 1]), int(m.creq[i, 2]))
                m = self.m  # a fill may have gathered the page tables again
                m.g[S.G_NREQ] = 0
                serviced = True
            if 2 * m.hg[H_SIZE] > m.heap.shape[0]:
                ev, heap, evfree = grow_heap(m.ev, m.heap, m.evfree, m.hg)
                self.m = m = m._replace(ev=ev, heap=heap, evfree=evfree)
                self.view = View(m)
                serviced = True
            if m.sw[S.SW_RANDOM_LATENCY] and m.sw[S.SW_LAT_POS] > LAT_CAP // 2:
                self._draw_latencies()
                serviced = True
            if progress is not None:
                progress(int(m.hg[H_NOW]))
            if serviced:
                continue
            if m.hg[H_SIZE] == 0 or m.g[S.G_STOPPED]:
                break
            if m.g[S.G_HAS_UNTIL] and m.ev[EV_TIME, m.heap[0]] >= m.g[S.G_UNTIL]:
                m.hg[H_NOW] = m.g[S.G_UNTIL]  # as the core does when it meets ``until`` itself
                if sampler is not None and m.g[S.G_UNTIL] == sampler.next_time:
                    sampler.take(int(m.g[S.G_UNTIL]))
                    if until is None or m.g[S.G_UNTIL] < until:
                        self._limit(until, sampler)
                        continue
                break
        err = int(m.g[S.G_ERR])
        if not err:
            self.check_protocol()  # at the end of every run, not only under apf_debug
        if err == S.ERR_UNSUPPORTED:
            raise Fallback(f"the compiled core met something it does not model (code {m.g[S.G_ERR_ARG]})")
        if err:
            from pfsim.errors import InvariantViolation

            detail = apf_kvm.kvm_error(m.kvm) or apf_s390.s390_error(m.s390)
            raise InvariantViolation(f"compiled core error {err} ({m.g[S.G_ERR_ARG]}) {detail}")


    def _limit(self, until: int | None, sampler: Any) -> None:
        """The core's ``until``: the end of the run or the next sample, whichever is first."""
        stops = [t for t in (until, sampler.next_time if sampler else None) if t is not None]
        self.m.g[S.G_HAS_UNTIL] = bool(stops)
        self.m.g[S.G_UNTIL] = min(stops) if stops else 0

    @property
    def stopped(self) -> bool:
        """The workload ended the run (``Simulator.stop``), not ``until`` or an empty heap."""
        return bool(self.m.g[S.G_STOPPED])

    def check_protocol(self) -> None:
        """The async-PF protocol invariants (``check_invariants`` of the reference's KvmApfHost,
        KvmApfGuest, PfaultHost and PfaultGuest) on the compiled state; raises on a breach."""
        m, ng = self.m, self.ng
        state, usage, freed = m.tk[S.TK_STATE, :ng], m.tk[S.TK_USAGE, :ng], m.tk[S.TK_FREED, :ng]
        mode = int(m.g[S.G_MODE])
        detail = ""
        if mode == S.MODE_KVM:
            detail = apf_kvm.kvm_check(m.kvm, state, freed)
        elif mode == S.MODE_S390:
            detail = apf_s390.s390_check(m.s390, state, usage, freed)
        if detail:
            from pfsim.errors import InvariantViolation

            raise InvariantViolation(f"compiled core at {int(m.hg[H_NOW])} ns: {detail}")


def _gather_tables(processes: list[Any]) -> tuple[list[int], tuple[np.ndarray, ...]]:
    """The page tables of every process, concatenated (each mm now views its part, so a leaf
    allocated within its capacity lands in the concatenation); (bases, arrays)."""
    bases, total = [], 0
    for p in processes:
        bases.append(total)
        total += len(p.mm.state)
    mstate = np.zeros(total, dtype=np.uint8)
    mgfn = np.full(total, -1, dtype=np.int64)
    mvflags = np.zeros(total, dtype=np.uint8)
    for p, base in zip(processes, bases, strict=True):
        n = len(p.mm.state)
        mstate[base:base + n] = p.mm.state
        mgfn[base:base + n] = p.mm.gfn
        mvflags[base:base + n] = p.mm.vflags
        p.mm.state, p.mm.gfn, p.mm.vflags = (mstate[base:base + n], mgfn[base:base + n],
                                             mvflags[base:base + n])
    return bases, (mstate, mgfn, mvflags)


def _opt(value: int | None) -> int:
    return S.NONE if value is None else value


def write_back(run: CompiledRun) -> tuple[int, bool]:
    """Put the compiled state into the reference objects; returns (clock, heap not empty)."""
    m, kernel, host = run.m, run.kernel, run.host
    all_tasks = [*run.guest_tasks, *run.host_tasks]
    for t, task in enumerate(all_tasks):
        task.state = TaskState(int(m.tk[S.TK_STATE, t]))
        task.usage = int(m.tk[S.TK_USAGE, t])
        task.freed = bool(m.tk[S.TK_FREED, t])
        task.cpu = None if m.tk[S.TK_CPU, t] < 0 else int(m.tk[S.TK_CPU, t])
        task.on_cpu = bool(m.tk[S.TK_ON_CPU, t])
        task.runtime_ns = int(m.tk[S.TK_RUNTIME, t])
        task.switches_in = int(m.tk[S.TK_SWITCHES_IN, t])
        task.vruntime = int(m.tk[S.TK_VRUNTIME, t])
        task.deadline = int(m.tk[S.TK_DEADLINE, t])
        task.vlag = int(m.tk[S.TK_VLAG, t])
    for sid, sched in ((S.GUEST, kernel.scheduler), (S.HOST, host.sched)):
        base = int(m.sp[sid, S.SP_RQ_BASE])
        for rq in sched.cpus:
            r = base + rq.index
            cur = int(m.rq[S.RQ_CURRENT, r])
            rq.current = None if cur < 0 else all_tasks[cur]
            rq.queue.clear()
            rq.queue.extend(all_tasks[int(i)] for i in m.rqq[r, :int(m.rq[S.RQ_QLEN, r])])
            rq.slice_end = int(m.rq[S.RQ_SLICE_END, r])
            rq.idle_since = int(m.rq[S.RQ_IDLE_SINCE, r]) if m.rq[S.RQ_HAS_IDLE_SINCE, r] else None
            rq.idle_ns = int(m.rq[S.RQ_IDLE_NS, r])
            rq.context_switches = int(m.rq[S.RQ_SWITCHES, r])
            rq.min_vruntime = int(m.rq[S.RQ_MIN_VRUNTIME, r])
            rq.exec_start = int(m.rq[S.RQ_EXEC_START, r])
            rq.steal_seen = int(m.rq[S.RQ_STEAL_SEEN, r])
            rq.slice_steal = int(m.rq[S.RQ_SLICE_STEAL, r])
    for t, task in enumerate(run.guest_tasks):
        counters = task.data.counters
        for row, name in ((S.TX_MIN_FLT, "min_flt"), (S.TX_MAJ_FLT, "maj_flt"),
                          (S.TX_WORK, "work"), (S.TX_ACCESSES, "accesses"),
                          (S.TX_COMPUTE_UNITS, "compute_units"), (S.TX_COW_REUSES, "cow_reuses"),
                          (S.TX_LOCAL_PGFAULT, "local_pgfault_nr"), (S.TX_PGFAULT, "pgfault")):
            setattr(counters, name, int(m.tx[row, t]))
    spawned = []
    for k, process in enumerate(run.processes):
        exited = int(m.pr[S.PR_EXITED_NS, k])
        if not m.pr[S.PR_ALIVE, k] and exited < 0:
            continue  # its spawn event never ran
        spawned.append(process)
        process.alive = bool(m.pr[S.PR_ALIVE, k])
        process.exited_ns = exited if exited >= 0 else None
        process.mm.rss = int(m.pr[S.PR_RSS, k])
        if not process.alive:  # the core emptied its slots; its page tables go (free_pgtables)
            for vma in process.mm.vmas:
                process.mm.free_vma_tables(vma)
    kernel.processes[:] = spawned
    kernel.pending_spawns = int(m.g[S.G_PENDING_SPAWNS])
    kernel.mem.allocated_total = run.allocated_base + int(m.g[S.G_ALLOCATED])
    for c in range(int(m.g[S.G_NV])):
        host.on_cpu[c] = int(m.vc[S.VC_ON_CPU, c])
        host.vmode[c] = type(host.vmode[c])(int(m.vc[S.VC_VMODE, c]))
        host.since[c] = int(m.vc[S.VC_SINCE, c])
        host.time_in[c] = [int(m.vc[S.VC_TIME_RUNNING + k, c]) for k in range(4)]
        host.charged_stall[c] = int(m.vc[S.VC_CHARGED_STALL, c])
    memory = host.memory
    for row, name in ((S.HM_EVICTIONS, "evictions"), (S.HM_SWAP_OUTS, "swap_outs"),
                      (S.HM_SWAP_INS, "swap_ins"), (S.HM_READAHEAD, "readahead_pages"),
                      (S.HM_EPT_VIOLATIONS, "ept_violations"), (S.HM_HOST_MINOR, "host_minor"),
                      (S.HM_HOST_MAJOR, "host_major"), (S.HM_NEXT_SLOT, "_next_slot")):
        setattr(memory, name, int(m.hm[row]))
    memory._free_slots = sorted(int(s) for s in m.free_slots[:int(m.hm[S.HM_NFREE_SLOTS])])
    swap = host.swap
    swap.reads, swap.writes = int(m.sw[S.SW_READS]), int(m.sw[S.SW_WRITES])
    swap.pages_read, swap.pages_written = int(m.sw[S.SW_PAGES_READ]), int(m.sw[S.SW_PAGES_WRITTEN])
    host.sync_fallbacks, host.halts = int(m.hm[S.HM_SYNC_FALLBACKS]), int(m.hm[S.HM_HALTS])
    apf = host.apf
    mode = run.config.hypervisor.async_pf
    if mode == "kvm":
        counters = apf_kvm.kvm_counters(m.kvm)
        apf.page_ready = int(m.hm[S.HM_PAGE_READY])
        apf.guest.not_present_count = counters["not_present_count"]
        apf.guest.dummies_freed = counters["dummies_freed"]
    elif mode == "s390":
        counters = apf_s390.s390_counters(m.s390)
        apf.guest.init_count = counters["init_count"]
        apf.guest.done_count = counters["done_count"]
        apf.guest.early_completions = counters["early_completions"]
    kernel.sim._now = int(m.hg[H_NOW])
    kernel.sim.events_processed = int(m.g[S.G_EVENTS])
    return int(m.hg[H_NOW]), bool(m.hg[H_SIZE])


def asleep_tasks(run: CompiledRun) -> list[str]:
    return [t.name for t in run.guest_tasks if t.is_sleeping]
