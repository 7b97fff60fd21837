"""What the host decided about a guest access that exited to it (an EPT violation).

The guest executor asks the host (``Host.ept_violation``) and acts on the answer.
"""

from __future__ import annotations

from enum import IntEnum


class Decision(IntEnum):
    """What the guest side does after an EPT violation."""

    CONTINUE = 0  # resolved; the vCPU spent ``cost`` in the host
    BLOCKED = 1  # the vCPU thread sleeps in the host; the guest resumes later
