"""Deferral (docs/contract.md section 14) through the replay shell: a match held back by a
block that ends by itself waits, is decided again, and ends with one final decision."""

from __future__ import annotations

import datetime as dt
import io
from collections import Counter, defaultdict
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import ROOT
from tests.engine_support import at, event, in_session, replay, rule, rules_file
from tests.unit.test_engine_properties import RECOMMENDING, interleavings, per_user, timelines
from triggerstream import report
from triggerstream.rules.load import RulesError, parse_rules

EXAMPLE_RULES = ROOT / "examples" / "rules.yaml"

QUIET = {"quiet_hours": {"from": "21:00", "to": "08:00"}}


def skip(user: str, when: dt.datetime, event_id: str | None = None) -> dict[str, Any]:
    return event("usage.feature_used", user, when, event_id, feature="skip")


def pushed(user: str, when: dt.datetime, timezone: str = "UTC") -> list[dict[str, Any]]:
    """A user who granted push and nothing else, in ``timezone``: no session, no email."""
    return [
        event("profile.profile_updated", user, when, timezone=timezone),
        event("profile.consent_updated", user, when, channel="push", granted=True),
    ]


def deferring(up_to: str = "12h", **fields: Any) -> dict[str, Any]:
    fields.setdefault("channels", ["push"])
    return rule("r", defer={"up_to": up_to}, **fields)


def final(decisions: list[Any]) -> Counter[str]:
    """How many matches ended (by trigger id): a deferred match ends once."""
    return Counter(d.trigger_id for d in decisions if d.outcome != "deferred")


def test_a_push_in_quiet_hours_waits_and_goes_when_they_end_with_its_trigger_id() -> None:
    lines = [*pushed("maya", at()), skip("maya", at(hours=13), "late-skip")]  # 22:00 UTC
    result = replay(rules_file([deferring()], policy=QUIET), lines, until=at(days=2))
    assert result.outcomes() == [("r", "deferred", "no_channel"), ("r", "emitted", None)]
    deferred, released = result.decisions
    assert deferred.trigger_id == released.trigger_id
    assert deferred.decision_id != released.decision_id
    assert "quiet hours (22:00 UTC)" in deferred.detail
    assert "until 2026-11-03T10:00:00Z" in deferred.detail
    assert deferred.at == at(hours=13)
    assert released.at == dt.datetime(2026, 11, 3, 8, 0, tzinfo=dt.UTC)
    (trigger,) = result.triggers
    assert trigger.trigger_id == released.trigger_id
    assert trigger.caused_by.event_id == "late-skip"
    assert trigger.triggered_at == released.at
    assert trigger.channel == "push"


def test_without_defer_the_same_match_is_lost() -> None:
    lines = [*pushed("maya", at()), skip("maya", at(hours=13))]
    result = replay(rules_file([rule("r", channels=["push"])], policy=QUIET), lines)
    assert result.outcomes() == [("r", "suppressed", "no_channel")]


def test_quiet_hours_ending_across_a_dst_change_in_the_users_zone() -> None:
    # Berlin leaves summer time on 2026-10-25 03:00 local: quiet hours that began at 21:00
    # CEST (19:00 UTC) end at 08:00 CET, 07:00 UTC, 13 hours of wall time later.
    start = dt.datetime(2026, 10, 24, 19, 30, tzinfo=dt.UTC)
    lines = [*pushed("maya", start, "Europe/Berlin"), skip("maya", start)]
    result = replay(
        rules_file([deferring("1d")], policy=QUIET), lines, until=start + dt.timedelta(days=2)
    )
    assert result.outcomes() == [("r", "deferred", "no_channel"), ("r", "emitted", None)]
    assert result.decisions[1].at == dt.datetime(2026, 10, 25, 7, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("up_to", "outcome"),
    [("11h", "emitted"), ("659m", "expired")],
    ids=["up_to-reached-exactly-as-the-block-ends", "a-minute-short"],
)
def test_up_to_reached_exactly(up_to: str, outcome: str) -> None:
    # Matched at 21:00 UTC, quiet hours end at 08:00: 11 hours later.
    lines = [*pushed("maya", at()), skip("maya", at(hours=12))]
    result = replay(rules_file([deferring(up_to)], policy=QUIET), lines, until=at(days=2))
    assert [d.outcome for d in result.decisions] == ["deferred", outcome]
    if outcome == "expired":
        assert result.decisions[1].reason == "no_channel"
        assert result.decisions[1].at == at(hours=12 + 10, minutes=59)
        assert result.triggers == []
    else:
        assert result.decisions[1].at == at(hours=23)


def greeted_then_capped(channels: list[str]) -> Any:
    """A session greeted in-app fills a cap of 1 an hour; a skip 10 minutes later waits."""
    rules = rules_file(
        [
            rule("first", {"event": {"type": "usage.session_started"}}, channels=["in_app"]),
            deferring("2h", channels=channels),
        ],
        policy={"frequency_caps": [{"max": 1, "per": "1h"}]},
    )
    lines = [*in_session("maya", at()), skip("maya", at(minutes=10))]
    return replay(rules, lines, until=at(hours=5))


