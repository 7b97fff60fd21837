"""Guest page reclaim and guest swap (Linux 5.15 mm/vmscan.c, mm/workingset.c, mm/memory.c).

Expected numbers are derived by hand in each docstring from the kernel rules cited in
:mod:`pfsim.guest.reclaim`; the scenarios run with ``sim.check_invariants`` on, so the LRU and
swap-slot invariants are checked after every reclaim batch.
"""

from __future__ import annotations

import numpy as np
from helpers import run_dict, scenario, simulation

from pfsim.compiled.run import unsupported
from pfsim.config import load_config
from pfsim.guest.fault import Action
from pfsim.guest.lru import LRU_ACTIVE_ANON, LRU_INACTIVE_ANON
from pfsim.guest.reclaim import ScanControl, watermarks
from pfsim.machine.frames import ANON
from pfsim.machine.pte import PTE_ACCESSED, PTE_PRESENT, PTE_SWAP, PTE_WRITE

MiB = 1 << 20


def test_watermarks_by_hand():
    """mm/page_alloc.c: min_free_kbytes = int_sqrt(16 * lowmem KiB) clamped to [128, 262144];
    pages_min = kbytes / 4; tmp = max(pages_min / 4, managed * scale / 10000); low = min + tmp,
    high = min + 2 tmp.

    * 6144 managed pages (24 MiB): sqrt(16 * 24576) = 627.06 -> 627 KiB -> min 156 pages;
      tmp = max(39, 6) = 39 -> low 195, high 234.
    * 240 pages (960 KiB): sqrt(15360) = 123.9 -> 123 < 128 -> 128 KiB -> min 32; tmp = 8.
    * 4 GiB = 1,048,576 pages: sqrt(16 * 4 Mi KiB) = 8192 KiB -> min 2048; tmp =
      max(512, 1048) = 1048 -> low 3096, high 4144.
    """
    assert watermarks(6144, None, 10) == (156, 195, 234)
    assert watermarks(240, None, 10) == (32, 40, 48)
    assert watermarks(1 << 20, None, 10) == (2048, 3096, 4144)
    assert watermarks(240, 0, 1) == (0, 0, 0)


def test_file_scan_larger_than_memory_evicts_clean_pages_instead_of_oom():
    """The issue's report: a 28 MiB file read once in a 32 MiB guest (24 MiB for users).
    Clean file pages are reclaimed (no swap needed); one sequential pass reads every page
    exactly once (readahead windows never overlap and nothing is evicted before it is used,
    since reclaim takes the oldest pages first): 7168 pages read, no refault, no OOM."""
    data = scenario(
        steps=[{"op": "access", "vseg": "data", "pattern": "sequential", "stride": "4KiB",
                "accesses": 7168, "think": "50ns"}],
        vsegs=[{"name": "data", "type": "file", "size": "28MiB", "cached": False}],
        guest={"memory": "32MiB", "mm": {"kernel_reserved": "8MiB"}}, check_invariants=True)
    result = run_dict(data)
    memory = result["vms"]["vm0"]["memory"]
    assert result.outcome == "ok"
    assert result.processes["p"]["exit"] == "exited"
    assert memory["oom_kills"] == 0
    assert memory["disk_pages_read"] == 7168
    assert memory["refaults"] == 0
    assert memory["swap_outs"] == 0
    assert memory["pgsteal"] > 0
    assert memory["pgsteal"] == memory["pgsteal_kswapd"] + memory["pgsteal_direct"]


def _two_pass(device: str, swappiness: int = 60, duration: str = "1s"):
    """300 anonymous pages written once, then read once, in a guest with 240 user frames."""
    return scenario(
        steps=[{"op": "access", "vseg": "heap", "pattern": "sequential", "stride": "4KiB",
                "accesses": 300, "write_ratio": 1.0, "think": "1us"},
               {"op": "access", "vseg": "heap", "pattern": "sequential", "stride": "4KiB",
                "accesses": 300, "write_ratio": 0.0, "think": "1us"},
               {"op": "sleep", "duration": "10s"}],
        vsegs=[{"name": "heap", "type": "anon", "size": 300 * 4096}],
        guest={"memory": "1MiB", "mm": {"kernel_reserved": "64KiB", "swappiness": swappiness},
               "swap": {"device": device}},
        check_invariants=True, duration=duration)


