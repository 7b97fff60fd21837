"""Run timelines for Perfetto (``pfsim run --trace``): options, the record-to-timeline step and
the two writers (Perfetto protobuf, Chrome JSON).  The records themselves are taken by the
engines into :class:`pfsim.machine.trace_records.TraceRecorder`; see docs/tracing.md."""

from pfsim.tracing.options import DEFAULT_LIMIT, TraceOptions, parse_window, trace_options
from pfsim.tracing.write import names_of, write_trace

__all__ = ["DEFAULT_LIMIT", "TraceOptions", "names_of", "parse_window", "trace_options",
           "write_trace"]
