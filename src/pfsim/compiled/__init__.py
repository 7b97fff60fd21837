"""The compiled core: the host-overcommit event loop in numba (``sim.engine = "compiled"``).

numba's on-disk cache (``cache=True``) is keyed by the source file of the function it caches,
so a change to a callee in another file would leave a caller's cached machine code stale.  The
core spans several files, so at import this package hashes all of them and drops the cached
code of every one when the hash changed (the next call compiles afresh).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[1]
_SOURCES = ("compiled/state.py", "compiled/jit.py", "compiled/view.py", "compiled/sched.py", "compiled/hostmem.py",
            "compiled/machine.py", "compiled/apf_kvm.py", "compiled/apf_s390.py",
            "engine/arrayheap.py", "machine/scan.py", "hypervisor/reclaim/resident.py",
            "machine/hostmem_layout.py", "machine/frames.py", "machine/pte.py",
            "machine/trace_records.py", "machine/latency.py")
"""Every file whose njit code the core calls or whose constants it compiles in: the core's own
files, the array heap, the per-access loop (machine/scan.py), the list primitive of the
resident reclaim, the trace recorder, and the machine layer's constants (host memory layout,
frame kinds, PTE bits)."""


def _drop_stale_caches() -> None:
    digest = hashlib.sha256()
    for name in _SOURCES:
        path = _ROOT / name
        digest.update(path.read_bytes() if path.exists() else b"")
    stamp = _ROOT / "compiled" / "__pycache__" / "core-sources.sha256"
    try:
        if stamp.exists() and stamp.read_text() == digest.hexdigest():
            return
        for name in _SOURCES:
            cache = (_ROOT / name).parent / "__pycache__"
            stem = Path(name).stem
            for pattern in (f"{stem}.*.nbi", f"{stem}.*.nbc"):
                for old in cache.glob(pattern):
                    old.unlink(missing_ok=True)
        stamp.parent.mkdir(exist_ok=True)
        stamp.write_text(digest.hexdigest())
    except OSError:  # a read-only install: numba falls back to compiling in memory
        pass


_drop_stale_caches()
