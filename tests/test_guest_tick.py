"""The guest's periodic tick (``guest.tick``, ``guest.hz``) and paravirtual steal time
(``guest.steal_time``), worked by hand from the kernel rules pfsim.sched.tick cites.

The rules used below:

* TICK_NSEC = (NSEC_PER_SEC + HZ/2) / HZ (include/vdso/jiffies.h); ticks at its multiples.
* Without HRTICK a slice is checked only in the tick: cfs (2.6.32 ``check_preempt_tick``)
  reschedules when ``delta_exec > ideal_runtime``, so at the first tick strictly past the
  slice end; eevdf (6.6 ``update_deadline``) when ``vruntime >= deadline``, at the first tick
  at or past it; pfsim's rr like eevdf.
* A vCPU held in an APF halt takes the guest's next tick (``kvm_vcpu_has_events``;
  ``vcpu_block`` clears apf.halted); a tick that fell while the vCPU was out of the guest is
  taken when it enters again, and ends the slice if the slice is used up by then.
* With paravirtual steal time the steal reported at each entry (``record_steal_time``) comes
  off the run queue's ``clock_task`` (``update_rq_clock_task``): it is not charged to the
  current task (``update_curr``: ``sum_exec_runtime``, vruntime) and does not use up its slice.
* NO_HZ_IDLE: an idle vCPU gets no tick; ``periodic``: it is woken by every tick.
"""

from __future__ import annotations

import pytest
from helpers import scenario, simulation

from pfsim.engine import Simulator
from pfsim.sched import Scheduler, Task
from pfsim.sched.policy import Fair
from pfsim.sched.tick import tick_after, tick_nsec

MS = 1_000_000
US = 1_000


def test_tick_nsec_rounds_as_linux():
    """(1e9 + HZ/2) / HZ: 250 -> 4 ms, 1000 -> 1 ms, 300 -> 3333333.83.. -> 3333333,
    24 -> 41666667.16.. -> 41666667 (1e9 // 24 would give 41666666)."""
    assert [tick_nsec(hz) for hz in (250, 1000, 300, 24, 100)] == [
        4_000_000, 1_000_000, 3_333_333, 41_666_667, 10_000_000]


def test_tick_boundaries():
    """At or after / strictly after: a slice end on a tick is that tick (eevdf) or the next
    one (cfs)."""
    assert tick_after(3 * MS, 4 * MS, strict=False) == 4 * MS
    assert tick_after(4 * MS, 4 * MS, strict=False) == 4 * MS
    assert tick_after(4 * MS, 4 * MS, strict=True) == 8 * MS
    assert tick_after(3 * MS, 1 * MS, strict=True) == 4 * MS


def _two_computers(policy: str, hz: int, tick: str, duration: str, **sched):
    compute = {"op": "compute", "units": 10**6, "unit": "1us"}
    processes = [{"name": name, "threads": [{"stack": False, "steps": [compute]}]}
                 for name in ("a", "b")]
    data = scenario(processes=processes, duration=duration,
                    guest={"hz": hz, "tick": tick,
                           "sched": {"policy": policy, "context_switch": "0ns", **sched}})
    sim = simulation(data)
    sim.run()
    return {t.name: (t.runtime_ns, t.switches_in) for p in sim.kernel.processes for t in p.threads}


@pytest.mark.parametrize(("hz", "tick", "expected"), [
    # slice 6 ms / 2 = 3 ms; HZ 250: a slice ends at the first tick past its end:
    # a [0,4) b [4,8) a [8,12) b [12,16) a [16,20) b [20,22 end): a 12 ms charged, b 8 ms
    # (b's last stretch is still current at the end: not charged yet)
    (250, "nohz_idle", {"a/0": (12 * MS, 3), "b/0": (8 * MS, 3)}),
    # HZ 1000: the tick at 3 ms finds delta_exec == ideal_runtime, not more: it is the tick at
    # 4 ms that ends the slice, as with HZ 250
    (1000, "nohz_idle", {"a/0": (12 * MS, 3), "b/0": (8 * MS, 3)}),
    # no tick: exactly 3 ms: a [0,3) b [3,6) a [6,9) b [9,12) a [12,15) b [15,18) a [18,21)
    # b [21,22 end): a 12 ms, b 9 ms, 4 switches in each
    (250, "off", {"a/0": (12 * MS, 4), "b/0": (9 * MS, 4)}),
])
def test_cfs_slice_ends_past_its_end_on_the_tick(hz, tick, expected):
    """Two CPU-bound tasks on one vCPU, no hypervisor, cfs with latency 6 ms (min_granularity
    1 ms: sched_nr_latency 6, so the period is 6 ms and each slice 3 ms), no switch cost, 22 ms."""
    got = _two_computers("cfs", hz, tick, "22ms", latency="6ms", min_granularity="1ms")
    assert got == expected


