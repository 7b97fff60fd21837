"""Doubly linked lists of page ids for the compiled policies that keep several queues.

A page sits in at most one list at a time. The links are two per-page ``int32`` arrays shared
by every list of a policy (``newer``, ``older``; -1 ends a list); a list itself is three
``int64`` slots of the policy's ``state`` array starting at ``at``: its newest page (head), its
oldest page (tail) and its length. New pages enter at the head; "oldest" is the tail. These
functions are compiled into the kernels that call them (numba inlines them into the loop).
"""

from __future__ import annotations

from numba import njit

HEAD, TAIL, LENGTH = 0, 1, 2  # offsets from a list's ``at``
SLOTS = 3  # state slots per list


def init_lists(state, first: int, count: int) -> None:
    """Mark ``count`` lists starting at state slot ``first`` empty (head = tail = -1)."""
    for index in range(count):
        at = first + SLOTS * index
        state[at + HEAD] = state[at + TAIL] = -1
        state[at + LENGTH] = 0


@njit(cache=True, nogil=True, inline="always")
def push_newest(state, at, page, newer, older):
    """Put ``page`` (in no list) at the head of the list at ``at``."""
    head = state[at + HEAD]
    newer[page] = -1
    older[page] = head
    if head == -1:
        state[at + TAIL] = page
    else:
        newer[head] = page
    state[at + HEAD] = page
    state[at + LENGTH] += 1


@njit(cache=True, nogil=True, inline="always")
def unlink(state, at, page, newer, older):
    """Take ``page`` out of the list at ``at``."""
    before = newer[page]
    after = older[page]
    if before == -1:
        state[at + HEAD] = after
    else:
        older[before] = after
    if after == -1:
        state[at + TAIL] = before
    else:
        newer[after] = before
    state[at + LENGTH] -= 1


@njit(cache=True, nogil=True, inline="always")
def pop_oldest(state, at, newer, older):
    """Take the oldest page out of the (non-empty) list at ``at`` and return it."""
    page = state[at + TAIL]
    unlink(state, at, page, newer, older)
    return page


@njit(cache=True, nogil=True, inline="always")
def to_newest(state, at, page, newer, older):
    """Move ``page`` (in the list at ``at``) to that list's head."""
    if state[at + HEAD] != page:
        unlink(state, at, page, newer, older)
        push_newest(state, at, page, newer, older)
