"""Memory traces: stream text, CSV, npy, valgrind lackey, libCacheSim oracleGeneral, perf and
Pin pinatrace files (plain, gzip or zstd, or standard input) as chunks of page numbers."""

from pfsim.trace.formats import ADDRESS_FORMATS, FORMATS, UNITS, sniff_format, suffix_format
from pfsim.trace.reader import DEFAULT_PAGE_SIZE, TraceReader, check_page_size, read_trace

__all__ = ["ADDRESS_FORMATS", "DEFAULT_PAGE_SIZE", "FORMATS", "UNITS", "TraceReader",
           "check_page_size", "read_trace", "sniff_format", "suffix_format"]
