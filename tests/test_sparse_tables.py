"""Sparse page tables: leaves of 512 slots allocated on first use, address spaces of terabytes
that touch a few pages, and page numbers past 2**31 (an int32 slot or page would wrap).

The expected values come from an obvious reference (a loop over the VMAs for which pages a VMA
reserves; a dict of page -> slot for stability) and from hand counts (distinct pages written,
distinct 2 MiB leaves), never from the tables under test."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import run_dict, simulation
from hypothesis import given, settings
from hypothesis import strategies as st

from pfsim.guest.mm import LEAF, AddressSpace, Vma
from pfsim.machine.pte import PTE_NOVMA, PTE_PRESENT, VM_ANON, VM_READ, VM_WRITE

TIB = 1 << 40
GIB = 1 << 30


def _vma(name: str, start: int, end: int, reserve: int | None = None, vtype: str = "anon") -> Vma:
    return Vma(name=name, type=vtype, start=start, end=end,
               reserve_start=start if reserve is None else reserve, readable=True,
               writable=True, executable=False, shared=False, file=None, pgoff=0, stack_max=0)


def _space() -> tuple[AddressSpace, list[Vma]]:
    """Four VMAs: a 3-page heap, a 4 GiB and a 1 TiB arena (two and three directory levels),
    and a stack of 2 pages reserving 1 MiB."""
    mm = AddressSpace()
    vmas = [_vma("arena", 0x100_0000_0000, 0x100_0000_0000 + TIB),
            _vma("mid", 0x300_0000_0000, 0x300_0000_0000 + 4 * GIB),
            _vma("heap", 0x40_0000, 0x40_3000),
            _vma("stack", 0x7FFF_FFFF_E000, 0x8000_0000_0000, reserve=0x7FFF_FFF0_0000,
                 vtype="stack")]
    for vma in vmas:
        mm.add_vma(vma)
    return mm, vmas


def _reserving(vmas: list[Vma], vpn: int) -> Vma | None:
    """The reference: the VMA whose reserved range holds page ``vpn``, by a plain loop."""
    for vma in vmas:
        if vma.reserve_start >> 12 <= vpn < vma.end >> 12:
            return vma
    return None


def test_adding_vmas_allocates_nothing():
    """Sixteen 64 GiB VMAs (the quadratic re-concatenation of the dense tables): no slot."""
    mm = AddressSpace()
    for k in range(16):
        base = 0x100_0000_0000 + k * 65 * GIB
        mm.add_vma(_vma(f"v{k}", base, base + 64 * GIB))
    assert mm.nleaves == 0 and len(mm.state) == 0


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from([
    0x400, 0x401, 0x402, 0x403, 0x3FF,                     # heap and around it
    0x100_0000_0 - 1, 0x100_0000_0, 0x100_0000_0 + 511, 0x100_0000_0 + 512,  # arena start
    0x100_0000_0 + (TIB >> 12) - 1, 0x100_0000_0 + (TIB >> 12),              # arena end
    0x100_0000_0 + (1 << 27), 0x100_0000_0 + (1 << 27) - 1,                  # 512 GiB in
    0x300_0000_0, 0x300_0000_0 + (1 << 20) - 1, 0x300_0000_0 + (1 << 18) + 5,  # the 4 GiB one
    0x7FFF_FFF0_0 - 1, 0x7FFF_FFF0_0, 0x7FFF_FFFF_D, 0x7FFF_FFFF_E, 0x7FFF_FFFF_F]),
    min_size=1, max_size=40), st.integers(1, 4))
def test_slots_match_the_reference(vpns, chunks):
    """Translated in a few chunks: -1 exactly outside every reservation, one distinct slot per
    page that stays the same across chunks and equals ``vma.slot``, and a fresh leaf's pages
    below the stack's start marked outside the VMA."""
    mm, vmas = _space()
    vpns = np.array(vpns, dtype=np.int64)
    seen: dict[int, int] = {}
    for part in np.array_split(vpns, chunks):
        slots = mm.slots_of(part)
        assert slots.dtype == np.int64
        for vpn, slot in zip(part.tolist(), slots.tolist(), strict=True):
            owner = _reserving(vmas, vpn)
            if owner is None:
                assert slot == -1
                continue
            assert seen.setdefault(vpn, slot) == slot
            assert owner.slot(vpn << 12) == slot
            below = vpn < owner.start >> 12
            assert bool(mm.state[slot] & PTE_NOVMA) == below
            assert mm.vflags[slot] == VM_ANON | VM_WRITE | VM_READ
    assert len(set(seen.values())) == len(seen)
    leaves = {(_reserving(vmas, v).name, (v - (_reserving(vmas, v).reserve_start >> 12)) // LEAF)
              for v in seen}
    assert mm.nleaves == len(leaves)  # one leaf per distinct (VMA, 2 MiB of it) touched


def test_find_vma_is_the_first_vma_ending_above():
    mm, vmas = _space()
    heap, arena, mid, stack = sorted(vmas, key=lambda v: v.start)
    assert mm.find_vma(0) is heap and mm.find_vma(0x40_2FFF) is heap
    assert mm.find_vma(0x40_3000) is arena and mm.find_vma(arena.end - 1) is arena
    assert mm.find_vma(arena.end) is mid and mm.find_vma(mid.end) is stack
    assert mm.find_vma(1 << 47) is None


def _sparse(size: str, offsets: list[int], memory: str = "64MiB", engine: str | None = None
            ) -> dict:
    """One thread writes one page at each of ``offsets`` of a ``size`` anon vseg; with an
    engine, under a hypervisor (the compiled core runs only there)."""
    steps = [{"op": "access", "vseg": "big", "offset": off, "accesses": 1, "pattern": "sequential",
              "write_ratio": 1.0} for off in offsets]
    extra = {} if engine is None else {"hypervisor": {"enabled": True}}
    return {"sim": {} if engine is None else {"engine": engine}, **extra,
            "guest": {"vcpus": 1, "memory": memory},
            "processes": [{"name": "p", "vsegs": [{"name": "big", "type": "anon", "size": size}],
                           "threads": [{"stack": False, "steps": steps}]}]}


def test_a_100tib_vseg_in_a_64mib_guest_touching_four_pages():
    """mmap overcommit: the vseg is 1.6 million times the guest; four written pages are four
    faults, four frames, and three leaves of the page table (two pages share a leaf), seen
    before the process exits (exit frees them)."""
    offsets = [0, 4096, 50 * TIB, 100 * TIB - 4096]
    data = _sparse("100TiB", offsets)
    data["processes"][0]["threads"][0]["steps"].append({"op": "sleep", "duration": "1s"})
    data["sim"]["duration"] = "100ms"
    sim = simulation(data)
    result = sim.run()
    assert result["vms"]["vm0"]["processes"]["p"]["min_flt"] == 4
    assert result["vms"]["vm0"]["memory"]["frames_allocated_total"] == 4
    mm = sim.kernel.processes[0].mm
    assert mm.nleaves == 3 and len(mm.state) <= 4 * LEAF


@pytest.mark.parametrize("engine_name", ["reference", "compiled"])
def test_pages_past_2_to_the_31_do_not_alias(engine_name):
    """A 16 TiB vseg has 2**32 pages: pages 2**31 and 2**32 - 1 from its start (past 8 TiB)
    get their own frames, distinct from pages 0 and 2**31 - 1 (an int32 page number or slot
    would wrap 2**31 onto -2**31 and fault or alias)."""
    pages = [0, (1 << 31) - 1, 1 << 31, (1 << 32) - 1]
    data = _sparse("16TiB", [p << 12 for p in pages], engine=engine_name)
    data["sim"]["duration"] = "1s"  # the process sleeps on, its pages mapped
    data["processes"][0]["threads"][0]["steps"].append({"op": "sleep", "duration": "10s"})
    sim = simulation(data)
    result = sim.run()
    assert sim.engine_note == ("compiled core" if engine_name == "compiled" else None)
    assert result["vms"]["vm0"]["processes"]["p"]["min_flt"] == 4
    mm = sim.kernel.processes[0].mm
    vma = next(v for v in mm.vmas if v.name == "big")
    slots = [mm.slot_of(vma.start + (p << 12)) for p in pages]
    frames = [int(mm.gfn[s]) for s in slots]
    assert len(set(slots)) == 4 and len(set(frames)) == 4
    assert all(mm.state[s] & PTE_PRESENT for s in slots)


def test_a_vseg_beyond_the_user_address_space_is_refused():
    from pfsim.config import load_config
    from pfsim.errors import ConfigError

    with pytest.raises(ConfigError, match=r"vsegs\[0\].size: .* larger than the user address"):
        load_config(_sparse("129TiB", [0]))
    # two 100 TiB vsegs laid out from the mmap base do not fit in 128 TiB
    data = _sparse("100TiB", [0])
    data["processes"][0]["vsegs"].append({"name": "more", "type": "anon", "size": "100TiB"})
    with pytest.raises(ConfigError, match=r"vsegs\[1\].size: vseg 'more' ends at .* above the user"):
        run_dict(data)


def test_sequential_first_touch_counts_on_sparse_tables():
    """2000 pages written in order across 4 leaves of a 1 TiB vseg: 2000 faults and frames on
    both engines; the process exits and every frame is free again."""
    for engine_name in ("reference", "compiled"):
        data = _sparse("1TiB", [0], engine=engine_name)
        data["processes"][0]["threads"][0]["steps"] = [
            {"op": "access", "vseg": "big", "pattern": "sequential", "stride": "4KiB",
             "accesses": 2000, "write_ratio": 1.0}]
        sim = simulation(data)
        result = sim.run()
        assert sim.engine_note == ("compiled core" if engine_name == "compiled" else None)
        assert result["vms"]["vm0"]["processes"]["p"]["min_flt"] == 2000
        memory = result["vms"]["vm0"]["memory"]
        assert memory["frames_allocated_total"] == 2000
        assert memory["free_frames"] == sim.kernel.mem.nframes - max(
            1, sim.config.guest.mm.kernel_reserved // 4096)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.one_of(st.just(-1), st.integers(0, 30)), max_size=80))
def test_frames_come_out_as_from_a_full_free_stack(ops):
    """The watermark allocator against the obvious one: a list holding every user frame,
    highest at the bottom, popped from the top and pushed on free.  ``-1`` allocates, ``k``
    frees the k-th frame still held (if any)."""
    from pfsim.guest.memory import PhysMem
    from pfsim.machine.frames import ANON

    mem = PhysMem(24, reserved=3)
    stack = list(range(23, 2, -1))
    held: list[int] = []
    ever: set[int] = set()
    for op in ops:
        if op < 0:
            want = stack.pop() if stack else -1
            got = mem.alloc(ANON)
            assert got == want
            if got >= 0:
                held.append(got)
                ever.add(got)
        elif held:
            frame = held.pop(op % len(held))
            mem.put(frame)
            stack.append(frame)
        assert mem.free_frames == len(stack)
        mem.check()
    assert mem.user_frames == len(held)
    assert mem.watermark == 3 + len(ever)  # frames are first used lowest first


def test_a_1tib_guest_touches_only_its_used_frames():
    """A 1 TiB guest (2**28 frames) writing 1000 pages: its frame arrays are numpy zeros the
    host maps lazily, so the peak RSS of the run is far below the 1.3 GiB a resident
    refcount + kind + int32 free stack would take; the end-of-run check reads 1000-odd frames."""
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    data = _sparse("1GiB", [0], memory="1TiB")
    data["processes"][0]["threads"][0]["steps"] = [
        {"op": "access", "vseg": "big", "pattern": "sequential", "stride": "4KiB",
         "accesses": 1000, "write_ratio": 1.0}]
    sim = simulation(data)
    result = sim.run()
    assert result["vms"]["vm0"]["processes"]["p"]["min_flt"] == 1000
    assert sim.kernel.mem.watermark == sim.config.guest.mm.kernel_reserved // 4096 + 1000
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024
    assert grown < 256 << 20


def test_put_many_in_pieces_is_put_after_put(monkeypatch):
    """A teardown longer than a batch (batches of 3 here) frees the same frames in the same
    order as one ``put`` after another."""
    from pfsim.guest import memory
    from pfsim.machine.frames import ANON

    monkeypatch.setattr(memory, "PUT_BATCH", 3)
    rng = np.random.default_rng(5)
    a, b = memory.PhysMem(40, reserved=2), memory.PhysMem(40, reserved=2)
    for mem in (a, b):
        for _ in range(30):
            mem.alloc(ANON)
        mem.refcount[2:32] = 3  # three mappings each
    gfns = np.repeat(np.arange(2, 32), 3)
    rng.shuffle(gfns)
    for g in gfns.tolist():
        a.put(g)
    assert b.put_many(gfns) == 90
    assert np.array_equal(a.nfree, b.nfree) and np.array_equal(a.kind, b.kind)
    assert np.array_equal(a.free_stack[:30], b.free_stack[:30])
