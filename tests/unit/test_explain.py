"""`triggerstream explain` (docs/contract.md section 16): one user's decisions exactly as
replay makes them, and why each rule would or would not fire now, in words a person reads."""

from __future__ import annotations

import os
import random
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.engine_support import at, event
from tests.forked_cli import forked_cli
from tests.scenarios import EXPECTED, RULES, scenario_events
from triggerstream import replay
from triggerstream.core.engine import Engine
from triggerstream.core.state import UserState
from triggerstream.explain import explain_user, read_user
from triggerstream.rules.load import load_rules
from triggerstream.topics import input_partitions
from triggerstream.traffic import history

KEYS = {"user_id", "state", "rules", "pending", "decisions"}
DECISION_KEYS = {
    "decision_id", "user_id", "rule_id", "outcome", "reason", "detail", "trigger_id", "at",
    "channel", "experiment", "variant", "rules_version", "schema_version",
}  # fmt: skip


def write(path: Path, lines: list[dict[str, Any]]) -> Path:
    path.write_bytes(b"\n".join(orjson.dumps(line) for line in lines) + b"\n")
    return path


def replayed(paths: list[Path], until: float | None = None) -> dict[str, list[dict[str, Any]]]:
    """Every user's decisions as `triggerstream replay` makes them (default partitions)."""
    by_user: dict[str, list[dict[str, Any]]] = defaultdict(list)

    def keep(record: bytes) -> None:
        decision = orjson.loads(record)
        by_user[decision["user_id"]].append(decision)

    outputs = replay.Outputs(triggers=None, decisions=keep)
    replay.run(Engine(load_rules(RULES)), paths, outputs, until, partitions=input_partitions())
    return by_user


def explained(
    paths: list[Path], user: str, until: float | None = None
) -> tuple[dict[str, Any], Any]:
    engine = Engine(load_rules(RULES))
    read = read_user(engine, user, paths, until, input_partitions())
    return explain_user(engine, user, read.state, read.now, read.decisions, "test"), read


def rule(view: dict[str, Any], rule_id: str) -> dict[str, Any]:
    return next(r for r in view["rules"] if r["rule_id"] == rule_id)


# --- the same decisions as replay -------------------------------------------------------


