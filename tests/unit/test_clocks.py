"""A producer with a wrong clock (docs/contract.md section 12): an event dated more than
MAX_FUTURE after it is read is refused ``from_future`` and changes nothing."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import orjson
import pytest

from tests.engine_support import event, rule, rules_file
from tests.forked_cli import forked_cli
from triggerstream.events import InvalidEvent, decode_event, refuse_future

NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)


def session_at(when: dt.datetime) -> bytes:
    line = event("usage.session_started", "maya", when)
    return orjson.dumps({k: v for k, v in line.items() if k != "topic"})


def test_an_event_up_to_max_future_ahead_is_accepted_and_a_second_more_refused() -> None:
    hour = dt.timedelta(hours=1)
    accepted = decode_event("usage-events", session_at(NOW + hour))
    assert refuse_future(accepted, NOW.timestamp(), hour) is accepted
    late = decode_event("usage-events", session_at(NOW + hour + dt.timedelta(seconds=1)))
    with pytest.raises(InvalidEvent) as refused:
        refuse_future(late, NOW.timestamp(), hour)
    assert refused.value.code == "from_future"
    assert refused.value.reason == (
        "occurred_at: 2026-12-01T13:00:01+00:00 is more than 1h after the time the event "
        "was read (TRIGGERSTREAM_MAX_FUTURE): is the producer's clock wrong?"
    )


def replay(tmp_path: Path, *flags: str, **env: str) -> tuple[str, list[dict[str, object]]]:
    rules = tmp_path / "rules.yaml"
    skips = {"type": "usage.feature_used", "where": {"feature": "skip"}}
    rules.write_text(
        rules_file([rule("skips", {"count": {**skips, "at_least": 6, "within": "1h"}})])
    )
    consent = event("profile.consent_updated", "maya", NOW, channel="push", granted=True)
    wrong_clock = event("usage.session_started", "maya", dt.datetime(2096, 1, 1, tzinfo=dt.UTC))
    skipped = [
        event("usage.feature_used", "maya", NOW + dt.timedelta(minutes=n), feature="skip")
        for n in range(6)
    ]
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in [consent, wrong_clock, *skipped]))
    decisions = tmp_path / "decisions.jsonl"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TRIGGERSTREAM_")}
    clean.update({k: v for k, v in os.environ.items() if k == "TRIGGERSTREAM_PURE"})
    result = forked_cli(
        "replay",
        "--rules",
        str(rules),
        str(events),
        "--decisions",
        str(decisions),
        *flags,
        env={**clean, **env},
    )
    assert result.returncode == 0, result.stderr
    return result.stderr, [orjson.loads(line) for line in decisions.read_bytes().splitlines()]


def test_replay_refuses_an_event_from_the_future_and_the_user_is_still_decided(
    tmp_path: Path,
) -> None:
    summary, decided = replay(tmp_path, "--now", "2026-12-01T12:30:00Z")
    assert "invalid by reason: from_future 1" in summary
    assert [(d["rule_id"], d["outcome"]) for d in decided] == [("skips", "emitted")]


def test_replay_of_the_future_as_read_then_accepts_it(tmp_path: Path) -> None:
    # Read in 2096, the session is on time; it moves maya's clock 70 years ahead, and
    # her skips of 2026 come too late to be counted within the hour.
    summary, decided = replay(tmp_path, "--now", "2096-01-01T00:00:00Z")
    assert "0 invalid" in summary
    assert decided == []


def test_max_future_is_a_setting(tmp_path: Path) -> None:
    summary, decided = replay(
        tmp_path, "--now", "2026-12-01T12:30:00Z", TRIGGERSTREAM_MAX_FUTURE="36500d"
    )
    assert "0 invalid" in summary
    assert decided == []
