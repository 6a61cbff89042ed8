"""The explain view of one user (docs/contract.md section 16): a pure function of the
rules, the user's state, the time and the user's decisions.

``triggerstream explain`` builds it from files; the worker's inspector from a state read
from its store. It reads the state at ``now`` and never changes it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from triggerstream.core.engine import Engine
from triggerstream.core.state import UserState, nps_category, state_value
from triggerstream.core.summaries import span, when
from triggerstream.core.timers import pending as pending_timers
from triggerstream.core.windows import count as window_count
from triggerstream.core.windows import total
from triggerstream.explain.why import why

CHANNELS = ("in_app", "push", "email")


def explain_user(
    engine: Engine,
    user_id: str,
    state: UserState | None,
    now: float,
    decisions: Iterable[dict[str, Any]],
    now_is: str = "",
) -> dict[str, Any]:
    """The section-16 document: ``user_id``, ``state``, ``rules``, ``pending`` and
    ``decisions`` (the decision records of section 8, as given). ``now_is`` says where
    ``now`` comes from (the latest event, ``--until``, the worker's clock). A state of
    None (never seen, or erased) shows as a new user's."""
    state = state if state is not None else UserState()
    timers = sorted(pending_timers(state, engine.inactivity_rules), key=_due_order)
    return {
        "user_id": user_id,
        "state": _state(engine, state, now, now_is),
        "rules": [
            why(engine, rule, user_id, state, now, timers).to_dict() for rule in engine.compiled
        ],
        "pending": sorted(
            [
                *(
                    {"rule_id": t.rule_id, "kind": t.kind, "due": when(t.triggered_at())}
                    for t in timers
                ),
                # A deferred match waits for its next look (or the user's next event).
                *(
                    {"rule_id": d.rule_id, "kind": f"deferred: {d.reason}", "due": when(d.wake)}
                    for d in state.deferred
                ),
            ],
            key=lambda entry: (entry["due"], entry["rule_id"]),
        ),
        "decisions": list(decisions),
    }


def _due_order(timer: Any) -> tuple[float, str]:
    return (timer.triggered_at(), timer.rule_id)


def _state(engine: Engine, state: UserState, now: float, now_is: str) -> dict[str, Any]:
    """What the user's state holds, in the names of section 5, times in RFC 3339."""
    return {
        "now": when(now),
        "now_is": now_is,
        "profile": {
            "first_name": state.first_name,
            "locale": state.locale,
            "country": state.country,
            "timezone": state.timezone,
            "plan": state.plan,
            "billing_period": state.billing_period,
            "trial_ends_at": _time(state.trial_ends_at),
            "renews_at": _time(state.renews_at),
            "attributes": dict(state.attributes),
            "nps_score": state.nps_score,
            "nps_category": nps_category(state.nps_score),
            "orders_count": state.orders_count,
            "total_spent": state.total_spent,
            "last_seen_at": _time(state.last_seen_at),
            "in_session": state.session_open,
            "critical_workflows": sorted(state.critical_workflows),
            "onboarding_steps": list(state.onboarding_steps),
            "offers_opt_out": state.offers_opt_out,
            "snooze_all_until": _time(state.snooze_all_until),
        },
        "consent": {channel: state.consent.get(channel) for channel in CHANNELS},
        "open_tickets": list(state.open_tickets),
        "owned": list(state_value(state, "owned")),
        "quotas": {
            resource: {"used": used, "limit": limit, "fraction": round(used / limit, 4)}
            for resource, (used, limit) in sorted(state.quotas.items())
        },
        "windows": _windows(engine, state, now),
        "offers": {
            "last_triggered": {rule: when(at) for rule, at in sorted(state.last_trigger.items())},
            "dismissed": {offer: when(at) for offer, at in sorted(state.dismissed.items())},
            "snoozed_until": {offer: when(at) for offer, at in sorted(state.snoozed.items())},
            "sent": [
                {"at": when(at), "channel": channel, "offer": offer}
                for at, channel, offer in state.sent
            ],
        },
    }


def _windows(engine: Engine, state: UserState, now: float) -> dict[str, dict[str, Any]]:
    """Each count and sum rule's window as of ``now``: the events in it (and their sum)."""
    shown: dict[str, dict[str, Any]] = {}
    for rule in engine.compiled:
        entries = state.windows.get(rule.id)
        if not entries:
            continue
        window: dict[str, Any] = {"within": span(rule.within)}
        if rule.kind == "sum":
            window["events"], window["sum"] = total(entries, now, rule.within)
        else:
            window["events"] = window_count(entries, now, rule.within)
        shown[rule.id] = window
    return shown


def _time(at: float | None) -> str | None:
    return None if at is None else when(at)