@pytest.mark.parametrize(("hz", "expected"), [
    # HZ 250: a's vruntime reaches its deadline (3 ms) at 3 ms, the tick at 4 ms sees it: a
    # new deadline 4 + 3 = 7; V = (4 + 0) / 2: only b is eligible: b [4, 8).  At 8 ms b has
    # vruntime 4, deadline 7: V = 4, both eligible with deadline 7: the current task keeps a
    # tie, b goes on to 4 + 3 = 11 ms -> tick 12.  Then a alone is eligible: a [12, 20) the
    # same way, b from 20 ms to the end.  Charged a 4 + 8 = 12 ms, b 8 ms; 2 switches in each.
    (250, {"a/0": (12 * MS, 2), "b/0": (8 * MS, 2)}),
    # HZ 1000: the tick at 3 ms sees vruntime == deadline: slices of exactly 3 ms.  a [0, 3);
    # b [3, 9) (at 6 ms a tie at deadline 6, kept by b); a [9, 15) (tie at 9 kept by a); b
    # [15, 21); a from 21 ms.  Charged a 3 + 6 = 9 ms, b 12 ms; a switched in 3 times, b 2.
    (1000, {"a/0": (9 * MS, 3), "b/0": (12 * MS, 2)}),
])
def test_eevdf_slice_ends_at_the_first_tick_at_or_past_the_deadline(hz, expected):
    """eevdf, base_slice 3 ms (tunable_scaling none), the rules of pfsim.sched.policy (pick the
    eligible task with the earliest deadline, the current one keeping ties, 6.6's
    ``__pick_eevdf`` starting from ``best = curr``); a slice ends at the first tick where
    ``vruntime >= deadline`` (``update_deadline``)."""
    got = _two_computers("eevdf", hz, "nohz_idle", "22ms", base_slice="3ms",
                         tunable_scaling="none")
    assert got == expected


def _halt_scenario(noise: int, steal: bool, tick: str = "nohz_idle", duration: str = "50ms"):
    """Process ``a`` writes 64 pages, reads page 0 again, then computes; ``b`` computes.  One
    vCPU on one host CPU (with ``noise`` always-runnable host tasks), rr in guest and host (guest
    slice 6 ms, host slice 10 ms, no wake-up preemption), HZ 250, every fault and switch cost 0,
    think 1 us, a swap device of fixed 5 ms latency and no transfer time, 64 host frames."""
    def seq(n: int, write: bool):
        return {"op": "access", "vseg": "m", "pattern": "sequential", "stride": "4KiB",
                "accesses": n, "write_ratio": 1.0 if write else 0.0, "think": "1us"}
    compute = {"op": "compute", "units": 10**6, "unit": "1us"}
    a = {"name": "a", "vsegs": [{"name": "m", "type": "anon", "size": "256KiB"}],
         "threads": [{"stack": False, "steps": [seq(64, True), seq(1, False), compute]}]}
    b = {"name": "b", "threads": [{"stack": False, "steps": [compute]}]}
    data = scenario(processes=[a, b], duration=duration,
                    guest={"hz": 250, "tick": tick, "steal_time": steal,
                           "sched": {"policy": "rr", "timeslice": "6ms", "context_switch": "0ns"},
                           "costs": {"entry": 0, "zero_page": 0, "anon_page": 0, "cow_reuse": 0}})
    data["hypervisor"] = {
        "enabled": True, "host_cpus": 1, "host_tasks": noise, "memory_limit": "256KiB",
        "reclaim": "fifo", "reclaim_batch": 1, "async_pf": "halt", "timeslice": "10ms",
        "context_switch": "0ns",
        "costs": {"ept_violation": 0, "host_fault": 0, "swapcache_hit": 0, "apf_inject": 0,
                  "page_ready": 0},
        "swap": {"device": "nvme", "latency": "5ms", "bandwidth": 8_192_000_000_000,
                 "queue_depth": 64, "page_cluster": 0}}
    sim = simulation(data)
    sim.run()
    charged = {t.name: t.runtime_ns for p in sim.kernel.processes for t in p.threads}
    return charged, sim


H = 5_064 * US
"""When ``a`` halts, the same in every case: accesses take 1 us; the 64th write (page 63, at
63 us) needs a 64th host frame (63 usable besides the pinned zero page): FIFO evicts page 0's
gfn, dirty, and the new frame is usable when its write-back ends, 5 ms later; the access ends at
63 us + 5 ms + 1 us = 5.064 ms.  The read of page 0 then exits (page 0 is on swap): the swap-in
first evicts page 1 (its write-back ends at H + 5 ms), then reads (done at H + 10 ms =
15.064 ms); in halt mode the vCPU thread halts in the host (``kvm_vcpu_halt``)."""


