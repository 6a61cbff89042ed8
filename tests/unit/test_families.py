"""Offer families and family caps at their boundaries (docs/contract.md section 13)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.engine_support import at, event, in_session, replay, rule, rules_file
from tests.reliability.respect import violations
from triggerstream.core.caps import FrequencyCaps
from triggerstream.core.engine import Engine
from triggerstream.core.state import Touch, UserState
from triggerstream.explain import explain_user
from triggerstream.rules.load import RulesError, parse_rules
from triggerstream.worker import codec

OFFERS = {
    "premium": {"kind": "upsell", "product": "premium", "family": "upgrade", "title": "Premium"},
    "annual": {"kind": "upsell", "product": "annual", "family": "upgrade", "title": "Annual"},
    "storage": {"kind": "upsell", "product": "storage", "title": "More storage"},
}
WEEKLY_UPGRADE = {"family": "upgrade", "max": 1, "per": "7d"}


def on(feature: str, rule_id: str, offer: str, **fields: Any) -> dict[str, Any]:
    """A rule that offers ``offer`` whenever the user uses ``feature``."""
    trigger = {"event": {"type": "usage.feature_used", "where": {"feature": feature}}}
    return rule(rule_id, trigger, offer=offer, cooldown="0s", **fields)


RULES = [on("p", "go-premium", "premium"), on("a", "go-annual", "annual")]
RULES += [on("s", "more-storage", "storage")]


def use(feature: str, when: dt.datetime) -> dict[str, Any]:
    return event("usage.feature_used", "u", when, feature=feature)


def decisions(uses: list[tuple[str, dt.datetime]], *caps: dict[str, Any]) -> list[Any]:
    lines = in_session("u", at())
    lines += [use(feature, when) for feature, when in uses]
    text = rules_file(RULES, offers=OFFERS, policy={"frequency_caps": list(caps)})
    return replay(text, lines).decisions


def test_two_rules_of_one_family_share_its_cap_and_other_families_do_not() -> None:
    got = decisions(
        [("p", at(minutes=1)), ("a", at(minutes=2)), ("s", at(minutes=3)), ("p", at(minutes=4))],
        WEEKLY_UPGRADE,
    )
    assert [(d.rule_id, d.reason) for d in got] == [
        ("go-premium", None),
        ("go-annual", "frequency_cap"),
        ("more-storage", None),
        ("go-premium", "frequency_cap"),
    ]
    assert got[1].detail.endswith("family upgrade: 1 per 7 days reached")


@pytest.mark.parametrize(
    ("after", "reason"),
    [(dt.timedelta(days=7, seconds=-1), "frequency_cap"), (dt.timedelta(days=7), None)],
)
def test_a_family_caps_window_moves_on_at_exactly_per(
    after: dt.timedelta, reason: str | None
) -> None:
    first = at(minutes=1)
    lines = [("p", first), ("a", first + after - dt.timedelta(seconds=1)), ("a", first + after)]
    got = decisions(lines, WEEKLY_UPGRADE)
    # The session is idle by then: whatever is not capped goes out on push.
    assert [d.reason for d in got] == [None, "frequency_cap", reason]


def test_an_offer_without_family_is_its_own_family() -> None:
    cap = {"family": "storage", "max": 1, "per": "1d"}
    got = decisions([("s", at(minutes=1)), ("p", at(minutes=2)), ("s", at(minutes=3))], cap)
    assert [d.reason for d in got] == [None, None, "frequency_cap"]
    assert got[2].detail.endswith("family storage: 1 per 24 hours reached")


def test_a_family_cap_counts_held_out_decisions_too() -> None:
    lines = in_session("u", at()) + [use("p", at(minutes=1)), use("a", at(minutes=2))]
    policy = {"frequency_caps": [WEEKLY_UPGRADE], "holdout": {"percent": 100, "salt": "s"}}
    got = replay(rules_file(RULES, offers=OFFERS, policy=policy), lines).decisions
    assert [(d.outcome, d.reason) for d in got] == [
        ("holdout", "holdout"),
        ("suppressed", "frequency_cap"),
    ]


def test_a_family_cap_on_a_channel_skips_that_channel_for_that_family_only() -> None:
    rules = [dict(r, channels=["email", "push"]) for r in RULES]
    lines = in_session("u", at()) + [
        use("p", at(minutes=1)),
        use("a", at(minutes=2)),
        use("s", at(minutes=3)),
    ]
    cap = {"family": "upgrade", "channel": "email", "max": 1, "per": "7d"}
    result = replay(rules_file(rules, offers=OFFERS, policy={"frequency_caps": [cap]}), lines)
    assert [(d.rule_id, d.channel) for d in result.decisions] == [
        ("go-premium", "email"),
        ("go-annual", "push"),
        ("more-storage", "email"),
    ]
    assert "skipped email: family upgrade: 1 per 7 days reached" in result.decisions[1].detail


def test_a_family_cap_and_an_overall_cap_hold_together() -> None:
    overall = {"max": 3, "per": "1d"}
    uses = [("s", at(minutes=1)), ("p", at(minutes=2)), ("a", at(minutes=3))]
    uses += [("s", at(minutes=4)), ("s", at(minutes=5))]
    got = decisions(uses, overall, WEEKLY_UPGRADE)
    assert [d.reason for d in got] == [None, None, "frequency_cap", None, "frequency_cap"]
    assert "family upgrade" in got[2].detail
    assert "3 offer(s) in the last 24 hours" in got[4].detail


# --- states stored before families -----------------------------------------------------


def _touch(when: float, offer: str, channel: str | None) -> Touch:
    return Touch(when, "t", "r", offer, channel, None, None, "treated", [offer])


def test_an_old_state_is_read_and_its_sends_take_the_offer_of_their_touch() -> None:
    """A state stored before families has [time, channel] sends. The offer of each is the
    touch left at the same time on the same channel, while that is kept; a send whose
    touch is gone counts for the caps without family only."""
    known, forgotten = at(hours=-2).timestamp(), at(days=-6).timestamp()
    state = UserState(touches=[_touch(known, "annual", "push")])
    document = state.to_document()
    document["sent"] = [[forgotten, "email"], [known, "push"]]
    state, _ = codec.decode(orjson.dumps(document))
    assert state.sent == [(forgotten, "email", None), (known, "push", "annual")]
    assert orjson.loads(codec.encode(state, {}))["sent"] == [
        [forgotten, "email", None],
        [known, "push", "annual"],
    ]
    now = at().timestamp()
    overall = _caps({"max": 2, "per": "7d"})
    assert overall.reached(state, now, None, "storage") == (
        "2 offer(s) in the last 7 days (cap 2 per 7 days)"
    )
    family = _caps(WEEKLY_UPGRADE)
    assert family.reached(state, now, None, "premium") == "family upgrade: 1 per 7 days reached"
    state.sent = [(forgotten, "email", None)]
    assert family.reached(state, now, None, "premium") is None


def _caps(*caps: dict[str, Any]) -> FrequencyCaps:
    text = rules_file(RULES, offers=OFFERS, policy={"frequency_caps": list(caps)})
    return Engine(parse_rules(text)).policy.caps


def test_sends_at_one_time_on_a_channel_and_held_out_are_kept_in_order() -> None:
    caps, state = _caps(WEEKLY_UPGRADE), UserState()
    caps.count(state, 10.0, "push", "premium")
    caps.count(state, 10.0, None, "annual")
    caps.count(state, 5.0, "email", "storage")
    assert [entry[0] for entry in state.sent] == [5.0, 10.0, 10.0]


# --- explain ---------------------------------------------------------------------------


def test_explain_names_the_family_cap_and_when_it_frees() -> None:
    engine = Engine(
        parse_rules(
            rules_file(
                [dict(r, channels=["in_app"]) for r in RULES],
                offers=OFFERS,
                policy={"frequency_caps": [WEEKLY_UPGRADE]},
            )
        )
    )
    now = at()
    state = UserState(session_open=True, last_seen_at=now.timestamp())
    state.sent = [(at(days=-2).timestamp(), "in_app", "premium")]
    view = explain_user(engine, "u", state, now.timestamp(), [])
    words = {r["rule_id"]: r["detail"] for r in view["rules"]}
    assert "(frequency_cap): family upgrade: 1 per 7 days reached" in words["go-annual"]
    assert words["go-annual"].endswith("(until 2026-11-07T09:00:00Z)")
    assert "the policy lets it through now" in words["more-storage"]
    assert view["state"]["offers"]["sent"][0]["offer"] == "premium"


def test_explain_names_a_family_cap_on_a_channel_and_when_it_frees() -> None:
    engine = Engine(
        parse_rules(
            rules_file(
                [dict(r, channels=["in_app"]) for r in RULES],
                offers=OFFERS,
                policy={"frequency_caps": [dict(WEEKLY_UPGRADE, channel="in_app")]},
            )
        )
    )
    now = at()
    state = UserState(session_open=True, last_seen_at=now.timestamp())
    state.sent = [(at(days=-2).timestamp(), "in_app", "premium")]
    view = explain_user(engine, "u", state, now.timestamp(), [])
    words = {r["rule_id"]: r["detail"] for r in view["rules"]}
    assert (
        "in_app: family upgrade: 1 per 7 days reached until 2026-11-07T09:00:00Z"
        in words["go-premium"]
    )


# --- rules check -----------------------------------------------------------------------

FAMILY_PROBLEMS = """\
offers:
  premium: {kind: upsell, product: premium, family: upgrade, title: "Go Premium"}
  annual:  {kind: upsell, product: annual, family: Up Grade, title: "Save with annual"}
  storage: {kind: upsell, product: storage, title: "More storage"}
