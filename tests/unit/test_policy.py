"""Every suppression reason at its boundary, channel routing, priority
(docs/contract.md section 7)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from tests.engine_support import at, event, in_session, replay, rule, rules_file
from triggerstream.core.recommend import CoPurchaseCounts

CLICK = rule("clicked", {"event": {"type": "usage.locked_feature_clicked"}}, channels=["in_app"])


def click(user: str, when: dt.datetime) -> dict[str, Any]:
    return event("usage.locked_feature_clicked", user, when, feature="sso")


def decide(before: list[dict[str, Any]], when: dt.datetime, **policy: Any) -> tuple[Any, str]:
    """The reason and detail of the decision for one click at `when` after `before`."""
    lines = (
        in_session("u", at())
        + before
        + [
            event("usage.feature_used", "u", when - dt.timedelta(seconds=1), feature="x"),
            click("u", when),
        ]
    )
    result = replay(rules_file([CLICK], policy=policy), lines)
    last = result.decisions[-1]
    return last.reason, last.detail


@pytest.mark.parametrize(
    ("before", "reason", "detail_part"),
    [
        (
            [event("profile.preferences_updated", "u", at(), offers_opt_out=True)],
            "opted_out",
            "opted out",
        ),
        (
            [
                event(
                    "purchase.subscription_started",
                    "u",
                    at(),
                    plan="premium",
                    billing_period="monthly",
                )
            ],
            "already_owned",
            "already owns premium",
        ),
        ([event("profile.profile_updated", "u", at(), plan="premium")], "already_owned", "premium"),
        ([event("support.nps_submitted", "u", at(), score=6)], "detractor", "NPS 6"),
        ([event("support.nps_submitted", "u", at(), score=7)], None, "sent on in_app"),
        ([event("support.ticket_opened", "u", at(), ticket_id="T-9")], "open_tickets", "T-9"),
        (
            [
                event("support.ticket_opened", "u", at(), ticket_id="T-9"),
                event("support.ticket_resolved", "u", at(minutes=1), ticket_id="T-9"),
            ],
            None,
            "sent",
        ),
        (
            [event("usage.workflow_started", "u", at(), workflow="payroll", critical=True)],
            "critical_workflow",
            "payroll",
        ),
        (
            [
                event("usage.workflow_started", "u", at(), workflow="payroll", critical=True),
                event("usage.workflow_completed", "u", at(minutes=1), workflow="payroll"),
            ],
            None,
            "sent",
        ),
        (
            [event("usage.workflow_started", "u", at(), workflow="report", critical=False)],
            None,
            "sent",
        ),
        (
            [
                event(
                    "feedback.offer_snoozed",
                    "u",
                    at(),
                    trigger_id="t",
                    offer_id="premium",
                    channel="in_app",
                    until=at(minutes=11),
                )
            ],
            "snoozed",
            "snoozed until",
        ),
        (
            [event("profile.preferences_updated", "u", at(), snooze_all_until=at(minutes=11))],
            "snoozed",
            "all offers snoozed",
        ),
        (
            [
                event(
                    "feedback.offer_dismissed",
                    "u",
                    at(),
                    trigger_id="t",
                    offer_id="premium",
                    channel="in_app",
                )
            ],
            "dismissed",
            "dismissed",
        ),
        (
            [
                event(
                    "feedback.offer_dismissed",
                    "u",
                    at(),
                    trigger_id="t",
                    offer_id="other",
                    channel="in_app",
                )
            ],
            None,
            "sent",
        ),
    ],
)
def test_each_suppression_reason(
    before: list[dict[str, Any]], reason: str | None, detail_part: str
) -> None:
    got_reason, detail = decide(before, at(minutes=10))
    assert got_reason == reason
    assert detail_part in detail


@pytest.mark.parametrize(("days", "reason"), [(29.99, "dismissed"), (30, None)])
def test_dismissal_holds_back_for_the_dismiss_cooldown(days: float, reason: str | None) -> None:
    dismissed = [
        event(
            "feedback.offer_dismissed",
            "u",
            at(),
            trigger_id="t",
            offer_id="premium",
            channel="in_app",
        )
    ]
    lines = dismissed + in_session("u", at(days=days, minutes=-1))
    assert decide(lines, at(days=days))[0] == reason


def test_snooze_ends_at_its_time() -> None:
    snoozed = [
        event(
            "feedback.offer_snoozed",
            "u",
            at(),
            trigger_id="t",
            offer_id="premium",
            channel="in_app",
            until=at(minutes=10),
        )
    ]
    assert decide(snoozed, at(minutes=10))[0] is None


@pytest.mark.parametrize(("hours", "reason"), [(23.99, "cooldown"), (24, None)])
def test_cooldown_boundary(hours: float, reason: str | None) -> None:
    lines = in_session("u", at()) + [click("u", at(minutes=1))]
    later = at(hours=hours, minutes=1)
    lines += in_session("u", later - dt.timedelta(minutes=1)) + [click("u", later)]
    result = replay(rules_file([dict(CLICK, cooldown="1d")]), lines)
    assert result.reasons() == [None, reason]


def test_a_frequency_cap_exactly_reached_suppresses_the_next_one() -> None:
    rules = [dict(CLICK, id=f"r{i}", cooldown="0s") for i in range(3)]
    lines = in_session("u", at())
    for minute in (1, 2, 3):
        lines += [
            event("usage.feature_used", "u", at(minutes=minute), feature="x"),
            click("u", at(minutes=minute)),
        ]
    result = replay(
        rules_file([rules[0]], policy={"frequency_caps": [{"max": 2, "per": "1d"}]}), lines
    )
    assert result.reasons() == [None, None, "frequency_cap"]
    assert "2 offer(s) in the last 24 hours (cap 2 per 24 hours)" in result.decisions[2].detail


@pytest.mark.parametrize(("gap_hours", "reason"), [(23.99, "frequency_cap"), (24, None)])
def test_frequency_cap_window_is_sliding(gap_hours: float, reason: str | None) -> None:
    lines = in_session("u", at()) + [click("u", at(minutes=1))]
    lines += in_session("u", at(hours=gap_hours, minutes=0.5)) + [
        click("u", at(hours=gap_hours, minutes=1))
    ]
    result = replay(
        rules_file(
            [dict(CLICK, cooldown="0s")], policy={"frequency_caps": [{"max": 1, "per": "1d"}]}
        ),
        lines,
    )
    assert result.reasons() == [None, reason]


def test_no_caps_means_no_frequency_check() -> None:
    lines = in_session("u", at())
    for minute in range(1, 8):
        lines.append(click("u", at(minutes=minute)))
    result = replay(
        rules_file([dict(CLICK, cooldown="0s")], policy={"frequency_caps": None}), lines
    )
    assert result.reasons() == [None] * 7


def test_suppress_null_turns_every_suppression_check_off() -> None:
    before = [
        event("support.nps_submitted", "u", at(), score=0),
        event("support.ticket_opened", "u", at(), ticket_id="T"),
    ]
    assert decide(before, at(minutes=5), suppress=None)[0] is None
    assert decide(before, at(minutes=5), suppress={"nps_at_most": None})[0] == "open_tickets"


def test_holdout_is_a_decision_that_sends_nothing_and_counts_toward_caps() -> None:
    rules = [dict(CLICK, cooldown="0s")]
    lines = in_session("u", at()) + [click("u", at(minutes=1)), click("u", at(minutes=2))]
    result = replay(
        rules_file(
            rules,
            policy={
                "holdout": {"percent": 100, "salt": "s"},
                "frequency_caps": [{"max": 1, "per": "1d"}],
            },
        ),
        lines,
    )
    assert result.outcomes() == [
        ("clicked", "holdout", "holdout"),
        ("clicked", "suppressed", "frequency_cap"),
    ]
    assert result.triggers == []


# --- channels --------------------------------------------------------------------------

ANY_CHANNEL = rule(
    "any", {"event": {"type": "usage.locked_feature_clicked"}}, channels=["in_app", "push", "email"]
)


def route(lines: list[dict[str, Any]], when: dt.datetime, **policy: Any) -> tuple[Any, Any, str]:
    result = replay(rules_file([ANY_CHANNEL], policy=policy), [*lines, click("u", when)])
    last = result.decisions[-1]
    return last.channel, last.reason, last.detail


def test_no_channel_names_each_channels_reason() -> None:
    channel, reason, detail = route([], at())
    assert (channel, reason) == (None, "no_channel")
    assert detail.endswith(
        "in_app: no active session; push: no consent given; email: no consent given"
    )


def test_push_and_email_need_explicit_consent_and_unsubscribe_withdraws_it() -> None:
    lines = [event("profile.consent_updated", "u", at(), channel="email", granted=True)]
    assert route(lines, at(minutes=1))[0] == "email"
    lines.append(event("feedback.unsubscribed", "u", at(minutes=2), channel="email"))
    channel, reason, detail = route(lines, at(minutes=3))
    assert channel is None
    assert reason == "no_channel"
    assert "email: consent withdrawn" in detail


def test_in_app_needs_an_active_session_with_recent_activity() -> None:
    # An NPS answer is not product activity, so it does not refresh the session itself.
    on_nps = rule("on-nps", {"nps": {"at_least": 0}}, channels=["in_app"], cooldown="0s")

    def channel_at(lines: list[dict[str, Any]], minutes: float) -> tuple[Any, str]:
        answer = event("support.nps_submitted", "u", at(minutes=minutes), score=9)
        last = replay(rules_file([on_nps]), [*lines, answer]).decisions[-1]
        return last.channel, last.detail

    session = [event("usage.session_started", "u", at())]
    assert channel_at(session, 30)[0] == "in_app"
    channel, detail = channel_at(session, 31)
    assert channel is None
    assert "in_app: session idle for 31 minutes (timeout 30 minutes)" in detail
    ended = [*session, event("usage.session_ended", "u", at(minutes=5))]
    assert channel_at(ended, 6) == (None, "NPS 9 (promoter): in_app: no active session")


def test_in_app_consent_can_be_withdrawn() -> None:
    lines = [
        event("usage.session_started", "u", at()),
        event("profile.consent_updated", "u", at(), channel="in_app", granted=False),
    ]
    assert "in-app consent withdrawn" in route(lines, at(minutes=1))[2]


def test_routing_falls_back_in_the_rules_order() -> None:
    lines = [
        event("profile.consent_updated", "u", at(), channel="push", granted=True),
        event("profile.consent_updated", "u", at(), channel="email", granted=True),
    ]
    channel, _, detail = route(lines, at(minutes=1))
    assert channel == "push"
    assert "skipped in_app: no active session" in detail


def test_a_channel_cap_skips_that_channel_only() -> None:
    rules = [dict(ANY_CHANNEL, cooldown="0s", channels=["email", "push"])]
    lines = [
        event("profile.consent_updated", "u", at(), channel=c, granted=True)
        for c in ("email", "push")
    ]
    lines += [click("u", at(minutes=m)) for m in (1, 2, 3)]
    result = replay(
        rules_file(rules, policy={"frequency_caps": [{"channel": "email", "max": 2, "per": "7d"}]}),
        lines,
    )
    assert [d.channel for d in result.decisions] == ["email", "email", "push"]
    assert "email: cap of 2 per 7 days reached" in result.decisions[2].detail


@pytest.mark.parametrize(
    ("utc", "zone", "quiet"),
    [
        ("2026-11-02T19:59:00+00:00", "Europe/Berlin", False),  # 20:59 CET
        ("2026-11-02T20:00:00+00:00", "Europe/Berlin", True),  # 21:00 CET
        ("2026-11-02T23:30:00+00:00", "Europe/Berlin", True),  # past midnight
        ("2026-11-03T06:59:00+00:00", "Europe/Berlin", True),  # 07:59
        ("2026-11-03T07:00:00+00:00", "Europe/Berlin", False),  # 08:00
        ("2026-11-02T20:30:00+00:00", None, False),  # no zone: UTC, 20:30
        ("2026-11-02T21:30:00+00:00", None, True),  # UTC 21:30
        # Berlin leaves summer time on 2026-10-25: 19:30 UTC is 21:30 the day before, 20:30 after
        ("2026-10-24T19:30:00+00:00", "Europe/Berlin", True),
        ("2026-10-25T19:30:00+00:00", "Europe/Berlin", False),
        # New York leaves daylight time on 2026-11-01: 01:30 UTC is 21:30 EDT, then 20:30 EST
        ("2026-10-31T01:30:00+00:00", "America/New_York", True),
        ("2026-11-02T01:30:00+00:00", "America/New_York", False),
    ],
)
def test_quiet_hours_in_the_users_zone_across_midnight_and_daylight_saving(
    utc: str, zone: str | None, quiet: bool
) -> None:
    when = dt.datetime.fromisoformat(utc)
    profile = {"timezone": zone} if zone else {}
    lines = [
        event("profile.profile_updated", "u", when - dt.timedelta(days=30), **profile),
        event(
            "profile.consent_updated",
            "u",
            when - dt.timedelta(days=30),
            channel="push",
            granted=True,
        ),
    ]
    channel, reason, detail = route(lines, when, quiet_hours={"from": "21:00", "to": "08:00"})
    if quiet:
        assert reason == "no_channel"
        assert "push: quiet hours" in detail
    else:
        assert channel == "push"


def test_quiet_hours_never_hold_back_in_app() -> None:
    lines = [event("usage.session_started", "u", at(hours=13))]  # 22:00 UTC
    assert (
        route(lines, at(hours=13, minutes=1), quiet_hours={"from": "21:00", "to": "08:00"})[0]
        == "in_app"
    )


# --- priority ----------------------------------------------------------------------------


def test_the_highest_priority_match_wins_and_the_rest_are_lower_priority() -> None:
    low = rule("low", {"event": {"type": "usage.locked_feature_clicked"}}, channels=["in_app"])
    high = dict(low, id="high", priority=5)
    tie = dict(low, id="tie", priority=5)
    lines = in_session("u", at()) + [click("u", at(minutes=1))]
    result = replay(rules_file([low, high, tie]), lines)
    assert result.outcomes() == [
        ("high", "emitted", None),
        ("tie", "suppressed", "lower_priority"),
        ("low", "suppressed", "lower_priority"),
    ]
    assert "rule high (priority 5)" in result.decisions[1].detail


def test_a_suppressed_higher_priority_match_leaves_room_for_the_next() -> None:
    low = rule("low", {"event": {"type": "usage.locked_feature_clicked"}}, channels=["in_app"])
    high = dict(low, id="high", priority=5, offer="sso")
    offers = {
        "premium": {"kind": "upsell", "product": "premium", "title": "Go Premium"},
        "sso": {"kind": "upsell", "product": "sso-addon", "title": "Add SSO"},
    }
    lines = in_session("u", at()) + [
        event(
            "purchase.order_completed",
            "u",
            at(),
            order_id="o",
            currency="EUR",
            total=5,
            items=[{"sku": "sso-addon", "price": 5}],
        ),
        click("u", at(minutes=1)),
    ]
    result = replay(rules_file([low, high], offers=offers), lines)
    assert result.outcomes() == [("high", "suppressed", "already_owned"), ("low", "emitted", None)]


# --- cross-sell ----------------------------------------------------------------------------

CROSS_SELL = {
    "accessories": {"kind": "cross_sell", "title": "Goes well", "recommend": {"max_items": 2}}
}
ORDER_RULE = rule(
    "order-cross-sell",
    {"event": {"type": "purchase.order_completed"}},
    offer="accessories",
    channels=["email"],
    cooldown="0s",
)


def order(user: str, when: dt.datetime, *skus: str) -> dict[str, Any]:
    return event(
        "purchase.order_completed",
        user,
        when,
        order_id=f"o-{user}-{when:%H%M}",
        currency="EUR",
        total=10,
        items=[{"sku": sku, "price": 5} for sku in skus],
    )


def test_nothing_to_recommend_when_no_item_is_left() -> None:
    lines = [
        event("profile.consent_updated", "u", at(), channel="email", granted=True),
        order("u", at(minutes=1), "camera-x"),
    ]
    result = replay(rules_file([ORDER_RULE], offers=CROSS_SELL), lines)
    assert result.reasons() == ["nothing_to_recommend"]


def test_recommendations_skip_owned_and_in_order_items_and_stop_at_max_items() -> None:
    catalog = {"complements": {"camera-x": ["sd-card-64", "camera-bag", "tripod"]}}
    lines = [
        order("other", at(), "camera-x", "lens-cap"),
        event("profile.consent_updated", "u", at(), channel="email", granted=True),
        order("u", at(minutes=1), "camera-bag"),
        order("u", at(minutes=2), "camera-x", "sd-card-64"),
    ]
    result = replay(rules_file([ORDER_RULE], offers=CROSS_SELL, catalog=catalog), lines)
    last = result.triggers[-1]
    # lens-cap from co-purchases, then complements not owned (camera-bag) nor in the order
    assert [(i.sku, i.score) for i in last.offer.items] == [("lens-cap", 1.0), ("tripod", 0.0)]


def test_an_order_taken_back_out_of_the_counts_and_counted_again_leaves_them_as_before() -> None:
    counts = CoPurchaseCounts()
    counts.record_order(["camera-x", "lens-cap"])
    before = {sku: dict(partners) for sku, partners in counts.pairs.items()}
    counts.record_order(["camera-x", "lens-cap", "tripod"])
    # The worker stored the second order's counts, then crashed before its user's state:
    # each row it wrote takes the order back out; reading it again counts it again.
    for sku in ("camera-x", "lens-cap", "tripod"):
        counts.forget_order(sku, ["camera-x", "lens-cap", "tripod"])
    assert {sku: partners for sku, partners in counts.pairs.items() if partners} == before
    counts.record_order(["camera-x", "lens-cap", "tripod"])
    assert counts.pairs["camera-x"] == {"lens-cap": 2, "tripod": 1}
