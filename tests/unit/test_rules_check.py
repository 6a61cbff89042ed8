"""`triggerstream rules check`: the design's example passes; every problem is named."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT
from tests.forked_cli import forked_cli
from triggerstream.rules.load import RulesError, load_rules, parse_rules

CONTRACT_EXAMPLE = """\
offers:
  premium:
    kind: upsell                 # upsell | cross_sell
    product: premium             # sku or plan whose purchase counts as conversion
    title: "Unlimited skips with Premium"
    benefits: ["Unlimited skips", "No ads"]   # at most 3
    discount_percent: 0          # 0-100
    expires_after: 7d            # offer validity after the trigger
  accessories:
    kind: cross_sell
    title: "Goes well with your order"
    recommend: {max_items: 3}    # 1-3 items: co-purchase statistics, then catalog complements
catalog:
  complements: {camera-x: [sd-card-64, camera-bag, tripod]}
rules:
  - id: free-skip-limit          # unique slug
    offer: premium
    trigger: {count: {type: usage.feature_used, where: {feature: skip}, at_least: 6, within: 1h}}
    profile: {plan: free}
    channels: [in_app, push]     # preference order; default [in_app, push, email]
    cooldown: 1d                 # default 1d; min time between two triggers of this rule per user
    priority: 10                 # highest wins when several rules match one event; default 0
    delay: 0s                    # optional; emit this long after the match (policy applied then)
policy:
  frequency_caps: [{max: 2, per: 1d}, {max: 5, per: 7d}, {channel: email, max: 2, per: 7d}]
  dismiss_cooldown: 30d
  suppress: {nps_at_most: 6, open_tickets_at_least: 1, during_critical_workflow: true, already_owned: true}
  quiet_hours: {from: "21:00", to: "08:00"}   # user's timezone (UTC if unknown); push and email only
  holdout: {percent: 5, salt: "2026-q4"}       # global control group, deterministic per user
  attribution: {window: 7d}
  in_app_session_timeout: 30m
experiments:
  - id: skip-discount
    rule: free-skip-limit
    variants: {control: {weight: 50}, twenty-off: {weight: 50, discount_percent: 20}}
"""

BROKEN = """\
offers:
  premium: {kind: upsell, title: Premium}
  extra: {kind: cross_sell, title: Extra, recommend: {max_items: 5}}
rules:
  - id: r1
    offer: x
    trigger: {count: {type: usage.feature_used, where: {featur: skip}, at_least: 6, within: 5x}}
  - id: r1
    offer: premium
    on: usage.feature_used
    trigger: {event: {type: usage.x}}
    profile: {plan: free, paln: free, attributes.age: {gte: 18}}
    channels: [in_app, sms]
  - id: r3
    offer: premium
    trigger: {quota: {resource: storage, at_least: 0.8}, nps: {at_least: 9}}
  - id: r4
    offer: premium
    trigger: {sum: {type: purchase.order_completed, field: currency, at_least: 100, within: 1d}}
policy:
  quiet_hours: {from: "25:00", to: "08:00"}
  frequency_caps: [{max: 0, per: 1d}]
experiments:
  - id: e1
    rule: r1
    variants: {a: {weight: 70}, b: {weight: 50}}
  - id: e2
    rule: nope
    variants: {a: {weight: 100}}
