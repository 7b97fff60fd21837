"""The error boundary of the command line: every way a command can end, as an exit status.

=====  ======================================================================================
exit   when
=====  ======================================================================================
0      success
1      some variants of a comparison failed (each is named), ``pfsim validate`` found a case
       off, or stdout was closed early
2      a user error: a config, override, flag, trace, output path, or a scenario too large
       for this machine; stderr holds ``pfsim: error: ...``, one line per problem (at most
       :data:`MAX_LINES`, each at most :data:`~pfsim.errors.LINE_LIMIT` characters)
3      a bug in pfsim (an invariant violation or any unexpected exception): one line on
       stderr pointing to a crash report file with the traceback, to attach to a bug report
130    interrupted (SIGINT, Ctrl-C): ``pfsim: interrupted``; the output directory holds the
       previous result.json or none
143    terminated (SIGTERM, e.g. ``kill``, a batch system's time limit, ``timeout``):
       ``pfsim: terminated``, and the output directory as after SIGINT
=====  ======================================================================================

Set ``PFSIM_DEBUG=1`` to also print the traceback of an internal error on stderr.
"""

from __future__ import annotations

import datetime
import os
import platform
import signal
import sys
import tempfile
import traceback
from collections.abc import Callable
from importlib import metadata
from typing import Any

import click

from pfsim.errors import PfsimError, Terminated, clip

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 3
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 128 + signal.SIGTERM
MAX_LINES = 20
"""Most error lines printed for one failure (a config with 300 typos prints 20 and a count)."""


def error_lines(exc: PfsimError) -> list[str]:
    """The ``pfsim: error:`` lines for a user error, capped in number and length."""
    lines = exc.lines() or ["unknown error"]
    shown = [clip(f"pfsim: error: {line}") for line in lines[:MAX_LINES]]
    if len(lines) > MAX_LINES:
        shown.append(f"pfsim: error: ... and {len(lines) - MAX_LINES} more problems")
    return shown


def _echo(line: str) -> None:
    click.echo(line, err=True)


def _terminate(signum: int, frame: Any) -> None:
    raise Terminated


def _catch_sigterm() -> Any:
    """Turn SIGTERM into :class:`Terminated` while a command runs; the previous handler, or
    None when it cannot be set (not the main thread, or SIGTERM ignored by the parent)."""
    try:
        if signal.getsignal(signal.SIGTERM) == signal.SIG_IGN:
            return None
        return signal.signal(signal.SIGTERM, _terminate)
    except ValueError:  # not the main thread of the main interpreter
        return None


def call(entry: Callable[[], Any], argv: list[str] | None = None) -> int:
    """Run ``entry`` (the click command) and return the exit status; nothing escapes."""
    previous = _catch_sigterm()
    try:
        return _call(entry, argv)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _call(entry: Callable[[], Any], argv: list[str] | None) -> int:
    try:
        entry()
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except (click.exceptions.Abort, KeyboardInterrupt) as exc:
        if isinstance(exc, Terminated) or isinstance(exc.__cause__, Terminated):  # click wraps it
            _echo("pfsim: terminated")
            return EXIT_TERMINATED
        _echo("pfsim: interrupted")
        return EXIT_INTERRUPTED
    except click.exceptions.NoArgsIsHelpError as exc:  # bare `pfsim` or `pfsim run`
        _echo(exc.ctx.get_help() if exc.ctx is not None else exc.format_message())
        return EXIT_USAGE
    except click.UsageError as exc:
        hint = ""
        if exc.ctx is not None and exc.ctx.parent is not None:
            hint = f" (see 'pfsim {exc.ctx.info_name} --help')"
        _echo(clip(f"pfsim: error: {exc.format_message()}{hint}"))
        return EXIT_USAGE
    except click.ClickException as exc:
        _echo(clip(f"pfsim: error: {exc.format_message()}"))
        return EXIT_USAGE
    except PfsimError as exc:
        for line in error_lines(exc):
            _echo(line)
        return EXIT_USAGE
    except MemoryError:
        _echo("pfsim: error: out of memory while simulating: this scenario needs more memory "
              "than this machine has free; make it smaller (guest.memory, vseg sizes, thread "
              "counts) or close other programs")
        return EXIT_USAGE
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_FAILED
    except Exception as exc:  # noqa: BLE001 (the boundary: a bug, reported as such)
        _internal_error(exc, argv)
        return EXIT_INTERNAL
    return 0


def _internal_error(exc: BaseException, argv: list[str] | None) -> None:
    text = "".join(traceback.format_exception(exc))
    report = crash_report(text, argv)
    what = clip(f"{type(exc).__name__}: {exc}", 160)
    if os.environ.get("PFSIM_DEBUG"):
        sys.stderr.write(text)
    if report is None:
        sys.stderr.write(text)
        _echo(f"pfsim: internal error (a bug in pfsim, not a problem with your input): {what}; "
              "please report it with the traceback above and your config")
        return
    _echo(f"pfsim: internal error (a bug in pfsim, not a problem with your input): {what}; "
          f"please report it with {report} and your config")


def crash_report(text: str, argv: list[str] | None) -> str | None:
    """Write a crash report (versions, command line, traceback) to a new file in the
    temporary directory; its path, or None when it cannot be written."""
    versions = []
    for package in ("pfsim", "numpy", "numba", "pydantic", "click"):
        try:
            versions.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{package} (not installed)")
    args = sys.argv[1:] if argv is None else argv
    body = (f"pfsim crash report, {datetime.datetime.now().isoformat(timespec='seconds')}\n"
            f"command: pfsim {' '.join(args)}\n"
            f"python {platform.python_version()} on {platform.platform()}\n"
            f"{', '.join(versions)}\n\n{text}")
    try:
        fd, path = tempfile.mkstemp(prefix="pfsim-crash-", suffix=".txt")
        with os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace") as handle:
            handle.write(body)
    except OSError:
        return None
    return path


def _silence_stdout() -> None:
    """After EPIPE, point stdout at /dev/null so the interpreter's final flush is quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