rules:
  - {id: r, offer: premium, trigger: {event: {type: usage.feature_used}}}
policy:
  frequency_caps:
    - {family: upgrade, max: 1, per: 7d}
    - {family: storage, max: 1, per: 1d}
    - {family: upgrades, channel: email, max: 1, per: 7d}
    - {family: "-x", max: 1, per: 7d}
"""


def test_rules_check_names_every_family_problem_with_its_place() -> None:
    with pytest.raises(RulesError) as refused:
        parse_rules(FAMILY_PROBLEMS, "families.yaml")
    rendered = [p.render("families.yaml") for p in refused.value.problems]
    assert len(rendered) == 4, "\n".join(rendered)
    assert rendered[0].startswith("families.yaml:3:52: offers.annual.family: ")
    assert "should match pattern" in rendered[0]
    assert "Up Grade" in rendered[0]
    assert rendered[1] == (
        "families.yaml:11:16: policy.frequency_caps[2].family: no offer is in family "
        "`upgrades` (families: Up Grade, storage, upgrade)"
    )
    assert rendered[2].startswith("families.yaml:12:16: policy.frequency_caps[3].family: ")
    assert "should match pattern" in rendered[2]
    assert rendered[3].startswith("families.yaml:12:16: policy.frequency_caps[3].family: ")
    assert "no offer is in family `-x`" in rendered[3]


def test_the_contracts_family_example_is_accepted() -> None:
    rules = parse_rules(
        rules_file(
            [rule("r", offer="annual")],
            offers={k: OFFERS[k] for k in ("premium", "annual")},
            policy={"frequency_caps": [{"max": 3, "per": "7d"}, WEEKLY_UPGRADE]},
        )
    )
    assert rules.families() == {"premium": "upgrade", "annual": "upgrade"}
    assert rules.policy.frequency_caps[1].family == "upgrade"


# --- the respect check ------------------------------------------------------------------


def test_the_respect_check_counts_a_family_cap_over_its_family_only(tmp_path: Path) -> None:
    uses = [(feature, at(hours=5 * n)) for n in range(60) for feature in ("p", "a", "s")]
    lines = in_session("u", at()) + [use(feature, when) for feature, when in uses]

    def sent(*caps: dict[str, Any]) -> list[dict[str, Any]]:
        text = rules_file(RULES, offers=OFFERS, policy={"frequency_caps": list(caps)})
        return [orjson.loads(line) for line in replay(text, lines).trigger_lines]

    capped, free = sent(WEEKLY_UPGRADE), sent()
    rules = tmp_path / "rules.yaml"
    rules.write_text(rules_file(RULES, offers=OFFERS, policy={"frequency_caps": [WEEKLY_UPGRADE]}))
    assert violations(lines, capped, rules) == []
    found = violations(lines, free, rules)
    assert found
    assert all("triggers of family upgrade in the 7d" in f for f in found)
    assert len(capped) < len(free)
