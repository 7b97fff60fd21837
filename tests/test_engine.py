"""The event loop and the named random streams."""

from __future__ import annotations

import numpy as np
import pytest

from pfsim.engine import Priority, RandomStreams, Simulator


def test_events_run_in_time_then_priority_then_insertion_order():
    sim = Simulator()
    seen = []
    sim.at(20, seen.append, "t20")
    sim.at(10, seen.append, "t10-normal-first")
    sim.at(10, seen.append, "t10-late", priority=Priority.LATE)
    sim.at(10, seen.append, "t10-urgent", priority=Priority.URGENT)
    sim.at(10, seen.append, "t10-normal-second")
    assert sim.run() == 20
    assert seen == ["t10-urgent", "t10-normal-first", "t10-normal-second", "t10-late", "t20"]


def test_run_until_stops_before_the_limit_and_resumes():
    sim = Simulator()
    seen = []
    for t in (5, 10, 15):
        sim.at(t, seen.append, t)
    assert sim.run(until_ns=10) == 10
    assert seen == [5]
    sim.run()
    assert seen == [5, 10, 15]


def test_events_cannot_be_scheduled_in_the_past():
    sim = Simulator()
    sim.at(10, lambda: None)
    sim.run()
    with pytest.raises(ValueError):
        sim.at(5, lambda: None)


def test_named_streams_are_reproducible_and_independent():
    a, b = RandomStreams(1), RandomStreams(1)
    x = a.generator("workload/p/0").random(5)
    assert np.array_equal(x, b.generator("workload/p/0").random(5))
    assert not np.array_equal(x, a.generator("workload/p/1").random(5))
    assert not np.array_equal(x, RandomStreams(2).generator("workload/p/0").random(5))
    # asking for another stream first does not shift this one
    c = RandomStreams(1)
    c.generator("something else").random(100)
    assert np.array_equal(x, c.generator("workload/p/0").random(5))
