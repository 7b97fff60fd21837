"""Ask Linux for small pages for pfsim's own arrays while a simulation is built and run.

On Linux numpy advises transparent huge pages (``madvise(MADV_HUGEPAGE)``) on the data of
large arrays: ``numpy/__init__.py`` (2.4) turns the advice on at import unless
``NUMPY_MADVISE_HUGEPAGE=0``, and ``/proc/self/smaps_rollup`` shows the threshold: a 5 MiB
``np.zeros`` written once per 4 KiB page adds 4 MiB of ``AnonHugePages``, a 3 MiB one none, and
none with the advice off.  A simulation's large arrays are indexed by frame or page-table slot
and written only where the run touches them (docs/model.md, "Page tables and address
limits"), and many large temporaries live for one teardown or one scan; with huge pages the kernel zeroes 2 MiB on the first write
to any of them (``do_huge_pmd_anonymous_page`` → ``clear_page_erms``, seen with ``perf``) where
4 KiB would do.  Measured with ``python benchmarks/bench_scale.py --cases 2`` (1 TiB vseg,
16 M first-touch faults): the run takes 5.0 CPU s with numpy's default and 2.8 s without (the
kernel's share falls from about 3 s to 0.9 s); the access-loop and host benchmarks
(``bench_guest.py``, ``bench_overcommit.py``) do not change beyond their noise.

:func:`small_pages` turns numpy's advice off for the block and restores what was set before
(``NUMPY_MADVISE_HUGEPAGE`` or an earlier call), so a program that imports pfsim keeps its own
choice for its own arrays (also when it runs simulations in several threads at once).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from numpy._core.multiarray import _set_madvise_hugepage  # what numpy/__init__.py calls

_lock = threading.Lock()
_active = 0  # blocks open now, in any thread
_before = True  # the setting to restore when the last one closes


@contextmanager
def small_pages() -> Iterator[None]:
    """No huge-page advice on arrays allocated inside the block.  The setting is process-wide:
    blocks open at once (simulations run in threads) share one "off", and the setting from
    before the first of them comes back when the last one closes."""
    global _active, _before
    with _lock:
        if _active == 0:
            _before = _set_madvise_hugepage(False)
        _active += 1
    try:
        yield
    finally:
        with _lock:
            _active -= 1
            if _active == 0:
                _set_madvise_hugepage(_before)
