"""Time as a deployment meets it: events out of order within a partition, producers whose
clocks disagree, daylight-saving nights inside quiet hours. (Timers across restarts and
kills: tests/integration/test_worker.py and tests/reliability/test_crash_restart.py;
across broker restarts: tests/reliability/test_broker_faults.py.)

The core is the same in replay and in the worker, and the worker's parity with replay
is tested on every fault; these pin down what the core does with time, through replay.
What they check is written in docs/reliability.md, "Time".
"""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from tests.engine_support import at, event, in_session, replay, rule, rules_file
from tests.reliability.respect import read_events, timestamp, violations
from tests.reliability.streams import respectful_traffic
from tests.scenarios import RULES

SKIPS = rule(
    "skips",
    {
        "count": {
            "type": "usage.feature_used",
            "where": {"feature": "skip"},
            "at_least": 3,
            "within": "1h",
        }
    },
    channels=["in_app"],
    cooldown="0s",
)
PUSH = rule("clicked", {"event": {"type": "usage.locked_feature_clicked"}}, channels=["push"])


def skip(user: str, minutes: float) -> dict[str, Any]:
    return event("usage.feature_used", user, at(minutes=minutes), feature="skip")


def click(user: str, minutes: float) -> dict[str, Any]:
    return event("usage.locked_feature_clicked", user, at(minutes=minutes), feature="export")


def consent(user: str, minutes: float, granted: bool) -> dict[str, Any]:
    return event(
        "profile.consent_updated", user, at(minutes=minutes), channel="push", granted=granted
    )


# --- out of order within a partition -------------------------------------------------


def test_a_late_event_counts_in_the_window_that_ends_at_the_users_clock() -> None:
    # The third skip of the hour happened first and arrives last: the user has skipped
    # three times in the hour that ends now, so the rule fires, now: at the user's clock
    # (minute 30), where the policy sees her session and every send so far.
    lines = in_session("maya", at()) + [skip("maya", 20), skip("maya", 30), skip("maya", 10)]
    result = replay(rules_file([SKIPS]), lines)
    assert [(t.rule_id, t.triggered_at) for t in result.triggers] == [("skips", at(minutes=30))]
    assert result.triggers[0].reason.summary == "3 skips in the last 60 minutes"


def test_a_late_event_older_than_the_window_triggers_nothing_now() -> None:
    # Two skips an hour and more ago, a third from then arriving after the user moved on:
    # the moment has passed (in order, the three would have fired at minute 5).
    lines = in_session("maya", at()) + [
        skip("maya", 0),
        skip("maya", 2),
        event("usage.feature_used", "maya", at(minutes=70), feature="export"),
        skip("maya", 5),
    ]
    assert replay(rules_file([SKIPS]), lines).decisions == []
    in_order = sorted(lines, key=lambda line: line["occurred_at"])
    assert len(replay(rules_file([SKIPS]), in_order).decisions) == 1


def test_a_consent_given_before_a_withdrawal_and_delivered_after_it_does_not_undo_it() -> None:
    lines = in_session("maya", at()) + [
        consent("maya", 10, granted=False),
        consent("maya", 5, granted=True),  # said earlier, arrives later
        click("maya", 15),
    ]
    (decision,) = replay(rules_file([PUSH]), lines).decisions
    assert (decision.outcome, decision.reason) == ("suppressed", "no_channel")
    assert "push: consent withdrawn" in decision.detail


def test_an_unsubscribe_is_not_undone_by_an_older_grant_and_an_opt_out_by_an_older_opt_in() -> None:
    lines = in_session("maya", at()) + [
        event("feedback.unsubscribed", "maya", at(minutes=10), channel="push"),
        consent("maya", 5, granted=True),
        click("maya", 15),
        event("profile.preferences_updated", "maya", at(minutes=20), offers_opt_out=True),
        event("profile.preferences_updated", "maya", at(minutes=12), offers_opt_out=False),
        click("maya", 25),
    ]
    decisions = replay(rules_file([PUSH]), lines).decisions
    assert [(d.outcome, d.reason) for d in decisions] == [
        ("suppressed", "no_channel"),
        ("suppressed", "opted_out"),
    ]


