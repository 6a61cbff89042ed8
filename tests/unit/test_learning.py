"""Experiments, the holdout, attribution and erasure (docs/contract.md sections 5, 7, 8)."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.engine_support import at, event, in_session, replay, rule, rules_file
from triggerstream.core.engine import Engine
from triggerstream.core.ids import bucket
from triggerstream.rules.load import parse_rules

CLICK = rule(
    "clicked",
    {"event": {"type": "usage.locked_feature_clicked"}},
    channels=["in_app"],
    cooldown="0s",
)
EXPERIMENT = [
    {
        "id": "skip-discount",
        "rule": "clicked",
        "variants": {
            "control": {"weight": 50},
            "twenty-off": {"weight": 50, "discount_percent": 20, "title": "20% off Premium"},
        },
    }
]


def click(user: str, when: dt.datetime) -> dict[str, Any]:
    return event("usage.locked_feature_clicked", user, when, feature="sso")


def buy(user: str, when: dt.datetime, *skus: str, price: float = 10.0) -> dict[str, Any]:
    return event(
        "purchase.order_completed",
        user,
        when,
        order_id=f"o-{user}-{when:%d%H%M}",
        currency="EUR",
        total=price * len(skus),
        items=[{"sku": sku, "price": price, "quantity": 1} for sku in skus],
    )


def subscribe(
    user: str, when: dt.datetime, plan: str = "premium", price: float = 9.99
) -> dict[str, Any]:
    return event(
        "purchase.subscription_started",
        user,
        when,
        plan=plan,
        billing_period="monthly",
        price=price,
        currency="EUR",
    )


# --- experiments -----------------------------------------------------------------------


def test_variants_override_the_offer_and_are_on_trigger_and_decision() -> None:
    users = [f"u{n}" for n in range(40)]
    lines = []
    for user in users:
        lines += in_session(user, at()) + [click(user, at(minutes=1))]
    result = replay(rules_file([CLICK], experiments=EXPERIMENT), lines)
    assert {t.variant for t in result.triggers} == {"control", "twenty-off"}
    for trigger in result.triggers:
        assert trigger.experiment == "skip-discount"
        if trigger.variant == "twenty-off":
            assert trigger.offer.discount_percent == 20
            assert trigger.offer.title == "20% off Premium"
        else:
            assert trigger.offer.discount_percent == 0
            assert trigger.offer.title == "Go Premium"
    by_trigger = {d.trigger_id: d for d in result.decisions}
    for trigger in result.triggers:
        assert by_trigger[trigger.trigger_id].variant == trigger.variant


def test_assignment_is_stable_and_follows_the_weights() -> None:
    text = rules_file(
        [CLICK],
        experiments=[
            {"id": "e", "rule": "clicked", "variants": {"a": {"weight": 20}, "b": {"weight": 80}}}
        ],
    )
    compiled = Engine(parse_rules(text)).by_id["clicked"]
    counts = Counter(compiled.variant(f"user-{n}") for n in range(20_000))
    assert abs(counts["a"] / 20_000 - 0.20) < 0.015
    assert abs(counts["b"] / 20_000 - 0.80) < 0.015
    again = Engine(parse_rules(text)).by_id["clicked"]
    assert all(compiled.variant(f"user-{n}") == again.variant(f"user-{n}") for n in range(500))


@settings(max_examples=30, deadline=None)
@given(st.permutations([f"user-{n}" for n in range(12)]))
def test_assignment_never_depends_on_event_order(order: list[str]) -> None:
    lines = []
    for user in order:
        lines += in_session(user, at()) + [click(user, at(minutes=1))]
    text = rules_file(
        [CLICK], experiments=EXPERIMENT, policy={"holdout": {"percent": 30, "salt": "x"}}
    )
    result = replay(text, lines)
    got = {(d.user_id, d.variant, d.outcome) for d in result.decisions}
    expected_holdout = {f"user-{n}" for n in range(12) if bucket("x", f"user-{n}") < 3000}
    assert {u for u, _, outcome in got if outcome == "holdout"} == expected_holdout
    compiled = Engine(parse_rules(text)).by_id["clicked"]
    assert got == {
        (u, compiled.variant(u), "holdout" if u in expected_holdout else "emitted") for u in order
    }


def test_holdout_proportion_and_stability() -> None:
    held = [bucket("2026-q4", f"user-{n}") < 500 for n in range(20_000)]
    assert abs(sum(held) / 20_000 - 0.05) < 0.006


# --- attribution -----------------------------------------------------------------------


@pytest.mark.parametrize(("days", "credited"), [(7, True), (7.001, False)])
def test_attribution_window_edges(days: float, credited: bool) -> None:
    lines = in_session("u", at()) + [click("u", at()), subscribe("u", at(days=days))]
    result = replay(rules_file([CLICK]), lines)
    assert bool(result.attributions) is credited
    if credited:
        a = result.attributions[0]
        assert (a.plan, a.revenue, a.currency, a.group) == ("premium", 9.99, "EUR", "treated")
        assert a.lag_seconds == 7 * 86400
        assert a.trigger_id == result.triggers[0].trigger_id
        assert a.channel == "in_app"


def test_last_touch_gets_the_credit_and_a_purchase_counts_once() -> None:
    lines = in_session("u", at()) + [
        click("u", at()),
        *in_session("u", at(hours=5)),
        click("u", at(hours=5, minutes=1)),
        subscribe("u", at(hours=6)),
        subscribe("u", at(hours=6)),
    ]
    lines[-1]["event_id"] = lines[-2]["event_id"]  # the purchase delivered twice
    result = replay(rules_file([CLICK]), lines)
    assert len(result.triggers) == 2
    assert [a.trigger_id for a in result.attributions] == [result.triggers[1].trigger_id]


def test_only_the_offers_product_or_its_items_convert_each_line_once() -> None:
    cross = {
        "accessories": {"kind": "cross_sell", "title": "Goes well", "recommend": {"max_items": 2}},
        "premium": {"kind": "upsell", "product": "premium", "title": "Go Premium"},
    }
    order_rule = rule(
        "order-cross-sell",
        {"event": {"type": "purchase.order_completed"}},
        offer="accessories",
        channels=["email"],
        cooldown="0s",
    )
    catalog = {"complements": {"camera-x": ["sd-card-64", "camera-bag"]}}
    lines = [
        event("profile.consent_updated", "u", at(), channel="email", granted=True),
        buy("u", at(minutes=1), "camera-x", price=649),
        buy("u", at(days=2), "sd-card-64", "lens-cap", "sd-card-64", price=20),
    ]
    result = replay(rules_file([order_rule], offers=cross, catalog=catalog), lines)
    assert [(a.sku, a.revenue, a.order_id) for a in result.attributions] == [
        ("sd-card-64", 20.0, lines[-1]["properties"]["order_id"]),
        ("sd-card-64", 20.0, lines[-1]["properties"]["order_id"]),
    ]


def test_holdout_decisions_are_credited_to_the_holdout_group() -> None:
    lines = in_session("u", at()) + [click("u", at()), subscribe("u", at(days=1), price=0)]
    lines[-1]["properties"].pop("price")
    result = replay(rules_file([CLICK], policy={"holdout": {"percent": 100, "salt": "s"}}), lines)
    assert result.triggers == []
    [a] = result.attributions
    assert (a.group, a.channel, a.revenue) == ("holdout", None, 0.0)


def test_no_credit_without_a_trigger_before_the_purchase() -> None:
    lines = in_session("u", at()) + [subscribe("u", at()), click("u", at(minutes=1))]
    assert replay(rules_file([CLICK]), lines).attributions == []


# --- erasure ---------------------------------------------------------------------------


def test_erasure_forgets_everything_and_records_an_erased_decision() -> None:
    count_rule = rule(
        "skips",
        {"count": {"type": "usage.feature_used", "at_least": 3, "within": "1d"}},
        channels=["in_app"],
        cooldown="0s",
    )
    trial = rule(
        "trial", {"deadline": {"field": "trial_ends_at", "before": "1d"}}, channels=["in_app"]
    )
    lines = in_session("u", at()) + [
        event("usage.feature_used", "u", at(minutes=1), feature="skip", event_id="dup-1"),
        event("usage.feature_used", "u", at(minutes=2), feature="skip"),
        event("purchase.trial_started", "u", at(minutes=3), plan="pro", trial_ends_at=at(days=5)),
        click("u", at(minutes=4)),
        event("profile.erasure_requested", "u", at(minutes=5)),
        # after erasure: the old skips do not count, the old id is not a duplicate,
        # the pending deadline is gone and the old trigger gets no credit.
        *in_session("u", at(minutes=6)),
        event("usage.feature_used", "u", at(minutes=7), feature="skip", event_id="dup-1"),
        event("usage.feature_used", "u", at(minutes=8), feature="skip"),
        subscribe("u", at(minutes=9)),
    ]
    result = replay(rules_file([count_rule, trial, CLICK]), lines, until=at(days=10))
    erased = [d for d in result.decisions if d.outcome == "erased"]
    assert len(erased) == 1
    assert (erased[0].rule_id, erased[0].trigger_id, erased[0].user_id) == (None, None, "u")
    after = [d for d in result.decisions if d.at > at(minutes=5)]
    assert after == []
    assert result.attributions == []
    assert result.summary is not None
    assert result.summary.duplicates == 0
