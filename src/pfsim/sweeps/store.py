"""A sweep's output directory: one directory per finished point, one file per failed point.

::

    OUT/points/<digest>-<seed>/result.json   the run's result (what ``pfsim run`` writes)
    OUT/points/<digest>-<seed>/point.json    axis values, seed, wall and CPU time, the command
                                             that reproduces the run
    OUT/failed/<digest>-<seed>.json          a failed point: its one-line error (and traceback)
    OUT/sweep.parquet, sweep.csv, summary.csv

A point directory is written under a temporary name (``points/.tmp-...``) and renamed when
complete, so a directory with the final name is always whole: a point is done exactly when
its directory exists, and an interrupted write leaves only a temporary name, which is ignored
and removed by the next run.  The name is the point's config digest (docs/results.md) and seed,
so a point is found again whatever its position in the sweep file.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shlex
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pfsim.output import OutputDir
from pfsim.sweeps.spec import Point, SweepError

TMP = ".tmp-"


class Store:
    def __init__(self, out: Path) -> None:
        self.out = out
        self.points = out / "points"
        self.failed = out / "failed"
        self._out_dir = OutputDir(out)
        self._created: list[Path] = []

    def prepare(self) -> None:
        """Create the directories, check they are writable, remove what interrupted writes of
        earlier runs left (temporary names of processes that no longer exist)."""
        self._out_dir.prepare()  # not a file, not below one, writable: one clear line
        for directory in (self.points, self.failed):
            try:
                directory.mkdir(parents=True)
                self._created.append(directory)
            except FileExistsError:
                pass
            except OSError as exc:
                raise SweepError(f"--out {self.out}: cannot create {directory} "
                                 f"({exc.strerror or exc})") from None
        probe = self.points / f"{TMP}probe-{os.getpid()}-{secrets.token_hex(4)}"
        try:
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise SweepError(f"--out {self.out}: not writable ({exc.strerror or exc})") from None
        for directory in (self.points, self.failed):
            for stale in directory.glob(f"{TMP}*"):
                if not _alive(stale.name) or _pid(stale.name) == os.getpid():
                    _remove(stale)

    def discard(self) -> None:
        """Remove the directories :meth:`prepare` created, if still empty (a sweep that
        stopped before writing any point)."""
        for directory in reversed(self._created):
            with contextlib.suppress(OSError):
                directory.rmdir()
        self._created = []
        self._out_dir.discard()

    def done(self, key: str) -> bool:
        return (self.points / key / "result.json").is_file()

    def failure(self, key: str) -> dict[str, Any] | None:
        """The record of a failed point, or None."""
        try:
            return json.loads((self.failed / f"{key}.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def read(self, key: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """A finished point's result.json and point.json."""
        directory = self.points / key
        return (json.loads((directory / "result.json").read_text(encoding="utf-8")),
                json.loads((directory / "point.json").read_text(encoding="utf-8")))

    def write_done(self, point: Point, outcome: dict[str, Any], base: str,
                   overrides: tuple[str, ...]) -> None:
        final = self.points / point.key
        tmp = self.points / f"{TMP}{point.key}-{os.getpid()}-{secrets.token_hex(4)}"
        meta = _describe(point, base, overrides) | {"wall_s": outcome["wall_s"],
                                                    "cpu_s": outcome["cpu_s"]}
        try:
            tmp.mkdir()
            (tmp / "result.json").write_text(outcome["result"], encoding="utf-8")
            (tmp / "point.json").write_text(_dumps(meta), encoding="utf-8")
            if final.exists() and not self.done(point.key):
                _remove(final)  # not written by a sweep (a sweep renames whole directories)
            try:
                os.rename(tmp, final)
            except OSError:
                if not self.done(point.key):
                    raise
                _remove(tmp)  # another sweep on this directory finished the same point first
        except OSError as exc:
            _remove(tmp)
            raise SweepError(f"--out {self.out}: cannot write {final} "
                             f"({exc.strerror or exc})") from None
        except BaseException:  # Ctrl-C while writing: the point is not done, leave nothing
            _remove(tmp)
            raise
        with contextlib.suppress(FileNotFoundError):
            (self.failed / f"{point.key}.json").unlink()

    def write_failed(self, point: Point, outcome: dict[str, Any], base: str,
                     overrides: tuple[str, ...]) -> None:
        meta = _describe(point, base, overrides) | {
            "error": outcome["error"], "detail": outcome.get("detail", ""),
            "wall_s": outcome.get("wall_s")}
        atomic_write(self.failed / f"{point.key}.json",
                     lambda path: path.write_text(_dumps(meta), encoding="utf-8"), self.out)


def atomic_write(target: Path, write: Callable[[Path], Any], out: Path) -> None:
    """Call ``write`` on a temporary file beside ``target``, then rename it to ``target``."""
    tmp = target.with_name(f"{TMP}{target.name}-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        write(tmp)
        os.replace(tmp, target)
    except OSError as exc:
        _remove(tmp)
        raise SweepError(f"--out {out}: cannot write {target} ({exc.strerror or exc})") from None
    except BaseException:
        _remove(tmp)
        raise


def reproduce(base: str, seed: int, overrides: tuple[str, ...]) -> str:
    """The ``pfsim run`` command line that runs this point alone."""
    words = ["pfsim", "run", base, "--seed", str(seed)]
    for item in overrides:
        words += ["--set", item]
    return shlex.join(words)


def _describe(point: Point, base: str, overrides: tuple[str, ...]) -> dict[str, Any]:
    return {"label": point.label, "axes": point.axes, "replicate": point.replicate,
            "seed": point.seed, "config_digest": point.key.split("-")[0],
            "command": reproduce(base, point.seed, (*overrides, *point.overrides))}


def _dumps(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def _pid(name: str) -> int | None:
    parts = name.rsplit("-", 2)
    return int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else None


def _alive(name: str) -> bool:
    pid = _pid(name)
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            path.unlink()