@pytest.mark.usefixtures("engine")
def test_halt_without_steal_wakes_on_the_tick():
    """No host contention.  ``a`` runs from 0 (rr slice to 6 ms, ending on the tick at 8 ms)
    and halts at H.  The tick at 8 ms wakes the vCPU; the slice is used up: ``b`` runs from
    8 ms (slice end 14 ms -> tick 16 ms).  The page came at 15.064 ms; ``a`` runs [16, 24),
    ``b`` [24, 32), ``a`` [32, 40), ``b`` [40, 48), ``a`` from 48 ms to the end (50 ms, not
    charged yet).  Charged: ``a`` 8 + 8 + 8 = 24 ms (its halted time is its own: it is not
    steal), ``b`` 24 ms.  Stalled: the write-back wait 5 ms and the halt H..8 ms."""
    charged, sim = _halt_scenario(noise=0, steal=True)
    assert charged == {"a/0": 24 * MS, "b/0": 24 * MS}
    times = sim.host.vcpu_times(0, sim.sim.now)
    assert (times["stalled_ns"], times["steal_ns"]) == (5 * MS + 8 * MS - H, 0)
    assert sim.host.halts == 1


@pytest.mark.usefixtures("engine")
def test_halt_without_a_tick_wakes_at_the_slice_end():
    """``guest.tick = "off"`` (pfsim before the tick): the guest timer fires at ``a``'s slice
    end, 6 ms, as ``b`` waits: ``b`` runs [6, 12); ``a`` retries at 12 ms, the page is still
    being read (15.064 ms): it halts again (timer at its slice end 18 ms) and goes on when the
    page comes, to 18 ms; then ``b`` [18, 24), ``a`` [24, 30), ``b`` [30, 36), ``a`` [36, 42),
    ``b`` [42, 48), ``a`` current.  Charged: ``a`` 6 + 6 + 6 + 6 = 24 ms, ``b`` 24 ms; two
    halts; stalled: 5 ms + (6 ms - H) + (15.064 ms - 12 ms)."""
    charged, sim = _halt_scenario(noise=0, steal=False, tick="off")
    assert charged == {"a/0": 24 * MS, "b/0": 24 * MS}
    times = sim.host.vcpu_times(0, sim.sim.now)
    assert times["stalled_ns"] == 5 * MS + (6 * MS - H) + (15_064 * US - 12 * MS)
    assert sim.host.halts == 2


@pytest.mark.usefixtures("engine")
@pytest.mark.parametrize(("steal", "expected"), [
    # steal time on: a: 15.064 - 7.064 = 8 ms, then 40 - 24 - 10 = 6 ms: 14 ms; b: 24 - 15.064
    (True, {"a/0": 14 * MS, "b/0": 8_936 * US}),
    # steal time off: a: 15.064 ms, then 35.064 - 24 = 11.064 ms: 26.128 ms; b: 8.936 ms twice
    (False, {"a/0": 26_128 * US, "b/0": 17_872 * US}),
])
def test_halt_with_steal(steal, expected):
    """One host task competes for the host CPU (host rr, 10 ms slices, no wake-up preemption).

    The vCPU thread runs from 0 (host slice to 10 ms) and halts at H = 5.064 ms; the host task
    runs from H to H + 10 ms = 15.064 ms.  The guest tick at 8 ms wakes the vCPU thread, which
    waits for the host CPU (steal) until 15.064 ms: 7.064 ms of steal, reported at entry.  The
    ticks at 8 and 12 ms came while the vCPU was out: one timer interrupt is taken at entry.

    With steal time: ``a``'s slice (6 ms) is pushed to 6 + 7.064 = 13.064 ms <= 15.064 ms: used
    up, ``a`` is switched out, charged 15.064 - 7.064 = 8 ms.  ``b`` runs from 15.064 ms, slice
    end 21.064 ms -> tick 24 ms: charged 8.936 ms.  ``a`` from 24 ms (the page came at
    15.064 ms), slice end 30 ms; the host preempts the vCPU at 25.064 ms (its host slice) until
    35.064 ms: 10 ms of steal pushes the end to 40 ms, so the late tick at 35.064 ms finds the
    slice not used up; ``a`` runs to the tick at 40 ms, charged 16 - 10 = 6 ms.  ``b`` from
    40 ms is current at the end (50 ms).  Totals: ``a`` 14 ms, ``b`` 8.936 ms.

    Without: at 15.064 ms the slice (6 ms) is used up: ``a`` is charged all 15.064 ms (steal
    included).  ``b`` [15.064, 24): 8.936 ms.  ``a`` from 24 ms (slice end 30 ms); preempted in
    the host at 25.064 ms, back at 35.064 ms: the late tick finds 35.064 > 30 ms: switched out,
    charged 11.064 ms (10 ms of it steal).  ``b`` [35.064, 44) (slice end 41.064 -> tick 44):
    8.936 ms.  ``a`` is current at the end.  Totals: ``a`` 26.128 ms, ``b`` 17.872 ms.

    The vCPU's steal (22 ms: 8 -> 15.064, 25.064 -> 35.064, 45.064 -> 50) and stall (the 5 ms
    write-back wait and H -> 8 ms) are the same either way: steal time only moves the charge."""
    charged, sim = _halt_scenario(noise=1, steal=steal)
    assert charged == expected
    times = sim.host.vcpu_times(0, sim.sim.now)
    assert (times["steal_ns"], times["stalled_ns"]) == (
        (15_064 - 8_000 + 35_064 - 25_064 + 50_000 - 45_064) * US, 5 * MS + 8 * MS - H)


