"""Every input that once ended in a Python traceback ends in exit status 2 and one line.

Each case is one of the tracebacks found by fuzzing (issue 14): the command runs in-process
through the console-script entry point; the test checks the exit status, that stderr is one
line ``pfsim: error: ...`` naming the key, file or path and what is allowed, that no
traceback is printed, and that no output directory or partial file is left behind.  The
internal-error path (exit 3, a crash report) is checked with a deliberately failing command.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pfsim.boundary import MAX_LINES
from pfsim.cli import main
from pfsim.errors import LINE_LIMIT, InvariantViolation

CONFIG = """\
[guest]
vcpus = 2
memory = "64MiB"
[[processes]]
name = "p"
vsegs = [{ name = "h", type = "anon", size = "1MiB" }]
[[processes.threads]]
steps = [{ op = "access", vseg = "h", accesses = 10 }]
"""


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of ``pfsim ARGS`` run in this process."""
    with pytest.raises(SystemExit) as exit_:
        main(list(args))
    out, err = capsys.readouterr()
    return exit_.value.code, out, err


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ok.toml").write_text(CONFIG)
    return tmp_path


def assert_one_error(code: int, err: str, *needles: str) -> str:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    line = lines[0]
    assert line.startswith("pfsim: error: ") and "Traceback" not in err
    assert len(line) <= LINE_LIMIT
    for needle in needles:
        assert needle in line, line
    return line


