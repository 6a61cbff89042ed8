"""Every trigger kind at its boundaries (docs/contract.md section 6), through the replay shell."""

from __future__ import annotations

from typing import Any

import pytest

from tests.engine_support import at, event, in_session, replay, rule, rules_file

SKIP_RULE = rule(
    "free-skip-limit",
    {
        "count": {
            "type": "usage.feature_used",
            "where": {"feature": "skip"},
            "at_least": 6,
            "within": "1h",
        }
    },
    channels=["in_app"],
    cooldown="0s",
)


def skips(user: str, minutes: list[float]) -> list[dict[str, Any]]:
    return [event("usage.feature_used", user, at(minutes=m), feature="skip") for m in minutes]


def test_count_fires_at_the_sixth_skip_in_an_hour_with_a_readable_reason() -> None:
    result = replay(
        rules_file([SKIP_RULE]),
        in_session("maya", at(), plan="free") + skips("maya", [1, 5, 10, 20, 30, 40]),
    )
    assert [t.rule_id for t in result.triggers] == ["free-skip-limit"]
    trigger = result.triggers[0]
    assert trigger.reason.summary == "6 skips in the last 60 minutes"
    assert trigger.reason.facts["count"] == 6
    assert trigger.channel == "in_app"
    assert trigger.triggered_at == at(minutes=40)


@pytest.mark.parametrize(
    ("sixth_at", "fires"),
    [(59.99, True), (60, False), (61, False)],
    ids=["inside-window", "exactly-one-hour-later", "after"],
)
def test_count_window_is_half_open(sixth_at: float, fires: bool) -> None:
    # (t - 1h, t]: a skip exactly an hour before the sixth no longer counts.
    result = replay(
        rules_file([SKIP_RULE]),
        in_session("maya", at()) + skips("maya", [0, 10, 20, 30, 40, sixth_at]),
    )
    assert bool(result.triggers) is fires


def test_count_keeps_matching_after_the_threshold_and_the_cooldown_holds_it() -> None:
    counted = dict(SKIP_RULE, cooldown="1d")
    result = replay(
        rules_file([counted]), in_session("maya", at()) + skips("maya", [1, 2, 3, 4, 5, 6, 7])
    )
    assert result.outcomes() == [
        ("free-skip-limit", "emitted", None),
        ("free-skip-limit", "suppressed", "cooldown"),
    ]


def test_where_filters_what_counts() -> None:
    lines = in_session("maya", at()) + skips("maya", [1, 2, 3, 4, 5])
    lines.append(event("usage.feature_used", "maya", at(minutes=6), feature="like"))
    assert replay(rules_file([SKIP_RULE]), lines).triggers == []


def test_sum_adds_a_numeric_property_within_its_window() -> None:
    exports = rule(
        "heavy-export",
        {
            "sum": {
                "type": "usage.feature_used",
                "where": {"feature": "export"},
                "field": "quantity",
                "at_least": 10,
                "within": "1d",
            }
        },
        channels=["in_app"],
    )
    lines = in_session("acme", at()) + [
        event("usage.feature_used", "acme", at(hours=1), feature="export", quantity=4),
        event("usage.feature_used", "acme", at(hours=2), feature="export", quantity=5),
        event("usage.feature_used", "acme", at(hours=3), feature="export", quantity=1),
    ]
    result = replay(rules_file([exports]), lines)
    assert [d.at for d in result.decisions] == [at(hours=3)]
    assert result.triggers[0].reason.facts["sum"] == 10


def quota(user: str, minutes: float, used: float, limit: float = 1000) -> dict[str, Any]:
    return event(
        "usage.quota_usage",
        user,
        at(minutes=minutes),
        resource="storage_gb",
        used=used,
        limit=limit,
    )


def test_quota_fires_on_crossing_up_and_rearms_only_below() -> None:
    rule80 = rule(
        "storage-80",
        {"quota": {"resource": "storage_gb", "at_least": 0.8}},
        channels=["in_app"],
        cooldown="0s",
    )
    lines = in_session("acme", at()) + [
        quota("acme", 1, 500),
        quota("acme", 2, 810),  # crosses: fires
        quota("acme", 3, 850),  # still above: nothing
        quota("acme", 4, 700),  # below: re-armed
        quota("acme", 5, 800),  # exactly at the threshold counts as crossing
        quota("acme", 6, 500, limit=1000),
    ]
    result = replay(rules_file([rule80]), lines)
    assert [d.at for d in result.decisions] == [at(minutes=2), at(minutes=5)]
    assert result.triggers[0].reason.summary == "storage_gb at 81% of 1000"


def test_a_first_quota_reading_above_the_threshold_counts() -> None:
    rule80 = rule(
        "storage-80", {"quota": {"resource": "storage_gb", "at_least": 0.8}}, channels=["in_app"]
    )
    result = replay(rules_file([rule80]), in_session("acme", at()) + [quota("acme", 1, 900)])
    assert len(result.triggers) == 1


