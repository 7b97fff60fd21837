"""Double paging in the read direction: the guest's disk reads into a frame the host swapped
out, and the host swaps it in first only for the read to overwrite it (a "false read": QEMU's
O_DIRECT read pins the page with get_user_pages, which faults it in).  Also the swap-slot leak
that a read into a host-swapped frame used to cause."""

from __future__ import annotations

import copy

from test_reclaim_differential import _double_paging

import pfsim

N = 100
PAGE_IO_NS = 16_000 + (4096 * 1_000_000_000) // (2 << 30)
"""One page on the nvme preset: 16 us latency plus 4 KiB at 2 GiB/s (1,907 ns)."""


def _config(limit_frames: int) -> dict:
    """'a' writes N pages and exits; at 5 ms 'b' faults in N pages of a cold file one at a
    time (advice random: no readahead).  Host LRU, one page per reclaim, no swap readahead."""
    def touch(vseg: str, write: float) -> dict:
        return {"op": "access", "vseg": vseg, "pattern": "sequential", "stride": "4KiB",
                "accesses": N, "write_ratio": write, "think": "1us"}

    return {"sim": {"check_invariants": True},
            "guest": {"vcpus": 1, "memory": "4MiB", "mm": {"kernel_reserved": "1MiB"}},
            "hypervisor": {"enabled": True, "memory_limit": limit_frames * 4096,
                           "reclaim": "lru", "reclaim_batch": 1,
                           "swap": {"device": "nvme", "page_cluster": 0}},
            "processes": [
                {"name": "a", "vsegs": [{"name": "h", "type": "anon", "size": N * 4096}],
                 "threads": [{"stack": False, "steps": [touch("h", 1.0)]}]},
                {"name": "b", "start": "5ms",
                 "vsegs": [{"name": "f", "type": "file", "size": N * 4096, "cached": False,
                            "advice": "random"}],
                 "threads": [{"stack": False, "steps": [touch("f", 0.0)]}]}]}


def test_reads_into_host_swapped_frames_swap_them_in_first():
    """By hand, with a host that grants L = 64 frames:

    - 'a' writes its N = 100 pages; with the guest's zero page (pinned at boot) the host needs
      101 frames, so its LRU evicts a's oldest 101 - 64 = 37 pages as the later ones come (one
      per reclaim), writing each to swap (dirty): 37 swap-outs.
    - 'a' exits; its frames go back to the guest's free stack in page order, so the last
      page's frame is handed out first.
    - 'b' reads one file page per fault into those frames: pages 99 down to 37 first, all
      resident at the host (no host work); then the 37 frames the host swapped out.  For each,
      the host swaps the page in before the guest's read may start (a false read), taking the
      frame of the least recently used page: one of b's own pages, read earlier and dirty, so
      written to swap first: 37 more swap-outs, 37 host swap-ins, all for guest I/O.
    - Each false read delays b by one page written and one read on nvme (the frame is usable
      once its writeback ends): 37 x 2 x (16 us + 1,907 ns) after the same run with room.
    """
    squeezed = pfsim.run(_config(64))
    roomy = pfsim.run(_config(200))
    host = squeezed["host"]
    assert squeezed.outcome == roomy.outcome == "ok"
    assert host["false_reads"] == host["swap_ins_guest_io"] == host["swap_ins"] == 37
    assert host["swap_outs"] == 74 and host["host_major_faults"] == 37
    assert roomy["host"]["false_reads"] == roomy["host"]["swap_outs"] == 0
    b_late = (squeezed["vms"]["vm0"]["processes"]["b"]["exited_ns"]
              - roomy["vms"]["vm0"]["processes"]["b"]["exited_ns"])
    assert b_late == 37 * 2 * PAGE_IO_NS


def test_guest_io_never_leaks_host_swap_slots():
    """A small guest whose reclaim and swap-ins keep moving pages through a host that holds
    a third of it: every host swap slot in use belongs to a gfn (there are at most as many as
    the guest has frames).  It used to end in an IndexError: a page read back into a
    host-swapped frame dropped its slot without freeing it."""
    config = _double_paging()  # its shape, in a smaller guest and host
    config["sim"] = {"check_invariants": True}
    config["guest"]["memory"], config["guest"]["mm"]["kernel_reserved"] = "2MiB", "512KiB"
    config["hypervisor"]["memory_limit"] = "1MiB"
    results = {}
    for engine in ("reference", "compiled"):
        variant = copy.deepcopy(config)
        variant["sim"]["engine"] = engine
        results[engine] = pfsim.run(variant)
    result = results["reference"]
    assert result.outcome == "ok"
    assert result["vms"]["vm0"]["memory"]["swap_ins"] > 0  # guest reads into host frames
    assert result["host"]["false_reads"] > 0
    assert result["host"]["swap_slots_used"] <= 512  # guest frames: 2 MiB
    assert results["compiled"].to_json().replace('"compiled"', '"reference"') == result.to_json()