def test_anon_beyond_memory_swaps_with_exact_accounting():
    """N = 240 user frames (watermarks min 32, low 40, high 48), a process writes N + 60 pages
    once, then reads them all again; the run ends while it sleeps (the pages still there).
    zram is synchronous with page_cluster 0 (``SWP_SYNCHRONOUS_IO``, no readahead), and every
    swap entry has one PTE, so ``do_swap_page`` bypasses the swap cache: every swap-in is one
    major fault and frees its slot at once.  Hence, by hand:

    * the first pass's 300 first touches are the only minor faults (min_flt = 300), and the
      second pass's faults are exactly the swap-ins (maj_flt = swap_ins);
    * every page is either resident or in exactly one slot: rss + slots used = 300;
    * a slot is taken by each write and given back by each swap-in:
      slots used = swap_outs - swap_ins;
    * at least the 60 pages beyond memory (plus the free reserve above min) were written,
      and the second pass read back at least the 60 + 32 pages not resident when it began.
    """
    result = run_dict(_two_pass("zram"))
    memory = result["vms"]["vm0"]["memory"]
    proc = result.processes["p"]
    assert result.outcome == "ok" and proc["exit"] == "running"
    assert memory["oom_kills"] == 0
    assert proc["min_flt"] == 300
    assert proc["maj_flt"] == memory["swap_ins"]
    assert proc["rss_pages"] + memory["swap_slots_used"] == 300
    assert memory["swap_slots_used"] == memory["swap_outs"] - memory["swap_ins"]
    assert memory["swap_outs"] >= 60 + 32
    assert memory["swap_ins"] >= 60 + 32
    assert memory["refaults"] == memory["swap_ins"]  # every page read back had been evicted


def test_anon_beyond_memory_without_swap_is_oom_killed():
    """Without guest swap anonymous pages cannot be reclaimed (get_scan_count: SCAN_FILE), so
    the allocation that finds the min watermark reached with nothing reclaimable OOM-kills."""
    result = run_dict(_two_pass("none"))
    assert result.processes["p"]["exit"] == "oom"
    assert result["vms"]["vm0"]["memory"]["oom_kills"] == 1
    assert result["vms"]["vm0"]["memory"]["swap_outs"] == 0


def test_nvme_swap_in_reads_ahead_and_waits():
    """nvme is asynchronous with page_cluster 3: ``swap_cluster_readahead`` reads the aligned
    8-slot window around the faulting slot (slots in use, not cached), the faulting task
    sleeps until the read completes and its retry is the major fault (do_swap_page set
    VM_FAULT_MAJOR).  Pages read ahead are mapped later by minor faults from the swap cache
    (or, still being read, by a wait whose retry is minor), so each read request is exactly
    one major fault and major faults are fewer than pages read: maj_flt + swap_ra = swap_ins."""
    result = run_dict(_two_pass("nvme"))
    memory = result["vms"]["vm0"]["memory"]
    proc = result.processes["p"]
    assert result.outcome == "ok"
    assert memory["swap_ra"] > 0
    assert proc["maj_flt"] + memory["swap_ra"] == memory["swap_ins"]
    assert proc["rss_pages"] + memory["swap_slots_used"] >= 300  # clean copies keep slots


def _file_then_anon(swappiness: int, file_write: float):
    return {
        "sim": {"check_invariants": True},
        "guest": {"memory": "4MiB", "mm": {"kernel_reserved": "1MiB", "swappiness": swappiness},
                  "swap": {"device": "zram"}},
        "processes": [
            {"name": "reader", "vsegs": [{"name": "f", "type": "file", "size": "2MiB",
                                          "cached": False}],
             "threads": [{"steps": [
                 {"op": "access", "vseg": "f", "pattern": "sequential", "stride": "4KiB",
                  "accesses": 512, "write_ratio": file_write, "think": "1us"},
                 {"op": "sleep", "duration": "1s"}]}]},
            {"name": "anon", "start": "100ms",
             "vsegs": [{"name": "h", "type": "anon", "size": "1536KiB"}],
             "threads": [{"steps": [
                 {"op": "access", "vseg": "h", "pattern": "sequential", "stride": "4KiB",
                  "accesses": 384, "write_ratio": 1.0, "think": "1us"}]}]},
        ],
    }


