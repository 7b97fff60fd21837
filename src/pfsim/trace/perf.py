"""``perf script`` page-fault samples.

Record every fault with its data address, then print the samples with the address field::

    perf record -e page-faults -c 1 -d -- CMD ARGS
    perf script -F comm,tid,time,event,addr > faults.perf

which gives lines such as (perf 6.x)::

              ls 23894  5559.585075: page-faults:     55c4cb63d5c0

A sample is a line whose event name ends in ``faults`` (``page-faults``, ``faults``,
``minor-faults``, ``major-faults``, with any ``:u``-style modifier); its address is the first
hex number after the event. Tracepoint samples of ``exceptions:page_fault_user`` or
``exceptions:page_fault_kernel`` give theirs as ``address=0x...``. Other lines are bad lines.
``perf script`` without ``-F ...addr`` prints the instruction pointer where the address would be;
the reader refuses that layout (:mod:`pfsim.trace.reader`).
"""

from __future__ import annotations

import re

PERF_SAMPLE = re.compile(r"\S*faults(:[a-zA-Z]+)*:\s+(0x)?[0-9a-fA-F]+\b|"
                         r"exceptions:page_fault_(user|kernel):.*\baddress=0x[0-9a-fA-F]+")
"""A ``perf script`` page-fault sample line (for format detection and hints)."""
DEFAULT_LAYOUT = re.compile(r"\s[0-9]+\s+\S*faults\S*:\s+[0-9a-fA-F]+\s+\S+\+0x[0-9a-fA-F]+")
"""``perf script``'s default fields: a period, the event, then ``ip sym+off`` (no address)."""
