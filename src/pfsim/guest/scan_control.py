"""Reclaim's constants, counters, zone watermarks and ``struct scan_control`` (Linux 5.15
mm/vmscan.c, mm/page_alloc.c)."""

from __future__ import annotations

from dataclasses import dataclass
from math import isqrt

from pfsim.units import PAGE_SIZE

SWAP_CLUSTER_MAX = 32
DEF_PRIORITY = 12
MAX_RECLAIM_RETRIES = 16


def watermarks(managed: int, min_free_kbytes: int | None, scale_factor: int) -> tuple[int, int, int]:
    """(min, low, high) in frames for ``managed`` user frames (mm/page_alloc.c
    ``init_per_zone_wmark_min`` and ``__setup_per_zone_wmarks``, one zone)."""
    if min_free_kbytes is None:
        min_free_kbytes = min(max(isqrt(managed * (PAGE_SIZE >> 10) * 16), 128), 262144)
    pages_min = min_free_kbytes >> 2
    tmp = max(pages_min >> 2, managed * scale_factor // 10000)
    return pages_min, pages_min + tmp, pages_min + 2 * tmp


@dataclass
class ScanControl:
    """``struct scan_control`` (the fields pfsim uses)."""

    kswapd: bool
    nr_to_reclaim: int
    priority: int = DEF_PRIORITY
    nr_scanned: int = 0
    nr_reclaimed: int = 0
    work: int = 0  # pages isolated (active and inactive): the CPU time of the pass
    may_deactivate_anon: bool = False
    may_deactivate_file: bool = False
    force_deactivate: bool = False
    skipped_deactivate: bool = False
    cache_trim_mode: bool = False
    file_is_tiny: bool = False


COUNTERS = ("pgscan_kswapd", "pgscan_direct", "pgsteal_kswapd", "pgsteal_direct", "pgrefill",
            "pgactivate", "pgdeactivate", "allocstall", "kswapd_wakeups",
            "workingset_refault_anon", "workingset_refault_file", "workingset_activate_anon",
            "workingset_activate_file", "workingset_restore_anon", "workingset_restore_file",
            "file_writeback", "swap_ra", "swap_outs_host_swapped",
            "kswapd_low_wmark_hit_quickly", "kswapd_high_wmark_hit_quickly")

