"""Trace formats: their names, units, how a file's format is recognised, and error hints.

=============  ==========================================  ===============================
format         one access per                               unit of the number
=============  ==========================================  ===============================
text           line: a decimal or ``0x`` hex number         decimal: page, hex: byte
csv            row: the number in one column                by column name, else as text
npy            element of a 1-D integer array               page
lackey         valgrind lackey record (``--lackey-kinds``)  byte (always)
oracleGeneral  24-byte libCacheSim record (``obj_id``)      page
perf           ``perf script`` page-fault sample            byte (always)
pinatrace      Intel Pin ``pinatrace`` line                 byte (always)
=============  ==========================================  ===============================

``--unit page|byte`` overrides the unit of the formats that hold plain numbers (text, csv,
npy, oracleGeneral); lackey, perf and pinatrace hold byte addresses only.

Without ``--format``: a file whose suffix names a format (``.csv``, ``.npy``, ``.lackey``,
``.perf``, ``.pinatrace``, ``.oracleGeneral``, before any ``.gz``/``.zst``) is read as that
format; any other file (``.txt``, ``.log``, ``.out``, standard input...) by its content: the
``.npy`` magic, then the first lines that look like lackey, pinatrace or perf output, then a
comma (csv), else text.
"""

from __future__ import annotations

import re

from pfsim.trace.binary import NPY_MAGIC
from pfsim.trace.perf import PERF_SAMPLE
from pfsim.trace.pinatrace import PIN_LINE

FORMATS = ("text", "csv", "npy", "lackey", "oracleGeneral", "perf", "pinatrace")
BINARY_FORMATS = ("npy", "oracleGeneral")
ADDRESS_FORMATS = ("lackey", "perf", "pinatrace")
"""Formats whose numbers are byte addresses by construction (``--unit page`` is refused)."""
UNITS = ("page", "byte")

_SUFFIXES = {".csv": "csv", ".npy": "npy", ".lackey": "lackey", ".perf": "perf",
             ".pinatrace": "pinatrace", ".oraclegeneral": "oracleGeneral"}
_GUESS_SUFFIXES = {".txt": "text", ".trace": "text", ".out": "lackey"}
_COMPRESSED = (".gz", ".zst", ".zstd")

LACKEY_LINE = re.compile(r"^(==|--)[0-9]+(==|--)|^ ?[ILSM] +[0-9a-fA-F]+,[0-9]+\s*$")
_NUMBER = re.compile(r"^(0[xX][0-9a-fA-F]+|[0-9]+)$")


def format_names() -> str:
    return ", ".join(FORMATS)


def canonical_format(name: str) -> str | None:
    """The format called ``name`` (case-insensitive), or None."""
    for known in FORMATS:
        if known.lower() == name.lower():
            return known
    return None


def suffix_format(name: str) -> str | None:
    """The format a file name's suffix names for sure (compression suffixes ignored)."""
    lowered = name.lower()
    for suffix in _COMPRESSED:
        if lowered.endswith(suffix):
            lowered = lowered[:-len(suffix)]
    if lowered.endswith(".bin"):
        lowered = lowered[:-4]
    for suffix, fmt in _SUFFIXES.items():
        if lowered.endswith(suffix):
            return fmt
    return None


def guess_format(name: str) -> str:
    """The format a generic suffix suggests when there is no content to look at."""
    lowered = name.lower()
    for suffix, fmt in _GUESS_SUFFIXES.items():
        if lowered.endswith(suffix):
            return fmt
    return "text"


def line_format(line: str) -> str | None:
    """The trace format a single line of text belongs to, if it is recognisable."""
    if LACKEY_LINE.match(line):
        return "lackey"
    if PIN_LINE.match(line):
        return "pinatrace"
    if PERF_SAMPLE.search(line):
        return "perf"
    content = line.split("#", 1)[0].strip()
    if not content:
        return None
    if _NUMBER.match(content):
        return "text"
    fields = [field.strip() for field in content.split(",")]
    if len(fields) > 1 and any(_NUMBER.match(field) for field in fields):
        return "csv"
    return None


def sniff_format(head: bytes) -> str | None:
    """The format of a trace from its first bytes, or None if they say nothing."""
    if head.startswith(NPY_MAGIC):
        return "npy"
    lines = head.decode("latin-1").splitlines()[:200]
    for line in lines:
        fmt = line_format(line)
        if fmt in ("lackey", "pinatrace", "perf"):
            return fmt
    for line in lines:
        content = line.split("#", 1)[0].strip()
        if content:
            return "csv" if "," in content else "text"
    return None