"""

EXPECTED = [
    ("2:", "offers.premium", "an upsell offer needs `product`"),
    ("3:", "offers.extra.recommend.max_items", "less than or equal to 3 (got 5)"),
    ("6:", "rules[0].offer", "unknown offer `x` (offers: premium, extra)"),
    (
        "7:",
        "rules[0].trigger.count.where.featur",
        "unknown property `featur` of usage.feature_used",
    ),
    ("7:", "rules[0].trigger.count.within", "bad duration '5x'"),
    ("8:", "rules[1].id", "duplicate id `r1` (first at rules[0])"),
    ("10:", "rules[1].on", "a bare `on`"),
    ("11:", "rules[1].trigger.event.type", "unknown event type `usage.x`"),
    ("12:", "rules[1].profile.paln", "unknown state `paln`"),
    ("13:", "rules[1].channels[1]", "'in_app', 'push' or 'email' (got 'sms')"),
    (
        "16:",
        "rules[2].trigger",
        "give exactly one trigger kind of event, count, sum, quota, nps, deadline, inactivity, not_followed (got quota, nps)",
    ),
    ("19:", "rules[3].trigger.sum.field", "`currency` is not a numeric property"),
    ("21:", "policy.quiet_hours.from", "should match pattern"),
    ("22:", "policy.frequency_caps[0].max", "greater than or equal to 1 (got 0)"),
    ("26:", "experiments[0].variants", "weights sum to 120 instead of 100"),
    ("28:", "experiments[1].rule", "unknown rule `nope`"),
]


def test_the_design_example_is_accepted() -> None:
    rules = parse_rules(CONTRACT_EXAMPLE)
    assert [r.id for r in rules.rules] == ["free-skip-limit"]
    assert rules.policy.holdout.percent == 5
    assert rules.experiments[0].variants["twenty-off"].discount_percent == 20


def test_the_example_rules_shipped_with_the_project_are_valid() -> None:
    load_rules(ROOT / "examples" / "rules.yaml")


def test_every_problem_is_named_with_its_line_and_value() -> None:
    with pytest.raises(RulesError) as refused:
        parse_rules(BROKEN, "broken.yaml")
    rendered = [p.render("broken.yaml") for p in refused.value.problems]
    for line, path, message in EXPECTED:
        assert any(
            r.startswith(f"broken.yaml:{line}") and f": {path}: " in r and message in r
            for r in rendered
        ), f"missing {line} {path} {message} in\n" + "\n".join(rendered)
    assert len(rendered) == len(EXPECTED), "\n".join(rendered)


def test_rules_check_command_prints_every_problem_and_exits_1(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(BROKEN)
    result = forked_cli("rules", "check", str(path), env=dict(os.environ))
    assert result.returncode == 1
    assert len(result.stdout.splitlines()) == len(EXPECTED)
    assert f"{len(EXPECTED)} problem(s)" in result.stderr
    good = tmp_path / "good.yaml"
    good.write_text(CONTRACT_EXAMPLE)
    ok = forked_cli("rules", "check", str(good), env=dict(os.environ))
    assert ok.returncode == 0
    assert "OK: 1 rule(s), 2 offer(s), 1 experiment(s)" in ok.stdout


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("offers: [1, 2\n", "not valid YAML"),
        ("- just a list\n", "a YAML mapping"),
        (
            "offers:\n  p: {kind: upsell, product: p, title: t}\n  p: {kind: upsell, product: q,"
            " title: u}\nrules: [{id: r, offer: p, trigger: {nps: {}}}]\n",
            "duplicate key `p`",
        ),
        ("offers: {p: {kind: upsell, product: p, title: t}}\n", "rules: required"),
        (
            "offers: {p: {kind: upsell, product: p, title: t}}\nrules: [{id: r, offer: p, trigger:"
            " {nps: {}}, profile: {plan: {has: free}}}]\n",
            "unknown operator `has`",
        ),
        (
            "offers: {p: {kind: upsell, product: p, title: t}}\nrules: [{id: Bad Id, offer: p,"
            " trigger: {nps: {}}}]\n",
            "rules[0].id",
        ),
        (
            "offers: {p: {kind: upsell, product: p, title: t}}\nrules: [{id: r, offer: p, trigger:"
            " {nps: {at_least: 9, at_most: 3}}}]\n",
            "at_least 9 is above at_most 3",
        ),
        (
            "offers: {p: {kind: upsell, product: p, title: t}}\nrules: [{id: r, offer: p, trigger:"
            " {nps: {}}}]\npolicy: {quiet_hours: {from: '21:00', to: '21:00'}}\n",
            "are equal",
        ),
        (
            "offers: {p: {kind: upsell, product: p, title: t}}\nrules: [{id: r, offer: p, trigger:"
            " {quota: {resource: gb, at_least: 80}}}]\n",
            "less than or equal to 1 (got 80)",
        ),
        (
            "offers: {p: {kind: upsell, product: p, title: t}}\nrules: [{id: r, offer: p, trigger:"
            " {nps: {}}}]\nexperiments: [{id: a, rule: r, variants: {x: {weight: 100}}},"
            " {id: b, rule: r, variants: {y: {weight: 100}}}]\n",
            "experiments[1].rule: rule `r` already has an experiment; one per rule",
        ),
    ],
)
def test_more_problems(text: str, message: str) -> None:
    with pytest.raises(RulesError) as refused:
        parse_rules(text, "f.yaml")
    assert message in str(refused.value)


def test_replay_refuses_an_unusable_rules_file_with_one_line_and_exit_2(tmp_path: Path) -> None:
    rules = tmp_path / "broken.yaml"
    rules.write_text(BROKEN)
    events = tmp_path / "e.jsonl"
    events.write_text("")
    result = forked_cli("replay", "--rules", str(rules), str(events), env=dict(os.environ))
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "triggerstream rules check" in result.stderr
    missing = forked_cli(
        "replay",
        str(events),
        env={k: v for k, v in os.environ.items() if k != "TRIGGERSTREAM_RULES"},
    )
    assert missing.returncode == 2
    assert "--rules" in missing.stderr


def test_an_unknown_top_level_key_is_named_not_a_crash() -> None:
    # Found by tests/unit/test_hostile_input.py: this raised KeyError.
    with pytest.raises(RulesError) as refused:
        parse_rules("offers: {}\nrules: []\npolcy: {}\n")
    assert "polcy: unknown key `polcy`" in str(refused.value)


@pytest.mark.parametrize(
    ("section", "value", "says"),
    [
        ("policy", [], "policy: Input should be a valid dictionary"),
        ("policy", 0, "policy: Input should be a valid dictionary"),
        ("catalog", False, "catalog: Input should be a valid dictionary"),
        ("experiments", {}, "experiments: must be a list"),
        ("experiments", "", "experiments: must be a list"),
    ],
)
def test_an_empty_value_of_the_wrong_kind_for_a_section_is_named_not_a_crash(
    section: str, value: object, says: str
) -> None:
    # Found by tests/unit/test_hostile_input.py: `policy: []` passed the section
    # checks as "no policy" and raised pydantic's ValidationError from the last step.
    document = yaml.safe_load((ROOT / "examples" / "rules.yaml").read_text())
    document[section] = value
    with pytest.raises(RulesError) as refused:
        parse_rules(yaml.safe_dump(document))
    assert says in str(refused.value)