def test_in_app_only_waits_for_activity_a_cap_ending_does_not_bring() -> None:
    result = greeted_then_capped(["in_app"])
    assert result.outcomes() == [
        ("first", "emitted", None),
        ("r", "deferred", "frequency_cap"),
        ("r", "expired", "no_channel"),
    ], "the session's activity is an hour old when the cap frees: in-app waits for more"
    assert result.decisions[2].at == at(hours=2, minutes=10)
    assert result.triggers[0].rule_id == "first"
    assert len(result.triggers) == 1


def test_a_cap_frees_and_push_goes_at_exactly_per() -> None:
    result = greeted_then_capped(["in_app", "push"])
    assert result.outcomes() == [
        ("first", "emitted", None),
        ("r", "deferred", "frequency_cap"),
        ("r", "emitted", None),
    ]
    assert result.decisions[2].at == at(hours=1)
    assert result.triggers[1].channel == "push"


def test_a_ticket_resolved_releases_the_match_at_that_event() -> None:
    policy = {"suppress": {"open_tickets_at_least": 1}}
    lines = [
        *in_session("maya", at()),
        event("support.ticket_opened", "maya", at(minutes=1), ticket_id="t1", category="billing"),
        skip("maya", at(minutes=2)),
        skip("maya", at(minutes=3)),
        event("support.ticket_resolved", "maya", at(minutes=4), ticket_id="t1", category="billing"),
    ]
    result = replay(
        rules_file([deferring("1d", channels=["in_app"], cooldown="0s")], policy=policy), lines
    )
    assert result.outcomes() == [
        ("r", "deferred", "open_tickets"),
        ("r", "expired", "open_tickets"),  # replaced by the later match
        ("r", "deferred", "open_tickets"),
        ("r", "emitted", None),
    ]
    assert "replaced by a later match" in result.decisions[1].detail
    assert result.decisions[3].at == at(minutes=4)
    assert result.decisions[3].trigger_id == result.decisions[2].trigger_id
    assert all(n == 1 for n in final(result.decisions).values())


def test_a_block_that_does_not_end_by_itself_ends_the_wait_suppressed() -> None:
    policy = {"suppress": {"open_tickets_at_least": 1}}
    lines = [
        *in_session("maya", at()),
        event("support.ticket_opened", "maya", at(minutes=1), ticket_id="t1", category="billing"),
        skip("maya", at(minutes=2)),
        event(
            "purchase.subscription_started",
            "maya",
            at(minutes=3),
            plan="premium",
            billing_period="monthly",
        ),
    ]
    result = replay(rules_file([deferring("1d", channels=["in_app"])], policy=policy), lines)
    assert result.outcomes() == [
        ("r", "deferred", "open_tickets"),
        ("r", "suppressed", "already_owned"),
    ]


def test_a_cooldown_is_not_deferred() -> None:
    lines = [*in_session("maya", at()), skip("maya", at(minutes=1)), skip("maya", at(minutes=2))]
    result = replay(rules_file([deferring("1d", channels=["in_app"])]), lines)
    assert result.outcomes() == [("r", "emitted", None), ("r", "suppressed", "cooldown")]


@pytest.mark.parametrize("next_event", [True, False], ids=["at-the-next-event", "at-up_to"])
def test_lower_priority_waits_for_the_users_next_moment(next_event: bool) -> None:
    rules = rules_file(
        [
            rule("low", channels=["push"], defer={"up_to": "1d"}, offer="annual"),
            rule("high", {"event": {"type": "usage.feature_used"}}, channels=["push"], priority=5),
        ],
        offers={
            "premium": {"kind": "upsell", "product": "premium", "title": "Go Premium"},
            "annual": {"kind": "upsell", "product": "annual", "title": "Save with annual"},
        },
    )
    lines = [*pushed("maya", at()), skip("maya", at(minutes=1))]
    if next_event:
        lines.append(event("usage.session_started", "maya", at(minutes=30)))
    result = replay(rules, lines, until=at(days=2))
    assert result.outcomes() == [
        ("high", "emitted", None),
        ("low", "deferred", "lower_priority"),
        ("low", "emitted", None),
    ]
    assert result.decisions[2].at == (at(minutes=30) if next_event else at(days=1, minutes=1))


def test_rules_check_refuses_a_defer_beyond_seven_days() -> None:
    with pytest.raises(RulesError) as refused:
        parse_rules(rules_file([deferring("8d")]))
    assert "at most 7d" in str(refused.value)


# --- properties over generated streams ------------------------------------------------


