"""Latency histograms: the bucket arithmetic by hand, and what the runs record."""

from __future__ import annotations

import numpy as np
import pytest

from pfsim.api import run
from pfsim.machine import latency as L


@pytest.mark.parametrize(("value", "index", "low", "high"), [
    (0, 0, 0, 0), (1, 1, 1, 1), (31, 31, 31, 31),   # below 2**5: one bucket per value
    (32, 32, 32, 33), (33, 32, 32, 33), (34, 33, 34, 35), (63, 47, 62, 63),  # width 2
    (64, 48, 64, 67), (67, 48, 64, 67), (68, 49, 68, 71),  # width 4
    (1000, 111, 992, 1023),  # 2**9 <= 1000 < 2**10: shift 5, 1000 >> 5 = 31, 5 * 16 + 31
    (1024, 112, 1024, 1087),  # shift 6, mantissa 16: 6 * 16 + 16
    (2**62, 58 * 16 + 16, 2**62, 2**62 + 2**58 - 1),
])
def test_bucket_of_hand_computed(value, index, low, high):
    """HdrHistogram's layout with 32 sub-buckets: a value v >= 32 with top bit k goes to
    bucket (k - 4) * 16 + (v >> (k - 4)), which spans 2**(k-4) values from (v >> (k-4)) <<
    (k-4)."""
    assert L.bucket_of(value) == index
    assert L.bucket_low(index) == low and L.bucket_high(index) == high


def test_buckets_tile_the_values_with_at_most_a_sixteenth_of_error():
    """Consecutive buckets meet (high + 1 = next low) and each is at most 1/16 of its low."""
    for index in range(1, L.NBUCKETS - 1):
        assert L.bucket_high(index) + 1 == L.bucket_low(index + 1)
        low = L.bucket_low(index)
        assert (L.bucket_high(index) - low + 1) * 16 <= max(16, low)
    assert L.bucket_of(2**63 - 1) < L.NBUCKETS


def test_record_and_sparse_result():
    """Values 5, 40, 41, 1000 (ns): buckets 5 (low 5), 36 (40 and 41: low 40), 111 (low 992)."""
    hist = L.new_histograms()
    for value in (5, 40, 41, 1000):
        L.record(hist, L.MINOR, value)
    out = L.as_result(hist)
    assert out["minor"] == {"count": 4, "sum_ns": 1086, "min_ns": 5, "max_ns": 1000,
                            "buckets": [[5, 1], [40, 2], [992, 1]]}
    assert out["major"] == {"count": 0, "sum_ns": 0, "min_ns": 0, "max_ns": 0, "buckets": []}
    xs, ys = L.cdf_points(out["minor"])
    assert xs == [5, 41, 1000] and ys == [0.25, 0.75, 1.0]
    assert L.percentile(out["minor"], 0.5) == 41 and L.percentile(out["minor"], 0.99) == 1000


def overcommit(mode: str, engine: str) -> dict:
    return {
        "sim": {"seed": 5, "duration": "50ms", "engine": engine, "sample": 0},
        "guest": {"vcpus": 2, "memory": "64MiB"},
        "hypervisor": {"enabled": True, "host_cpus": 2, "memory_limit": "16MiB",
                       "async_pf": mode, "swap": {"device": "nvme"}},
        "processes": [
            {"name": "w", "vsegs": [{"name": "a", "type": "anon", "size": "32MiB"}],
             "threads": [{"count": 2, "steps": [
                 {"op": "access", "vseg": "a", "pattern": "uniform", "duration": "10s",
                  "write_ratio": 1.0, "think": "2us"}]}]},
            {"name": "c", "threads": [{"count": 2, "steps": [
                {"op": "compute", "duration": "10s", "unit": "1us"}]}]},
        ],
    }


@pytest.mark.parametrize("mode", ["kvm", "s390"])
def test_engines_record_the_same_histograms(mode):
    compiled = run(overcommit(mode, "compiled")).to_dict()["vms"]["vm0"]
    reference = run(overcommit(mode, "reference")).to_dict()["vms"]["vm0"]
    assert compiled["latency"] == reference["latency"]
    lat = compiled["latency"]
    # every minor fault has its latency; async round trips only for tasks that slept
    minor = sum(t["min_flt"] for t in compiled["tasks"].values())
    assert lat["minor"]["count"] == minor
    assert 0 < lat["async"]["count"] <= compiled["async_pf"]["not_present"]
    # most round trips last at least the swap-in they wait for (NVMe: 10 us latency); an
    # s390 completion may come in the same entry as its initial interrupt (0 ns)
    assert L.percentile(lat["async"], 0.5) >= 10_000


def test_minor_fault_latency_is_its_cost():
    """Without a host, a first-touch write fault costs entry (300 ns) + anon_page (1500 ns):
    2 us each, every one of the 256 in the same bucket (1800 ns: [1792, 1919])."""
    data = {"guest": {"vcpus": 1, "memory": "64MiB"},
            "processes": [{"name": "p", "vsegs": [{"name": "h", "type": "anon", "size": "1MiB"}],
                           "threads": [{"stack": False, "steps": [
                               {"op": "access", "vseg": "h", "pattern": "sequential",
                                "stride": "4KiB", "accesses": 256, "write_ratio": 1.0}]}]}]}
    minor = run(data).to_dict()["vms"]["vm0"]["latency"]["minor"]
    assert minor == {"count": 256, "sum_ns": 256 * 1800, "min_ns": 1800, "max_ns": 1800,
                     "buckets": [[1792, 256]]}


def test_major_faults_wait_for_the_disk():
    """A cold sequential read of a file: each major fault lasts at least the disk's latency."""
    data = {"guest": {"vcpus": 1, "memory": "64MiB"},
            "processes": [{"name": "p", "vsegs": [{"name": "f", "type": "file", "size": "1MiB",
                                                   "cached": False}],
                           "threads": [{"stack": False, "steps": [
                               {"op": "access", "vseg": "f", "pattern": "sequential",
                                "stride": "4KiB", "accesses": 256}]}]}]}
    vm = run(data).to_dict()["vms"]["vm0"]
    major = vm["latency"]["major"]
    assert major["count"] == vm["processes"]["p"]["maj_flt"] > 0
    assert major["min_ns"] >= 100_000  # guest.disk.latency
    assert np.isclose(sum(c for _low, c in major["buckets"]), major["count"])
