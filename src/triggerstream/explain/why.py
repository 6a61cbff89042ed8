"""Why one rule would or would not fire now, in words (docs/contract.md section 16).

Each part is read from the core's own functions at ``now``, never recomputed here: the
trigger (windows, quota readings, timers), the rule's profile (its compiled conditions)
and the policy (``SuppressionPolicy.judge``, the caps' and quiet hours' end times).
Nothing here changes the state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from triggerstream.core.engine import Engine
from triggerstream.core.rule import CompiledRule
from triggerstream.core.state import Timer, UserState, state_value
from triggerstream.core.summaries import number, plural, span, when
from triggerstream.core.windows import count as window_count
from triggerstream.core.windows import total
from triggerstream.rules.model import Operators


@dataclass(frozen=True)
class RuleView:
    """One rule as of now: whether it fires, and why in words."""

    rule_id: str
    fires_now: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"rule_id": self.rule_id, "fires_now": self.fires_now, "detail": self.detail}


def why(
    engine: Engine,
    rule: CompiledRule,
    user_id: str,
    state: UserState,
    now: float,
    pending: list[Timer],
) -> RuleView:
    """The rule's trigger, then its profile, then the policy's word at ``now``."""
    ready, trigger = _trigger(rule, state, now, pending)
    unmet = _profile_unmet(rule, state)
    verdict, policy = _policy(engine, rule, user_id, state, now)
    parts = [trigger, *unmet, policy]
    return RuleView(rule.id, ready and not unmet and verdict == "emitted", "; ".join(parts))


# --- the trigger ---------------------------------------------------------------------


def _trigger(
    rule: CompiledRule, state: UserState, now: float, pending: list[Timer]
) -> tuple[bool, str]:
    """Whether the trigger's condition holds now, and what it stands at."""
    spec = rule.spec
    kind = rule.kind
    later = f", then waits {span(rule.delay)}" if rule.delay > 0 else ""
    if kind == "count":
        entries = state.windows.get(rule.id)
        n = window_count(entries, now, rule.within) if entries else 0
        needed = spec.at_least
        text = f"{n} of {needed} {plural(rule.noun, needed)} in the last {rule.within_text}"
        return n >= needed, text + later
    if kind == "sum":
        entries = state.windows.get(rule.id)
        n, summed = total(entries, now, rule.within) if entries else (0, 0.0)
        text = (
            f"{number(summed)} of {number(spec.at_least)} {spec.field} in the last "
            f"{rule.within_text} ({n} {plural(rule.noun, n)})"
        )
        return summed >= spec.at_least, text + later
    if kind == "event":
        return False, f"fires at each {spec.type}{_where(spec.where)}{later}"
    if kind == "quota":
        return _quota(rule, state)
    if kind == "nps":
        return False, _nps(rule, state) + later
    timers = [t for t in pending if t.rule_id == rule.id]
    if kind == "deadline":
        return False, _deadline(rule, state, timers)
    if kind == "not_followed":
        return False, _not_followed(rule, timers)
    return False, _inactivity(rule, state, timers)


def _quota(rule: CompiledRule, state: UserState) -> tuple[bool, str]:
    resource, threshold = rule.spec.resource, rule.spec.at_least
    fires_at = f"{threshold * 100:g}%"
    reading = state.quotas.get(resource)
    if reading is None:
        return False, f"no {resource} reading yet, fires at {fires_at}"
    used, limit = reading
    fraction = used / limit
    shown = f"{int(fraction * 100)}% of {resource} ({number(used)} of {number(limit)})"
    if state.quota_above.get(rule.id, False):
        return False, f"{shown}: fired when it crossed {fires_at}; fires again once below it"
    return fraction >= threshold, f"{shown}, fires at {fires_at}"


def _nps(rule: CompiledRule, state: UserState) -> str:
    low, high = rule.spec.at_least, rule.spec.at_most
    wanted = (
        f"{low}-{high}"
        if low is not None and high is not None
        else f"at least {low}"
        if low is not None
        else f"at most {high}"
    )
    latest = "no NPS answer yet" if state.nps_score is None else f"latest NPS {state.nps_score}"
    return f"fires at an NPS answer of {wanted} ({latest})"


def _deadline(rule: CompiledRule, state: UserState, timers: list[Timer]) -> str:
    field_name = rule.spec.field
    before = span(rule.spec.before.total_seconds())
    value = state_value(state, field_name)
    if timers:
        return (
            f"{field_name} {when(value) if value else '?'}: due {_due(timers[0])} ({before} before)"
        )
    if value is not None and state.deadline_fired.get(rule.id) == value:
        return f"fired for {field_name} {when(value)}"
    if value is None:
        return f"no {field_name}; fires {before} before it"
    return f"{field_name} {when(value)}: no timer set (fires {before} before it)"


