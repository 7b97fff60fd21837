"""x86 fault entry and mm scenarios of docs/scenarios.md (Linux 20, 22, 25, 26), fault counts."""

from __future__ import annotations

from helpers import BASE, run_dict, scenario, simulation

from pfsim.machine.pte import PTE_ACCESSED, PTE_PRESENT, PTE_WRITE, PTE_ZERO
from pfsim.units import PAGE_SIZE


def touch(addr: int, write: bool = False, **kw):
    return {"op": "touch", "addr": addr, "write": write, **kw}


def test_anonymous_read_then_write_scenario_20(anon_vseg):
    """Scenario 20: read then write one untouched anonymous page.

    Hand count: the read maps the shared zero page (minor fault 1, no frame); the write hits a
    present read-only PTE → do_wp_page on the zero page → one new zeroed page (minor fault 2,
    no copy).  So min_flt = 2, maj_flt = 0, one frame allocated, no COW copy or reuse.
    """
    nap = {"op": "sleep", "duration": "1ms"}
    data = scenario([touch(BASE), nap, touch(BASE, write=True), nap], [anon_vseg])
    sim = simulation(data)
    sim.sim.run(until_ns=500_000)  # between the read and the write
    mm = sim.kernel.processes[0].mm
    slot = mm.slot_of(BASE)
    assert mm.state[slot] & PTE_ZERO and mm.state[slot] & PTE_PRESENT
    assert not mm.state[slot] & PTE_WRITE
    assert mm.gfn[slot] == 0 and sim.kernel.mem.allocated_total == 0
    sim.sim.run(until_ns=1_600_000)  # after the write, before exit
    assert mm.state[slot] & PTE_WRITE and not mm.state[slot] & PTE_ZERO
    assert mm.gfn[slot] > 0 and sim.kernel.mem.allocated_total == 1
    result = sim.run()
    p = result["vms"]["vm0"]["processes"]["p"]
    assert (p["min_flt"], p["maj_flt"], p["cow_copies"], p["cow_reuses"]) == (2, 0, 0, 0)
    assert result["vms"]["vm0"]["memory"]["frames_allocated_total"] == 1


def test_first_touch_writes_give_one_minor_fault_per_page(anon_vseg):
    """Writing N distinct pages once each: exactly N minor faults and N frames."""
    n = 200
    step = {"op": "access", "vseg": "heap", "pattern": "sequential", "stride": "4KiB",
            "accesses": n, "write_ratio": 1.0}
    result = run_dict(scenario([step], [anon_vseg]))
    p = result.processes["p"]
    assert (p["min_flt"], p["maj_flt"], p["accesses"]) == (n, 0, n)
    assert result.vm["memory"]["frames_allocated_total"] == n


def test_read_then_write_gives_two_minor_faults_per_page(anon_vseg):
    """Reading N pages (zero page, N faults, no frame) then writing them (N more faults, N frames)."""
    n = 150
    read = {"op": "access", "vseg": "heap", "pattern": "sequential", "stride": "4KiB",
            "accesses": n, "write_ratio": 0.0}
    write = dict(read, write_ratio=1.0)
    result = run_dict(scenario([read, write], [anon_vseg]))
    p = result.processes["p"]
    assert (p["min_flt"], p["maj_flt"]) == (2 * n, 0)
    assert result.vm["memory"]["frames_allocated_total"] == n


def test_cached_file_read_faults_once_per_fault_around_window_scenario_22():
    """Scenario 22 (cached): sequential reads of 64 cached pages of a 64 KiB-aligned file vseg.

    fault_around = 16 pages: the fault on page 0 maps pages 0-15, so pages 1-15 never fault;
    the next fault is page 16, then 32, then 48: 64 / 16 = 4 minor faults, no I/O.
    """
    vseg = {"name": "f", "type": "file", "size": "256KiB", "base": BASE, "cached": True}
    step = {"op": "access", "vseg": "f", "pattern": "sequential", "stride": "4KiB", "accesses": 64}
    result = run_dict(scenario([step], [vseg]))
    p = result.processes["p"]
    assert (p["min_flt"], p["maj_flt"]) == (4, 0)
    assert result.vm["memory"]["disk_reads"] == 0