def leftovers(root: Path) -> list[str]:
    """Files and directories under ``root`` other than the test's own inputs."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if p.suffix not in (".toml", ".npy", ".txt") and p.name != "afile")


@pytest.mark.parametrize(("args", "needles"), [
    (("--set", "sim.seed=-1"), ("sim.seed:", "greater than or equal to 0")),
    (("--seed", "-1"), ("sim.seed:", "greater than or equal to 0")),
    (("--set", "guest.costs.entry=1000000000000000000000000000000"),
     ("guest.costs.entry:", "at most 1s")),
    (("--set", "processes[0].threads[0].steps[0].think=9223372036854775808"),
     ("processes[0].threads[0].steps[0].think:", "at most 9007199254740992 ns")),
    (("--set", "guest.costs.entry=inf"), ("guest.costs.entry:", "got the number inf")),
    (("--set", "processes[0].threads[0].steps[0].write_ratio=nan"),
     ("write_ratio:", "finite number")),
    (("--set", "processes[0].threads[0].steps[0].write_ratio=true"),
     ("write_ratio:", "valid number")),
    (("--set", "processes[0].threads[0].count=4294967297"),
     ("processes[0].threads[0].count:", "less than or equal to 4194304")),
    (("--set", "guest.vcpus=" + "[" * 3000 + "]" * 3000), ("guest.vcpus:", "nested more than 64")),
    (("--set", "guest.vcpus=4\nx=1"), ("--set", "the value must be on one line")),
    (("--set", "processes[0].name=p\udcff"), ("processes[0].name:", "non-printable")),
    (("--set", "processes[0].name=" + "n" * 100_000), ("processes[0].name:", "at most 256")),
    (("--set", 'guest.memory="64TiB"'), ("guest.memory:", "needs about", "available")),
    (("--set", f"guest.memory={(1 << 62)}"), ("guest.memory:", "needs about")),
    (("--set", 'guest.memory="64MB"'), ("guest.memory:", "write '64MiB'")),
    (("--set", "processes[0].threads[0].steps[0].think=0.5"),
     ("think:", "integer nanoseconds", "got the number 0.5")),
])
def test_bad_values_exit_2_with_one_line_and_write_nothing(capsys, workdir, args, needles):
    code, out, err = run_cli(capsys, "run", "ok.toml", "--out", "out", *args)
    assert_one_error(code, err, *needles)
    assert out == "" and leftovers(workdir) == []


def test_negative_seed_in_a_comparison(capsys, workdir):
    """Every variant is validated before any runs: nothing is written."""
    code, out, err = run_cli(capsys, "run", "ok.toml", "--out", "out",
                             "--compare", "sim.seed=2,-1")
    assert_one_error(code, err, "sim.seed:", "greater than or equal to 0")
    assert out == "" and leftovers(workdir) == []


def test_negative_seed_in_the_config_file(capsys, workdir):
    (workdir / "neg.toml").write_text("[sim]\nseed = -1\n" + CONFIG)
    code, _, err = run_cli(capsys, "run", "neg.toml", "--out", "out")
    assert_one_error(code, err, "sim.seed:")
    assert leftovers(workdir) == []


def test_deeply_nested_config_file(capsys, workdir):
    """tomllib recurses once per level: 5000 levels used to raise RecursionError."""
    (workdir / "deep.toml").write_text(CONFIG + "x = " + "[" * 5000 + "]" * 5000 + "\n")
    code, _, err = run_cli(capsys, "run", "deep.toml", "--out", "out")
    assert_one_error(code, err, "deep.toml:9:", "nested more than 64 deep")
    assert leftovers(workdir) == []


def test_nested_inline_tables_inside_strings_do_not_count(capsys, workdir):
    """Brackets inside strings and comments are not nesting."""
    (workdir / "str.toml").write_text(CONFIG.replace('name = "p"', 'name = "' + "[" * 100 + '"')
                                      + "# " + "{" * 100 + "\n")
    code, _, err = run_cli(capsys, "run", "str.toml", "--out", "out")
    assert code == 0, err


def test_config_that_is_not_utf8(capsys, workdir):
    (workdir / "latin1.toml").write_bytes(CONFIG.replace('"p"', '"caf\xe9"').encode("latin-1"))
    code, _, err = run_cli(capsys, "run", "latin1.toml", "--out", "out")
    assert_one_error(code, err, "latin1.toml:5: not UTF-8 text (byte 0xe9 at offset 60)",
                     "save the config as UTF-8")
    assert leftovers(workdir) == []


def test_huge_integer_literal_in_toml(capsys, workdir):
    """A 5000-digit integer makes tomllib raise ValueError (Python's int-string limit)."""
    (workdir / "big.toml").write_text(CONFIG.replace("vcpus = 2", "vcpus = " + "9" * 5000))
    code, _, err = run_cli(capsys, "run", "big.toml", "--out", "out")
    assert_one_error(code, err, "big.toml: malformed TOML")


def test_out_is_a_device(capsys, workdir):
    code, _, err = run_cli(capsys, "run", "ok.toml", "--out", "/dev/null")
    assert_one_error(code, err,
                     "--out /dev/null: exists and is a character device, not a directory")


def test_out_below_a_regular_file(capsys, workdir):
    (workdir / "afile").write_text("x")
    code, _, err = run_cli(capsys, "run", "ok.toml", "--out", "afile/sub/dir")
    assert_one_error(code, err, "--out afile/sub/dir: afile is a file, not a directory")
    assert (workdir / "afile").read_text() == "x"


def test_out_under_proc(capsys, workdir):
    code, _, err = run_cli(capsys, "run", "ok.toml", "--out", "/proc/pfsim-out")
    assert_one_error(code, err, "--out /proc/pfsim-out: cannot create /proc/pfsim-out")


def test_out_is_checked_before_the_run(capsys, workdir, monkeypatch):
    """The simulation never starts when --out cannot be used."""
    import pfsim.report

    def fail(*args, **kwargs):
        raise AssertionError("the run started")

    monkeypatch.setattr(pfsim.report, "run", fail)
    code, _, err = run_cli(capsys, "run", "ok.toml", "--out", "/dev/null/x")
    assert_one_error(code, err, "--out /dev/null/x: /dev/null is a character device")


def test_out_name_too_long(capsys, workdir):
    code, _, err = run_cli(capsys, "run", "ok.toml", "--out", "o" * 300)
    assert_one_error(code, err, "a name longer than 255 bytes")
    assert leftovers(workdir) == []


def test_huge_name_is_refused_in_a_short_line(capsys, workdir):
    """A 100 KB vseg name used to come back whole in the error line."""
    name = "v" * 100_000
    (workdir / "long.toml").write_text(CONFIG.replace('name = "h"', f'name = "{name}"')
                                       .replace('vseg = "h"', f'vseg = "{name}"'))
    code, _, err = run_cli(capsys, "run", "long.toml", "--out", "out")
    assert code == 2
    assert err.splitlines() == [
        f"pfsim: error: {key}: a name of 100000 characters; at most 256 are allowed"
        for key in ("processes[0].vsegs[0].name", "processes[0].threads[0].steps[0].vseg")]


def test_huge_key_is_cut_in_the_error_line(capsys, workdir):
    code, _, err = run_cli(capsys, "run", "ok.toml", "--out", "out",
                           "--set", "guest." + "k" * 100_000 + "=1")
    line = assert_one_error(code, err, "pfsim: error: guest.kkkk", "unknown key")
    assert " ... " in line


def test_unknown_vseg_lists_a_few_names_and_the_count(capsys, workdir):
    vsegs = ", ".join(f'{{ name = "v{i}", type = "anon", size = "4KiB" }}' for i in range(9999))
    text = CONFIG.replace('vsegs = [{ name = "h", type = "anon", size = "1MiB" }]',
                          f"vsegs = [{vsegs}]")
    (workdir / "many.toml").write_text(text)
    code, _, err = run_cli(capsys, "run", "many.toml", "--out", "out")
    # 9999 vsegs, @stack and stack.0
    assert_one_error(code, err, "unknown vseg 'h'; this process has: v0, v1,", "(10001 in all)")


def test_every_config_problem_is_reported_one_line_each(capsys, workdir):
    """Three typos, three lines (a newcomer used to need four runs)."""
    code, _, err = run_cli(capsys, "run", "ok.toml", "--out", "out", "--set", "guest.vcpu=3",
                         "--set", "guest.memroy=3", "--set", "sim.sed=1")
    assert code == 2
    lines = err.strip().splitlines()
    assert [line.split(":")[2].strip() for line in lines] == ["sim.sed", "guest.vcpu",
                                                               "guest.memroy"], err
    assert all(line.startswith("pfsim: error: ") and "unknown key" in line for line in lines)


def test_the_number_of_error_lines_is_capped(capsys, workdir):
    sets = [arg for i in range(MAX_LINES + 10) for arg in ("--set", f"guest.typo{i}=1")]
    code, _, err = run_cli(capsys, "run", "ok.toml", "--out", "out", *sets)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == MAX_LINES + 1
    assert lines[-1] == "pfsim: error: ... and 10 more problems"


def test_bare_pfsim_prints_its_help_on_several_lines(capsys):
    code, _, err = run_cli(capsys)
    assert code == 2
    assert err.startswith("Usage: pfsim") and "\nCommands:\n" in err and "run " in err


def test_an_internal_error_exits_3_with_a_crash_report(capsys, workdir, monkeypatch):
    """A bug (an invariant violation) is not reported as a user error: exit 3, one line
    that says so and names a crash report holding the traceback."""
    import pfsim.report

    def broken(*args, **kwargs):
        raise InvariantViolation("INV-X: frame 7 mapped twice")

    monkeypatch.setattr(pfsim.report, "run_command", broken)
    code, _, err = run_cli(capsys, "run", "ok.toml")
    assert code == 3
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err
    assert lines[0].startswith("pfsim: internal error (a bug in pfsim, not a problem with your "
                               "input): InvariantViolation: INV-X: frame 7 mapped twice")
    report = Path(lines[0].split("please report it with ")[1].split(" and your config")[0])
    try:
        text = report.read_text()
        assert "command: pfsim run ok.toml" in text and "Traceback" in text
        assert "INV-X: frame 7 mapped twice" in text
    finally:
        report.unlink()


def test_running_out_of_memory_is_a_user_error(capsys, workdir, monkeypatch):
    import pfsim.report

    def oom(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(pfsim.report, "run", oom)
    code, _, err = run_cli(capsys, "run", "ok.toml", "--out", "out")
    assert_one_error(code, err, "out of memory while simulating")
    assert leftovers(workdir) == []


def test_a_failed_run_removes_the_directories_it_created(capsys, workdir, monkeypatch):
    import pfsim.report

    def oom(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(pfsim.report, "run", oom)
    (workdir / "keep").mkdir()
    code, _, _ = run_cli(capsys, "run", "ok.toml", "--out", "keep/a/b/c")
    assert code == 2
    assert sorted(p.name for p in workdir.rglob("*") if p.is_dir()) == ["keep"]


def test_result_file_mode_follows_the_umask(capsys, workdir):
    old = os.umask(0o027)
    try:
        code, _, err = run_cli(capsys, "run", "ok.toml", "--out", "out", "--quiet")
    finally:
        os.umask(old)
    assert code == 0, err
    assert (workdir / "out" / "result.json").stat().st_mode & 0o777 == 0o640
    assert (workdir / "out" / "config.json").stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in (workdir / "out").iterdir()) == ["config.json", "result.json"]


def test_hypervisor_keys_without_the_host_model_warn(capsys, workdir):
    code, _, err = run_cli(capsys, "run", "ok.toml", "--out", "out", "--quiet",
                         "--set", 'hypervisor.memory_limit="32MiB"')
    assert code == 0
    assert err.strip() == (
        "pfsim: warning: hypervisor.memory_limit set but hypervisor.enabled = false, so the host "
        "is not modelled and these keys are ignored; add enabled = true to [hypervisor]")


def test_running_out_of_memory_in_the_api_is_a_resource_error(monkeypatch):
    import pfsim.api
    from pfsim.errors import ResourceError

    class Exhausted:
        def __init__(self, config):
            raise MemoryError

    monkeypatch.setattr(pfsim.api, "Simulation", Exhausted)
    data = {"processes": [{"name": "p", "threads": [{"steps": [{"op": "compute", "units": 1}]}]}]}
    with pytest.raises(ResourceError, match="out of memory while simulating"):
        pfsim.api.run(data)


def test_a_npy_header_claiming_a_tebibyte(capsys, workdir):
    """The header says 2**37 int64 elements (1 TiB); the file holds 64 bytes."""
    import struct

    header = "{'descr': '<i8', 'fortran_order': False, 'shape': (137438953472,), }".ljust(118)
    (workdir / "huge.npy").write_bytes(b"\x93NUMPY\x01\x00" + struct.pack("<H", 119)
                                       + header.encode() + b"\n" + bytes(64))
    code, _, err = run_cli(capsys, "replay", "huge.npy", "--policy", "lru", "--frames", "4")
    assert_one_error(code, err, "huge.npy:")


def test_a_file_that_is_not_npy_is_not_blamed_on_pickles(capsys, workdir):
    (workdir / "text.npy").write_text("1\n2\n3\n")
    code, _, err = run_cli(capsys, "replay", "text.npy", "--policy", "lru", "--frames", "4")
    line = assert_one_error(code, err, "text.npy:")
    assert "pickle" not in line


def test_a_vseg_where_the_thread_stacks_go_names_the_thread_group(capsys, workdir):
    """A vseg placed just below 128 TiB takes the place of the first thread's stack: the line
    names the thread group whose stack it is (not a key 'threads.base' that no config has)."""
    (workdir / "high.toml").write_text(CONFIG.replace(
        'size = "1MiB" }', 'size = "1MiB", base = "0x7ffffff00000" }'))
    code, _, err = run_cli(capsys, "run", "high.toml", "--out", "out")
    assert_one_error(code, err, "pfsim: error: processes[0].threads[0].stack: the stack of "
                                "thread 0 ('stack.0') overlaps vseg 'h'")
    assert leftovers(workdir) == []


@pytest.mark.parametrize(("trace", "extra", "what"), [
    ("ok.toml", (), "is the config file CONFIG"),
    ("out/../ok.toml", (), "is the config file CONFIG"),
    ("out/result.json", (), "is the run's result.json"),
    ("out/config.json", (), "is the run's config.json"),
    ("out/report.html", ("--report",), "is the run's report.html"),
    ("out/tasks.csv", ("--format", "csv"), "is the run's tasks.csv"),
])
def test_a_trace_file_that_is_another_file_of_the_run_is_refused(capsys, workdir, trace, extra,
                                                                 what):
    """The trace would replace the config (written over it after the run) or be replaced by
    result.json, config.json or a table, while the FINAL line names it."""
    code, out, err = run_cli(capsys, "run", "ok.toml", "--out", "out", "--trace", trace, *extra)
    assert_one_error(code, err, f"pfsim: error: --trace {trace}: {what}; choose another name")
    assert out == "" and leftovers(workdir) == []
    assert (workdir / "ok.toml").read_text() == CONFIG


@pytest.mark.parametrize("text", ['{"vms": 3}', '{"vms": {}}', '{"vms": {"vm0": []}}',
                                  '{"vms": {"vm0": {"tasks": {}}}, "sim_time_ns": 5}'])
@pytest.mark.parametrize("command", [("report",), ("plot", "--figure", "work", "--out", "w.png")])
def test_a_result_json_that_pfsim_did_not_write_is_a_user_error(capsys, workdir, text, command):
    """A hand-made or cut-down result.json ended in an internal error (KeyError) after the
    command started drawing."""
    (workdir / "run").mkdir()
    (workdir / "run" / "result.json").write_text(text)
    code, out, err = run_cli(capsys, command[0], "run", *command[1:])
    assert_one_error(code, err, "run/result.json: not a pfsim result.json")
    assert out == "" and sorted(p.name for p in (workdir / "run").iterdir()) == ["result.json"]
    assert not (workdir / "w.png").exists()


def test_a_config_json_that_cannot_be_written_is_a_warning(capsys, workdir):
    """config.json comes after result.json: a failure to write it (here a directory of that
    name) is the documented warning, not an internal error while removing the stale file."""
    (workdir / "out" / "config.json").mkdir(parents=True)
    code, out, err = run_cli(capsys, "run", "ok.toml", "--out", "out", "--quiet")
    assert code == 0, err
    assert err.splitlines() == ["pfsim: warning: cannot write out/config.json (Is a directory); "
                                "nothing was written"]
    assert out.startswith("FINAL outcome=ok")
    assert (workdir / "out" / "result.json").is_file()