def test_swappiness_0_drops_clean_file_pages_and_swaps_nothing():
    """768 user frames (min 55, low 68, high 81): 512 file pages cached and mapped, then 384
    anonymous pages, so about 200 pages must be reclaimed.  At swappiness 0 get_scan_count's
    anon share is ap = 0 * ... = 0, and the anon list is forced only when file pages + free
    frames fall to the high watermark (file_is_tiny), which never happens here (over 300 file
    pages stay): no swap-out at all, only file pages are stolen, and the reader's mapped pages
    are unmapped through the reverse map."""
    result = run_dict(_file_then_anon(0, 0.0))
    memory = result["vms"]["vm0"]["memory"]
    assert result.outcome == "ok"
    assert memory["swap_outs"] == 0
    assert memory["pgsteal"] >= 384 + 512 - 768
    assert memory["file_writeback"] == 0  # clean pages are dropped, not written
    assert result.processes["reader"]["rss_pages"] < 512


def test_dirty_file_pages_are_written_back_before_reuse():
    """The reader writes every page of its shared file mapping (do_shared_fault: the page
    is dirty), so every file page reclaim frees had to be written first: file_writeback =
    pgsteal.  No anonymous page is reclaimed while inactive file pages are plentiful
    (cache_trim_mode), so nothing is swapped."""
    result = run_dict(_file_then_anon(60, 1.0))
    memory = result["vms"]["vm0"]["memory"]
    assert result.outcome == "ok"
    assert memory["pgsteal"] > 0
    assert memory["file_writeback"] == memory["pgsteal"]
    assert memory["swap_outs"] == 0


def test_swappiness_0_still_swaps_rather_than_oom():
    """With no file pages at all file_is_tiny holds (file + free <= high), so get_scan_count
    scans anon only (SCAN_ANON) even at swappiness 0: the process completes, no OOM."""
    result = run_dict(_two_pass("zram", swappiness=0))
    assert result.outcome == "ok"
    assert result["vms"]["vm0"]["memory"]["oom_kills"] == 0
    assert result["vms"]["vm0"]["memory"]["swap_outs"] > 0


# ---------------------------------------------------------------- scripted sequence


def _idle_kernel():
    """A guest (240 user frames, zram swap) whose one process sleeps, with its 8-page anon
    vseg unmapped; the test maps pages by hand."""
    data = scenario(steps=[{"op": "sleep", "duration": "1s"}],
                    vsegs=[{"name": "h", "type": "anon", "size": 8 * 4096}],
                    guest={"memory": "1MiB", "mm": {"kernel_reserved": "64KiB"},
                           "swap": {"device": "zram"}})
    sim = simulation(data)
    sim.sim.run(until_ns=1)
    kernel = sim.kernel
    process = kernel.processes[0]
    vma = next(v for v in process.mm.vmas if v.name == "h")
    return kernel, process, vma


def _map(kernel, process, vma, page):
    mm = process.mm
    frame = kernel.mem.alloc(ANON)
    slot = vma.slot(vma.start + page * 4096)
    mm.gfn[slot] = frame
    mm.state[slot] = PTE_PRESENT | PTE_WRITE | PTE_ACCESSED
    mm.rss += 1
    kernel.reclaim.anon_added(np.array([frame]))
    return frame, slot


