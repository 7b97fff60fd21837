"""Exceptions raised by pfsim; the library never calls ``exit`` or ``print``."""

from __future__ import annotations


class PfsimError(Exception):
    """Base of every error pfsim reports to a user as one line."""


class ConfigError(PfsimError):
    """A configuration value is missing, unknown, of the wrong type or impossible.

    The message starts with the dotted key (``guest.vcpus: ...``) when one is known.
    """

    def __init__(self, key: str | None, message: str) -> None:
        self.key = key
        self.message = message
        super().__init__(f"{key}: {message}" if key else message)


class TraceFormatError(PfsimError):
    """A trace file cannot be parsed; the message names the file and line."""


class InvariantViolation(PfsimError):
    """A model invariant failed: a bug in pfsim, never a user mistake."""