def test_80_and_95_percent_rules_fire_separately() -> None:
    rules = [
        rule(
            "storage-80",
            {"quota": {"resource": "storage_gb", "at_least": 0.8}},
            channels=["in_app"],
        ),
        rule(
            "storage-95",
            {"quota": {"resource": "storage_gb", "at_least": 0.95}},
            channels=["in_app"],
        ),
    ]
    lines = in_session("acme", at()) + [
        quota("acme", 1, 820),
        event("usage.feature_used", "acme", at(minutes=119), feature="upload"),
        quota("acme", 120, 960),
    ]
    result = replay(rules_file(rules), lines)
    assert [t.rule_id for t in result.triggers] == ["storage-80", "storage-95"]


@pytest.mark.parametrize(("score", "fires"), [(8, False), (9, True), (10, True)])
def test_nps_range(score: int, fires: bool) -> None:
    promoters = rule("promoter", {"nps": {"at_least": 9}}, channels=["in_app"])
    lines = in_session("maya", at()) + [
        event("support.nps_submitted", "maya", at(minutes=1), score=score)
    ]
    assert bool(replay(rules_file([promoters]), lines).triggers) is fires


def test_event_trigger_with_operators() -> None:
    renewal = rule(
        "renewal-annual",
        {
            "event": {
                "type": "purchase.subscription_renewed",
                "where": {"billing_period": "monthly", "plan": {"in": ["pro", "team"]}},
            }
        },
        offer="annual",
        channels=["in_app"],
    )
    offers = {"annual": {"kind": "upsell", "product": "pro-annual", "title": "Go annual"}}
    lines = in_session("lena", at()) + [
        event(
            "purchase.subscription_renewed",
            "lena",
            at(minutes=1),
            plan="pro",
            billing_period="monthly",
        ),
        event(
            "purchase.subscription_renewed", "lena", at(days=2), plan="pro", billing_period="annual"
        ),
        event(
            "purchase.subscription_renewed",
            "lena",
            at(days=4),
            plan="basic",
            billing_period="monthly",
        ),
    ]
    result = replay(rules_file([renewal], offers=offers), lines)
    assert [t.triggered_at for t in result.triggers] == [at(minutes=1)]
    assert result.triggers[0].reason.summary == "renewed pro monthly"


def test_profile_conditions_use_the_state() -> None:
    lines = in_session("maya", at(), plan="premium") + skips("maya", [1, 2, 3, 4, 5, 6])
    free_only = dict(SKIP_RULE, profile={"plan": "free"})
    assert replay(rules_file([free_only]), lines).decisions == []


# --- timers ----------------------------------------------------------------------------

TRIAL_RULE = rule(
    "trial-ending", {"deadline": {"field": "trial_ends_at", "before": "10d"}}, channels=["email"]
)


def consented(user: str) -> list[dict[str, Any]]:
    return [
        event("profile.profile_updated", user, at(), timezone="UTC"),
        event("profile.consent_updated", user, at(), channel="email", granted=True),
    ]


def test_deadline_fires_at_field_minus_before_on_stream_time() -> None:
    lines = consented("lena") + [
        event(
            "purchase.trial_started",
            "lena",
            at(hours=1),
            plan="pro",
            trial_ends_at=at(days=30, hours=10),
        ),
        event("usage.feature_used", "other", at(days=25), feature="x"),
    ]
    result = replay(rules_file([TRIAL_RULE]), lines)
    assert [t.triggered_at for t in result.triggers] == [at(days=20, hours=10)]
    trigger = result.triggers[0]
    assert trigger.caused_by.event_id == lines[-2]["event_id"]
    assert trigger.reason.summary == "trial of pro ends 2026-12-02 (in 10 days)"


def test_deadline_not_reached_does_not_fire_unless_until_passes_it() -> None:
    lines = consented("lena") + [
        event(
            "purchase.trial_started",
            "lena",
            at(hours=1),
            plan="pro",
            trial_ends_at=at(days=30, hours=10),
        ),
    ]
    assert replay(rules_file([TRIAL_RULE]), lines).decisions == []
    late = replay(rules_file([TRIAL_RULE]), lines, until=at(days=21))
    assert [d.at for d in late.decisions] == [at(days=20, hours=10)]


def test_an_already_due_deadline_fires_right_after_the_event_that_set_it() -> None:
    lines = consented("lena") + [
        event("purchase.trial_started", "lena", at(hours=1), plan="pro", trial_ends_at=at(days=5)),
        event("usage.feature_used", "lena", at(hours=2), feature="x"),
    ]
    result = replay(rules_file([TRIAL_RULE]), lines)
    assert [t.triggered_at for t in result.triggers] == [at(hours=1)]


def test_a_new_deadline_value_replaces_the_pending_timer_and_fires_once_per_value() -> None:
    lines = consented("lena") + [
        event("purchase.trial_started", "lena", at(), plan="pro", trial_ends_at=at(days=30)),
        event("purchase.trial_started", "lena", at(days=1), plan="pro", trial_ends_at=at(days=40)),
        event("purchase.trial_started", "lena", at(days=35), plan="pro", trial_ends_at=at(days=40)),
    ]
    result = replay(rules_file([TRIAL_RULE]), lines, until=at(days=60))
    assert [d.at for d in result.decisions] == [at(days=30)]


