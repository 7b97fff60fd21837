"""The decorator of every function of the compiled core.

``_nrt=False`` compiles without numba's reference-counting runtime.  The core never allocates
(its arrays are made in Python by :mod:`pfsim.compiled.run` and live as long as the run), so
the runtime has nothing to do in it; with it on, every call that passes the machine (about sixty
arrays) pays an atomic increment and decrement per array, which measured as most of the core's
time.  Without it, the arrays are plain pointers.  Any allocation in a core function fails to
compile, which keeps the rule checked.
"""

from __future__ import annotations

from numba import njit

core = njit(cache=True, nogil=True, _nrt=False)
core_inline = njit(cache=True, nogil=True, _nrt=False, inline="always")
"""For the few-line helpers on the hottest paths (the tick and steal-time checks of every
running stretch and every charge): inlined into their callers by numba itself."""

# the machine reaches compiled code as a View (one pointer, not hundreds of arguments); its
# numba type must be registered before any core function is compiled or loaded from the cache
from pfsim.compiled import view as _view  # noqa: E402,F401