def test_promotion_and_refault_sequence_by_hand():
    """Pages A then B (A older) on the inactive anon list, both just accessed.

    1. shrink_inactive_list(2): page_check_references finds one young PTE each and
       PG_referenced clear -> PAGEREF_KEEP, PG_referenced set, accessed bits cleared; both
       back on the inactive list.  pgscan 2, pgsteal 0.
    2. A is accessed again.  shrink_inactive_list(2): A has a young PTE and PG_referenced ->
       PAGEREF_ACTIVATE (pgactivate 1); B has none -> PAGEREF_RECLAIM: add_to_swap takes slot
       0, B is written (swap_outs 1), its PTE becomes the swap entry, and workingset_eviction
       records B's shadow = nonresident_age = 0 (age becomes 1); moving A to the active list
       ages it to 2.
    3. shrink_active_list(1): A is deactivated (no young PTE; anon pages are deactivated even
       when referenced) and marked PG_workingset: pgdeactivate 1.
    4. B is touched: do_swap_page on zram reads it synchronously (swap_ins 1, a major fault).
       workingset_refault: distance = 2 - 0 = 2 > workingset size = active file 0 + inactive
       file 0 + active anon 0 -> counted as a refault, not activated; B joins the inactive
       list; its slot is freed (swap_free drops the last reference, no swap cache).
    """
    kernel, process, vma = _idle_kernel()
    reclaim = kernel.reclaim
    mm = process.mm
    a, slot_a = _map(kernel, process, vma, 0)
    b, slot_b = _map(kernel, process, vma, 1)
    sc = ScanControl(kswapd=True, nr_to_reclaim=32)

    assert reclaim.shrink_inactive_list(2, LRU_INACTIVE_ANON, sc) == 0
    assert reclaim.stats["pgscan_kswapd"] == 2 and reclaim.stats["pgactivate"] == 0
    assert reclaim.referenced[[a, b]].all()
    assert not (mm.state[[slot_a, slot_b]] & PTE_ACCESSED).any()

    mm.state[slot_a] |= PTE_ACCESSED
    assert reclaim.shrink_inactive_list(2, LRU_INACTIVE_ANON, sc) == 1
    assert reclaim.stats["pgactivate"] == 1
    assert reclaim.lru.which[a] == LRU_ACTIVE_ANON
    assert reclaim.swap.swap_outs == 1
    assert mm.state[slot_b] == PTE_SWAP and mm.gfn[slot_b] == -2 - 0
    assert reclaim.swap.shadow[0] == 0 and reclaim.nonresident_age == 2
    assert kernel.mem.kind[b] == 0  # freed

    reclaim.shrink_active_list(1, LRU_ACTIVE_ANON, sc)
    assert reclaim.stats["pgdeactivate"] == 1
    assert reclaim.lru.which[a] == LRU_INACTIVE_ANON and reclaim.workingset[a]

    texec = process.threads[0].data
    result = reclaim.do_swap_page(texec, vma, slot_b, False, 0)
    assert result.action is Action.RETRY and result.detail == {"major": True}
    assert reclaim.swap.swap_ins == 1
    assert reclaim.stats["workingset_refault_anon"] == 1
    assert reclaim.stats["workingset_activate_anon"] == 0
    frame = int(mm.gfn[slot_b])
    assert reclaim.lru.which[frame] == LRU_INACTIVE_ANON
    assert mm.state[slot_b] & PTE_PRESENT and not mm.state[slot_b] & PTE_WRITE  # read fault
    assert reclaim.swap.count[0] == 0 and reclaim.swap.nfree == reclaim.swap.nslots
    kernel.vmm.check_invariants()


def test_refault_within_the_workingset_is_activated():
    """As above, but two more pages C, D sit on the active anon list when B refaults:
    workingset size = active anon 2 >= distance 2 -> activated (workingset_activate 1,
    nonresident_age 3).  B was never deactivated, so it is no PG_workingset restore."""
    kernel, process, vma = _idle_kernel()
    reclaim = kernel.reclaim
    mm = process.mm
    a, slot_a = _map(kernel, process, vma, 0)
    b, slot_b = _map(kernel, process, vma, 1)
    sc = ScanControl(kswapd=True, nr_to_reclaim=32)
    reclaim.shrink_inactive_list(2, LRU_INACTIVE_ANON, sc)
    mm.state[slot_a] |= PTE_ACCESSED
    reclaim.shrink_inactive_list(2, LRU_INACTIVE_ANON, sc)
    for page in (2, 3):
        frame, _ = _map(kernel, process, vma, page)
        reclaim.lru.remove(np.array([frame]))
        reclaim.lru.add(np.array([frame]), LRU_ACTIVE_ANON)
    reclaim.lru.remove(np.array([a]))  # A leaves the active list (say it was freed)
    reclaim.lru.add(np.array([a]), LRU_INACTIVE_ANON)
    texec = process.threads[0].data
    reclaim.do_swap_page(texec, vma, slot_b, False, 0)
    assert reclaim.stats["workingset_activate_anon"] == 1
    assert reclaim.stats["workingset_restore_anon"] == 0
    assert reclaim.lru.which[int(mm.gfn[slot_b])] == LRU_ACTIVE_ANON
    assert reclaim.nonresident_age == 3


