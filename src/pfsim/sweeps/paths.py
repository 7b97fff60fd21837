"""Directory names made from user text (``--compare`` values), always one safe component.

A name made only of letters, digits and ``._,=+-[]`` and at most :data:`MAX_NAME` characters is
used as it is (``hypervisor.async_pf=kvm``), so the common case stays readable; anything else
(``/``, ``..`` as a whole name is impossible since every name holds ``=``, spaces, non-ASCII,
300 characters) becomes its readable part with the other characters replaced by ``_``, cut,
and followed by ``~`` and 12 hex digits of the SHA-256 of the whole text.  ``~`` never appears
in a name used as it is, so the two kinds cannot collide.
"""

from __future__ import annotations

import hashlib
import re

MAX_NAME = 120
"""Longest name kept as it is (file systems allow 255 bytes per component)."""
_SAFE = re.compile(r"[A-Za-z0-9._,=+\[\]-]+")


def safe_name(text: str) -> str:
    """A single, portable path component for ``text``, unique per text."""
    if _SAFE.fullmatch(text) and len(text) <= MAX_NAME and text not in (".", ".."):
        return text
    readable = re.sub(r"[^A-Za-z0-9._,=+\[\]-]", "_", text)[:80].lstrip(".")
    return f"{readable}~{hashlib.sha256(text.encode('utf-8', 'surrogatepass')).hexdigest()[:12]}"