def test_a_later_grant_still_counts_when_it_arrives_after_a_withdrawal() -> None:
    lines = in_session("maya", at()) + [
        consent("maya", 10, granted=False),
        consent("maya", 12, granted=True),
        click("maya", 15),
    ]
    (decision,) = replay(rules_file([PUSH]), lines).decisions
    assert (decision.outcome, decision.channel) == ("emitted", "push")


def test_an_older_quota_reading_delivered_late_neither_rearms_nor_fires() -> None:
    storage = rule(
        "storage-80",
        {"quota": {"resource": "storage_gb", "at_least": 0.8}},
        channels=["in_app"],
        cooldown="0s",
    )

    def quota(minutes: float, used: float) -> dict[str, Any]:
        return event(
            "usage.quota_usage",
            "acme",
            at(minutes=minutes),
            resource="storage_gb",
            used=used,
            limit=1000,
        )

    lines = in_session("acme", at()) + [
        quota(10, 850),  # crosses: fires
        quota(5, 500),  # older, late: the 850 stands (it would re-arm the rule)
        quota(12, 900),  # still above: nothing
    ]
    result = replay(rules_file([storage]), lines)
    assert [d.at for d in result.decisions] == [at(minutes=10)]


def test_a_late_event_cannot_slip_past_a_frequency_cap() -> None:
    # Two sends in the last minutes and a cap of two a day: a click from before them,
    # delivered after them, is decided now and held back.
    capped = rules_file(
        [dict(PUSH, cooldown="0s")], policy={"frequency_caps": [{"max": 2, "per": "1d"}]}
    )
    lines = in_session("maya", at()) + [click("maya", 10), click("maya", 20), click("maya", 5)]
    decisions = replay(capped, lines).decisions
    assert [(d.outcome, d.reason) for d in decisions] == [
        ("emitted", None),
        ("emitted", None),
        ("suppressed", "frequency_cap"),
    ]
    assert decisions[2].at == at(minutes=20)


def test_a_late_duplicate_is_still_a_duplicate() -> None:
    first = skip("maya", 10)
    lines = in_session("maya", at()) + [first, skip("maya", 20), dict(first), skip("maya", 25)]
    result = replay(rules_file([SKIPS]), lines)
    assert result.summary is not None
    assert result.summary.duplicates == 1
    assert [t.triggered_at for t in result.triggers] == [at(minutes=25)]


def test_frequency_caps_hold_over_a_month_of_traffic_delivered_out_of_order(
    tmp_path: Path,
) -> None:
    # Every event late by up to ten minutes, at random: a user's events arrive shuffled
    # within minutes. The caps hold over what is sent, checked by event time.
    events = read_events(respectful_traffic(tmp_path / "events.jsonl", 40_000, 150))
    rng = random.Random(8)
    arrived = sorted(events, key=lambda e: timestamp(e["occurred_at"]) + rng.uniform(0, 600))
    moved = sum(a is not b for a, b in zip(events, arrived, strict=True))
    # The demo's rules, with no cooldowns and a tight cap: many matches, few sends.
    document = yaml.safe_load(RULES.read_text())
    document["policy"]["frequency_caps"] = [{"max": 1, "per": "1d"}]
    for each in document["rules"]:
        each["cooldown"] = "0s"
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump(document))
    result = replay(rules.read_text(), arrived)
    sent = [orjson.loads(line) for line in result.trigger_lines]
    capped = sum(d.reason == "frequency_cap" for d in result.decisions)
    print(f"{moved:,} of {len(events):,} events out of place; {len(sent)} sent, {capped} capped")
    assert moved > len(events) // 2
    assert len(sent) > 50
    assert capped > 50
    assert [found for found in violations(arrived, sent, rules) if "cap" in found] == []


# --- producers whose clocks disagree ---------------------------------------------------


def test_a_producer_clock_ahead_moves_only_that_users_clock() -> None:
    # The billing service's clock runs two hours fast for maya's events: her windows and
    # timers follow it; sam's, on the same partition, do not.
    trial = rule(
        "trial-ending",
        {"deadline": {"field": "trial_ends_at", "before": "1h"}},
        channels=["in_app"],
    )
    lines = (
        in_session("maya", at())
        + in_session("sam", at())
        + [
            event(
                "purchase.trial_started",
                "maya",
                at(hours=2),  # really at(); stamped two hours ahead
                plan="premium",
                trial_ends_at=at(hours=3),
            ),
            event(
                "purchase.trial_started",
                "sam",
                at(),
                plan="premium",
                trial_ends_at=at(hours=3, minutes=30),
            ),
            event("usage.feature_used", "maya", at(minutes=1), feature="export"),
            event("usage.feature_used", "sam", at(minutes=1), feature="export"),
        ]
    )
    result = replay(rules_file([trial]), lines, until=at(minutes=90))
    # maya's timer was due at 2:00 and her clock read 2:00: it fired; sam's (due 2:30)
    # waits. (Replay's stream time at the end of the input is the latest time read: 2:00.)
    assert [(d.user_id, d.at) for d in result.decisions] == [("maya", at(hours=2))]


