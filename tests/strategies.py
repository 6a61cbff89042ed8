"""Hypothesis strategies for valid input events, as the JSON a producer would send.

Each strategy draws ``(topic, document)`` where ``document`` is the envelope as a dict
of JSON values. Later test suites build event streams from these.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from hypothesis import strategies as st

from triggerstream.events import EVENT_TYPES

_text = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=30
)
names = st.one_of(st.sampled_from(["skip", "storage_gb", "camera-x", "pro", "T-1"]), _text)
ids = st.one_of(st.from_regex(r"[a-z0-9-]{1,20}", fullmatch=True), _text)
offsets = st.integers(min_value=-14 * 60, max_value=14 * 60).map(
    lambda minutes: dt.timezone(dt.timedelta(minutes=minutes))
)
times = st.datetimes(
    min_value=dt.datetime(2000, 1, 2), max_value=dt.datetime(2099, 12, 30), timezones=offsets
)
timestamps = times.map(dt.datetime.isoformat)
amounts = st.one_of(
    st.integers(min_value=0, max_value=10**9),
    st.floats(min_value=0, max_value=1e9, allow_nan=False, allow_infinity=False),
)
positive = st.one_of(
    st.integers(min_value=1, max_value=10**9),
    st.floats(min_value=0.001, max_value=1e9, allow_nan=False, allow_infinity=False),
)
quantities = st.integers(min_value=1, max_value=1000)
currencies = st.sampled_from(["EUR", "USD", "GBP", "JPY"])
channels = st.sampled_from(["in_app", "push", "email"])
periods = st.sampled_from(["monthly", "annual"])


def _optional(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional=fields)


def _props(
    required: dict[str, st.SearchStrategy[Any]], **optional: st.SearchStrategy[Any]
) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(required, optional=optional)


_order_item = _props({"sku": names, "price": amounts}, quantity=quantities, category=names)
_cart_item = _props({"sku": names}, quantity=quantities, price=amounts)
_feedback = {"trigger_id": ids, "offer_id": names, "channel": channels}
_attribute = st.one_of(st.booleans(), st.integers(-(10**6), 10**6), st.text(max_size=20))

PROPERTIES: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    "usage.feature_used": _props({"feature": names}, quantity=quantities),
    "usage.quota_usage": _props({"resource": names, "used": amounts, "limit": positive}),
    "usage.locked_feature_clicked": _props({"feature": names}, required_plan=names),
    "usage.workflow_started": _props({"workflow": names}, critical=st.booleans()),
    "usage.workflow_completed": _props({"workflow": names}),
    "usage.onboarding_step_completed": st.integers(1, 20).flatmap(
        lambda total: _props({"step": names}, index=st.integers(0, total), total=st.just(total))
    ),
    "usage.session_started": _optional(platform=names),
    "usage.session_ended": st.just({}),
    "purchase.order_completed": _props(
        {
            "order_id": ids,
            "items": st.lists(_order_item, min_size=1, max_size=4),
            "total": amounts,
            "currency": currencies,
        }
    ),
    "purchase.checkout_started": _props({"cart": st.lists(_cart_item, min_size=1, max_size=4)}),
    "purchase.subscription_started": _props(
        {"plan": names, "billing_period": periods},
        price=amounts,
        currency=currencies,
        renews_at=timestamps,
    ),
    "purchase.subscription_renewed": _props(
        {"plan": names, "billing_period": periods}, renews_at=timestamps
    ),
    "purchase.subscription_cancelled": _props({"plan": names}),
    "purchase.trial_started": _props({"plan": names, "trial_ends_at": timestamps}),
    "support.ticket_opened": _props(
        {"ticket_id": ids},
        category=names,
        severity=st.sampled_from(["low", "normal", "high", "urgent"]),
    ),
    "support.ticket_resolved": _props({"ticket_id": ids}, category=names),
    "support.nps_submitted": _props({"score": st.integers(0, 10)}, comment=st.text(max_size=200)),
    "profile.profile_updated": _optional(
        first_name=st.text(max_size=30),
        locale=st.sampled_from(["en", "en-GB", "de-DE", "pt_BR", "zh-Hant-TW"]),
        country=st.sampled_from(["DE", "US", "GB", "BR", "JP"]),
        timezone=st.sampled_from(["UTC", "Europe/Berlin", "America/New_York", "Asia/Tokyo"]),
        plan=names,
        attributes=st.dictionaries(names, _attribute, max_size=4),
    ),
    "profile.consent_updated": _props({"channel": channels, "granted": st.booleans()}),
    "profile.preferences_updated": _optional(
        offers_opt_out=st.booleans(), snooze_all_until=timestamps
    ),
    "profile.erasure_requested": st.just({}),
    "feedback.offer_delivered": _props(_feedback),
    "feedback.offer_shown": _props(_feedback),
    "feedback.offer_clicked": _props(_feedback),
    "feedback.offer_dismissed": _props(_feedback),
    "feedback.offer_snoozed": _props({**_feedback, "until": timestamps}),
    "feedback.unsubscribed": _props({"channel": channels}),
}
assert set(PROPERTIES) == set(EVENT_TYPES), "every event type needs a strategy"


@st.composite
def events(
    draw: st.DrawFn,
    types: list[str] | None = None,
    users: st.SearchStrategy[str] = ids,
) -> tuple[str, dict[str, Any]]:
    """One valid event: ``(topic, envelope as JSON values)``."""
    qualified = draw(st.sampled_from(sorted(types or PROPERTIES)))
    document = {
        "event_id": draw(ids),
        "user_id": draw(users),
        "type": qualified.split(".", 1)[1],
        "occurred_at": draw(timestamps),
        "properties": draw(PROPERTIES[qualified]),
    }
    return EVENT_TYPES[qualified].topic, document
