"""Matching an input event: one matcher per trigger kind that an event fires.

``event``, ``count`` and ``sum`` rules listen to one event type (:func:`match_listeners`);
``quota`` rules to a quota reading and ``nps`` rules to a score. The user's facts already
hold the event. A match is made at the user's clock ``now``: an event that arrives late is
decided now, not in a past the later events have already changed (sends, sessions, caps).
Deadlines, delays and inactivity are timers (timers.py).
"""

from __future__ import annotations

from typing import Any

from triggerstream.core import summaries
from triggerstream.core.facts import latest_word
from triggerstream.core.rule import CompiledRule, Match
from triggerstream.core.state import UserState, nps_category
from triggerstream.core.windows import add, total
from triggerstream.core.windows import count as window_count
from triggerstream.events import Event


def match_listeners(
    rules: list[CompiledRule],
    state: UserState,
    event: Event,
    qualified: str,
    at: float,
    now: float,
    basket: tuple[str, ...],
) -> list[Match]:
    """The matches of the rules that listen to the event's type and whose ``where``
    holds of its properties."""
    found: list[Match] = []
    props = event.properties
    for rule in rules:
        if not rule.where_holds(props):
            continue
        kind = rule.kind
        if kind == "event":
            match = on_event(rule, state, event, qualified, at, now, basket)
        elif kind == "count":
            match = on_count(rule, state, event, qualified, at, now, basket)
        else:
            match = on_sum(rule, state, event, qualified, at, now, basket)
        if match is not None:
            found.append(match)
    return found


def on_event(
    rule: CompiledRule,
    state: UserState,
    event: Event,
    qualified: str,
    at: float,
    now: float,
    basket: tuple[str, ...],
) -> Match | None:
    """An ``event`` rule: the event itself, for a user the profile admits."""
    if not rule.profile_holds(state):
        return None
    facts: dict[str, Any] = {"type": qualified}
    summary = summaries.event_sentence(qualified, event.properties)
    return Match(rule, now, event.event_id, qualified, at, None, facts, summary, basket)


def on_count(
    rule: CompiledRule,
    state: UserState,
    event: Event,
    qualified: str,
    at: float,
    now: float,
    basket: tuple[str, ...],
) -> Match | None:
    """A ``count`` rule: the event (a skip, a locked feature clicked) is counted in the
    rule's window; a match once the window holds ``at_least``."""
    entries = state.windows.get(rule.id)
    if entries is None:
        entries = state.windows[rule.id] = []
    add(entries, at, 1.0, rule.within)
    # The window ends at the user's clock: an event that arrives late counts if it falls
    # inside the last `within`, and one older than that changes nothing now (no trigger
    # for a moment long gone). Below the threshold, or for a user the rule's profile
    # excludes, nothing more is done (no facts, no sentence). The same for a sum.
    count = window_count(entries, now, rule.within)
    if count < rule.at_least or not rule.profile_holds(state):
        return None
    facts: dict[str, Any] = {"count": count, "within": rule.within_text}
    summary = f"{count} {summaries.plural(rule.noun, count)} in the last {rule.within_text}"
    return Match(rule, now, event.event_id, qualified, at, None, facts, summary, basket)


def on_sum(
    rule: CompiledRule,
    state: UserState,
    event: Event,
    qualified: str,
    at: float,
    now: float,
    basket: tuple[str, ...],
) -> Match | None:
    """A ``sum`` rule: the event's ``field`` is added to the rule's window; a match once
    the sum reaches ``at_least``."""
    entries = state.windows.get(rule.id)
    if entries is None:
        entries = state.windows[rule.id] = []
    add(entries, at, float(getattr(event.properties, rule.spec.field)), rule.within)
    count, summed = total(entries, now, rule.within)
    if summed < rule.at_least or not rule.profile_holds(state):
        return None
    facts: dict[str, Any] = {"sum": summed, "field": rule.spec.field, "events": count}
    summary = (
        f"{summaries.number(summed)} {rule.spec.field} over {count} "
        f"{summaries.plural(rule.noun, count)} in the last {rule.within_text}"
    )
    return Match(rule, now, event.event_id, qualified, at, None, facts, summary, basket)


def match_quota(
    rules: list[CompiledRule], state: UserState, event: Event, at: float, now: float
) -> list[Match]:
    """``quota`` rules: a match when a resource's use crosses the rule's fraction of its
    limit upward (once, until it falls below again)."""
    props: Any = event.properties
    if not latest_word(state, f"quota.{props.resource}", at):
        return []  # an older reading, late: the newer one stands
    fraction = props.used / props.limit
    found = []
    for rule in rules:
        if rule.spec.resource != props.resource:
            continue
        above = fraction >= rule.spec.at_least
        was_above = state.quota_above.get(rule.id, False)
        if above:
            state.quota_above[rule.id] = True
        else:
            state.quota_above.pop(rule.id, None)
        if above and not was_above and rule.profile_holds(state):
            facts = {
                "resource": props.resource,
                "used": props.used,
                "limit": props.limit,
                "fraction": round(fraction, 4),
            }
            summary = (
                f"{props.resource} at {int(fraction * 100)}% of {summaries.number(props.limit)}"
            )
            found.append(
                Match(rule, now, event.event_id, "usage.quota_usage", at, None, facts, summary)
            )
    return found


def match_nps(
    rules: list[CompiledRule], state: UserState, event: Event, at: float, now: float
) -> list[Match]:
    """``nps`` rules: a match when the score falls in the rule's range."""
    score = event.properties.score  # type: ignore[union-attr]
    found = []
    for rule in rules:
        low, high = rule.spec.at_least, rule.spec.at_most
        in_range = (low is None or score >= low) and (high is None or score <= high)
        if in_range and rule.profile_holds(state):
            summary = f"NPS {score} ({nps_category(score)})"
            found.append(
                Match(
                    rule,
                    now,
                    event.event_id,
                    "support.nps_submitted",
                    at,
                    None,
                    {"score": score},
                    summary,
                )
            )
    return found