def _inactivity(rule: CompiledRule, state: UserState, timers: list[Timer]) -> str:
    quiet = span(rule.within)
    if state.last_seen_at is None:
        return f"no activity seen yet; fires after {quiet} without activity"
    last = when(state.last_seen_at)
    if timers:
        return f"last seen {last}: due {_due(timers[0])} after {quiet} without activity"
    return f"fired for this spell (last seen {last}); fires again {quiet} after the next activity"


def _not_followed(rule: CompiledRule, timers: list[Timer]) -> str:
    first, then = rule.spec.first, rule.spec.then
    if timers:
        facts = timers[0].facts
        return (
            f"{facts['first']} at {facts['first_at']}: waiting for {then.type}"
            f"{_where(then.where)} until {_due(timers[0])}"
        )
    return (
        f"nothing pending: fires {rule.within_text} after a {first.type}{_where(first.where)} "
        f"that no {then.type}{_where(then.where)} follows"
    )


def _due(timer: Timer) -> str:
    return when(timer.triggered_at())


def _where(where: dict[str, Any]) -> str:
    if not where:
        return ""
    return " with " + ", ".join(f"{name} {describe(cond)}" for name, cond in where.items())


# --- the profile ---------------------------------------------------------------------


def _profile_unmet(rule: CompiledRule, state: UserState) -> list[str]:
    """Each profile condition the user does not meet: "plan is pro, the rule needs free"."""
    unmet = []
    conditions = rule.rule.profile
    for name, check in rule.profile:
        value = state_value(state, name)
        if not check(value):
            shown = "unknown" if value is None or value == [] else _shown(name, value)
            unmet.append(f"{name} is {shown}, the rule needs {describe(conditions[name])}")
    return unmet


def _shown(name: str, value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    if isinstance(value, float) and name.endswith("_at"):
        return when(value)
    return str(value).lower() if isinstance(value, bool) else str(value)


def describe(condition: Any) -> str:
    """A condition in words: ``free``, ``one of team, starter``, ``at least 3``."""
    if isinstance(condition, list):
        return "one of " + ", ".join(str(v) for v in condition)
    if not isinstance(condition, Operators):
        return str(condition).lower() if isinstance(condition, bool) else str(condition)
    words = {
        "eq": "{}",
        "ne": "not {}",
        "in_": "one of {}",
        "not_in": "none of {}",
        "gt": "more than {}",
        "gte": "at least {}",
        "lt": "less than {}",
        "lte": "at most {}",
    }
    parts = []
    for name in ("eq", "ne", "in_", "not_in", "gt", "gte", "lt", "lte"):
        if name in condition.model_fields_set or getattr(condition, name) is not None:
            value = getattr(condition, name)
            shown = ", ".join(str(v) for v in value) if isinstance(value, list) else value
            parts.append(words[name].format(shown))
    if condition.exists is not None:
        parts.append("a value" if condition.exists else "no value")
    return " and ".join(parts)


# --- the policy ----------------------------------------------------------------------


def _policy(
    engine: Engine, rule: CompiledRule, user_id: str, state: UserState, now: float
) -> tuple[str, str]:
    """The policy's verdict on a match of the rule now, and what would hold it back
    until when."""
    policy = engine.policy
    verdict = policy.judge(user_id, state, rule.candidate, now)
    if verdict.outcome == "emitted":
        return verdict.outcome, f"the policy lets it through now: {verdict.detail}"
    if verdict.outcome == "holdout":
        return verdict.outcome, f"held out: {verdict.detail}"
    reason = verdict.reason or ""
    detail = verdict.detail
    if reason == "no_channel":
        detail = "; ".join(
            _channel(engine, channel, state, now, rule.offer_id) for channel in rule.channels
        )
    said = reason in ("no_channel", "snoozed")  # their detail says until when
    until = None if said else policy.ends(reason, state, rule.candidate, now)
    held = f"the policy would hold it back now ({reason}): {detail}"
    return verdict.outcome, held + (f" (until {when(until)})" if until is not None else "")


def _channel(engine: Engine, channel: str, state: UserState, now: float, offer: str) -> str:
    """Why a channel cannot be used for the offer now, and until when if that ends by
    itself."""
    router = engine.policy.router
    reason = router.unavailable(channel, state, now, offer)
    if reason is None:
        return f"{channel}: free"
    until = router.frees_at(channel, state, now, offer)
    return f"{channel}: {reason}" + (f" until {when(until)}" if until is not None else "")
