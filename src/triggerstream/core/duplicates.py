"""Duplicates: an event id seen again for the same user within 24 hours of event time.

The state keeps a key of each id (two checksums, ids.event_key) with its time, in arrival
order, and forgets them from the front as the user's clock moves on.
"""

from __future__ import annotations

from collections import OrderedDict

from triggerstream.core.state import UserState

DAY = 86_400.0
DEDUPE_WINDOW = DAY
"""An event id seen for the same user within this much event time is a duplicate."""


def seen(state: UserState, key: int, at: float) -> bool:
    """Whether the user had an event with this id key within 24 hours of ``at``."""
    seen_at = state.seen.get(key)
    return seen_at is not None and abs(at - seen_at) <= DEDUPE_WINDOW


def remember_id(state: UserState, key: int, at: float) -> None:
    """Remember an event id at ``at``: a new one at the end (arrival order); one seen
    more than a day before keeps its place with the new time. Counted, so that a store
    keeping the ids apart writes only the new ones (``UserState.ids_appended``)."""
    seen = state.seen
    if key in seen:
        state.ids_retimed += 1
    else:
        state.ids_appended += 1
    seen[key] = at


def seen_in(ids: OrderedDict[int, float], key: int, at: float) -> bool:
    """:func:`seen` of a bare memory of ids: for a shell that keeps only a user's ids
    (``explain`` for every user but the one it shows)."""
    seen_at = ids.get(key)
    return seen_at is not None and abs(at - seen_at) <= DEDUPE_WINDOW


def forget_old_ids(seen: OrderedDict[int, float], horizon: float) -> None:
    """Drop ids older than the horizon from the front (oldest first, as they arrived):
    a few per event keeps the memory at 24 hours without rebuilding it."""
    for _ in range(4):
        if not seen or seen[next(iter(seen))] >= horizon:
            return
        seen.popitem(last=False)
