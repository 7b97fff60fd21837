"""TOML literals for config values, so that a sweep's axis value travels as a ``--set`` string.

A sweep point is the base scenario plus ``key=value`` overrides, the same strings ``pfsim run
--set`` takes; ``pfsim.config.apply_overrides`` reads the value back with ``tomllib``, so every
literal written here must parse to exactly the value it came from.
"""

from __future__ import annotations

import json
import math
from typing import Any


def toml_literal(value: Any) -> str:
    """The TOML text of ``value`` (a string, integer, float, boolean, array or table).

    Raises:
        TypeError: the value has no TOML form (None, a date, an object).
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        # a JSON string is a TOML basic string, except that TOML also forbids a raw DEL
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_literal(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{toml_literal(str(k))} = {toml_literal(v)}"
                               for k, v in value.items()) + "}"
    raise TypeError(f"{type(value).__name__} is not a config value")


def shown(value: Any, limit: int = 60) -> str:
    """A value as a sweep file writes it, cut to ``limit`` characters for a message."""
    try:
        text = toml_literal(value)
    except TypeError:
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