def test_fault_around_maps_its_pages_young():
    """x86 maps fault-around pages young: ``do_set_pte`` makes a prefaulted PTE old only where
    ``arch_wants_old_prefaulted_pte()`` (arm64), and x86's ``vm_page_prot`` holds _PAGE_ACCESSED.
    One read of page 0 of a cached 64 KiB-aligned file vseg maps pages 0-15, all accessed,
    though only page 0 was read; page 16 stays unmapped."""
    vseg = {"name": "f", "type": "file", "size": "256KiB", "base": BASE, "cached": True}
    data = scenario([touch(BASE), {"op": "sleep", "duration": "1ms"}], [vseg])
    sim = simulation(data)
    sim.sim.run(until_ns=500_000)  # after the read, before exit
    mm = sim.kernel.processes[0].mm
    states = [int(mm.state[mm.slot_of(BASE + k * PAGE_SIZE)]) for k in range(17)]
    assert all(st & PTE_PRESENT and st & PTE_ACCESSED for st in states[:16])
    assert not states[16] & PTE_PRESENT


def test_uncached_file_read_is_one_major_fault_with_read_around_scenario_22():
    """Scenario 22 (uncached): 32 pages read sequentially from an uncached 32-page file.

    Fault on page 0: page-cache miss → read-around of ra_pages = 32 pages starting at
    max(0, 0 - 16) = 0, one disk request, page 0 + 32 - 32/4 = 24 marked PG_readahead; the
    task sleeps (RETRY, uncounted) and retries with FAULT_FLAG_TRIED (the first attempt
    returned VM_FAULT_MAJOR) → 1 major fault; fault-around
    maps pages 0-15.  Page 16 is cached → minor fault; fault-around maps 17-31 except the
    marked page 24.  Page 24 → minor fault, async readahead of the next window, which lies
    past the end of the file (no request).  Totals: maj 1, min 2, 1 request of 32 pages.
    """
    vseg = {"name": "f", "type": "file", "size": "128KiB", "base": BASE, "cached": False}
    step = {"op": "access", "vseg": "f", "pattern": "sequential", "stride": "4KiB", "accesses": 32}
    result = run_dict(scenario([step], [vseg]))
    p = result.processes["p"]
    assert (p["min_flt"], p["maj_flt"]) == (2, 1)
    memory = result.vm["memory"]
    assert (memory["disk_reads"], memory["disk_pages_read"]) == (1, 32)
    # the task slept for the I/O: latency 100us + 32 pages at 1 GiB/s
    assert result["sim_time_ns"] > 100_000


def test_sequential_mmap_read_keeps_ahead_with_async_readahead():
    """128 pages read sequentially (one access per page, 40 us apart) from an uncached file,
    with large folios (the default).

    Hand trace, Linux 6.18 (mm/filemap.c ``do_sync_mmap_readahead``, ``filemap_map_pages``;
    mm/readahead.c ``page_cache_async_ra``, ``page_cache_ra_order``), ra_pages = 32,
    fault-around 16, a 32-page read taking 100 us + 128 KiB at 1 GiB/s = 222 us:

    * page 0 misses: read-around start max(0, 0 - 16) = 0, size 32, async 8, order 0: pages
      0-31, PG_readahead on 0 + 32 - 8 = 24; major.  Fault-around maps 0-15.
    * 16: minor, maps 16-23 and 25-31 (the marked 24 is skipped).
    * 24: minor; async window: expected = 32 - 8 = 24 = index, start 32, size 32, order
      0 + 2 = 2, mark 32 + 32 - 32 = 32: eight order-2 folios 32-63, the one at 32 marked.
    * 32 (read done at ~1.4 ms, reached at ~1.5 ms): minor, next window [64, 96) of order 4
      (two 16-page folios, 64 marked); the retry maps 32-47.  48: minor, maps 48-63.
    * 64: minor, window [96, 128) of order min(6, ilog2(32)) = 5 (one folio, marked); the
      retry maps the whole 16-page folio 64-79.  80: minor, maps folio 80-95.
    * 96: minor, next window starts at 128, past the end; the retry maps folio 96-127 whole.

    Totals: 1 major, 7 minor, 4 disk requests of 32 pages.
    """
    vseg = {"name": "f", "type": "file", "size": "512KiB", "base": BASE, "cached": False}
    step = {"op": "access", "vseg": "f", "pattern": "sequential", "stride": "4KiB",
            "accesses": 128, "think": "40us"}
    result = run_dict(scenario([step], [vseg]))
    p = result.processes["p"]
    assert (p["min_flt"], p["maj_flt"]) == (7, 1)
    assert (result.vm["memory"]["disk_reads"], result.vm["memory"]["disk_pages_read"]) == (4, 128)


