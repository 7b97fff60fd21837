"""Memory traces: read text, CSV, ``.npy`` and valgrind lackey files into 4 KiB page numbers."""

from pfsim.trace.read import FORMATS, detect_format, read_trace

__all__ = ["FORMATS", "detect_format", "read_trace"]