@pytest.mark.usefixtures("engine")
@pytest.mark.parametrize(("tick", "wakes"), [("nohz_idle", 2), ("periodic", 6)])
def test_an_idle_vcpu_gets_no_tick_with_nohz_idle(tick, wakes):
    """A task sleeps 18 ms, computes 1 ms and exits (at 19 ms, the run ends).  The vCPU thread
    gets its host CPU at 0 (the task starts and sleeps: the vCPU halts, idle) and at 18 ms (the
    timer wakes the task).  With NO_HZ_IDLE that is all; with a periodic tick the ticks at 4, 8,
    12 and 16 ms wake the idle vCPU too (it finds nothing to run and halts again): 6."""
    steps = [{"op": "sleep", "duration": "18ms"}, {"op": "compute", "units": 1000, "unit": "1us"}]
    data = scenario(processes=[{"name": "p", "threads": [{"stack": False, "steps": steps}]}],
                    guest={"hz": 250, "tick": tick, "sched": {"context_switch": "0ns"}})
    data["hypervisor"] = {"enabled": True, "host_cpus": 1, "context_switch": "0ns"}
    sim = simulation(data)
    result = sim.run()
    assert sim.host.threads[0].switches_in == wakes
    assert result["sim_time_ns"] == 19 * MS


def test_steal_comes_off_the_charged_time_and_vruntime():
    """The scheduler alone, cfs, one CPU, a steal clock driven by hand (what the host reports
    at vCPU entries).  Task ``a`` starts at 0 (slice: latency 6 ms / 1 task = 6 ms).

    At 2 ms the clock reports 1 ms of steal: ``update_curr`` at 2 ms charges 2 - 1 = 1 ms
    (sum_exec_runtime and vruntime).  The slice end moves from 6 to 7 ms.  At 2 ms the clock
    then jumps by 5 ms (a stretch reported late): at 3 ms only 1 ms can come off (the delta
    being charged, ``steal > delta`` -> ``steal = delta``), the other 4 ms are kept for later
    (``prev_steal_time_rq`` advances by what was used): 0 charged; at 8 ms 5 ms are charged,
    minus the 4 ms kept: 1 ms.  Total charged 2 ms, vruntime 2 ms."""
    sim = Simulator()
    steal = [0]
    sched = Scheduler(sim, 1, 3 * MS, 0, policy=Fair(6 * MS, 1 * MS, 1 * MS))
    sched.steal_clock = lambda cpu: steal[0]

    class Idle:
        def start(self, cpu, task, now):
            pass

    sched.executor = Idle()
    a = Task(1, "a")
    sched.add_task(a)
    for t in (2 * MS, 3 * MS, 8 * MS):  # the clock stops at a run's limit only if events remain
        sim.at(t + 1, lambda: None)
    sim.run(1)  # the dispatch at 0 (events at the limit itself do not run)
    assert sched.slice_end(0) == 6 * MS
    steal[0] = 1 * MS
    sim.run(2 * MS)
    sched.update_curr(0)
    assert (a.runtime_ns, a.vruntime, sched.slice_end(0)) == (1 * MS, 1 * MS, 7 * MS)
    steal[0] = 6 * MS
    sim.run(3 * MS)
    sched.update_curr(0)
    assert (a.runtime_ns, a.vruntime) == (1 * MS, 1 * MS)
    sim.run(8 * MS)
    sched.update_curr(0)
    assert (a.runtime_ns, a.vruntime) == (2 * MS, 2 * MS)