def test_sequential_mmap_read_with_order0_pages_marks_the_window_start():
    """The same read with ``guest.pagecache.large_folios = false``.

    Without large folios ``page_cache_ra_order`` falls back to ``page_cache_ra_unbounded``,
    which marks page ``nr_to_read - lookahead_size`` of the window: an asynchronous window has
    async_size = size, so its first page is marked (not 8 before its end).  Faults: 0 (major,
    window [0, 32) marked 24), 16, 24 (→ [32, 64), mark 32), 32 (→ [64, 96), mark 64; the
    retry maps 32-47), 48, 64 (→ [96, 128), mark 96), 80, 96 (→ past the end), 112: 1 major,
    8 minor, 4 requests.
    """
    vseg = {"name": "f", "type": "file", "size": "512KiB", "base": BASE, "cached": False}
    step = {"op": "access", "vseg": "f", "pattern": "sequential", "stride": "4KiB",
            "accesses": 128, "think": "40us"}
    result = run_dict(scenario([step], [vseg], guest={"pagecache": {"large_folios": False}}))
    p = result.processes["p"]
    assert (p["min_flt"], p["maj_flt"]) == (8, 1)
    assert (result.vm["memory"]["disk_reads"], result.vm["memory"]["disk_pages_read"]) == (4, 128)


def test_write_to_read_only_vma_is_accerr_without_fault_counts_scenario_25():
    """Scenario 25: a store to a read-only VMA → SIGSEGV / SEGV_ACCERR; access_error comes
    before handle_mm_fault, so min, maj and PGFAULT all stay 0."""
    vseg = {"name": "ro", "type": "anon", "size": "64KiB", "base": BASE, "prot": "r"}
    result = run_dict(scenario([touch(BASE, write=True)], [vseg]))
    p = result.processes["p"]
    assert (p["segv"], p["min_flt"], p["maj_flt"], p["pgfault"]) == (1, 0, 0, 0)
    assert p["exit"] == "segv" and p["signal"]["si_code"] == "SEGV_ACCERR"


def test_unmapped_user_address_is_maperr_scenario_25():
    """Scenario 25: a load from an address in no VMA → SIGSEGV / SEGV_MAPERR."""
    result = run_dict(scenario([touch(0x5000_0000)], [{"name": "h", "type": "anon", "size": "4KiB"}]))
    p = result.processes["p"]
    assert p["segv"] == 1 and p["signal"]["si_code"] == "SEGV_MAPERR"
    assert p["signal"]["address"] == hex(0x5000_0000)


def test_copy_from_user_on_unmapped_address_is_efault_not_a_signal_scenario_25():
    """Scenario 25: write(2) from an unmapped buffer: the uaccess faults in kernel mode, the
    exception table fixes it up, the call returns -EFAULT; no signal, no fault counted, the
    process runs on to its next step (a compute step of 10 units)."""
    steps = [{"op": "syscall", "kind": "write", "addr": 0x6000_0000, "length": "8KiB", "repeat": 3},
             {"op": "compute", "units": 10}]
    result = run_dict(scenario(steps, [{"name": "h", "type": "anon", "size": "4KiB"}]))
    p = result.processes["p"]
    assert (p["segv"], p["efault"], p["min_flt"], p["maj_flt"]) == (0, 3, 0, 0)
    assert p["exit"] == "exited" and p["compute_units"] == 10


def test_read_syscall_faults_in_user_buffer_in_kernel_mode():
    """read(2) into an untouched 4-page anonymous buffer, twice: the kernel's copy_to_user
    write-faults each page once (4 minor faults charged to the task), the second call faults
    nothing; 8 page copies in all."""
    steps = [{"op": "syscall", "kind": "read", "vseg": "h", "length": "16KiB", "repeat": 2}]
    result = run_dict(scenario(steps, [{"name": "h", "type": "anon", "size": "64KiB"}]))
    p = result.processes["p"]
    assert (p["min_flt"], p["maj_flt"], p["accesses"], p["efault"]) == (4, 0, 8, 0)


