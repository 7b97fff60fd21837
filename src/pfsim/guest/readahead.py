"""File readahead as Linux 6.18 does it for mmap faults (mm/readahead.c, mm/filemap.c).

Pure decisions, no I/O: each entry point looks at which pages of the file are in the page
cache (cached or being read) and returns the folios to add, as :class:`Folio` records
(first page, order, PG_readahead); the guest kernel allocates their frames and submits one
read for them (:meth:`pfsim.guest.kernel.GuestKernel.add_folios`).

Followed functions (Linux 6.18):

* ``do_sync_mmap_readahead`` (mm/filemap.c): a fault that finds no folio.  ``VM_RAND_READ``
  (``MADV_RANDOM``) reads nothing ahead; ``VM_SEQ_READ`` (``MADV_SEQUENTIAL``) calls
  ``page_cache_sync_ra`` for ``ra_pages``; ``VM_EXEC`` reads the ``ra_pages`` from the fault
  (clipped to the VMA) without a PG_readahead mark (``exec_folio_order()`` is 0 on x86);
  otherwise ``mmap_miss`` is counted and, unless it passed ``MMAP_LOTSAMISS`` (100),
  read-around: ``ra_pages`` pages starting ``ra_pages/2`` before the fault, ``async_size =
  ra_pages/4``, order 0.
* ``do_async_mmap_readahead``: a fault that finds its folio: ``mmap_miss`` is decremented, and
  a folio with PG_readahead starts ``page_cache_async_ra``.
* ``page_cache_sync_ra``, ``page_cache_async_ra`` (window ramp-up: ``get_init_ra_size``,
  ``get_next_ra_size``; ``ra->order += 2`` per asynchronous window; the window end aligned to
  the new order), ``page_cache_ra_order`` (folios of ``ra->order`` clamped to
  ``ilog2(ra->size)`` and the mapping's largest order, aligned, smaller near EOF; the folio
  holding ``start + size - async_size`` rounded down gets PG_readahead; when a folio cannot be
  added because a page is present, the rest falls back to order 0) and
  ``page_cache_ra_unbounded`` (order-0 folios, present pages skipped, the mark at
  ``nr_to_read - lookahead_size``).

The mapping's largest folio order is ``MAX_PAGECACHE_ORDER`` (9 on x86-64 with THP: 2 MiB)
when ``guest.pagecache.large_folios`` is on (ext4 since 6.16, XFS), 0 otherwise; its smallest
order is 0.  ``bdi->io_pages`` is taken equal to ``ra_pages`` (``ractl_max_pages`` then always
returns ``ra_pages``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

MAX_PAGECACHE_ORDER = 9
"""include/linux/pagemap.h: min(MAX_XAS_ORDER, PREFERRED_MAX_PAGECACHE_ORDER = HPAGE_PMD_ORDER)."""
MMAP_LOTSAMISS = 100
"""mm/filemap.c: read-around stops once this many more misses than hits were seen."""


@dataclass(frozen=True)
class Folio:
    """A folio to add to the page cache: pages [index, index + 2**order)."""

    index: int
    order: int
    readahead: bool = False

    @property
    def npages(self) -> int:
        return 1 << self.order


@dataclass
class RaState:
    """``struct file_ra_state`` of one open file (pfsim opens each file once)."""

    ra_pages: int
    start: int = 0
    size: int = 0
    async_size: int = 0
    order: int = 0
    mmap_miss: int = 0
    prev_pos: int = -1


class Cache(Protocol):
    """What readahead needs to know about a file's page cache."""

    npages: int

    def present(self, index: int) -> bool:
        """A folio covers ``index`` (up to date or being read)."""
        ...


def _ilog2(n: int) -> int:
    return n.bit_length() - 1


def _ffs0(n: int) -> int:
    """``__ffs``: index of the lowest set bit (n > 0)."""
    return (n & -n).bit_length() - 1


def _roundup_pow_of_two(n: int) -> int:
    return 1 << (max(1, n) - 1).bit_length()


def get_init_ra_size(size: int, max_pages: int) -> int:
    """mm/readahead.c ``get_init_ra_size``."""
    newsize = _roundup_pow_of_two(size)
    if newsize <= max_pages // 32:
        return newsize * 4
    if newsize <= max_pages // 4:
        return newsize * 2
    return max_pages


