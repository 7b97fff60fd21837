"""Write a run's trace: the names of its tasks, the timeline, the chosen format, atomically."""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING

from pfsim.machine.trace_records import TIME, TraceRecorder
from pfsim.tracing.options import TraceOptions
from pfsim.tracing.timeline import Names, build
from pfsim.units import NS_PER_S

if TYPE_CHECKING:
    from pfsim.simulation import Simulation


def names_of(simulation: Simulation, end_ns: int) -> Names:
    """The tids of ``simulation`` (after its run) and its machine's shape."""
    config = simulation.config
    guest = {task.tid: (task.name, process.pid, process.name)
             for process in simulation.kernel.processes for task in process.threads}
    for kt in simulation.kernel.kthreads:  # kswapd0, kworker/0:1: their own thread groups
        guest[kt.task.tid] = (kt.name, kt.task.tid, kt.name)
    host = simulation.host
    host_threads = {} if host is None else {t.tid: t.name for t in [*host.threads, *host.noise]}
    return Names(guest_threads=guest, host_threads=host_threads, vcpus=config.guest.vcpus,
                 host_cpus=config.hypervisor.host_cpus if host is not None else 0,
                 swap_device=config.hypervisor.swap.device, async_pf=config.hypervisor.async_pf,
                 end_ns=end_ns)


def write_trace(options: TraceOptions, recorder: TraceRecorder,
                names: Names) -> tuple[Path, str | None]:
    """Write the trace file; returns its path and the warning line when records were dropped."""
    timeline = build(recorder.rows)
    if options.fmt == "json":
        from pfsim.tracing import chrome_json

        text = io.StringIO()
        chrome_json.write(timeline, names, text)
        data = text.getvalue().encode("utf-8")
    else:
        from pfsim.tracing import perfetto  # imports Perfetto's protobuf bindings

        binary = io.BytesIO()
        perfetto.write(timeline, names, binary)
        data = binary.getvalue()
    path = options.out.write_bytes(options.path.name, data)
    warning = None
    if recorder.dropped:
        rows = recorder.rows
        last = int(rows[:, TIME].max()) if len(rows) else 0
        warning = (f"trace: {recorder.dropped:,} records dropped (the trace holds the first "
                   f"{len(rows):,}, up to {last / NS_PER_S:.3f} s); narrow it with "
                   f"--trace-window or raise --trace-limit")
    return path, warning
