"""One user's history from replay files, read once: their state and decisions exactly as
``triggerstream replay`` makes them, without holding anyone else's.

Only the user's own events go through the engine. Another user's event can change the
user's decisions in two ways, and only those are kept of it: its time moves the end of
the input (timers due by then fire), and an order in the user's partition teaches
cross-sell its co-purchase counts. Both count only for a valid event that is not a
duplicate, so each other user keeps what the engine's dedupe keeps: 24 hours of event
ids. Lines are read and validated as replay reads them (``replay.read_lines``,
``events.decode_line``), and invalid ones are counted by reason.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from triggerstream.core.duplicates import DEDUPE_WINDOW, forget_old_ids, seen_in
from triggerstream.core.engine import Engine, Step
from triggerstream.core.ids import event_key
from triggerstream.core.state import UserState
from triggerstream.events import InvalidEvent, decode_line, refuse_future
from triggerstream.replay import read_lines
from triggerstream.topics import partition_of


@dataclass
class UserHistory:
    """What the files say of one user, as of ``now``."""

    user_id: str
    state: UserState | None = None
    decisions: list[dict[str, Any]] = field(default_factory=list)
    events: int = 0
    """The user's events read (duplicates aside)."""
    now: float = float("-inf")
    lines: int = 0
    invalid: Counter[str] = field(default_factory=Counter)
    duplicates: int = 0
    seconds: float = 0.0


class _Ids:
    """Another user's event ids of the last 24 hours, as the engine's dedupe keeps them."""

    __slots__ = ("ids", "latest")

    def __init__(self) -> None:
        self.ids: OrderedDict[int, float] = OrderedDict()
        self.latest = 0.0  # UserState.latest_at of a new user


def read_user(
    engine: Engine,
    user_id: str,
    paths: list[Path],
    until: float | None = None,
    partitions: int = 1,
    now: float | None = None,
    max_future: dt.timedelta = dt.timedelta(hours=1),
    progress: Callable[[int], None] | None = None,
) -> UserHistory:
    """The user's state and decisions after the files (events after ``until`` left
    unread), as replay of the same files (``--until``, ``--partitions``, ``--now``)
    decides them; ``history.now`` is ``until``, else the latest event's time."""
    began = time.perf_counter()
    read_at = time.time() if now is None else now
    home = partition_of(user_id, partitions) if partitions > 1 else 0
    history = UserHistory(user_id)
    others: dict[str, _Ids] = {}
    latest = float("-inf")
    for _source, _number, line in read_lines(paths, progress):
        history.lines += 1
        try:
            event = refuse_future(decode_line(line)[1], read_at, max_future)
        except InvalidEvent as error:
            history.invalid[error.code] += 1
            continue
        at = event.at
        if until is not None and at > until:
            continue
        user = event.user_id
        if user == user_id:
            step = engine.handle(user, history.state, event)
            if step.duplicate:
                history.duplicates += 1
                continue
            history.events += 1
            _take(history, step)
        elif not _other(engine, event, user, others, partitions, home):
            history.duplicates += 1
            continue
        if at > latest:
            latest = at
    history.now = latest if until is None else max(latest, until)
    _finish(engine, history)
    history.seconds = time.perf_counter() - began
    return history


def _other(
    engine: Engine, event: Any, user: str, others: dict[str, _Ids], partitions: int, home: int
) -> bool:
    """Another user's event as the engine's dedupe would see it: False for a duplicate.
    An order in the user's partition is counted for cross-sell, as the engine counts it."""
    at = event.at
    key = event_key(event.event_id)
    memory = others.get(user)
    if memory is not None and seen_in(memory.ids, key, at):
        return False
    qualified = event.qualified_type
    if qualified == "profile.erasure_requested":
        others.pop(user, None)  # the engine forgets everything of the user, ids too
        return True
    if memory is None:
        memory = others[user] = _Ids()
    memory.ids[key] = at
    if at > memory.latest:
        memory.latest = at
        forget_old_ids(memory.ids, at - DEDUPE_WINDOW)
    if qualified == "purchase.order_completed" and (
        partitions == 1 or partition_of(user, partitions) == home
    ):
        engine.copurchases.record_order(tuple(item.sku for item in event.properties.items))
    return True


def _finish(engine: Engine, history: UserHistory) -> None:
    """Fire the user's timers due by the end of the input, earliest first, as replay
    does at its end."""
    state = history.state
    while state is not None:
        due = engine.next_due(state)
        if due is None or due > history.now:
            return
        _take(history, engine.fire_due(history.user_id, state, due))
        state = history.state


def _take(history: UserHistory, step: Step) -> None:
    history.state = step.state
    history.decisions += [orjson.loads(decision.to_json()) for decision in step.decisions]
