"""Binary traces, read in fixed-size blocks of records: ``npy`` and libCacheSim ``oracleGeneral``.

- ``npy``: a 1-D integer array saved by ``numpy.save`` (any integer dtype and byte order).
  Each element is one access: a page number (``--unit page``, the default) or a byte address.
- ``oracleGeneral``: libCacheSim's binary request format (``libCacheSim/traceReader/
  customized/oracleGeneral.h``), packed little-endian records of 24 bytes::

      uint32 clock_time; uint64 obj_id; uint32 obj_size; int64 next_access_vtime

  Each record is one access to object ``obj_id``: a page number (``--unit page``, the
  default) or a byte address (``--unit byte``); ``obj_size`` and the times are not used. Such
  files are often zstd-compressed (``.oracleGeneral.zst``), which the reader undoes.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from pfsim.errors import TraceFormatError
from pfsim.trace.source import Source

ORACLE_GENERAL = np.dtype([("clock_time", "<u4"), ("obj_id", "<u8"), ("obj_size", "<u4"),
                           ("next_access_vtime", "<i8")], align=False)
NPY_MAGIC = b"\x93NUMPY"
_INT64_MAX = np.iinfo(np.int64).max


def npy_dtype(source: Source) -> tuple[np.dtype, int | None]:
    """Read the ``.npy`` header of ``source``: (element dtype, element count)."""
    from numpy.lib import format as npy_format

    try:
        version = npy_format.read_magic(source)
        if version == (1, 0):
            shape, _fortran, dtype = npy_format.read_array_header_1_0(source)
        else:
            shape, _fortran, dtype = npy_format.read_array_header_2_0(source)
    except (ValueError, OSError, EOFError) as exc:
        raise TraceFormatError(f"{source.name}: expected a .npy array file, could not read "
                               f"its header: {exc}") from None
    if len(shape) != 1 or dtype.kind not in "iu":
        raise TraceFormatError(f"{source.name}: expected a 1-D integer array of page numbers, "
                               f"got {dtype} of shape {shape}")
    return dtype, shape[0]


def iter_records(source: Source, dtype: np.dtype, field: str | None, count: int | None,
                 shift: int, what: str, block: int = 1 << 20) -> Iterator[np.ndarray]:
    """Yield ``int64`` page numbers of ``block`` records at a time.

    ``field`` picks a field of a structured ``dtype``; ``shift`` turns byte addresses into
    pages; ``what`` names an element in errors (``element``, ``record``).
    """
    buffer = bytearray(block * dtype.itemsize)
    done = 0
    while count is None or done < count:
        want = block if count is None else min(block, count - done)
        got = source.read_into(memoryview(buffer)[:want * dtype.itemsize])
        if got % dtype.itemsize:
            raise TraceFormatError(f"{source.name}: {what} {done + got // dtype.itemsize}: the "
                                   f"file ends inside a {dtype.itemsize}-byte {what}")
        if got == 0:
            if count is not None:
                raise TraceFormatError(f"{source.name}: expected {count} elements, the file "
                                       f"ends after {done}")
            return
        records = np.frombuffer(buffer, dtype=dtype, count=got // dtype.itemsize)
        values = records[field] if field else records
        if values.dtype.kind == "i":
            bad = np.flatnonzero(values < 0)
        else:
            bad = np.flatnonzero(values > _INT64_MAX)
        if bad.size:
            raise TraceFormatError(f"{source.name}: {what} {done + int(bad[0])}: expected a "
                                   f"number in 0..2**63-1, got {values[bad[0]]}")
        pages = values.astype(np.int64)
        if shift:
            pages >>= shift
        done += pages.size
        yield pages
