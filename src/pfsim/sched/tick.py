"""The guest's periodic scheduler tick: its length and where a slice ends on it.

Linux without HRTICK (``SCHED_FEAT(HRTICK, false)``, kernel/sched/features.h) checks a running
task's slice only in the tick (``scheduler_tick`` -> ``task_tick_fair`` -> ``entity_tick``):
CFS of 2.6.32 reschedules when ``delta_exec > ideal_runtime`` (``check_preempt_tick``), EEVDF of
6.6 when ``vruntime >= deadline`` (``update_deadline``).  A slice therefore ends at the first
tick past (cfs) or at (eevdf) the instant its run time is used up.  The tick runs every
TICK_NSEC at multiples of it from boot (every CPU on the same grid: ``tick_setup_sched_timer``
without ``skew_tick``), so the boundary is computed, not simulated: no event per tick.
"""

from __future__ import annotations

NSEC_PER_SEC = 1_000_000_000


def tick_nsec(hz: int) -> int:
    """``TICK_NSEC = (NSEC_PER_SEC + HZ/2) / HZ`` (include/linux/jiffies.h, v6.6)."""
    return (NSEC_PER_SEC + hz // 2) // hz


def tick_after(time_ns: int, tick_ns: int, strict: bool) -> int:
    """The first tick at or after ``time_ns`` (``strict``: strictly after it)."""
    if strict:
        return (time_ns // tick_ns + 1) * tick_ns
    return -(-time_ns // tick_ns) * tick_ns


def next_tick(now: int, tick_ns: int) -> int:
    """The first tick strictly after ``now`` (the timer interrupt a halted vCPU takes next)."""
    return (now // tick_ns + 1) * tick_ns