def test_stack_growth_within_rlimit_and_refusals_scenario_26():
    """Scenario 26: stack top T, 16 KiB mapped, rlimit 256 KiB, guard gap 64 KiB, and an anon
    vseg ending exactly at T - 256 KiB.

    * touch T - 128 KiB: below the stack, within rlimit, 128 KiB above the lower vseg
      (≥ the 64 KiB gap) → VMA extended, one minor fault, no signal;
    * a second process touches T - 224 KiB: only 32 KiB above the lower vseg → guard gap
      violated → SIGSEGV / SEGV_MAPERR;
    * a third process, with the stack alone, touches T - 260 KiB: beyond the rlimit →
      SIGSEGV / SEGV_MAPERR.
    """
    top = 0x7000_0000_0000
    vsegs = [{"name": "stk", "type": "stack", "size": "16KiB", "base": top, "stack_max": "256KiB"},
             {"name": "low", "type": "anon", "size": "64KiB", "base": top - (256 << 10) - (64 << 10)}]
    procs = []
    for name, addr, layout in (("ok", top - (128 << 10), vsegs), ("gap", top - (224 << 10), vsegs),
                               ("rlimit", top - (260 << 10), vsegs[:1])):
        procs.append({"name": name, "vsegs": layout,
                      "threads": [{"stack": False, "steps": [touch(addr)]}]})
    result = run_dict(scenario(processes=procs, guest={"mm": {"stack_guard_gap": "64KiB"}}))
    ok, gap, rlimit = (result.processes[n] for n in ("ok", "gap", "rlimit"))
    assert (ok["min_flt"], ok["segv"], ok["exit"]) == (1, 0, "exited")
    assert (gap["segv"], gap["signal"]["si_code"], gap["min_flt"]) == (1, "SEGV_MAPERR", 0)
    assert (rlimit["segv"], rlimit["signal"]["si_code"]) == (1, "SEGV_MAPERR")


def test_user_access_to_kernel_address_is_sigsegv():
    """A user-mode load from the kernel direct map → do_kern_addr_fault → SIGSEGV (MAPERR)."""
    result = run_dict(scenario([touch(0xFFFF888000001000)], [{"name": "h", "type": "anon", "size": "4KiB"}]))
    p = result.processes["p"]
    assert p["segv"] == 1 and p["signal"]["si_code"] == "SEGV_MAPERR"
    assert result.outcome == "ok"


def test_kernel_fault_without_fixup_panics_the_vm_with_a_record():
    """A kernel-mode access to an unmapped kernel address with no exception-table entry →
    oops → the VM's outcome is kernel_panic and the panic record names the address; another
    process that had work left never finishes it."""
    bad = 0xFFFFC90000000000  # vmalloc area, nothing mapped
    procs = [
        {"name": "bug", "threads": [{"steps": [{"op": "compute", "units": 5},
                                               touch(bad, mode="kernel", fixup=False)]}]},
        {"name": "other", "threads": [{"steps": [{"op": "compute", "units": 1_000_000}]}]},
    ]
    result = run_dict(scenario(processes=procs, guest={"vcpus": 2}))
    assert result.outcome == "kernel_panic"
    panic = result.vm["panic"]
    assert panic["address"] == hex(bad) and "paging request" in panic["reason"]
    assert result.processes["other"]["work"] < 1_000_000


def test_kernel_fault_with_fixup_returns_efault():
    """The same kernel access with an exception-table entry: fixed up, no panic, no signal."""
    result = run_dict(scenario([touch(0xFFFFC90000000000, mode="kernel", fixup=True)]))
    assert result.outcome == "ok"
    assert result.processes["p"]["efault"] == 1 and result.processes["p"]["segv"] == 0


def test_smap_violation_oopses():
    """A kernel access to a *mapped* user page outside a uaccess helper (AC clear) with SMAP
    on → oops → panic; with SMAP off the same access succeeds."""
    vseg = {"name": "h", "type": "anon", "size": "4KiB", "base": BASE}
    steps = [touch(BASE, write=True), touch(BASE, mode="kernel", fixup=False)]
    assert run_dict(scenario(steps, [vseg])).outcome == "kernel_panic"
    result = run_dict(scenario(steps, [vseg], guest={"mm": {"smap": False}}))
    assert result.outcome == "ok" and result.processes["p"]["min_flt"] == 1


def test_instruction_fetch_from_non_exec_vma_faults_then_accerr():
    """x86 access_error does not test VM_EXEC on a not-present fault: the first fetch from an
    untouched RW anonymous page maps it (zero page, NX) as a minor fault; the refetch faults
    with PROT|INSTR → read+PROT is an access error → SIGSEGV / SEGV_ACCERR."""
    vseg = {"name": "h", "type": "anon", "size": "8KiB", "base": BASE}
    step = {"op": "access", "vseg": "h", "accesses": 4, "fetch": True, "pattern": "sequential"}
    p = run_dict(scenario([step], [vseg])).processes["p"]
    assert (p["min_flt"], p["segv"], p["signal"]["si_code"]) == (1, 1, "SEGV_ACCERR")


def test_code_vseg_fetches_are_file_backed_and_executable():
    """Fetching 32 pages of a cached CODE vseg: fault-around maps 16 pages per fault → 2 minor
    faults, no signal."""
    vseg = {"name": "text", "type": "code", "size": "128KiB", "base": 0x400000}
    step = {"op": "access", "vseg": "text", "accesses": 32, "fetch": True, "pattern": "sequential",
            "stride": "4KiB"}
    p = run_dict(scenario([step], [vseg])).processes["p"]
    assert (p["min_flt"], p["maj_flt"], p["segv"]) == (2, 0, 0)