# ---------------------------------------------------------------- fork, exit, invariants


def test_swap_entries_survive_fork_and_are_freed_on_exit():
    """A parent writes 300 pages (240 frames: some are swapped), forks, and the child reads
    then writes them all: swapped pages are shared swap entries (swap_duplicate), the child's
    swap-in of a shared entry goes through the swap cache (count 2, so not the synchronous
    bypass) and its write then copies (COW after swap-in: the parent still holds the entry).
    When both exit every slot is free again.  Invariants are checked after every reclaim
    batch and every fork/exit step."""
    child = [{"op": "access", "vseg": "heap", "pattern": "sequential", "stride": "4KiB",
              "accesses": 300, "write_ratio": 0.0, "think": "1us"},
             {"op": "access", "vseg": "heap", "pattern": "sequential", "stride": "4KiB",
              "accesses": 300, "write_ratio": 1.0, "think": "1us"}]
    data = scenario(
        steps=[{"op": "access", "vseg": "heap", "pattern": "sequential", "stride": "4KiB",
                "accesses": 300, "write_ratio": 1.0, "think": "1us"},
               {"op": "fork", "name": "c", "steps": child},
               {"op": "wait"}],
        vsegs=[{"name": "heap", "type": "anon", "size": 300 * 4096}],
        guest={"memory": "2MiB", "mm": {"kernel_reserved": "1088KiB"},
               "swap": {"device": "zram"}},
        check_invariants=True)
    result = run_dict(data)
    memory = result["vms"]["vm0"]["memory"]
    assert result.outcome == "ok", result["vms"]["vm0"]["processes"]
    assert result.processes["c"]["exit"] == "exited"
    assert memory["swap_outs"] > 0 and memory["swap_ins"] > 0
    assert result.processes["c"]["cow_copies"] > 0
    assert memory["swap_slots_used"] == 0


def test_compiled_engine_leaves_guest_pressure_to_the_reference_path():
    """The compiled core has no guest reclaim: with guest swap, or access steps that may touch
    more pages (at most one per access, at most the vseg) than the frames above the low
    watermark, it names why the run takes the reference path; a large vseg touched by few
    accesses stays in the core."""
    base = {"hypervisor": {"enabled": True},
            "guest": {"memory": "32MiB", "mm": {"kernel_reserved": "8MiB"}},
            "processes": [{"name": "p", "vsegs": [{"name": "h", "type": "anon", "size": "8MiB"}],
                           "threads": [{"steps": [{"op": "access", "vseg": "h",
                                                   "accesses": 10}]}]}]}
    assert unsupported(load_config(base)) is None
    swap = {**base, "guest": {**base["guest"], "swap": {"device": "nvme"}}}
    assert "guest swap" in unsupported(load_config(swap))
    big = {**base, "processes": [{**base["processes"][0],
                                  "vsegs": [{"name": "h", "type": "anon", "size": "24MiB"}],
                                  "threads": [{"steps": [{"op": "access", "vseg": "h",
                                                          "accesses": 6144}]}]}]}
    assert "guest memory pressure" in unsupported(load_config(big))


# ---------------------------------------------------------------- double paging


