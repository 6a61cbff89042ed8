"""Sentences a person can read: why a trigger fired, why a decision went as it did."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any


def when(at: float) -> str:
    """POSIX seconds as an RFC 3339 UTC timestamp."""
    return dt.datetime.fromtimestamp(at, dt.UTC).isoformat().replace("+00:00", "Z")


def span(length: float) -> str:
    """A window length as people say it: 60 minutes, 24 hours, 7 days."""
    seconds = int(length)
    if seconds < 120:
        return _units(seconds, "second")
    if seconds <= 3600 or (seconds < 7200 and seconds % 3600):
        return _units(seconds // 60, "minute")
    if seconds <= 2 * 86400 and seconds % 86400:
        return _units(seconds // 3600, "hour")
    if seconds <= 86400:
        return _units(seconds // 3600, "hour")
    return _units(round(seconds / 86400), "day")


def _units(n: int, unit: str) -> str:
    return f"{n} {unit}" + ("" if n == 1 else "s")


def plural(noun: str, n: float = 2) -> str:
    if n == 1:
        return noun
    if noun.endswith(("s", "x", "ch", "sh")):
        return noun + "es"
    if noun.endswith("y") and noun[-2:-1] not in "aeiou":
        return noun[:-1] + "ies"
    return noun + "s"


def number(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def noun_for(qualified_type: str, where: dict[str, Any]) -> str:
    """What a counted event is called: the `where` value when it names one thing
    (`feature: skip` -> skip), else the type (`locked_feature_clicked`)."""
    for key in ("feature", "workflow", "step", "category", "resource", "sku"):
        value = where.get(key)
        if isinstance(value, str):
            return value.replace("_", " ")
    return qualified_type.split(".", 1)[1].replace("_", " ") + " event"


def event_sentence(qualified_type: str, props: Any) -> str:
    """One line about an event that matched an `event` rule."""
    name = qualified_type.split(".", 1)[1]
    p = props
    sentences: dict[str, Callable[[], str]] = {
        "feature_used": lambda: f"used {p.feature}",
        "locked_feature_clicked": lambda: (
            f"clicked locked feature {p.feature}"
            + (f" (needs {p.required_plan})" if p.required_plan else "")
        ),
        "workflow_started": lambda: f"started workflow {p.workflow}",
        "workflow_completed": lambda: f"completed workflow {p.workflow}",
        "onboarding_step_completed": lambda: (
            f"completed onboarding step {p.step}"
            + (f" ({p.index} of {p.total})" if p.index is not None and p.total else "")
        ),
        "session_started": lambda: "started a session",
        "order_completed": lambda: (
            f"order {p.order_id} completed: "
            + ", ".join(item.sku for item in p.items)
            + f" ({number(p.total)} {p.currency})"
        ),
        "checkout_started": lambda: (
            "started checkout with " + ", ".join(item.sku for item in p.cart)
        ),
        "subscription_started": lambda: f"subscribed to {p.plan} {p.billing_period}",
        "subscription_renewed": lambda: f"renewed {p.plan} {p.billing_period}",
        "subscription_cancelled": lambda: f"cancelled {p.plan}",
        "trial_started": lambda: (
            f"started a {p.plan} trial ending {when(p.trial_ends_at.timestamp())}"
        ),
        "ticket_opened": lambda: (
            f"opened ticket {p.ticket_id}" + (f" about {p.category}" if p.category else "")
        ),
        "ticket_resolved": lambda: (
            f"ticket {p.ticket_id}" + (f" about {p.category}" if p.category else "") + " resolved"
        ),
        "nps_submitted": lambda: f"NPS {p.score}",
        "consent_updated": lambda: f"{'granted' if p.granted else 'withdrew'} {p.channel} consent",
    }
    make: Callable[[], str] | None = sentences.get(name)
    return make() if make is not None else name.replace("_", " ")


def not_followed(facts: dict[str, Any]) -> str:
    """Why a ``not_followed`` timer fired: ``checkout_started at 2026-11-02T09:00:00Z, no
    order_completed within 60 minutes``."""
    first = facts["first"].split(".", 1)[1]
    then = facts["then"].split(".", 1)[1]
    return f"{first} at {facts['first_at']}, no {then} within {facts['within']}"
