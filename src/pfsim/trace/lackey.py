"""valgrind lackey traces (``valgrind --tool=lackey --trace-mem=yes``).

Lackey writes one record per memory access of the program (valgrind 3.x,
``lackey/lk_main.c``, ``trace_instr`` / ``trace_load`` / ``trace_store`` / ``trace_modify``)::

    I  0401ab70,3        instruction fetch: address (hex), size (decimal)
     L 04222cac,8        data load
     S 1fff000768,8      data store
     M 0421c7f0,4        data modify (a load and a store of the same bytes: one access)

and valgrind's own lines start with ``==pid==`` or ``--pid--``; both are skipped. Only the
kinds in ``kinds`` (a bit mask of :data:`KIND_BITS`) become accesses; the others are read and
dropped. An access whose last byte lies in the next page counts both pages, in order; an access
longer than a page is an error.
"""

from __future__ import annotations

KIND_BITS = {"I": 1, "L": 2, "S": 4, "M": 8}
DEFAULT_KINDS = "LSM"
"""Data accesses only: instruction fetches are about three quarters of a lackey trace, nearly
all of them to a few hot code pages, so they multiply the request count (and divide the miss
ratio) without changing which data pages fault; ``--lackey-kinds ILSM`` keeps them."""


def kinds_mask(kinds: str) -> int:
    """Bit mask of the record kinds in ``kinds`` (letters of ``ILSM``, any order)."""
    mask = 0
    for letter in kinds.upper():
        if letter not in KIND_BITS:
            raise ValueError(f"expected letters of ILSM (I fetch, L load, S store, M modify), "
                             f"got {kinds!r}")
        mask |= KIND_BITS[letter]
    if mask == 0:
        raise ValueError("expected at least one of I, L, S, M")
    return mask
