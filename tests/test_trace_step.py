"""Trace-driven access steps (``{op = "access", vseg = ..., trace = "file.npy"}``): a recorded
program's page stream runs inside the guest (and under the hypervisor, on both engines), with
hand-counted faults (also on the ALMOS-MKH VMM), and bad trace files are one ConfigError naming the step."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import run_dict

from pfsim.config import load_config
from pfsim.errors import ConfigError
from pfsim.workload.patterns import PatternStream

VARIANTS = [None, "compiled", "reference", "clusters"]  # guest only; under the hypervisor on
# each engine; the ALMOS-MKH VMM (two clusters)
STEP = "processes[0].threads[0].steps[0]"


def _config(trace, pages=8, **step):
    return {"guest": {"vcpus": 1},
            "processes": [{"name": "p",
                           "vsegs": [{"name": "h", "type": "anon", "size": f"{4 * pages}KiB"}],
                           "threads": [{"stack": False, "steps": [
                               {"op": "access", "vseg": "h", "trace": str(trace), **step}]}]}]}


def _run(data, variant):
    if variant == "clusters":
        data["guest"].update(vcpus=2, clusters=2)
        data["processes"][0]["threads"][0]["cpu"] = 0
    elif variant is not None:
        data["hypervisor"] = {"enabled": True, "host_cpus": 1}
        data.setdefault("sim", {})["engine"] = variant
    return run_dict(data)


@pytest.fixture
def trace(tmp_path):
    """Page numbers far apart, as a recorded program's are: 3 distinct pages in 5 requests."""
    path = tmp_path / "t.npy"
    np.save(path, np.array([0x7F0012345, 0x55501, 0x7F0012345, 0x4000, 0x55501]))
    return path


@pytest.mark.parametrize("variant", VARIANTS)
def test_trace_length_is_the_default_access_count(trace, variant):
    """5 requests to 3 distinct pages, reads only: 5 accesses, one fault per distinct page."""
    result = _run(_config(trace), variant)
    assert result.processes["p"]["accesses"] == 5
    assert result.processes["p"]["min_flt"] == 3


@pytest.mark.parametrize("variant", VARIANTS)
def test_more_accesses_start_the_trace_over(trace, variant):
    result = _run(_config(trace, accesses=12), variant)
    assert result.processes["p"]["accesses"] == 12
    assert result.processes["p"]["min_flt"] == 3


@pytest.mark.parametrize("variant", VARIANTS)
def test_more_distinct_pages_than_the_range_wrap_round_it(tmp_path, variant):
    """5 distinct pages laid onto a 2-page range: ids 0..4 land on pages 0 1 0 1 0."""
    path = tmp_path / "five.npy"
    np.save(path, np.arange(100, 600, 100))
    result = _run(_config(path, pages=2), variant)
    assert result.processes["p"]["accesses"] == 5
    assert result.processes["p"]["min_flt"] == 2


def test_engines_agree(trace):
    results = [_run(_config(trace, accesses=40, write_ratio=0.5), variant).processes["p"]
               for variant in ("compiled", "reference")]
    assert results[0] == results[1]


def test_stream_follows_first_appearance_order():
    """Ids 0 1 0 2 (first appearance) on an 8-page range, then the same on 2 pages: 2 -> 0."""
    rng = np.random.default_rng(0)
    ids = np.array([0, 1, 0, 2], dtype=np.int32)
    stream = PatternStream("trace", 8, rng, 0.0, trace=ids)
    assert stream.next_chunk(6)[0].tolist() == [0, 1, 0, 2, 0, 1]
    assert stream.next_chunk(3)[0].tolist() == [0, 2, 0]
    assert PatternStream("trace", 2, rng, 0.0, trace=ids).next_chunk(4)[0].tolist() == \
        [0, 1, 0, 0]


@pytest.mark.parametrize(("content", "step", "message"), [
    (None, {}, "trace: no such file"),
    (b"not an array", {}, "is not a .npy array of page numbers"),
    (np.zeros((2, 2), dtype=np.int64), {}, "expected a non-empty 1-D array of integer page"),
    (np.array([1.5]), {}, "expected a non-empty 1-D array of integer page"),
    (np.array([1, 2]), {"pattern": "zipf"}, "give either a pattern or a trace, not both"),
])
def test_bad_trace_is_one_error_naming_the_step(tmp_path, content, step, message):
    path = tmp_path / "bad.npy"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        np.save(path, content)
    with pytest.raises(ConfigError) as error:
        load_config(_config(path, **step))
    assert STEP in str(error.value)
    assert message in str(error.value)


def test_pattern_trace_without_a_file(tmp_path):
    data = _config(tmp_path / "x.npy")
    del data["processes"][0]["threads"][0]["steps"][0]["trace"]
    data["processes"][0]["threads"][0]["steps"][0].update(pattern="trace", accesses=3)
    with pytest.raises(ConfigError, match="pattern 'trace' needs trace = 'FILE.npy'"):
        load_config(data)


def _truncated(path):
    np.save(path, np.arange(100, dtype=np.int64))
    data = path.read_bytes()
    path.write_bytes(data[:300])


@pytest.mark.parametrize(("write", "message"), [
    (lambda path: path.write_bytes(b"1\n2\n3\n"),
     "is not a .npy array of page numbers (pfsim trace record writes one): it does not start "
     "with the .npy magic string"),
    (_truncated, "is truncated: its header announces 100 int64 page numbers (800 bytes of "
                 "data), the file holds 172"),
])
def test_a_file_that_is_not_a_whole_npy_is_said_so_not_blamed_on_pickles(tmp_path, write,
                                                                         message):
    """numpy's own error for a text file is about pickled data and allow_pickle, and for a cut
    file about mmap lengths: neither says what is wrong with the file."""
    path = tmp_path / "t.npy"
    write(path)
    with pytest.raises(ConfigError) as error:
        load_config(_config(path))
    assert str(error.value) == f"{STEP}: trace: {str(path)!r} {message}"