def _double_paging(memory: str, limit: str | None, swap: str = "nvme"):
    hyp = {"enabled": True, "swap": {"page_cluster": 0}}
    if limit is not None:
        hyp["memory_limit"] = limit
    write = {"op": "access", "vseg": "h", "pattern": "sequential", "stride": "4KiB",
             "accesses": 1024, "write_ratio": 1.0, "think": "1us"}
    return {"sim": {"seed": 3, "check_invariants": True},
            "guest": {"memory": memory, "mm": {"kernel_reserved": "2MiB"},
                      "swap": {"device": swap, "size": "16MiB"}},
            "hypervisor": hyp,
            "processes": [
                {"name": "old", "vsegs": [{"name": "h", "type": "anon", "size": "4MiB"}],
                 "threads": [{"steps": [write, {"op": "sleep", "duration": "50ms"}]}]},
                {"name": "new", "start": "10ms",
                 "vsegs": [{"name": "h", "type": "anon", "size": "4MiB"}],
                 "threads": [{"steps": [write]}]}]}


def test_double_paging_exact_host_swap_ins():
    """A guest with 1536 user frames (8 MiB, 2 MiB reserved; watermarks min 78, low 97, high
    116) on a host that grants 1024 frames, host swap without readahead (page_cluster 0).
    'old' writes its 1024 pages, then idles; from 10 ms 'new' writes 1024 more.

    The host's LRU evicts old's pages in the order they were written, one per page of new
    beyond the host's 1024 frames (minus the frames old's own stacks and new's already hold):
    by the time new has written k pages, about k of old's are host-swapped.  The guest starts
    reclaiming only when new has taken its free frames down to the low watermark (k about
    1536 - 1024 - 97 = 415) and then frees about one of old's pages per page new writes,
    oldest first (old's pages sit on the inactive anon list in write order, each referenced
    once: kept once, then reclaimed).  So every page the guest swaps out is one the host
    swapped out long before, and, with no host swap cache to find it in, reading it for the
    guest's swap write costs exactly one host swap-in:

        guest swap-outs = guest swap-outs of host-swapped pages = host swap-ins for guest I/O

    and each is at least 1024 + 1024 - 1536 = 512 pages (no page leaves the guest twice here).
    """
    result = run_dict(_double_paging("8MiB", "4MiB"))
    memory = result["vms"]["vm0"]["memory"]
    host = result["host"]
    assert result.outcome == "ok"
    assert memory["swap_outs"] >= 512
    assert memory["swap_outs_host_swapped"] == memory["swap_outs"]
    assert host["swap_ins_guest_io"] == memory["swap_outs"]


def test_no_double_paging_with_one_level_of_pressure():
    """Host overcommit only (a 16 MiB guest has room for both processes) or guest pressure
    only (no host limit): the guest never writes out a page the host swapped."""
    host_only = run_dict(_double_paging("16MiB", "4MiB"))
    assert host_only["vms"]["vm0"]["memory"]["swap_outs"] == 0
    assert host_only["host"]["swap_outs"] > 0
    assert host_only["host"]["swap_ins_guest_io"] == 0
    guest_only = run_dict(_double_paging("8MiB", None))
    assert guest_only["vms"]["vm0"]["memory"]["swap_outs"] > 0
    assert guest_only["vms"]["vm0"]["memory"]["swap_outs_host_swapped"] == 0
    assert guest_only["host"]["swap_ins_guest_io"] == 0


# ---------------------------------------------------------------- balloon


def _balloon(target: str, at: str, schedule=None, limit="12MiB"):
    steps = [{"op": "access", "vseg": "h", "pattern": "sequential", "stride": "4KiB",
              "accesses": 1024, "write_ratio": 1.0, "think": "1us"}]
    balloon = {"target": target, "at": at}
    if schedule:
        balloon["schedule"] = schedule
    return {"sim": {"check_invariants": True},
            "guest": {"memory": "16MiB", "mm": {"kernel_reserved": "4MiB"},
                      "swap": {"device": "zram"}, "balloon": balloon},
            "hypervisor": {"enabled": True, "memory_limit": limit},
            "processes": [
                {"name": "p", "vsegs": [{"name": "h", "type": "anon", "size": "4MiB"}],
                 "threads": [{"stack": False, "steps": steps}]},
                {"name": "idle", "vsegs": [],
                 "threads": [{"stack": False, "steps": [{"op": "sleep", "duration": "50ms"}]}]}]}


