"""The debug hook shared by the four async-PF protocol halves (x86 and s390, guest and host).

Each half is an object with a ``debug`` flag and a ``check_invariants()`` method; decorating
its protocol entry points with :func:`checked` checks the invariants after every call while
debugging (``hypervisor.apf_debug``, and the protocol tests).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


def checked(method: Callable[P, R]) -> Callable[P, R]:
    """Decorator: when ``self.debug`` is true, run ``self.check_invariants()`` after the call."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        result = method(*args, **kwargs)
        owner: Any = args[0]
        if owner.debug:
            owner.check_invariants()
        return result

    return wrapper
