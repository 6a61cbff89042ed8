"""``not_followed``: a ``first`` event that no ``then`` event follows ``within`` a span
(a checkout with no order: cart abandonment; Flink CEP's timeout pattern).

A matching ``first`` sets the rule's timer, due ``within`` after it (one per rule and
user: a newer ``first`` restarts the wait); a matching ``then`` after it and before that
due time removes it. A ``then`` at the due time comes too late: the clock passing the due
time fires the timer before the event (engine.py). The timer lives in the user's state,
like a deadline's, and fires through timers.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from triggerstream.core import summaries
from triggerstream.core.conditions import compile_condition
from triggerstream.core.rule import CompiledRule
from triggerstream.core.state import Timer, UserState
from triggerstream.core.timers import set_timer
from triggerstream.events import Event

KIND = "not_followed"


class Side:
    """One side of a ``not_followed`` rule (its ``first`` or its ``then``), compiled."""

    def __init__(self, rule: CompiledRule, name: str) -> None:
        spec = getattr(rule.spec, name)
        self.rule = rule
        self.is_then = name == "then"
        self.type: str = spec.type
        self.where: list[tuple[str, Callable[[Any], bool]]] = [
            (name, compile_condition(condition)) for name, condition in spec.where.items()
        ]

    def holds(self, properties: Any) -> bool:
        for name, check in self.where:  # noqa: SIM110
            if not check(getattr(properties, name, None)):
                return False
        return True


def listeners(rules: list[CompiledRule]) -> dict[str, list[Side]]:
    """The sides of the ``not_followed`` rules by the event type they listen to; a rule's
    ``then`` before its ``first``, so that an event that is both ends one wait and
    starts the next."""
    by_type: dict[str, list[Side]] = {}
    for rule in rules:
        if rule.kind == KIND:
            for name in ("then", "first"):
                side = Side(rule, name)
                by_type.setdefault(side.type, []).append(side)
    return by_type


def on_event(sides: list[Side], state: UserState, event: Event, qualified: str, now: float) -> None:
    """A ``then`` ends its rule's wait; a ``first`` starts one (no match now: the timer's
    firing is the match)."""
    at = event.at
    for side in sides:
        if not side.holds(event.properties):
            continue
        rule_id = side.rule.id
        if side.is_then:
            if at > state.followed.get(rule_id, at - 1.0):
                state.followed[rule_id] = at
            state.timers = [t for t in state.timers if not _followed_by(t, rule_id, at)]
        else:
            _wait(side.rule, state, event, qualified, at, now)


def _followed_by(timer: Timer, rule_id: str, at: float) -> bool:
    """Whether a ``then`` at ``at`` ends this timer's wait: after its ``first``, before due."""
    return timer.kind == KIND and timer.rule_id == rule_id and timer.cause_at < at < timer.due


def _wait(
    rule: CompiledRule, state: UserState, event: Event, qualified: str, at: float, now: float
) -> None:
    """The wait for ``then`` after this ``first``, unless a newer ``first`` already waits
    or a ``then`` already came in time."""
    for timer in state.timers:
        if timer.kind == KIND and timer.rule_id == rule.id and timer.cause_at > at:
            return
    due = at + rule.within
    followed = state.followed.get(rule.id)
    if followed is not None and at < followed < due:
        return
    spec = rule.spec
    set_timer(
        state,
        Timer(
            due=due,
            rule_id=rule.id,
            kind=KIND,
            set_at=now,
            cause_id=event.event_id,
            cause_type=qualified,
            cause_at=at,
            facts={
                "first": qualified,
                "first_at": summaries.when(at),
                "then": spec.then.type,
                "within": rule.within_text,
                # A checkout's cart: the basket a cross-sell offer recommends for.
                "basket": [item.sku for item in getattr(event.properties, "cart", ())],
            },
        ),
        replace=True,
    )