def test_deadline_after_purchase_is_suppressed_already_owned_so_the_audit_shows_it() -> None:
    offers = {"pro-paid": {"kind": "upsell", "product": "pro", "title": "Keep Pro"}}
    lines = consented("lena") + [
        event("purchase.trial_started", "lena", at(), plan="pro", trial_ends_at=at(days=30)),
        event(
            "purchase.subscription_started",
            "lena",
            at(days=3),
            plan="pro",
            billing_period="monthly",
        ),
    ]
    result = replay(
        rules_file([dict(TRIAL_RULE, offer="pro-paid")], offers=offers), lines, until=at(days=30)
    )
    assert result.outcomes() == [("trial-ending", "suppressed", "already_owned")]


WIN_BACK = rule("win-back", {"inactivity": {"for": "14d"}}, channels=["email"])


def test_inactivity_fires_once_per_spell_and_activity_restarts_it() -> None:
    lines = consented("sam") + [
        event("usage.feature_used", "sam", at(), feature="x"),
        event("usage.quota_usage", "sam", at(days=5), resource="gb", used=1, limit=2),
        event("usage.session_started", "sam", at(days=10)),
        event("usage.feature_used", "zed", at(days=40), feature="x"),
    ]
    result = replay(rules_file([WIN_BACK]), lines)
    # quota_usage is not activity; the session at day 10 is: due at day 24, once.
    assert [d.at for d in result.decisions if d.user_id == "sam"] == [at(days=24)]
    assert result.triggers[0].reason.summary.startswith("no activity for 14 days")


def test_delay_fires_later_and_applies_the_policy_then() -> None:
    resolved = rule(
        "limit-ticket-resolved",
        {"event": {"type": "support.ticket_resolved", "where": {"category": "api-rate-limit"}}},
        delay="1h",
        channels=["email"],
    )
    lines = consented("acme") + [
        event("support.ticket_opened", "acme", at(), ticket_id="T-1", category="api-rate-limit"),
        event(
            "support.ticket_resolved",
            "acme",
            at(hours=2),
            ticket_id="T-1",
            category="api-rate-limit",
        ),
        event("usage.feature_used", "other", at(hours=4), feature="x"),
        # a second resolution, then a new ticket within the hour: policy at firing time
        event(
            "support.ticket_resolved",
            "acme",
            at(days=2),
            ticket_id="T-2",
            category="api-rate-limit",
        ),
        event("support.ticket_opened", "acme", at(days=2, minutes=30), ticket_id="T-3"),
        event("usage.feature_used", "other", at(days=3), feature="x"),
    ]
    result = replay(rules_file([resolved]), lines)
    assert [(d.at, d.outcome, d.reason) for d in result.decisions] == [
        (at(hours=3), "emitted", None),
        (at(days=2, hours=1), "suppressed", "open_tickets"),
    ]
    assert result.triggers[0].reason.summary == (
        "ticket T-1 about api-rate-limit resolved (60 minutes ago)"
    )


def test_timers_fire_before_the_event_that_moves_stream_time_past_them() -> None:
    resolved = rule(
        "later", {"event": {"type": "support.ticket_resolved"}}, delay="1h", channels=["email"]
    )
    skip = rule("skip", {"event": {"type": "usage.feature_used"}}, channels=["email"])
    lines = consented("acme") + [
        event("support.ticket_resolved", "acme", at(), ticket_id="T-1"),
        event("usage.feature_used", "acme", at(hours=2), feature="x"),
    ]
    result = replay(rules_file([resolved, skip]), lines)
    assert [(d.rule_id, d.at) for d in result.decisions] == [
        ("later", at(hours=1)),
        ("skip", at(hours=2)),
    ]


def test_timer_trigger_ids_include_the_due_time_and_are_stable() -> None:
    lines = consented("lena") + [
        event(
            "purchase.trial_started",
            "lena",
            at(),
            plan="pro",
            trial_ends_at=at(days=30),
            event_id="trial-1",
        ),
    ]
    first = replay(rules_file([TRIAL_RULE]), lines, until=at(days=30))
    again = replay(rules_file([TRIAL_RULE]), lines, until=at(days=30))
    assert first.trigger_lines == again.trigger_lines
    assert first.triggers[0].caused_by.event_id == "trial-1"


def test_an_inactive_spell_fires_before_the_activity_that_ends_it() -> None:
    lines = [
        *consented("sam"),
        event("usage.feature_used", "sam", at(), feature="x"),
        event("usage.feature_used", "sam", at(days=20), feature="x"),
    ]
    result = replay(rules_file([WIN_BACK]), lines)
    assert [(d.at, d.outcome) for d in result.decisions] == [(at(days=14), "emitted")]
    assert result.triggers[0].caused_by.event_id == lines[-2]["event_id"]
