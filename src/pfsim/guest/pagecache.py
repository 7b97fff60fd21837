"""Files, their page cache, and the guest block device that fills it.

A :class:`File` keeps, per 4 KiB page, the frame holding it (``-1`` when not cached) and the
pending read that will bring it in.  The :class:`BlockDevice` serves reads first in, first
out: a request of ``n`` pages completes ``latency + n * 4KiB / bandwidth`` after the device
becomes free.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pfsim.units import NS_PER_S, PAGE_SIZE


@dataclass
class ReadRequest:
    """One read of consecutive file pages; tasks wait on it in TASK_UNINTERRUPTIBLE."""

    file: File
    first: int
    pages: list[int]
    done_ns: int
    waiters: list[Any] = field(default_factory=list)


class File:
    """A file and its page cache."""

    def __init__(self, name: str, npages: int) -> None:
        self.name = name
        self.npages = npages
        self.frame = np.full(npages, -1, dtype=np.int32)
        self.readahead_mark = np.zeros(npages, dtype=np.bool_)
        """PG_readahead, kept on a folio's first page: a fault on the folio starts the next
        window asynchronously."""
        self.folio_order = np.zeros(npages, dtype=np.int8)
        """Order of the folio holding each page (folios are naturally aligned: the folio of
        page p starts at p rounded down to 2**order)."""
        self.pending: dict[int, ReadRequest] = {}
        self.reads = 0
        self.ra: Any = None
        """Its ``file_ra_state`` (:class:`pfsim.guest.readahead.RaState`), set by the kernel."""

    def grow(self, npages: int) -> None:
        if npages > self.npages:
            extra = np.full(npages - self.npages, -1, dtype=np.int32)
            self.frame = np.concatenate([self.frame, extra])
            self.readahead_mark = np.concatenate(
                [self.readahead_mark, np.zeros(npages - self.npages, dtype=np.bool_)])
            self.folio_order = np.concatenate(
                [self.folio_order, np.zeros(npages - self.npages, dtype=np.int8)])
            self.npages = npages

    def cached(self, page: int) -> bool:
        """The page is in the page cache and up to date."""
        return bool(self.frame[page] >= 0)

    def present(self, page: int) -> bool:
        """A folio covers the page: up to date, or being read."""
        return bool(self.frame[page] >= 0) or page in self.pending

    def folio_of(self, page: int) -> tuple[int, int]:
        """(first page, number of pages) of the folio holding ``page``."""
        n = 1 << int(self.folio_order[page])
        return page & ~(n - 1), n

    def drop(self, page: int) -> None:
        """The page left the page cache (reclaim): its folio state goes with it."""
        self.frame[page] = -1
        self.readahead_mark[page] = False
        self.folio_order[page] = 0


class BlockDevice:
    """A FIFO block device with a fixed latency and a bandwidth (one request at a time)."""

    def __init__(self, latency_ns: int, bandwidth_bytes_per_s: int) -> None:
        self.latency_ns = latency_ns
        self.bandwidth = bandwidth_bytes_per_s
        self.busy_until = 0
        self.requests = 0
        self.pages_read = 0

    def submit(self, now: int, npages: int) -> int:
        """Queue a read of ``npages`` pages; returns its completion time (ns)."""
        transfer = (npages * PAGE_SIZE * NS_PER_S) // max(1, self.bandwidth)
        done = max(now, self.busy_until) + self.latency_ns + transfer
        self.busy_until = done
        self.requests += 1
        self.pages_read += npages
        return done
