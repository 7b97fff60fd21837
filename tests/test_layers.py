"""The packages of src/pfsim import each other in one direction only.

Every ``import`` / ``from ... import`` of a pfsim module is collected from the source with
``ast``, including imports inside functions (a lazy import is still a dependency), but not
those under ``if TYPE_CHECKING:`` (annotations only).  A module's *package* is the first name
under ``pfsim`` (``pfsim.guest.fault`` → ``guest``; ``pfsim.simulation`` → ``simulation``;
``pfsim`` itself → ``__init__``).

The layers, lowest first (a package may import its own layer's modules only in the
composition root, and any lower layer):

======================  =====================================================================
utilities               errors, units, numba_cache (where compiled code is cached),
                        small_pages (no huge-page advice on a run's arrays)
foundations             engine (event loop, array heap, RNG), config (schema, loading),
                        trace (trace readers), workload (access patterns), replacement
                        (page-replacement policies replayed over traces, stack distances)
machine                 what guest and host share: page-table and frame constants, the host
                        memory arrays, the compiled per-access loop, the async-PF ABIs
sched                   tasks and schedulers (guest and host use the same)
guest, hypervisor       the guest kernel and the host; neither imports the other
cluster                 the ALMOS-MKH VMM (extends guest)
compiled                the compiled core (ports guest and host to numba)
composition root        simulation, apf_modes, api, cli, report, tracedriven
                        (trace replay, miss-ratio curves), sweeps (parameter
                        sweeps on Dask), boundary (exit statuses), output (result files),
                        footprint (memory estimate), validate (fault counts
                        against this machine's kernel), tracing (run timelines
                        for Perfetto), sampling (time series of a
                        run), result_tables (results as DataFrames, CSV, Parquet),
                        plot (figures), html_report (report.html), sweep_report (a
                        sweep directory in both), views (the report
                        and plot commands), console_tables (tables fitted to the
                        terminal), ``pfsim`` itself
======================  =====================================================================

On top of the layer order, the package graph must have no cycle at all.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"
ROOT = SRC / "pfsim"

LAYERS: tuple[frozenset[str], ...] = (
    frozenset({"errors", "units", "numba_cache", "small_pages"}),
    frozenset({"engine", "config", "trace", "workload", "replacement"}),
    frozenset({"machine"}),
    frozenset({"sched"}),
    frozenset({"guest", "hypervisor"}),
    frozenset({"cluster"}),
    frozenset({"compiled"}),
    frozenset({"simulation", "apf_modes", "api", "cli", "report", "tracedriven", "sweeps", "__init__",
               "__main__", "boundary", "output", "footprint", "validate", "tracing", "sampling",
               "result_tables", "plot", "html_report", "views", "console_tables",
               "sweep_report"}),
)
COMPOSITION_ROOT = len(LAYERS) - 1


def _module_name(path: Path, src: Path = SRC) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def _exists(module: str, src: Path) -> bool:
    base = src.joinpath(*module.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(path: Path, src: Path = SRC) -> list[tuple[int, str]]:
    """(line, pfsim module) of every import in ``path`` (a file under ``src``) outside
    ``if TYPE_CHECKING:``; ``from pfsim.x import y`` names ``pfsim.x.y`` when that is a module."""
    tree = ast.parse(path.read_text(), filename=str(path))
    here = _module_name(path, src)
    package = here if _is_package(path) else here.rpartition(".")[0]
    found: list[tuple[int, str]] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.append((node.lineno, alias.name))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                base_parts = base_parts[:len(base_parts) - node.level + 1]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.append((node.lineno, candidate if _exists(candidate, src) else base))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return [(line, name) for line, name in found if name == "pfsim" or name.startswith("pfsim.")]


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _layer(package: str) -> int:
    for index, members in enumerate(LAYERS):
        if package in members:
            return index
    raise AssertionError(f"package {package!r} is in no layer: add it to LAYERS")


def _edges() -> list[tuple[str, str, str]]:
    """(importing package, imported package, where) for every cross-package import."""
    edges = []
    for path in sorted(ROOT.rglob("*.py")):
        module = _module_name(path)
        for line, target in _imports(path):
            a, b = _package(module), _package(target)
            if a != b:
                edges.append((a, b, f"{path.relative_to(SRC)}:{line} imports {target}"))
    return sorted(set(edges))


def test_every_package_has_a_layer():
    packages = {_package(_module_name(path)) for path in ROOT.rglob("*.py")}
    for package in packages:
        _layer(package)


def test_imports_follow_the_layers():
    """A layer imports only lower layers (the composition root also imports itself)."""
    bad = []
    for a, b, where in _edges():
        la, lb = _layer(a), _layer(b)
        if lb > la or (lb == la and la != COMPOSITION_ROOT):
            bad.append(f"{where} ({a} is layer {la}, {b} is layer {lb})")
    assert not bad, "imports against the layer order:\n" + "\n".join(bad)


def test_no_import_cycle_between_packages():
    graph: dict[str, set[str]] = {}
    where: dict[tuple[str, str], str] = {}
    for a, b, site in _edges():
        graph.setdefault(a, set()).add(b)
        graph.setdefault(b, set())
        where.setdefault((a, b), site)
    # Tarjan's strongly connected components: a component of two or more packages is a cycle
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph[node]):
            if succ not in index:
                connect(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    report = []
    for component in cycles:
        members = set(component)
        sites = [site for (a, b), site in sorted(where.items()) if a in members and b in members]
        report.append(f"{' <-> '.join(component)}:\n  " + "\n  ".join(sites))
    assert not cycles, "import cycles between packages:\n" + "\n".join(report)


def test_the_collector_sees_lazy_imports_and_skips_type_checking(tmp_path):
    """The collector's own rules, on a small package."""
    package = tmp_path / "pfsim"
    (package / "guest").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "api.py").write_text("")
    (package / "guest" / "__init__.py").write_text("")
    probe = package / "guest" / "probe.py"
    probe.write_text(
        "from typing import TYPE_CHECKING\n"
        "import pfsim.engine\n"
        "if TYPE_CHECKING:\n"
        "    from pfsim.hypervisor.host import Host\n"
        "else:\n"
        "    from pfsim.units import PAGE_SIZE\n"
        "def f():\n"
        "    from pfsim.cluster.vmm import ClusterVmm\n"
        "    from pfsim import api, run\n"
        "    from . import sibling\n"
        "    from ..sched import Task\n")
    names = [name for _line, name in _imports(probe, tmp_path)]
    assert names == ["pfsim.engine", "pfsim.units", "pfsim.cluster.vmm", "pfsim.api", "pfsim",
                     "pfsim.guest", "pfsim.sched"]