def get_next_ra_size(ra: RaState, max_pages: int) -> int:
    """mm/readahead.c ``get_next_ra_size``."""
    cur = ra.size
    if cur < max_pages // 16:
        return 4 * cur
    if cur <= max_pages // 2:
        return 2 * cur
    return max_pages


def page_cache_prev_miss(cache: Cache, index: int, max_scan: int) -> int:
    """The highest page at or below ``index`` (scanning at most ``max_scan``) that is not
    present; -1 (``ULONG_MAX``) when the scan runs past page 0 without a gap."""
    while max_scan > 0:
        if not cache.present(index):
            return index
        if index == 0:
            return -1
        index -= 1
        max_scan -= 1
    return index


def page_cache_next_miss(cache: Cache, index: int, max_scan: int) -> int:
    """The lowest page at or above ``index`` (scanning at most ``max_scan``) not present."""
    while max_scan > 0:
        if index >= cache.npages or not cache.present(index):
            return index
        index += 1
        max_scan -= 1
    return index


class Readahead:
    """The readahead decisions for one file.

    Args:
        cache: the file's page cache (which pages are present).
        ra: its ``file_ra_state``.
        max_order: the mapping's largest folio order (0 without large folios).
    """

    def __init__(self, cache: Cache, ra: RaState, max_order: int) -> None:
        self.cache = cache
        self.ra = ra
        self.max_order = max_order
        self.out: list[Folio] = []

    def _take(self) -> list[Folio]:
        out, self.out = self.out, []
        return out

    # ------------------------------------------------------------------ mm/readahead.c

    def ra_unbounded(self, index: int, nr_to_read: int, lookahead: int) -> None:
        """``page_cache_ra_unbounded``: order-0 folios, present pages skipped."""
        mark = nr_to_read - lookahead if lookahead <= nr_to_read else -1
        for i in range(nr_to_read):
            page = index + i
            if self.cache.present(page):
                continue
            self.out.append(Folio(page, 0, i == mark))

    def do_page_cache_ra(self, index: int, nr_to_read: int, lookahead: int) -> None:
        """``do_page_cache_ra``: never past the page holding the file's last byte."""
        end_index = self.cache.npages - 1
        if self.cache.npages == 0 or index > end_index:
            return
        nr_to_read = min(nr_to_read, end_index - index + 1)
        self.ra_unbounded(index, nr_to_read, lookahead)

    def ra_order(self, start: int) -> None:
        """``page_cache_ra_order`` for the window ``self.ra`` that begins at ``start``."""
        ra = self.ra
        index = start
        if self.max_order == 0:
            ra.order = 0
            self.do_page_cache_ra(index, ra.size, ra.async_size)
            return
        limit = min(self.cache.npages - 1, index + ra.size - 1)
        mark = index + ra.size - ra.async_size
        new_order = min(self.max_order, ra.order, _ilog2(ra.size))
        ra.order = new_order
        failed = False
        while index <= limit:
            order = new_order
            if index & ((1 << order) - 1):
                order = _ffs0(index)
            while order > 0 and index + (1 << order) - 1 > limit:
                order -= 1
            if any(self.cache.present(p) for p in range(index, index + (1 << order))):
                failed = True  # filemap_add_folio: -EEXIST
                break
            marked = index == (mark & ~((1 << order) - 1))
            self.out.append(Folio(index, order, marked))
            index += 1 << order
        if failed and ra.size > index - start:
            self.do_page_cache_ra(index, ra.size - (index - start), ra.async_size)

    def sync_ra(self, index: int, req_count: int, *, forced: bool = False) -> None:
        """``page_cache_sync_ra`` (``forced``: FMODE_RANDOM or readahead disabled)."""
        ra = self.ra
        if ra.ra_pages == 0:
            req_count, forced = 1, True
        if forced:  # force_page_cache_ra: chunks of 2 MiB from index
            nr = min(req_count, max(ra.ra_pages, 1))
            chunk = (2 << 20) >> 12
            while nr > 0:
                this = min(chunk, nr)
                self.do_page_cache_ra(index, this, 0)
                index += this
                nr -= this
            return
        max_pages = ra.ra_pages
        prev_index = ra.prev_pos >> 12 if ra.prev_pos >= 0 else None
        if (index == 0 or req_count > max_pages
                or (prev_index is not None and 0 <= index - prev_index <= 1)):
            ra.start = index
            ra.size = get_init_ra_size(req_count, max_pages)
            ra.async_size = ra.size - req_count if ra.size > req_count else ra.size >> 1
        else:
            miss = page_cache_prev_miss(self.cache, index - 1, max_pages)
            contig = index - miss - 1
            if contig <= req_count:  # a standalone, small random read
                self.do_page_cache_ra(index, req_count, 0)
                return
            if miss < 0:  # cached from the beginning of the file
                contig *= 2
            ra.start = index
            ra.size = min(contig + req_count, max_pages)
            ra.async_size = 1
        ra.order = 0
        self.ra_order(ra.start)

    def async_ra(self, index: int, folio_pages: int, req_count: int) -> None:
        """``page_cache_async_ra``: a fault found PG_readahead on the folio at ``index`` (its
        caller clears the flag)."""
        ra = self.ra
        if ra.ra_pages == 0:
            return
        max_pages = ra.ra_pages
        expected = (ra.start + ra.size - ra.async_size) & ~(folio_pages - 1)
        if index == expected:
            ra.start += ra.size
            ra.size = max(ra.size, get_next_ra_size(ra, max_pages))
        else:  # a marked folio without a matching state: size from the page cache
            start = page_cache_next_miss(self.cache, index + 1, max_pages)
            if start == 0 or start - index > max_pages:
                return
            ra.start = start
            ra.size = start - index + req_count
            ra.size = get_next_ra_size(ra, max_pages)
        ra.order += 2
        align = 1 << min(ra.order, _ffs0(max_pages))
        end = ra.start + ra.size
        aligned_end = end & ~(align - 1)
        if aligned_end > ra.start:
            ra.size -= end - aligned_end
        ra.async_size = ra.size
        self.ra_order(ra.start)

    # ------------------------------------------------------------------ mm/filemap.c

    def sync_mmap(self, pgoff: int, advice: str, exec_vma: bool, vma_first: int,
                  vma_last: int) -> list[Folio]:
        """``do_sync_mmap_readahead`` for a fault on ``pgoff`` that found no folio; the VMA
        maps file pages [vma_first, vma_last)."""
        ra = self.ra
        if advice == "random" or ra.ra_pages == 0:
            return []
        if advice == "sequential":
            self.sync_ra(pgoff, ra.ra_pages)
            return self._take()
        if ra.mmap_miss < MMAP_LOTSAMISS * 10:
            ra.mmap_miss += 1
        if ra.mmap_miss > MMAP_LOTSAMISS:
            return []
        if exec_vma:  # exec_folio_order() = 0 on x86
            ra.order = 0
            ra.start = max(pgoff, vma_first)
            ra.size = min(ra.start + ra.ra_pages, vma_last) - ra.start
            ra.async_size = 0
        else:  # mmap read-around
            ra.start = max(0, pgoff - ra.ra_pages // 2)
            ra.size = ra.ra_pages
            ra.async_size = ra.ra_pages // 4
            ra.order = 0
        self.ra_order(ra.start)
        return self._take()

    def async_mmap(self, index: int, marked: bool, folio_pages: int, advice: str) -> list[Folio]:
        """``do_async_mmap_readahead``: a fault found the folio holding ``index`` (the caller
        clears PG_readahead when ``marked``)."""
        ra = self.ra
        if advice == "random" or ra.ra_pages == 0:
            return []
        if ra.mmap_miss:
            ra.mmap_miss -= 1
        if marked:
            self.async_ra(index, folio_pages, ra.ra_pages)
        return self._take()

    def mapped_around(self, pages: int) -> None:
        """``filemap_map_pages``: pages mapped by fault-around count as hits (``mmap_miss``
        falls by that many, not below 0)."""
        self.ra.mmap_miss = max(0, self.ra.mmap_miss - pages)


__all__ = ["MAX_PAGECACHE_ORDER", "MMAP_LOTSAMISS", "Folio", "RaState", "Readahead",
           "get_init_ra_size", "get_next_ra_size", "page_cache_next_miss", "page_cache_prev_miss"]
