"""`triggerstream generate`: the month the benchmarks and tests build, as a file."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import orjson

from tests.forked_cli import forked_cli
from triggerstream.events import decode_line
from triggerstream.traffic import history


def env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("TRIGGERSTREAM_")}


def test_it_writes_the_month_traffic_history_draws_for_the_same_arguments() -> None:
    made = forked_cli(
        "generate", "--users", "200", "--days", "30", "--seed", "7", "--events", "3000", env=env()
    )
    assert made.returncode == 0, made.stderr
    assert made.stdout.encode() == b"".join(line + b"\n" for line in history(3000, 200, 7))
    assert made.stderr.startswith("generate: 3,000 events from 200 users over 30 days")


def test_users_and_days_make_two_events_a_user_and_day_every_one_valid(tmp_path: Path) -> None:
    out = tmp_path / "events.jsonl"
    args = ["generate", "--users", "50", "--days", "3", "--start", "2026-06-01T00:00:00Z"]
    made = forked_cli(*args, "--out", str(out), env=env())
    assert made.returncode == 0, made.stderr
    lines = out.read_bytes().splitlines()
    assert len(lines) == 300
    times = [decode_line(line)[1].at for line in lines]
    assert times == sorted(times)
    start = dt.datetime(2026, 6, 1, tzinfo=dt.UTC).timestamp()
    assert start <= times[0]
    assert times[-1] <= start + 4 * 86400
    assert {orjson.loads(line)["topic"] for line in lines} >= {"usage-events", "profile-events"}
    again = forked_cli(*args, env=env())
    assert again.stdout.encode() == out.read_bytes()  # the same seed, the same lines


def test_a_bad_argument_is_one_line_and_exit_2() -> None:
    for args in (
        ["--users", "0"],
        ["--days", "-1"],
        ["--events", "many"],
        ["--start", "yesterday"],
    ):
        made = forked_cli("generate", *args, env=env())
        assert made.returncode == 2, args
        assert made.stdout == ""
        assert made.stderr.startswith(f"triggerstream: {args[0]} ")
        assert made.stderr.count("\n") == 1
