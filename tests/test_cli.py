"""The command line: bundled examples, determinism, and one-line errors with exit status 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def pfsim(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pfsim", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def test_quickstart_runs_and_writes_result_json(tmp_path):
    """The README's first command: a summary on stdout, a FINAL line, result.json with the
    stable names result.json promises (docs/results.md)."""
    out = tmp_path / "q"
    proc = pfsim("run", str(EXAMPLES / "quickstart.toml"), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "FINAL outcome=ok" in proc.stdout.splitlines()[-1]
    result = json.loads((out / "result.json").read_text())
    for key in ("pfsim_version", "seed", "config_digest", "sim_time_ns"):
        assert key in result
    vm = result["vms"]["vm0"]
    assert vm["outcome"] == "ok"
    for p in vm["processes"].values():
        for key in ("min_flt", "maj_flt", "segv", "work", "cow_copies", "cow_reuses",
                    "false_pgfault_nr", "local_pgfault_nr", "global_pgfault_nr"):
            assert isinstance(p[key], int)
    for t in vm["tasks"].values():
        for key in ("min_flt", "maj_flt", "segv", "work"):
            assert isinstance(t[key], int)
    for v in vm["vcpus"]:
        for key in ("busy_ns", "idle_ns", "stalled_ns", "context_switches"):
            assert isinstance(v[key], int)
        assert v["busy_ns"] + v["idle_ns"] + v["stalled_ns"] == result["sim_time_ns"]
    for key in ("not_present", "page_ready", "early_completions", "sync_fallbacks"):
        assert vm["async_pf"][key] == 0
    for key in ("evictions", "swap_ins", "swap_outs", "ept_violations"):
        assert result["host"][key] == 0


def test_segv_example_kills_one_process_and_the_other_completes(tmp_path):
    proc = pfsim("run", str(EXAMPLES / "segv.toml"), "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    vm = json.loads((tmp_path / "result.json").read_text())["vms"]["vm0"]
    buggy, worker = vm["processes"]["buggy"], vm["processes"]["worker"]
    assert buggy["exit"] == "segv" and buggy["signal"]["si_code"] == "SEGV_MAPERR"
    assert buggy["signal"]["address"] == "0xdead0000"
    assert buggy["accesses"] == 50_000 and buggy["compute_units"] == 0
    assert worker["exit"] == "exited" and worker["accesses"] == 400_000 and worker["segv"] == 0


def test_same_seed_gives_byte_identical_results_and_another_seed_differs(tmp_path):
    """Seed 3 twice: the same bytes.  Seed 4: the same config digest, but a different result
    once the ``seed`` field itself is set aside (the access streams differ)."""
    runs = {}
    for name, seed in (("a", "3"), ("b", "3"), ("c", "4")):
        proc = pfsim("run", str(EXAMPLES / "quickstart.toml"), "--seed", seed, "--out",
                     str(tmp_path / name), "--quiet")
        assert proc.returncode == 0, proc.stderr
        runs[name] = (tmp_path / name / "result.json").read_bytes()
    assert runs["a"] == runs["b"]
    first, other = json.loads(runs["a"]), json.loads(runs["c"])
    assert (first.pop("seed"), other.pop("seed")) == (3, 4)
    assert first["config_digest"] == other["config_digest"]
    assert first != other


BAD_CONFIG = """
[guest]
vcpus = 2
[[processes]]
name = "p"
vsegs = [{ name = "h", type = "anon", size = "1MiB" }]
[[processes.threads]]
steps = [{ op = "access", vseg = "h", accesses = 10 }]
"""


@pytest.mark.parametrize(("edit", "message"), [
    (("vcpus = 2", "vcpus = 2\nvcpu = 3"), "guest.vcpu: unknown key; allowed here: balloon, clusters,"),
    (("vcpus = 2", 'vcpus = "two"'), "guest.vcpus: input should be a valid integer"),
    (('size = "1MiB"', 'size = "1 furlong"'), "processes[0].vsegs[0].size: a size is a string with a unit in B, KiB, MiB"),
    (('size = "1MiB"', 'size = "256TiB"'), "processes[0].vsegs[0].size: 281474976710656 bytes is larger than the user address space (128TiB)"),
    (("vcpus = 2", 'vcpus = 2\nswap.device = "nvme"\nswap.size = "5KiB"'),
     "guest.swap.size: must be a positive whole number of 4KiB pages"),
    (('accesses = 10', 'accesses = 10, cpu = 1'), "processes[0].threads[0].steps[0].cpu: unknown key"),
    (('steps = [', 'cpu = 5\nsteps = ['), "processes[0].threads[0].cpu: vCPU 5 does not exist (guest.vcpus = 2)"),
    (('vseg = "h"', 'vseg = "nope"'), "processes[0].threads[0].steps[0].vseg: unknown vseg 'nope'; this process has: h"),
    (('op = "access"', 'op = "jump"'), "processes[0].threads[0].steps[0].op: unknown step op"),
    (('accesses = 10', 'accesses = 10, duration = "1s"'), "give exactly one of accesses or duration"),
    (('vcpus = 2', 'vcpus = 0'), "guest.vcpus: input should be greater than or equal to 1"),
    (('name = "p"', 'name = "p"\n[oops'), "malformed TOML"),
])
def test_bad_config_exits_2_with_one_line(tmp_path, edit, message):
    """Each kind of bad input: exit status 2, exactly one line on stderr naming the key, no
    traceback, and no output directory created."""
    config = tmp_path / "bad.toml"
    config.write_text(BAD_CONFIG.replace(*edit, 1))
    out = tmp_path / "out"
    proc = pfsim("run", str(config), "--out", str(out))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("pfsim: error: ")
    assert message in lines[0]
    assert "Traceback" not in proc.stderr
    assert not out.exists()


@pytest.mark.parametrize(("args", "message"), [
    (("run", "does/not/exist.toml"), "does/not/exist.toml: no such file"),
    (("run", "{cfg}", "--set", "guest.vcpus"), "expected dotted.key=value"),
    (("run", "{cfg}", "--set", 'guest.memory="4MiB"'), "guest.mm.kernel_reserved: must be smaller than guest.memory"),
    (("run", "{cfg}", "--seed", "abc"), "'abc' is not a valid integer"),
    (("run", "{cfg}", "--bogus"), "No such option '--bogus'"),
    (("frobnicate",), "No such command 'frobnicate'"),
])
def test_bad_flags_exit_2_with_one_line(tmp_path, args, message):
    config = tmp_path / "ok.toml"
    config.write_text(BAD_CONFIG)
    proc = pfsim(*(a.replace("{cfg}", str(config)) for a in args), cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert not (tmp_path / "out").exists()


def test_set_overrides_reach_the_model(tmp_path):
    config = tmp_path / "ok.toml"
    config.write_text(BAD_CONFIG)
    proc = pfsim("run", str(config), "--out", str(tmp_path / "o"), "--set", "guest.vcpus=3",
                 "--set", "processes[0].threads[0].steps[0].accesses=25")
    assert proc.returncode == 0, proc.stderr
    vm = json.loads((tmp_path / "o" / "result.json").read_text())["vms"]["vm0"]
    assert len(vm["vcpus"]) == 3 and vm["processes"]["p"]["accesses"] == 25


def test_overcommit_example_runs_and_compares(tmp_path):
    """The README's comparison command on a 30 ms slice of the overcommit example: one row
    per mode, one result.json per mode, every run ok."""
    proc = pfsim("run", str(EXAMPLES / "overcommit.toml"), "--set", 'sim.duration="30ms"',
                 "--compare", "hypervisor.async_pf=off,kvm", "--out", str(tmp_path), "--wide")
    assert proc.returncode == 0, proc.stderr
    finals = [line for line in proc.stdout.splitlines() if line.startswith("FINAL ")]
    assert [line.split()[1] for line in finals] == ["hypervisor.async_pf=off", "hypervisor.async_pf=kvm"]
    progress = {}
    for mode in ("off", "kvm"):
        result = json.loads((tmp_path / f"hypervisor.async_pf={mode}" / "result.json").read_text())
        assert result["vms"]["vm0"]["outcome"] == "ok" and result["sim_time_ns"] == 30_000_000
        assert result["vms"]["vm0"]["async_pf"]["mode"] == mode
        processes = result["vms"]["vm0"]["processes"]
        progress[mode] = (processes["counters"]["compute_units"], processes["writers"]["accesses"])
    # the comparison's compute units and accesses are the counting threads' and the writers'
    # progress from result.json, each with its ratio to the first variant
    header = next(line for line in proc.stdout.splitlines() if "compute_units" in line)
    names = [cell.strip() for cell in header.split("┃")[1:-1]]
    for mode in ("off", "kvm"):
        row = next(line for line in proc.stdout.splitlines() if line.startswith(f"│ {mode} "))
        cells = dict(zip(names, (cell.strip() for cell in row.split("│")[1:-1]), strict=True))
        units, accesses = progress[mode]
        assert cells["compute_units"] == f"{units:,}" and cells["accesses"] == f"{accesses:,}"
        assert cells["compute ratio"] == f"{units / progress['off'][0]:.3f}"
        assert cells["access ratio"] == f"{accesses / progress['off'][1]:.3f}"


def lru_faults(pages: list[int], frames: int) -> int:
    """An obvious LRU on an OrderedDict, independent of pfsim's kernels."""
    from collections import OrderedDict

    resident: OrderedDict[int, None] = OrderedDict()
    faults = 0
    for page in pages:
        if page in resident:
            resident.move_to_end(page)
            continue
        faults += 1
        if len(resident) == frames:
            resident.popitem(last=False)
        resident[page] = None
    return faults