def _reachable(lines: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    """Each user's timeline after a start that lets offers out: a profile, consent on
    push and email, an open session (else nearly every match would wait and expire)."""
    return {user: [*in_session(user, at(), plan="free"), *events] for user, events in lines.items()}


def _deferring_everything(up_to: str) -> str:
    """The example rules with every rule deferring up to ``up_to``, and a holdout."""
    document = yaml.safe_load(EXAMPLE_RULES.read_text())
    for each in document["rules"]:
        each["defer"] = {"up_to": up_to}
    document["policy"]["holdout"] = {"percent": 20, "salt": "deferral"}
    return yaml.safe_dump(document)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data(), st.sampled_from(["30m", "12h", "3d"]))
def test_a_deferred_match_ends_with_exactly_one_final_decision(
    data: st.DataObject, up_to: str
) -> None:
    rules = _deferring_everything(up_to)
    lines = data.draw(interleavings(_reachable(data.draw(timelines()))))
    result = replay(rules, lines, until=at(days=60))
    span = dt.timedelta(seconds=parse_rules(rules).rules[0].defer.up_to.total_seconds())  # type: ignore[union-attr]
    by_trigger: dict[str, list[Any]] = defaultdict(list)
    erased: dict[str, list[dt.datetime]] = defaultdict(list)
    for decision in result.decisions:
        if decision.outcome == "erased":
            erased[decision.user_id].append(decision.at)
        else:
            by_trigger[str(decision.trigger_id)].append(decision)
    for trigger, decisions in by_trigger.items():
        outcomes = [d.outcome for d in decisions]
        if outcomes[0] != "deferred":
            assert len(decisions) == 1, (trigger, outcomes)
            continue
        waited = decisions[0]
        ends = decisions[1:]
        if not ends:  # an erasure took it with the rest of the user
            assert any(waited.at <= e for e in erased[waited.user_id]), (trigger, outcomes)
            continue
        assert len(ends) == 1, (trigger, outcomes)
        (end,) = ends
        assert end.outcome in ("emitted", "holdout", "suppressed", "expired"), outcomes
        assert waited.at <= end.at <= waited.at + span, (waited, end)
        assert end.decision_id != waited.decision_id


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data(), st.sampled_from(["30m", "12h", "3d"]))
def test_with_deferral_the_order_of_other_users_events_changes_no_users_decisions(
    data: st.DataObject, up_to: str
) -> None:
    document = yaml.safe_load(_deferring_everything(up_to))
    # Co-purchase counts are shared by all users by design: cross-sell left out.
    document["rules"] = [r for r in document["rules"] if r["offer"] not in RECOMMENDING]
    rules = yaml.safe_dump(document)
    lines = _reachable(data.draw(timelines()))
    first = replay(rules, data.draw(interleavings(lines)), until=at(days=60))
    second = replay(rules, data.draw(interleavings(lines)), until=at(days=60))
    assert per_user(first.decisions) == per_user(second.decisions)
    assert sorted(first.trigger_lines) == sorted(second.trigger_lines)


def test_a_match_whose_own_offer_took_the_moment_does_not_wait() -> None:
    rules = rules_file(
        [
            rule("low", channels=["push"], defer={"up_to": "1d"}),
            rule("high", channels=["push"], priority=5, defer={"up_to": "1d"}),
        ],
    )
    lines = [*pushed("maya", at()), skip("maya", at(minutes=1))]
    result = replay(rules, lines, until=at(days=2))
    assert result.outcomes() == [("high", "emitted", None), ("low", "suppressed", "lower_priority")]
    assert result.decisions[1].detail.endswith("was chosen at this moment, with the same offer")


def test_report_counts_released_offers_and_their_conversions_apart() -> None:
    policy = {"suppress": {"open_tickets_at_least": 1}}
    rules = rules_file([deferring("1d", channels=["in_app"], cooldown="0s")], policy=policy)
    lines = [
        *in_session("maya", at()),
        *in_session("sam", at()),
        event("support.ticket_opened", "maya", at(minutes=1), ticket_id="t1", category="billing"),
        skip("maya", at(minutes=2)),  # waits for the ticket
        skip("sam", at(minutes=2)),  # goes at once
        event("support.ticket_resolved", "maya", at(minutes=4), ticket_id="t1", category="billing"),
        *(
            event(
                "purchase.subscription_started",
                user,
                at(minutes=9),
                plan="premium",
                billing_period="monthly",
                price=9.99,
                currency="EUR",
            )
            for user in ("maya", "sam")
        ),
    ]
    result = replay(rules, lines)
    built = report.build(result.decisions, result.attributions)
    (row,) = [r for r in built.rows() if r["channel"] == "all"]
    assert (row["matches"], row["emitted"], row["deferred"], row["released"]) == (2, 2, 1, 1)
    assert (row["conversions"], row["released_conversions"]) == (2, 1)
    assert row["released_revenue"] == {"EUR": 9.99}
    assert row["revenue"] == {"EUR": 19.98}
    table = io.StringIO()
    report.write(built, "table", table)
    assert "1: 1 released, 0 expired (1 converted, 9.99 EUR)" in table.getvalue()
