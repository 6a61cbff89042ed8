"""`triggerstream worker` on a real broker: the same triggers as replay, dead letters,
rules that change while it runs."""

from __future__ import annotations

import datetime as dt
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.conftest import run_cli
from tests.scenarios import RULES, scenario_events
from tests.worker_support import (
    WorkerProcess,
    create_topics,
    decisions,
    produce,
    shifted,
    triggers,
    wait_for_records,
    write_lines,
)
from triggerstream.records import DECISIONS_TOPIC
from triggerstream.settings import Settings

# The scenarios are dated around November 2026; moved 90 days back, every timer they set
# is due in the past, so the worker (on the wall clock) and replay (up to now) fire all.
BACK = dt.timedelta(days=-90)


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[list[WorkerProcess]]:
    """Workers started by a test; none outlives it."""
    started: list[WorkerProcess] = []
    yield started
    for worker in started:
        worker.ensure_stopped()


def replayed(events: Path, folder: Path, env: dict[str, str]) -> dict[str, list[dict[str, Any]]]:
    decisions_path = folder / "replay-decisions.jsonl"
    result = run_cli(
        "replay",
        "--rules",
        str(RULES),
        str(events),
        "--decisions",
        str(decisions_path),
        "--until",
        dt.datetime.now(dt.UTC).isoformat(),
        env=env,
    )
    assert result.returncode == 0, result.stderr
    return {
        "triggers": [orjson.loads(line) for line in result.stdout.splitlines()],
        "decisions": [orjson.loads(line) for line in decisions_path.read_bytes().splitlines()],
    }


def decision_keys(records: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return sorted(
        (d["decision_id"], d["user_id"], d["rule_id"], d["outcome"], d["reason"], d["trigger_id"])
        for d in records
    )


def without_emitted_at(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(
        ({k: v for k, v in t.items() if k != "emitted_at"} for t in records),
        key=lambda t: t["trigger_id"],
    )


def test_worker_triggers_what_replay_triggers_for_the_design_scenarios(
    settings: Settings, cli_env: dict[str, str], tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    events = write_lines(tmp_path / "events.jsonl", (shifted(e, BACK) for e in scenario_events()))
    create_topics(cli_env)
    produce(cli_env, events)  # a backlog the worker finds when it starts
    worker = WorkerProcess(cli_env, RULES, tmp_path).start()
    workers.append(worker)
    worker.wait_ready()
    expected = replayed(events, tmp_path, cli_env)
    assert len(expected["triggers"]) >= 10, "the scenarios should trigger plenty"

    got = wait_for_records(settings, DECISIONS_TOPIC, len(expected["decisions"]))
    assert decision_keys(got) == decision_keys(expected["decisions"])
    sent = triggers(settings)
    assert {(t["trigger_id"], t["rule_id"], t["user_id"], t["channel"]) for t in sent} == {
        (t["trigger_id"], t["rule_id"], t["user_id"], t["channel"]) for t in expected["triggers"]
    }
    assert len(sent) == len(expected["triggers"]), "a trigger id was sent twice"
    # Everything but the wall clock agrees: offers, items, reasons, personalization.
    assert without_emitted_at(sent) == without_emitted_at(expected["triggers"])
    for trigger in sent:
        emitted = dt.datetime.fromisoformat(trigger["emitted_at"])
        assert emitted > dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)

    assert worker.stop(signal.SIGTERM) == 0
    assert "Traceback" not in worker.log()