def test_balloon_hands_the_host_back_exactly_the_frames_it_takes():
    """'p' writes 1024 pages (1024 host frames: first touches) and exits at about 1 ms; its
    frames go back on top of the guest's free stack (put_many: last freed on top), so the
    balloon, inflating to 1024 pages (4 MiB) at 10 ms, pops exactly those frames: fill_balloon
    needs no reclaim (3072 user frames, 1024 ballooned: far above the watermarks), and the
    host discards all 1024 with no I/O (balloon_freed_frames = 1024, no swap traffic); only
    the zero page stays resident."""
    result = run_dict(_balloon("4MiB", "10ms"))
    memory = result["vms"]["vm0"]["memory"]
    host = result["host"]
    assert result.outcome == "ok"
    assert memory["balloon_pages"] == memory["balloon_inflated"] == 1024
    assert memory["free_frames"] == 3072 - 1024
    assert memory["pgscan_kswapd"] + memory["pgscan_direct"] == 0
    assert host["balloon_freed_frames"] == 1024
    assert host["swap_outs"] == host["swap_ins"] == 0
    assert host["resident_frames"] == 1  # the zero page


def test_balloon_deflates_on_a_lower_target():
    """The schedule lowers the target to 0 at 20 ms: leak_balloon returns every page."""
    result = run_dict(_balloon("4MiB", "10ms", [{"at": "20ms", "target": "0MiB"}]))
    memory = result["vms"]["vm0"]["memory"]
    assert memory["balloon_inflated"] == memory["balloon_deflated"] == 1024
    assert memory["balloon_pages"] == 0
    assert memory["free_frames"] == 3072


def test_balloon_reclaims_to_inflate_and_never_oom_kills():
    """A balloon of 10 MiB (2560 pages) while 'p' holds its 1024 pages (it sleeps): only
    3072 - 1024 = 2048 are free, less the min watermark reserve, so fill_balloon must reclaim
    (p's pages go to zram) and may fall short for a while ("out of puff"), but it never
    OOM-kills: p survives and the balloon reaches its target."""
    data = _balloon("10MiB", "5ms", limit="16MiB")
    data["processes"][0]["threads"][0]["steps"].append({"op": "sleep", "duration": "2s"})
    data["sim"]["duration"] = "1500ms"
    result = run_dict(data)
    memory = result["vms"]["vm0"]["memory"]
    assert result.processes["p"]["exit"] == "running"
    assert memory["oom_kills"] == 0
    assert memory["balloon_pages"] == 2560
    assert memory["swap_outs"] > 0


def test_both_engines_agree_up_to_the_low_watermark():
    """32 MiB guest, 8 MiB reserved: 6144 user frames, low watermark 195 (as above).  Anon
    vsegs of 6144 - 195 = 5949 pages never take the guest below ``low``: the compiled core
    runs the scenario (its host overcommits: a 16 MiB limit) and gives the reference's
    result.json.  One page more and the run takes the reference path, saying why."""
    import json

    from pfsim.simulation import Simulation

    def both(pages):
        data = {"sim": {"duration": "30ms"},
                "guest": {"memory": "32MiB", "mm": {"kernel_reserved": "8MiB"}},
                "hypervisor": {"enabled": True, "memory_limit": "16MiB"},
                "processes": [{"name": "p",
                               "vsegs": [{"name": "h", "type": "anon", "size": pages * 4096}],
                               "threads": [{"stack": False, "steps": [
                                   {"op": "access", "vseg": "h", "pattern": "sequential",
                                    "stride": "4KiB", "accesses": pages, "write_ratio": 1.0},
                                   {"op": "access", "vseg": "h", "pattern": "uniform",
                                    "accesses": 20_000, "write_ratio": 0.3}]}]}]}
        out, notes = {}, {}
        for engine in ("reference", "compiled"):
            data["sim"]["engine"] = engine
            simulation = Simulation(load_config(data))
            result = simulation.run()
            result.pop("engine")
            out[engine] = json.dumps(result, sort_keys=True)
            notes[engine] = simulation.engine_note
        return out, notes

    out, notes = both(5949)
    assert notes["compiled"] == "compiled core"
    assert out["compiled"] == out["reference"]
    _, notes = both(5950)
    assert "guest memory pressure" in notes["compiled"]
