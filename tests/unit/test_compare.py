"""`triggerstream compare` (docs/contract.md section 16): each side counts what `replay`
of its rules file decides, on a generated month and on the design's scenarios."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.conftest import ROOT
from tests.engine_support import at
from tests.forked_cli import forked_cli
from tests.scenarios import RULES, scenario_events

NEXT = ROOT / "examples" / "rules-next.yaml"
UNTIL = at(days=40).isoformat()


def env() -> dict[str, str]:
    """No settings of the caller's but the build of the core."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("TRIGGERSTREAM_") or k == "TRIGGERSTREAM_PURE"
    }


@pytest.fixture(scope="module", params=["month", "scenarios"])
def events(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp(request.param)
    path = folder / "events.jsonl"
    if request.param == "scenarios":
        path.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in scenario_events()))
    else:
        made = forked_cli(
            "generate", "--users", "1500", "--days", "30", "--events", "30000", "--seed", "3",
            "--out", str(path), env=env(),
        )  # fmt: skip
        assert made.returncode == 0, made.stderr
    return path


def replayed(rules: Path, events: Path) -> dict[str, Any]:
    """What `replay` of one rules file decides, counted as compare counts it: per rule,
    emitted, holdout, suppressions by reason and triggers by channel; and who got a
    trigger."""
    decisions = events.with_name(f"decisions-{rules.stem}.jsonl")
    result = forked_cli(
        "replay", "--rules", str(rules), str(events), "--decisions", str(decisions),
        "--until", UNTIL, env=env(),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    counts: dict[str, dict[str, Any]] = {}
    for line in decisions.read_bytes().splitlines():
        record = orjson.loads(line)
        if record["rule_id"] is None:
            continue
        side = counts.setdefault(record["rule_id"], {"outcomes": Counter(), "suppressed": {}})
        side["outcomes"][record["outcome"]] += 1
        if record["outcome"] == "suppressed":
            side["suppressed"][record["reason"]] = side["suppressed"].get(record["reason"], 0) + 1
    triggers = [orjson.loads(line) for line in result.stdout.splitlines()]
    for trigger in triggers:
        channels = counts[trigger["rule_id"]].setdefault("triggers", Counter())
        channels[trigger["channel"]] += 1
    return {"counts": counts, "users": {trigger["user_id"] for trigger in triggers}}


def compared(events: Path, *args: str) -> dict[str, Any]:
    result = forked_cli(
        "compare", str(RULES), str(NEXT), str(events), "--until", UNTIL, "--format", "json",
        *args, env=env(),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stderr.startswith("read ")
    return dict(orjson.loads(result.stdout))


@pytest.fixture(scope="module")
def both(events: Path) -> dict[str, Any]:
    return {
        "old": replayed(RULES, events),
        "new": replayed(NEXT, events),
        "compare": compared(events),
    }


def test_each_side_counts_what_replay_of_its_rules_file_decides(both: dict[str, Any]) -> None:
    comparison = both["compare"]
    assert set(comparison) == {"rules", "users_gained", "users_lost"}
    decided = 0
    for rule in comparison["rules"]:
        for side in ("old", "new"):
            figures = rule[side]
            if figures is None:
                continue
            replay = both[side]["counts"].get(rule["rule_id"], {})
            outcomes = replay.get("outcomes", Counter())
            assert figures["emitted"] == outcomes["emitted"], (rule["rule_id"], side)
            assert figures["holdout"] == outcomes["holdout"], (rule["rule_id"], side)
            assert figures["suppressed"] == replay.get("suppressed", {}), (rule["rule_id"], side)
            assert figures["triggers"] == dict(replay.get("triggers", {})), (rule["rule_id"], side)
            decided += figures["emitted"]
    assert decided > 0


def test_a_rule_in_one_file_only_has_null_on_the_other_side(both: dict[str, Any]) -> None:
    sides = {rule["rule_id"]: rule for rule in both["compare"]["rules"]}
    assert sides["storage-80"]["new"] is None
    assert sides["storage-80"]["old"] is not None
    assert sides["storage-90"]["old"] is None
    assert sides["storage-90"]["new"] is not None
    assert list(sides)[-1] == "storage-90"  # the old file's order, then what the new adds


def test_users_who_gain_or_lose_a_trigger_are_counted_with_examples(
    both: dict[str, Any],
) -> None:
    old, new = both["old"]["users"], both["new"]["users"]
    for key, users in (("users_gained", new - old), ("users_lost", old - new)):
        shown = both["compare"][key]
        assert shown["count"] == len(users)
        assert [e["user_id"] for e in shown["examples"]] == sorted(users)[:3]
        for example in shown["examples"]:
            gained = key == "users_gained"
            assert (example["new" if gained else "old"]["triggers"] > 0) is True
            assert example["old" if gained else "new"]["triggers"] == 0
            emitted = [
                d
                for d in example["new" if gained else "old"]["decisions"]
                if d["outcome"] == "emitted"
            ]
            assert emitted
            assert emitted[0]["user_id"] == example["user_id"]


def test_a_month_shows_users_who_gain_a_trigger(events: Path, both: dict[str, Any]) -> None:
    if events.parent.name.startswith("month"):
        assert both["compare"]["users_gained"]["count"] > 0


def test_the_text_shows_the_differences(events: Path) -> None:
    result = forked_cli("compare", str(RULES), str(NEXT), str(events), env=env())
    assert result.returncode == 0, result.stderr
    assert "removed" in result.stdout
    assert "added" in result.stdout
    assert "users who gain a trigger: " in result.stdout
    assert "users who lose a trigger: " in result.stdout


def test_an_unusable_rules_file_names_its_side_and_exits_2(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("rules: []\n")
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"")
    for args, side in (([str(broken), str(NEXT)], "old"), ([str(RULES), str(broken)], "new")):
        result = forked_cli("compare", *args, str(events), env=env())
        assert result.returncode == 2
        assert result.stderr.startswith(f"triggerstream: compare needs a valid {side} rules file")
        assert result.stderr.count("\n") == 1
        assert result.stdout == ""
