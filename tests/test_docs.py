"""The docs stand alone: every numbered scenario a test names is described in docs/scenarios.md,
and nothing in the repository points to notes kept outside it."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"
SCENARIOS = ROOT / "docs" / "scenarios.md"

# which list of docs/scenarios.md each test file's "scenario N" refers to
LIST_OF = {
    "test_apf_s390.py": "linux",
    "test_apf_kvm.py": "linux",
    "test_fault_entry.py": "linux",
    "test_scheduler.py": "linux",
    "test_cluster_faults.py": "almos",
    "test_fork_cow.py": "almos",
}


def documented() -> dict[str, set[int]]:
    """Scenario numbers with an entry (``**N. Title.**``) in each list of docs/scenarios.md."""
    text = SCENARIOS.read_text()
    linux, almos = text.split("\n## ALMOS-MKH scenarios", 1)
    entry = re.compile(r"^\*\*(\d+)\. ", re.MULTILINE)
    return {"linux": {int(n) for n in entry.findall(linux)},
            "almos": {int(n) for n in entry.findall(almos)}}


def test_every_scenario_a_test_names_is_documented():
    docs = documented()
    named = re.compile(r"^def (test_\w*?(linux_)?scenario_(\d+)\w*)", re.MULTILINE)
    for name, which in LIST_OF.items():
        found = named.findall((TESTS / name).read_text())
        assert found, name
        for test, linux, number in found:
            target = "linux" if linux else which
            assert int(number) in docs[target], (name, test, target)


def test_no_pointer_to_notes_outside_the_repository():
    # the patterns are split so that this file does not match them itself
    patterns = [re.compile(p) for p in (r"semantics\." + "md", r"\.\./" + "shared",
                                        r"PERFORMANCE\." + "md", r"\bMIS" + "SION")]
    paths = [ROOT / "README.md", *(ROOT / "docs").rglob("*.md"), *(ROOT / "src").rglob("*.py"),
             *TESTS.rglob("*.py"), *(ROOT / "examples").rglob("*.toml"),
             *(ROOT / "benchmarks").rglob("*.py")]
    for path in paths:
        text = path.read_text()
        for pattern in patterns:
            assert not pattern.search(text), f"{path.relative_to(ROOT)} matches {pattern.pattern}"


def test_readme_commands_are_what_ci_runs():
    """README's two commands: the quickstart installs pfsim without the test extra (no test
    tools in a user's first install), the tests add it; .ci/run runs the same commands."""
    blocks = re.findall(r"```sh\n(.*?)```", (ROOT / "README.md").read_text(), re.DOTALL)
    quickstart, tests = blocks[0].strip(), blocks[1].strip()
    assert quickstart == ("python3 -m venv .venv && .venv/bin/pip install . && "
                          ".venv/bin/pfsim run examples/quickstart.toml")
    assert tests == '.venv/bin/pip install ".[test]" && .venv/bin/python -m pytest -q'
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines()
          if line.startswith((".venv/", "python3"))]
    assert ci == ["python3 -m venv .venv", ".venv/bin/pip install -q .",
                  '.venv/bin/pfsim run examples/quickstart.toml --out "$(mktemp -d)/quickstart"',
                  tests]  # the README's test command, verbatim
