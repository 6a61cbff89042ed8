"""Timers: when a time-based match is due, and what fires when the user's clock passes it.

Four kinds: ``deadline`` (set by the event that carries a trial's or a subscription's
end, due the rule's ``before`` ahead of it), ``delay`` (a match held back the rule's
``delay``), ``inactivity`` (never stored: derived from ``last_seen_at``, one per rule
and spell of silence) and ``not_followed`` (set and ended by events: not_followed.py).
Timers due at one time are one moment, decided together.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from triggerstream.core import summaries
from triggerstream.core.rule import CompiledRule, Match
from triggerstream.core.state import Timer, UserState
from triggerstream.events import Event

DEADLINE_FIELDS: dict[str, tuple[str, ...]] = {
    "trial_ends_at": ("purchase.trial_started",),
    "renews_at": ("purchase.subscription_started", "purchase.subscription_renewed"),
}
"""The event types that carry each deadline field."""


def set_timer(state: UserState, timer: Timer, replace: bool) -> None:
    """Keep ``timer``; with ``replace``, instead of the rule's timer of its kind."""
    if replace:
        state.timers = [
            t for t in state.timers if not (t.rule_id == timer.rule_id and t.kind == timer.kind)
        ]
    state.timers.append(timer)


def set_deadlines(
    rules: list[CompiledRule],
    state: UserState,
    event: Event,
    qualified: str,
    at: float,
    now: float,
) -> None:
    """A deadline timer for each of ``rules`` (those whose field the event carries), due
    the rule's ``before`` ahead of the date; one per rule, the latest date replacing."""
    props: Any = event.properties
    for rule in rules:
        field_name = rule.spec.field
        value = getattr(props, field_name)
        if value is None:
            continue
        end = value.timestamp()
        if state.deadline_fired.get(rule.id) == end:
            continue
        before = rule.spec.before.total_seconds()
        plan = getattr(props, "plan", None)
        set_timer(
            state,
            Timer(
                due=end - before,
                rule_id=rule.id,
                kind="deadline",
                set_at=now,
                cause_id=event.event_id,
                cause_type=qualified,
                cause_at=at,
                facts={
                    "field": field_name,
                    "value": summaries.when(end),
                    "plan": plan,
                    "before": summaries.span(before),
                },
            ),
            replace=True,
        )


def hold_delayed(
    state: UserState, found: list[Match], at: float, now: float, basket: tuple[str, ...]
) -> list[Match]:
    """The matches to decide now; a match of a rule with a delay waits as a timer."""
    matches = []
    for match in found:
        if match.rule.delay > 0:
            set_timer(
                state,
                Timer(
                    due=now + match.rule.delay,
                    rule_id=match.rule.id,
                    kind="delay",
                    set_at=now,
                    cause_id=match.cause_id,
                    cause_type=match.cause_type,
                    cause_at=at,
                    facts={**match.facts, "summary": match.summary, "basket": list(basket)},
                ),
                replace=False,
            )
            continue
        matches.append(match)
    return matches


def pending(state: UserState, inactivity: list[CompiledRule]) -> list[Timer]:
    """The stored timers, and an inactivity timer per rule for the current spell."""
    if not inactivity or state.last_seen_at is None:
        return state.timers
    seen = state.last_seen_at
    cause_id, cause_type = state.last_activity or ("", "usage.unknown")
    timers = list(state.timers)
    for rule in inactivity:
        if state.inactivity_fired.get(rule.id) == seen:
            continue
        span = rule.spec.for_.total_seconds()
        timers.append(
            Timer(
                due=seen + span,
                rule_id=rule.id,
                kind="inactivity",
                set_at=seen,
                cause_id=cause_id,
                cause_type=cause_type,
                cause_at=seen,
                facts={"last_seen_at": summaries.when(seen), "for": summaries.span(span)},
            )
        )
    return timers


def has_due(state: UserState, inactivity: list[CompiledRule], now: float) -> bool:
    """Whether any timer of the user, or a deferred match's next look, is due at or
    before ``now`` (cheap: on the path of every event)."""
    for timer in state.timers:
        if timer.triggered_at() <= now:
            return True
    for waiting in state.deferred:
        if waiting.wake <= now:
            return True
    seen = state.last_seen_at
    if seen is not None:
        for rule in inactivity:
            if seen + rule.within <= now and state.inactivity_fired.get(rule.id) != seen:
                return True
    return False


def next_due(state: UserState, inactivity: list[CompiledRule]) -> float | None:
    """When this user's earliest timer, or a deferred match's next look (deferral.py),
    is due: for the shell's schedule."""
    due = min((timer.triggered_at() for timer in pending(state, inactivity)), default=None)
    for waiting in state.deferred:
        if due is None or waiting.wake < due:
            due = waiting.wake
    return due


def fire_at(
    state: UserState,
    inactivity: list[CompiledRule],
    rules: dict[str, CompiledRule],
    moment: float,
) -> list[Match]:
    """Fire the timers due at ``moment`` (the earliest due, :func:`next_due`): they
    leave the state and their matches are returned to decide, with the deferred matches
    waiting then."""
    firing = [timer for timer in pending(state, inactivity) if timer.triggered_at() == moment]
    if firing:
        state.timers = [timer for timer in state.timers if timer not in firing]
    matches = []
    for timer in firing:
        match = _fired(state, rules, timer)
        if match is not None:
            matches.append(match)
    return matches


def _fired(state: UserState, rules: dict[str, CompiledRule], timer: Timer) -> Match | None:
    """The match of a timer that fired, None if its rule is gone or excludes the user."""
    rule = rules.get(timer.rule_id)
    if rule is None:  # the rule left the rules file since the timer was set
        return None
    facts = dict(timer.facts)
    at = timer.triggered_at()
    basket: tuple[str, ...] = ()
    if timer.kind == "delay":
        summary = f"{facts.pop('summary')} ({summaries.span(timer.due - timer.set_at)} ago)"
        basket = tuple(facts.pop("basket", ()))
    elif timer.kind == "not_followed":
        if not rule.profile_holds(state):
            return None
        basket = tuple(facts.pop("basket", ()))
        summary = summaries.not_followed(facts)
    else:
        # Once per spell and once per deadline value, whether the profile holds or not.
        if timer.kind == "inactivity":
            state.inactivity_fired[rule.id] = timer.set_at
        else:
            state.deadline_fired[rule.id] = dt.datetime.fromisoformat(facts["value"]).timestamp()
        if not rule.profile_holds(state):
            return None
        if timer.kind == "deadline":
            what = "trial" if facts["field"] == "trial_ends_at" else "subscription"
            plan = f" of {facts['plan']}" if facts.get("plan") else ""
            verb = "ends" if what == "trial" else "renews"
            left = dt.datetime.fromisoformat(facts["value"]).timestamp() - at
            summary = f"{what}{plan} {verb} {facts['value'][:10]} (in {summaries.span(left)})"
        else:
            summary = f"no activity for {facts['for']} (last seen {facts['last_seen_at']})"
    return Match(
        rule,
        at,
        timer.cause_id,
        timer.cause_type,
        timer.cause_at,
        timer.due,
        facts,
        summary,
        basket,
    )