@pytest.fixture(scope="module")
def scenarios(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write(tmp_path_factory.mktemp("explain") / "scenarios.jsonl", scenario_events())


def test_on_the_scenarios_each_users_decisions_are_replays(scenarios: Path) -> None:
    until = at(days=40).timestamp()
    everyone = replayed([scenarios], until)
    for user in sorted(EXPECTED):
        view, _ = explained([scenarios], user, until)
        assert view["decisions"] == everyone[user], user
        assert view["state"]["now"] == "2026-12-12T09:00:00Z"


@pytest.fixture(scope="module")
def month(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated month, with some lines sent twice (duplicates) and an erasure."""
    lines = history(30_000, 2_000)
    rng = random.Random(3)
    again = rng.sample(lines, 300)
    middle = orjson.loads(lines[len(lines) // 2])
    erased = event("profile.erasure_requested", middle["user_id"], at(), event_id="erase-1")
    erased["occurred_at"] = middle["occurred_at"]
    mixed = [*lines, *again, orjson.dumps(erased)]
    mixed.sort(key=lambda line: orjson.loads(line)["occurred_at"])
    path = tmp_path_factory.mktemp("explain") / "month.jsonl"
    path.write_bytes(b"\n".join(mixed) + b"\n")
    return path


def test_on_a_generated_month_a_users_decisions_are_replays(month: Path) -> None:
    everyone = replayed([month])
    busiest = sorted(everyone, key=lambda user: -len(everyone[user]))[:3]
    # Cross-sell depends on every user's orders in the user's partition.
    sellers = sorted(u for u, ds in everyone.items() if ds[0]["rule_id"] == "order-cross-sell")
    quiet = sorted(u for u, ds in everyone.items() if len(ds) == 1)
    erased = next(u for u, ds in everyone.items() if any(d["outcome"] == "erased" for d in ds))
    for user in {*busiest, *sellers[:3], *quiet[:2], erased}:
        view, read = explained([month], user)
        assert view["decisions"] == everyone[user], user
        assert read.lines == 30_301
        assert read.duplicates >= 1


def test_until_cuts_the_input_and_is_now(scenarios: Path) -> None:
    until = at(minutes=20)
    view, _read = explained([scenarios], "maya", until.timestamp())
    assert view["state"]["now"] == "2026-11-02T09:20:00Z"
    assert "3 of 6 skips in the last 60 minutes" in rule(view, "free-skip-limit")["detail"]
    assert view["decisions"] == []


# --- what a person reads ------------------------------------------------------------------


def skips(user: str, minutes: list[float]) -> list[dict[str, Any]]:
    return [
        event("profile.profile_updated", user, at(), plan="free", timezone="Europe/Berlin"),
        event("profile.consent_updated", user, at(), channel="push", granted=True),
        event("usage.session_started", user, at()),
        *(event("usage.feature_used", user, at(minutes=m), feature="skip") for m in minutes),
    ]


def test_a_rule_one_skip_short_says_how_many_of_how_many(tmp_path: Path) -> None:
    path = write(tmp_path / "e.jsonl", skips("ana", [1, 5, 9, 14, 20]))
    view, _ = explained([path], "ana")
    shown = rule(view, "free-skip-limit")
    assert shown["fires_now"] is False
    assert shown["detail"] == (
        "5 of 6 skips in the last 60 minutes; the policy lets it through now: sent on in_app"
    )


def test_after_a_send_the_rule_is_in_cooldown_until_a_day_later(tmp_path: Path) -> None:
    path = write(tmp_path / "e.jsonl", skips("ana", [1, 5, 9, 14, 20, 25]))
    view, _ = explained([path], "ana")
    assert [d["outcome"] for d in view["decisions"]] == ["emitted"]
    detail = rule(view, "free-skip-limit")["detail"]
    assert detail.startswith("6 of 6 skips in the last 60 minutes; ")
    assert "(cooldown): rule last triggered 2026-11-02T09:25:00Z" in detail
    assert detail.endswith("(until 2026-11-03T09:25:00Z)")
    assert view["state"]["offers"]["last_triggered"] == {"free-skip-limit": "2026-11-02T09:25:00Z"}


def engine() -> Engine:
    return Engine(load_rules(RULES))


def test_a_capped_user_reads_when_the_cap_frees() -> None:
    state = UserState(plan="free", session_open=True, last_seen_at=at().timestamp())
    state.sent = [  # not upgrade offers: the family cap (2 a week) is not reached
        (at(hours=-20).timestamp(), "push", "accessories"),
        (at(hours=-2).timestamp(), "in_app", "automation-addon"),
    ]
    view = explain_user(engine(), "ana", state, at().timestamp(), [])
    detail = rule(view, "free-skip-limit")["detail"]
    assert "the policy would hold it back now (frequency_cap): 2 offer(s) in the last" in detail
    assert detail.endswith("(until 2026-11-02T13:00:00Z)")  # the send 20 hours ago leaves


def test_quiet_hours_and_consent_say_which_channel_and_until_when() -> None:
    state = UserState(plan="team", timezone="Europe/Berlin", consent={"push": True})
    late = at(hours=13).timestamp()  # 23:00 in Berlin
    view = explain_user(engine(), "acme", state, late, [])
    assert rule(view, "storage-95")["detail"].endswith(
        "(no_channel): in_app: no active session; email: no consent given; "
        "push: quiet hours (23:00 Europe/Berlin) until 2026-11-03T07:00:00Z"
    )


def test_a_quota_reads_against_its_fraction_and_a_profile_names_what_it_needs() -> None:
    state = UserState(plan="pro", quotas={"storage_gb": (620.0, 1000.0)})
    view = explain_user(engine(), "acme", state, at().timestamp(), [])
    assert rule(view, "storage-80")["detail"].startswith(
        "62% of storage_gb (620 of 1000), fires at 80%; plan is pro, the rule needs one of "
        "team, starter; "
    )
    assert rule(view, "free-skip-limit")["detail"].startswith(
        "0 of 6 skips in the last 60 minutes; plan is pro, the rule needs free; "
    )
    assert view["state"]["quotas"] == {
        "storage_gb": {"used": 620.0, "limit": 1000.0, "fraction": 0.62}
    }


def test_snoozed_opted_out_and_tickets_hold_back_with_their_words() -> None:
    state = UserState(plan="free", snooze_all_until=at(days=2).timestamp())
    view = explain_user(engine(), "ana", state, at().timestamp(), [])
    assert rule(view, "free-skip-limit")["detail"].endswith(
        "(snoozed): all offers snoozed until 2026-11-04T09:00:00Z"
    )
    state = UserState(plan="free", open_tickets=["T-1"])
    view = explain_user(engine(), "ana", state, at().timestamp(), [])
    assert rule(view, "free-skip-limit")["detail"].endswith("(open_tickets): 1 open ticket(s): T-1")


def test_a_pending_timer_shows_its_due_time(tmp_path: Path) -> None:
    trial = event(
        "purchase.trial_started", "lena", at(), plan="pro", trial_ends_at=at(days=14).isoformat()
    )
    view, _ = explained([write(tmp_path / "e.jsonl", [trial])], "lena")
    assert view["pending"] == [
        {"rule_id": "trial-ending", "kind": "deadline", "due": "2026-11-06T09:00:00Z"}
    ]
    assert rule(view, "trial-ending")["detail"].startswith(
        "trial_ends_at 2026-11-16T09:00:00Z: due 2026-11-06T09:00:00Z (10 days before)"
    )


# --- the command --------------------------------------------------------------------------


def test_the_json_has_exactly_the_keys_of_section_16(scenarios: Path) -> None:
    shown = forked_cli(
        "explain", "maya", "--rules", str(RULES), str(scenarios), "--format", "json",
        env=dict(os.environ),
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    view = orjson.loads(shown.stdout)
    assert set(view) == KEYS
    assert {tuple(sorted(r)) for r in view["rules"]} == {("detail", "fires_now", "rule_id")}
    assert all(set(p) == {"rule_id", "kind", "due"} for p in view["pending"])
    assert view["decisions"]
    assert all(set(d) == DECISION_KEYS for d in view["decisions"])
    assert view["state"]["now_is"] == "the latest event in the input"


def test_text_shows_the_rules_and_decisions_to_people(scenarios: Path) -> None:
    shown = forked_cli(
        "explain", "maya", "--rules", str(RULES), str(scenarios), env=dict(os.environ)
    )
    assert shown.returncode == 0, shown.stderr
    assert "maya as of" in shown.stdout
    assert "free-skip-limit" in shown.stdout
    assert "6 skips in the last 60 minutes" in shown.stdout
    assert "event(s) of maya" in shown.stderr


@pytest.mark.parametrize(
    ("args", "said", "status"),
    [
        (["nobody"], "triggerstream: no events of user nobody in the input\n", 1),
        (["maya", "--until", "yesterday"], "--until 'yesterday' is not an RFC 3339", 2),
    ],
)
def test_bad_input_is_one_line(scenarios: Path, args: list[str], said: str, status: int) -> None:
    shown = forked_cli(
        "explain", *args[:1], "--rules", str(RULES), str(scenarios), *args[1:],
        env=dict(os.environ),
    )  # fmt: skip
    assert shown.returncode == status
    assert said in shown.stderr
    assert "Traceback" not in shown.stderr
    assert shown.stderr.count("\n") == 1


def test_invalid_lines_are_counted_and_skipped_as_replay_skips_them(tmp_path: Path) -> None:
    path = tmp_path / "e.jsonl"
    path.write_bytes(
        b"not json\n" + orjson.dumps(skips("ana", [1])[0]) + b"\n" + b'{"topic":"usage-events"}\n'
    )
    view, read = explained([path], "ana")
    assert sum(read.invalid.values()) == 2
    assert read.events == 1
    assert view["state"]["profile"]["plan"] == "free"


def test_a_rule_fires_now_only_when_its_trigger_profile_and_policy_all_let_it() -> None:
    now = at().timestamp()
    skipped = [(now - 60 * m, 1.0) for m in (50, 40, 30, 20, 10, 0)]
    state = UserState(plan="free", session_open=True, last_seen_at=now)
    state.windows = {"free-skip-limit": skipped}
    view = explain_user(engine(), "ana", state, now, [])
    assert rule(view, "free-skip-limit") == {
        "rule_id": "free-skip-limit",
        "fires_now": True,
        "detail": "6 of 6 skips in the last 60 minutes; the policy lets it through now: "
        "sent on in_app",
    }
    assert view["state"]["windows"] == {"free-skip-limit": {"within": "60 minutes", "events": 6}}
    state.plan = "pro"
    assert (
        rule(explain_user(engine(), "ana", state, now, []), "free-skip-limit")["fires_now"] is False
    )


def test_text_shows_what_producers_sent_as_text_never_as_markup() -> None:
    import io

    from triggerstream.explain.text import render

    decision = {
        "at": "2026-11-02T09:00:00Z", "rule_id": "r", "outcome": "suppressed",
        "reason": "no_channel", "channel": None, "detail": "used [/b] feature: in_app: no",
    }  # fmt: skip
    view = explain_user(engine(), "[/i]ana", UserState(), at().timestamp(), [decision], "test")
    shown = io.StringIO()
    render(view, shown)
    assert "[/i]ana as of 2026-11-02T09:00:00Z (test)" in shown.getvalue()
    assert "used [/b] feature" in shown.getvalue()
