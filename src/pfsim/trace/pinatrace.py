"""Intel Pin ``pinatrace`` traces (``pin -t pinatrace.so -- CMD``).

The ``pinatrace`` example tool of the Pin kit (``source/tools/ManualExamples/pinatrace.cpp``)
writes one line per data access, ``fprintf(trace,"%p: R %p\\n", ip, addr)`` in
``RecordMemRead`` and the same with ``W`` in ``RecordMemWrite``::

    0x7f3c1a2b4c10: R 0x7ffd5e6f7a88
    0x7f3c1a2b4c17: W 0x55d0c0a1b2c8

and ``#eof`` at the end. Every ``R`` and ``W`` line is one access to the page of its second
address; lines starting with ``#`` and blank lines are skipped.
"""

from __future__ import annotations

import re

PIN_LINE = re.compile(r"^0x[0-9a-fA-F]+: [RW] 0x[0-9a-fA-F]+\s*$")
"""A pinatrace access line (for format detection and hints)."""
