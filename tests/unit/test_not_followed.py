"""The trigger kind ``not_followed`` at its boundaries (docs/contract.md section 15),
through the replay shell: a ``first`` event that no ``then`` event follows ``within``."""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson
import pytest

from tests.engine_support import at, event, in_session, replay, rule, rules_file
from triggerstream.core.engine import Engine
from triggerstream.core.state import UserState
from triggerstream.events import decode_event
from triggerstream.explain import explain_user
from triggerstream.rules.load import RulesError, parse_rules

CART = rule(
    "cart-abandoned",
    {
        "not_followed": {
            "first": {"type": "purchase.checkout_started"},
            "then": {"type": "purchase.order_completed", "where": {"currency": "EUR"}},
            "within": "1h",
        }
    },
    channels=["email"],
    cooldown="0s",
)


def checkout(user: str, when: dt.datetime, event_id: str | None = None) -> dict[str, Any]:
    return event(
        "purchase.checkout_started", user, when, event_id, cart=[{"sku": "camera-x", "price": 300}]
    )


def order(user: str, when: dt.datetime, currency: str = "EUR") -> dict[str, Any]:
    return event(
        "purchase.order_completed",
        user,
        when,
        order_id=f"o-{when.timestamp():.0f}",
        items=[{"sku": "camera-x", "price": 300}],
        total=300,
        currency=currency,
    )


def later(user: str, when: dt.datetime) -> dict[str, Any]:
    """Any event of the user: moves their clock to ``when``."""
    return event("usage.feature_used", user, when, feature="x")


def test_fires_within_after_the_first_event_with_it_as_cause() -> None:
    lines = [*in_session("maya", at()), checkout("maya", at(minutes=5), "cart-1")]
    result = replay(rules_file([CART]), [*lines, later("maya", at(hours=3))])
    assert result.outcomes() == [("cart-abandoned", "emitted", None)]
    trigger = result.triggers[0]
    assert trigger.triggered_at == at(hours=1, minutes=5)
    assert trigger.caused_by.event_id == "cart-1"
    assert trigger.reason.summary == (
        "checkout_started at 2026-11-02T09:05:00Z, no order_completed within 60 minutes"
    )


def test_not_due_yet_it_does_not_fire_unless_until_passes_it() -> None:
    lines = [*in_session("maya", at()), checkout("maya", at(minutes=5))]
    assert replay(rules_file([CART]), lines).decisions == []
    result = replay(rules_file([CART]), lines, until=at(hours=2))
    assert [d.at for d in result.decisions] == [at(hours=1, minutes=5)]


@pytest.mark.parametrize(
    ("then_after", "fires"),
    [(dt.timedelta(minutes=59, seconds=59), False), (dt.timedelta(hours=1), True)],
    ids=["a-moment-before-due-in-time", "exactly-at-due-too-late"],
)
def test_a_then_before_the_due_time_ends_the_wait_and_one_at_it_comes_too_late(
    then_after: dt.timedelta, fires: bool
) -> None:
    # A timer due at an event's time fires before that event, as every timer does.
    lines = [*in_session("maya", at()), checkout("maya", at()), order("maya", at() + then_after)]
    result = replay(rules_file([CART]), [*lines, later("maya", at(hours=5))])
    assert [d.at for d in result.decisions] == ([at(hours=1)] if fires else [])


def test_a_then_whose_where_does_not_hold_does_not_count() -> None:
    lines = [
        *in_session("maya", at()),
        checkout("maya", at()),
        order("maya", at(minutes=10), "USD"),
    ]
    result = replay(rules_file([CART]), lines, until=at(hours=2))
    assert [d.at for d in result.decisions] == [at(hours=1)]


def test_a_then_before_the_first_does_not_count() -> None:
    lines = [
        *in_session("maya", at()),
        order("maya", at(minutes=1)),
        checkout("maya", at(minutes=2)),
    ]
    result = replay(rules_file([CART]), lines, until=at(hours=2))
    assert [d.at for d in result.decisions] == [at(hours=1, minutes=2)]


def test_a_then_at_the_very_time_of_the_first_does_not_follow_it_in_either_order() -> None:
    for lines in (
        [checkout("maya", at()), order("maya", at())],
        [order("maya", at()), checkout("maya", at())],
    ):
        result = replay(rules_file([CART]), [*in_session("maya", at()), *lines], until=at(hours=2))
        assert [d.at for d in result.decisions] == [at(hours=1)]


def test_one_type_may_be_first_and_then_each_event_ending_one_wait_and_starting_the_next() -> None:
    quiet = rule(
        "quiet-after-skip",
        {
            "not_followed": {
                "first": {"type": "usage.feature_used"},
                "then": {"type": "usage.feature_used"},
                "within": "1h",
            }
        },
        channels=["email"],
        cooldown="0s",
    )
    lines = [
        *in_session("maya", at()),
        later("maya", at(minutes=10)),
        later("maya", at(minutes=30)),
    ]
    result = replay(rules_file([quiet]), lines, until=at(hours=3))
    assert [d.at for d in result.decisions] == [at(hours=1, minutes=30)]