def test_a_purchase_stamped_before_the_offer_by_a_slow_clock_is_not_attributed() -> None:
    # The shop's clock runs a minute slow: the purchase that followed the offer carries an
    # earlier time, and attribution goes by event time.
    offer = rule(
        "clicked", {"event": {"type": "usage.locked_feature_clicked"}}, channels=["in_app"]
    )
    lines = in_session("maya", at()) + [
        click("maya", 10),
        event(
            "purchase.subscription_started",
            "maya",
            at(minutes=9, seconds=30),  # really at minute 10:30
            plan="premium",
            billing_period="monthly",
            price=12.0,
            currency="EUR",
        ),
    ]
    result = replay(rules_file([offer]), lines)
    assert len(result.triggers) == 1
    assert result.attributions == []


# --- daylight saving in quiet hours -----------------------------------------------------


def quiet_route(utc: str, zone: str, quiet: dict[str, str]) -> tuple[str | None, str]:
    """Where a push-only offer goes at ``utc`` for a user in ``zone``."""
    when = dt.datetime.fromisoformat(utc)
    lines = [
        event("profile.profile_updated", "u", when - dt.timedelta(days=30), timezone=zone),
        event(
            "profile.consent_updated",
            "u",
            when - dt.timedelta(days=30),
            channel="push",
            granted=True,
        ),
        event("usage.locked_feature_clicked", "u", when, feature="export"),
    ]
    (decision,) = replay(rules_file([PUSH], policy={"quiet_hours": quiet}), lines).decisions
    return decision.channel, decision.detail or ""


NIGHT = {"from": "21:00", "to": "08:00"}


@pytest.mark.parametrize(
    ("utc", "quiet"),
    [
        # Berlin springs forward on 2026-03-29 (02:00 CET -> 03:00 CEST): 06:30 UTC is
        # 07:30 the day before and 08:30 that morning; the night is an hour shorter.
        ("2026-03-28T06:30:00+00:00", True),
        ("2026-03-29T06:30:00+00:00", False),
        ("2026-03-29T00:59:00+00:00", True),  # 01:59 CET
        ("2026-03-29T01:00:00+00:00", True),  # 03:00 CEST: 02:00-02:59 never happened
        # and falls back on 2026-10-25 (03:00 CEST -> 02:00 CET): the night is an hour
        # longer, and both 02:30s are quiet.
        ("2026-10-25T00:30:00+00:00", True),  # 02:30 CEST
        ("2026-10-25T01:30:00+00:00", True),  # 02:30 CET
        ("2026-10-24T06:30:00+00:00", False),  # 08:30 CEST
        ("2026-10-25T06:30:00+00:00", True),  # 07:30 CET
    ],
)
def test_quiet_hours_follow_the_users_wall_clock_on_daylight_saving_nights(
    utc: str, quiet: bool
) -> None:
    channel, detail = quiet_route(utc, "Europe/Berlin", NIGHT)
    if quiet:
        assert channel is None
        assert "push: quiet hours" in detail, detail
    else:
        assert channel == "push"


def test_quiet_hours_inside_the_skipped_hour_never_happen_that_night() -> None:
    gap = {"from": "02:15", "to": "02:45"}
    # 01:30 UTC on 2026-03-29 is 03:30 CEST; a day earlier 01:30 UTC is 02:30 CET.
    assert quiet_route("2026-03-28T01:30:00+00:00", "Europe/Berlin", gap)[0] is None
    for minutes in range(0, 120, 5):  # that night, 01:00 CET to 03:55 CEST
        utc = (dt.datetime(2026, 3, 29, tzinfo=dt.UTC) + dt.timedelta(minutes=minutes)).isoformat()
        assert quiet_route(utc, "Europe/Berlin", gap)[0] == "push", utc
