"""Exceptions raised by pfsim; the library never calls ``exit`` or ``print``.

Two families:

- :class:`PfsimError` and its subclasses are *user* errors (a config value, a trace file, an
  output path, a scenario too large for the machine).  The command line prints each as one
  line (``pfsim: error: ...``) and exits with status 2.
- :class:`InvariantViolation` is a bug in pfsim (a model invariant failed).  It is not a
  PfsimError, so code that handles user mistakes never swallows it; the command line exits
  with status 3 and points to a crash report.
"""

from __future__ import annotations

LINE_LIMIT = 300
"""Longest error line pfsim prints; longer texts (a 100 KB name) are cut with an ellipsis."""


def clip(text: str, limit: int = LINE_LIMIT) -> str:
    """``text`` on one line and at most ``limit`` characters (cut in the middle with ``...``),
    non-printable characters escaped as in ``repr``."""
    flat = " ".join(str(text).split("\n"))
    if not flat.isprintable():
        flat = "".join(c if c.isprintable() else repr(c)[1:-1] for c in flat)
    if len(flat) <= limit:
        return flat
    keep = limit - 5
    return flat[: keep - keep // 4] + " ... " + flat[len(flat) - keep // 4:]


def shown(value: object, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters, for quoting user input in a message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + "...'"


def listing(names: list[str], limit: int = 8) -> str:
    """``a, b, c`` for a short list; ``a, b, ... (9999 in all)`` for a long one."""
    if not names:
        return "none"
    if len(names) <= limit:
        return ", ".join(names)
    return ", ".join(names[:limit]) + f", ... ({len(names)} in all)"


class PfsimError(Exception):
    """Base of every error pfsim reports to a user as one line."""

    def lines(self) -> list[str]:
        """The error as the lines the command line prints (one, except for ConfigErrors)."""
        return [str(self)]


class ConfigError(PfsimError):
    """A configuration value is missing, unknown, of the wrong type or impossible.

    The message starts with the dotted key (``guest.vcpus: ...``) when one is known.
    """

    def __init__(self, key: str | None, message: str) -> None:
        self.key = key
        self.message = message
        super().__init__(f"{key}: {message}" if key else message)


class ConfigErrors(ConfigError):
    """Several problems found in one config, in the order of the config; ``key`` and
    ``message`` are the first one's, ``errors`` holds them all."""

    def __init__(self, errors: list[ConfigError]) -> None:
        self.errors = list(errors)
        super().__init__(errors[0].key, errors[0].message)
        self.args = ("\n".join(str(e) for e in self.errors),)

    def lines(self) -> list[str]:
        return [str(e) for e in self.errors]


def raise_all(errors: list[ConfigError]) -> None:
    """Raise nothing, the one error, or a :class:`ConfigErrors` holding them all."""
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise ConfigErrors(errors)


class TraceFormatError(PfsimError):
    """A trace file cannot be parsed; the message names the file and line."""


class OutputError(PfsimError):
    """The output directory cannot be used (not a directory, read-only, full...)."""


class ResourceError(PfsimError):
    """The scenario needs more memory than this machine has available."""


class InvariantViolation(Exception):  # noqa: N818 (the model's word for it)
    """A model invariant failed: a bug in pfsim, never a user mistake."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like Ctrl-C (:mod:`pfsim.boundary` installs the
    handler) so that every ``except KeyboardInterrupt`` and ``finally`` on the way out
    (temporary files, a sweep's Dask cluster) runs the same; the exit status differs."""