def test_private_file_write_copies_and_shared_file_write_does_not():
    """DATA (private file mapping): a read maps the page-cache page read-only (1 minor), the
    write then copies it (1 minor, cow_copies 1).  FILE (shared mapping): read maps it
    read-only for dirty tracking (1 minor), the write makes it writable in place (1 minor,
    no copy)."""
    for kind, copies in (("data", 1), ("file", 0)):
        vseg = {"name": "d", "type": kind, "size": "4KiB", "base": BASE}
        p = run_dict(scenario([touch(BASE), touch(BASE, write=True)], [vseg])).processes["p"]
        assert (p["min_flt"], p["cow_copies"]) == (2, copies), kind


def test_segv_kills_one_process_while_another_completes():
    """A process with two threads: one touches an unmapped address. Both threads die
    (SIGSEGV kills the process); the other process finishes all its 100k accesses."""
    procs = [
        {"name": "bad", "vsegs": [{"name": "h", "type": "anon", "size": "64KiB"}],
         "threads": [{"steps": [{"op": "compute", "units": 3}, touch(0x1000)]},
                     {"steps": [{"op": "compute", "units": 10_000_000}]}]},
        {"name": "good", "vsegs": [{"name": "h", "type": "anon", "size": "1MiB"}],
         "threads": [{"steps": [{"op": "access", "vseg": "h", "accesses": 100_000}]}]},
    ]
    result = run_dict(scenario(processes=procs, guest={"vcpus": 2}))
    bad, good = result.processes["bad"], result.processes["good"]
    assert bad["exit"] == "segv" and bad["segv"] == 1
    assert all(result.tasks[f"bad/{i}"]["state"] == "dead" for i in (0, 1))
    assert result.tasks["bad/1"]["compute_units"] < 10_000_000
    assert good["exit"] == "exited" and good["accesses"] == 100_000


def test_out_of_memory_kills_the_largest_process():
    """Guest memory 16 MiB with 8 MiB reserved → 2048 user frames.  'hog' writes 3000 distinct
    pages (more than exist), 'small' writes 100 pages first.  When frames run out, the OOM
    killer picks the largest RSS (hog), kills it, and 'small' completes.  The frames below the
    min watermark (int_sqrt(16 x 8192 KiB) = 362 KiB = 90 pages) are kept for atomic
    allocations, and nothing here is reclaimable (no guest swap), so the hog gets
    2048 - 100 - 90 pages."""
    procs = [
        {"name": "small", "vsegs": [{"name": "h", "type": "anon", "size": "1MiB"}],
         "threads": [{"stack": False, "steps": [
             {"op": "access", "vseg": "h", "pattern": "sequential", "stride": "4KiB",
              "accesses": 100, "write_ratio": 1.0},
             {"op": "compute", "units": 20_000}]}]},
        {"name": "hog", "start": "50us", "vsegs": [{"name": "h", "type": "anon", "size": "12MiB"}],
         "threads": [{"stack": False, "steps": [
             {"op": "access", "vseg": "h", "pattern": "sequential", "stride": "4KiB",
              "accesses": 3000, "write_ratio": 1.0}]}]},
    ]
    result = run_dict(scenario(processes=procs, guest={"memory": "16MiB", "vcpus": 2}))
    assert result.processes["hog"]["exit"] == "oom"
    assert result.processes["small"]["exit"] == "exited"
    assert result.vm["memory"]["oom_kills"] == 1
    assert result.processes["hog"]["min_flt"] == 2048 - 100 - 90
    assert result.vm["memory"]["free_frames"] == 2048  # everything returned at exit


def test_faults_follow_4096_byte_pages():
    """Byte-granular writes: 8193 consecutive bytes span pages 0, 1 and 2 (3 first-touch
    faults); writes 4095 bytes apart at offsets 0, 4095 and 8190 touch pages 0, 0 and 1 (2)."""
    def faults(length: int, stride: str, accesses: int) -> int:
        steps = [{"op": "access", "vseg": "h", "length": length, "pattern": "sequential",
                  "stride": stride, "accesses": accesses, "write_ratio": 1.0}]
        vsegs = [{"name": "h", "type": "anon", "size": 4 * PAGE_SIZE}]
        return run_dict(scenario(steps=steps, vsegs=vsegs)).processes["p"]["min_flt"]

    assert faults(8193, "1B", 8193) == 3
    assert faults(8192, "4095B", 3) == 2
