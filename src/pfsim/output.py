"""The output directory of ``pfsim run``: checked before a run, written atomically.

- :meth:`OutputDir.prepare` runs before the simulation: it refuses a path that exists and is
  not a directory (``/dev/null``), lies below a regular file, or cannot be created or written
  (read-only file system, ``/proc``), creating what is missing and remembering it;
- :meth:`OutputDir.write` writes a file next to its final name and renames it into place
  (``rename(2)`` is atomic), so a reader, a full disk or an interrupt never sees a partial
  ``result.json``: there is the old file or the new one.  The file gets the usual mode of a
  new file (0666 minus the umask), not the 0600 of a temporary file;
- :meth:`OutputDir.discard` removes the directories :meth:`prepare` created when the run
  ends without a result (an error or an interrupt), so a failed run leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from pathlib import Path

from pfsim.errors import OutputError, clip

NAME_MAX = 255
"""Longest file name in bytes on Linux file systems (NAME_MAX, include/uapi/linux/limits.h)."""
PATH_MAX = 4096
"""Longest path in bytes (PATH_MAX, include/uapi/linux/limits.h)."""
def _umask() -> int:
    """The process's umask (read from /proc where possible: setting it is not thread-safe)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _reason(exc: OSError) -> str:
    return exc.strerror or errno.errorcode.get(exc.errno or 0, str(exc))


class OutputDir:
    """A directory for result files (see the module docstring).

    Args:
        path: the directory (``--out``).
        flag: how the command line names it in messages.
    """

    def __init__(self, path: Path, flag: str = "--out") -> None:
        self.path = Path(path)
        self.flag = flag
        self.created: list[Path] = []

    def _error(self, message: str) -> OutputError:
        return OutputError(f"{self.flag} {clip(str(self.path), 120)}: {message}")

    def prepare(self) -> OutputDir:
        """Check the path, create the missing directories and try writing in it."""
        text = os.fsencode(self.path)
        if len(text) >= PATH_MAX:
            raise self._error(f"path longer than {PATH_MAX} bytes")
        for part in self.path.parts:
            if len(os.fsencode(part)) > NAME_MAX:
                raise self._error(f"a name longer than {NAME_MAX} bytes")
        missing: list[Path] = []
        here = self.path
        while True:
            try:
                info = here.stat()
            except FileNotFoundError:
                missing.append(here)
                if here.parent == here:
                    raise self._error("no such directory") from None
                here = here.parent
                continue
            except OSError as exc:  # ENOTDIR below a file, EACCES, ELOOP...
                raise self._error(self._not_dir_reason(here, exc)) from None
            if not stat.S_ISDIR(info.st_mode):
                if here == self.path:
                    raise self._error(f"exists and is {_kind(info.st_mode)}, not a directory")
                raise self._error(f"{clip(str(here), 80)} is {_kind(info.st_mode)}, "
                                  "not a directory")
            break
        for directory in reversed(missing):
            try:
                directory.mkdir()
            except FileExistsError:
                continue  # made meanwhile by someone else: fine if it is a directory
            except OSError as exc:
                self.discard()
                raise self._error(f"cannot create {clip(str(directory), 80)} "
                                  f"({_reason(exc)})") from None
            self.created.append(directory)
        if not self.path.is_dir():
            self.discard()
            raise self._error("is not a directory")
        try:
            with tempfile.TemporaryFile(dir=self.path, prefix=".pfsim-probe."):
                pass
        except OSError as exc:
            self.discard()
            raise self._error(f"cannot write in it ({_reason(exc)})") from None
        return self

    def _not_dir_reason(self, here: Path, exc: OSError) -> str:
        if exc.errno == errno.ENOTDIR:
            for parent in [here, *here.parents]:
                with contextlib.suppress(OSError):
                    mode = parent.stat().st_mode
                    if not stat.S_ISDIR(mode):
                        return f"{clip(str(parent), 80)} is {_kind(mode)}, not a directory"
            return "a part of the path is not a directory"
        return f"cannot use it ({_reason(exc)})"

    def write(self, name: str, text: str | bytes) -> Path:
        """Write ``text`` (UTF-8 text, or bytes) to ``name`` in the directory atomically;
        returns the file's path.

        Raises:
            OutputError: the file cannot be written (disk full, quota, I/O error); the old
                file, if any, is intact and no temporary file is left.
        """
        return self.write_bytes(name, text.encode("utf-8") if isinstance(text, str) else text)

    def write_bytes(self, name: str, data: bytes) -> Path:
        """:meth:`write` for bytes."""
        target = self.path / name
        tmp: str | None = None
        try:
            fd, tmp = tempfile.mkstemp(dir=self.path, prefix=f".{name}.", suffix=".tmp")
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
                os.fchmod(handle.fileno(), 0o666 & ~_umask())
            os.replace(tmp, target)
            tmp = None
        except OSError as exc:
            raise OutputError(f"cannot write {clip(str(target), 120)} ({_reason(exc)}); "
                              "nothing was written") from None
        finally:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
        return target

    def discard(self) -> None:
        """Remove the directories :meth:`prepare` created, deepest first, if still empty."""
        for directory in reversed(self.created):
            with contextlib.suppress(OSError):
                directory.rmdir()
        self.created = []


def _kind(mode: int) -> str:
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISFIFO(mode):
        return "a pipe"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a file"