def test_a_newer_first_restarts_the_wait_one_pending_per_rule_and_user() -> None:
    lines = [
        *in_session("maya", at()),
        checkout("maya", at(), "cart-1"),
        checkout("maya", at(minutes=40), "cart-2"),  # the cart updated
    ]
    result = replay(rules_file([CART]), lines, until=at(hours=3))
    assert [d.at for d in result.decisions] == [at(hours=1, minutes=40)]
    assert result.triggers[0].caused_by.event_id == "cart-2"


def test_a_first_read_after_a_later_then_is_already_followed() -> None:
    # The order reached the processor before the checkout that came before it.
    lines = [*in_session("maya", at()), order("maya", at(minutes=10)), checkout("maya", at())]
    assert replay(rules_file([CART]), lines, until=at(hours=2)).decisions == []


def test_it_goes_through_the_policy_like_every_match() -> None:
    held = dict(CART, cooldown="1d")
    lines = [
        *in_session("maya", at()),
        checkout("maya", at()),
        checkout("maya", at(hours=2)),
        later("maya", at(hours=4)),
    ]
    result = replay(rules_file([held]), lines)
    assert result.outcomes() == [
        ("cart-abandoned", "emitted", None),
        ("cart-abandoned", "suppressed", "cooldown"),
    ]


def test_the_profile_is_checked_when_it_fires() -> None:
    free_only = dict(CART, profile={"plan": "free"})
    lines = [
        *in_session("maya", at(), plan="free"),
        checkout("maya", at()),
        event("profile.profile_updated", "maya", at(minutes=30), plan="premium"),
    ]
    assert replay(rules_file([free_only]), lines, until=at(hours=2)).decisions == []


def test_an_erasure_removes_the_pending_wait() -> None:
    lines = [
        *in_session("maya", at()),
        checkout("maya", at()),
        event("profile.erasure_requested", "maya", at(minutes=10)),
    ]
    result = replay(rules_file([CART]), lines, until=at(hours=2))
    assert result.outcomes() == [(None, "erased", None)]


def test_the_pending_wait_is_stored_and_read_back_with_the_state() -> None:
    engine = Engine(parse_rules(rules_file([CART])))
    step = engine.process("maya", None, _event(checkout("maya", at(), "cart-1")))
    assert step.state is not None
    document = step.state.to_document()
    again = UserState.from_document(document)
    assert engine.next_due(again) == at(hours=1).timestamp()
    # A state stored before the kind existed reads as before.
    older = {k: v for k, v in document.items() if k not in ("timers", "followed")}
    assert UserState.from_document(older).timers == []


def _event(line: dict[str, Any]) -> Any:
    body = {k: v for k, v in line.items() if k != "topic"}
    return decode_event(line["topic"], orjson.dumps(body))


def test_explain_says_what_it_waits_for_and_lists_the_pending_wait() -> None:
    engine = Engine(parse_rules(rules_file([CART])))
    state = engine.process("maya", None, _event(checkout("maya", at(), "cart-1"))).state
    view = explain_user(engine, "maya", state, at(minutes=5).timestamp(), [])
    assert view["pending"] == [
        {"rule_id": "cart-abandoned", "kind": "not_followed", "due": "2026-11-02T10:00:00Z"}
    ]
    detail = view["rules"][0]["detail"]
    assert detail.startswith(
        "purchase.checkout_started at 2026-11-02T09:00:00Z: waiting for "
        "purchase.order_completed with currency EUR until 2026-11-02T10:00:00Z; "
    )
    nothing = explain_user(engine, "ana", UserState(), at().timestamp(), [])
    assert nothing["rules"][0]["detail"].startswith(
        "nothing pending: fires 60 minutes after a purchase.checkout_started that no "
        "purchase.order_completed with currency EUR follows; "
    )


BROKEN = """\
offers:
  premium: {kind: upsell, product: premium, title: Premium}
rules:
  - id: cart
    offer: premium
    trigger:
      not_followed:
        first: {type: purchase.checkout_begun}
        then: {type: purchase.order_completed, where: {totl: {gte: 10}}}
        within: 5x
  - id: cart-2
    offer: premium
    trigger: {not_followed: {first: {type: purchase.checkout_started}, within: 0s}}
"""


def test_rules_check_names_every_problem_of_the_kind_with_its_place() -> None:
    with pytest.raises(RulesError) as refused:
        parse_rules(BROKEN, "cart.yaml")
    rendered = [p.render("cart.yaml") for p in refused.value.problems]
    expected = [
        "cart.yaml:8:23: rules[0].trigger.not_followed.first.type: unknown event type "
        "`purchase.checkout_begun`; known types: purchase.",
        "cart.yaml:9:62: rules[0].trigger.not_followed.then.where.totl: unknown property "
        "`totl` of purchase.order_completed",
        "cart.yaml:10:17: rules[0].trigger.not_followed.within: bad duration '5x'",
        "cart.yaml:13:29: rules[1].trigger.not_followed.then: required",
        "cart.yaml:13:80: rules[1].trigger.not_followed.within: must be more than 0s",
    ]
    assert len(rendered) == len(expected), rendered
    for line, start in zip(rendered, expected, strict=True):
        assert line.startswith(start), (line, start)


def test_a_valid_not_followed_rule_is_accepted() -> None:
    rules = parse_rules(rules_file([CART]))
    spec = rules.rules[0].trigger.not_followed
    assert spec is not None
    assert spec.within == dt.timedelta(hours=1)
    assert spec.then.type == "purchase.order_completed"
