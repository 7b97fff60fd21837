"""Where numba caches pfsim's compiled functions, chosen before any of them is decorated.

pfsim compiles its hot loops with ``@njit(cache=True)``.  numba looks for a writable cache
directory (``NUMBA_CACHE_DIR``, then ``__pycache__`` beside the source, then the user's cache
directory) and raises ``RuntimeError: cannot cache function ...: no locator available`` at
import time when it finds none, which happens with a read-only install run by a user whose
home is not writable.  :func:`configure` runs first (``pfsim/__init__.py``) and picks, in
order:

1. ``NUMBA_CACHE_DIR`` when the user set it and it is writable (the user's choice wins);
2. the install's own ``__pycache__`` directories when they are writable (numba's default);
3. numba's per-user cache directory (``$XDG_CACHE_HOME/numba`` or ``~/.cache/numba``);
4. ``pfsim-numba-<uid>`` in the temporary directory (created mode 0700; used only if it is
   a directory owned by this user that nobody else can write to);
5. no cache at all: functions are compiled in memory at each run (slower start, same results).

:data:`CHOICE` records what was picked (for ``pfsim --version`` style diagnostics and tests).
"""

from __future__ import annotations

import os
import stat
import sys
import tempfile
from pathlib import Path

CHOICE = "unset"
"""What :func:`configure` picked: env, in-tree, user, temp or none."""


def _writable_dir(path: Path, create: bool = False) -> bool:
    """Can this process create files in ``path`` (made, with parents, when ``create``)?"""
    try:
        if create:
            path.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not path.is_dir():
            return False
        with tempfile.TemporaryFile(dir=path):
            return True
    except OSError:
        return False


def _private_dir(path: Path) -> bool:
    """Is ``path`` a directory of ours that no one else can write (safe to load code from)?"""
    try:
        path.mkdir(mode=0o700, exist_ok=True)
        info = path.lstat()
    except OSError:
        return False
    return (stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid()
            and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH))


def _user_cache_dir() -> Path:
    """numba's per-user cache directory on Linux and macOS (appdirs' user_cache_dir)."""
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "numba"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "numba"


def configure() -> str:
    """Choose the cache location (see the module docstring); returns :data:`CHOICE`."""
    global CHOICE
    if CHOICE != "unset":
        return CHOICE
    package = Path(__file__).resolve().parent
    chosen: str | None = None
    user_dir = os.environ.get("NUMBA_CACHE_DIR")
    if user_dir and _writable_dir(Path(user_dir), create=True):
        CHOICE = "env"
        return CHOICE
    if user_dir:
        os.environ.pop("NUMBA_CACHE_DIR")  # unusable: numba would fall back anyway
    sources = [Path(root) for root, _, files in os.walk(package)
               if "__pycache__" not in root and any(f.endswith(".py") for f in files)]
    if all(_writable_dir(source / "__pycache__", create=True) for source in sources):
        CHOICE = "in-tree"
    else:
        try:
            home_ok = _writable_dir(_user_cache_dir(), create=True)
        except RuntimeError:  # no home directory at all
            home_ok = False
        if home_ok:
            CHOICE = "user"
        else:
            try:
                temp = Path(tempfile.gettempdir()) / f"pfsim-numba-{os.getuid()}"
            except (FileNotFoundError, OSError):  # no writable temporary directory either
                temp = None
            if temp is not None and _private_dir(temp) and _writable_dir(temp):
                chosen = str(temp)
                CHOICE = "temp"
            else:
                CHOICE = "none"
    if chosen is not None:
        os.environ["NUMBA_CACHE_DIR"] = chosen
        if "numba" in sys.modules:  # numba read its environment already
            from numba.core import config

            config.CACHE_DIR = chosen
    if CHOICE == "none":
        _disable_caching()
    return CHOICE


def _disable_caching() -> None:
    """Make ``@njit(cache=True)`` compile without a cache instead of failing.

    numba has no switch for this: its dispatchers enable caching through
    ``Dispatcher.enable_caching`` when decorated, and that method raises when no cache
    location exists.  Replacing it by a no-op leaves numba's NullCache in place (each
    process compiles in memory), for every function decorated from now on.
    """
    from numba.core import dispatcher

    dispatcher.Dispatcher.enable_caching = lambda self: None  # type: ignore[method-assign]