def test_replay_bundled_trace_matches_an_independent_lru():
    trace = EXAMPLES / "traces" / "zipf-20k.txt"
    pages = [int(line) for line in trace.read_text().splitlines() if line and not line.startswith("#")]
    proc = pfsim("replay", str(trace), "--policy", "lru", "--frames", "100,400", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    for row, frames in zip(rows, (100, 400), strict=True):
        assert (row["frames"], row["requests"]) == (frames, len(pages))
        assert row["faults"] == lru_faults(pages, frames)


OOM_CONFIG = """
[guest]
memory = "16MiB"
vcpus = 2
[[processes]]
name = "small"
vsegs = [{ name = "h", type = "anon", size = "1MiB" }]
[[processes.threads]]
stack = false
steps = [{ op = "access", vseg = "h", pattern = "sequential", stride = "4KiB", accesses = 100, write_ratio = 1.0 },
         { op = "compute", units = 20000 }]
[[processes]]
name = "hog"
start = "50us"
vsegs = [{ name = "h", type = "anon", size = "12MiB" }]
[[processes.threads]]
stack = false
steps = [{ op = "access", vseg = "h", pattern = "sequential", stride = "4KiB", accesses = 3000, write_ratio = 1.0 }]
"""


def test_an_oom_kill_is_in_the_summary_header(tmp_path):
    """16 MiB of guest memory (8 MiB reserved, 2048 user frames) cannot hold the hog's 3000
    pages: the OOM killer kills it; the VM itself is fine, and the header says both."""
    config = tmp_path / "oom.toml"
    config.write_text(OOM_CONFIG)
    proc = pfsim("run", str(config), "--out", str(tmp_path / "o"))
    assert proc.returncode == 0, proc.stderr
    assert "processes (VM outcome: ok; OOM killer: 1 process killed)" in proc.stdout
    assert "hog" in proc.stdout and "oom" in proc.stdout


def test_the_command_list_gives_each_command_a_whole_sentence():
    """``pfsim --help`` and ``pfsim trace --help`` list every command with a summary that is not
    cut off mid-sentence ('...'), and sizes are shown as SIZE, not TEXT."""
    from click.testing import CliRunner

    from pfsim.cli import cli

    runner = CliRunner()
    for args, names in ((["--help"], {"mrc", "plot", "replay", "report", "run", "sweep",
                                      "trace", "validate"}),
                        (["trace", "--help"], {"record"})):
        text = runner.invoke(cli, args, terminal_width=100).output
        listed = text.split("Commands:\n", 1)[1].splitlines()
        assert {line.split()[0] for line in listed} == names, text
        assert not any(line.rstrip().endswith("...") for line in listed), text
    for command in (["replay"], ["mrc"], ["trace", "record"]):
        text = runner.invoke(cli, [*command, "--help"], terminal_width=100).output
        assert "--page-size SIZE" in text and "TEXT" not in text, text


@pytest.mark.parametrize("args", [
    ("run", "q.toml", "--out", ""),
    ("run", "q.toml", "--trace", ""),
    ("sweep", "s.toml", "--serial", "--out", ""),
])
def test_an_empty_output_path_is_refused_not_read_as_the_current_directory(tmp_path, args):
    """pathlib reads '' as '.': --out "$DIR" with DIR unset wrote result.json, or a whole
    sweep's points/, failed/ and tables, into the current directory."""
    (tmp_path / "q.toml").write_text((EXAMPLES / "quickstart.toml").read_text())
    (tmp_path / "s.toml").write_text('base = "q.toml"\n')
    proc = pfsim(*args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    flag = args[-2]
    assert proc.stderr.splitlines() == [
        f"pfsim: error: Invalid value for '{flag}': an empty path; give a file or directory "
        f"name (see 'pfsim {args[0]} --help')"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["q.toml", "s.toml"]
