"""`triggerstream worker` on a real broker: the same triggers as replay, dead letters,
rules that change while it runs."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import itertools
import os
import re
import signal
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TRIGGERSTREAM, free_port, run_cli
from tests.engine_support import event, rule, rules_file
from tests.scenarios import RULES, scenario_events
from tests.worker_support import (
    WorkerProcess,
    assert_same_decisions,
    assert_the_policy_beyond_the_anchors_is_at_work,
    create_topics,
    decision_keys,
    decisions,
    produce,
    replayed,
    send_raw,
    shifted,
    traffic,
    triggers,
    wait_for_first_record,
    wait_for_records,
    write_lines,
)
from triggerstream import kafka
from triggerstream.records import DEAD_LETTER_TOPIC, DECISIONS_TOPIC
from triggerstream.settings import Settings
from triggerstream.topics import load_topics

# The scenarios are dated around November 2026; moved 90 days back, every timer they set
# is due in the past, so the worker (on the wall clock) and replay (up to now) fire all.
BACK = dt.timedelta(days=-90)


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


# --- a stream of realistic traffic ---------------------------------------------------


def traffic_backlog(
    cli_env: dict[str, str], tmp_path: Path, events: int = 30_000, users: int = 1000
) -> dict[str, list[dict[str, Any]]]:
    """A month of traffic (by default 30,000 events, 1,000 users) waiting on fresh
    topics for the workers to start; what replay makes of it."""
    lines = traffic(tmp_path / "events.jsonl", events, users)
    create_topics(cli_env)
    produce(cli_env, lines)
    expected = replayed(lines, tmp_path, cli_env)
    assert_the_policy_beyond_the_anchors_is_at_work(expected["decisions"])
    return expected


def assert_same_outcome_as_replay(
    settings: Settings, expected: dict[str, list[dict[str, Any]]], timeout: float = 120
) -> None:
    """Every decision and trigger replay makes, each exactly once."""
    got = wait_for_records(
        settings, DECISIONS_TOPIC, len(expected["decisions"]), timeout, must=False
    )
    assert_same_decisions(got, expected["decisions"])
    assert decision_keys(got) == decision_keys(expected["decisions"])
    sent = triggers(settings)
    assert sorted(t["trigger_id"] for t in sent) == sorted(
        t["trigger_id"] for t in expected["triggers"]
    )


# Tansu answers ListOffsets(LATEST) with the first offset of the last batch + 1, so faust
# finds a worker's RocksDB ahead of the changelog after a restart or a rebalance and
# stops (ConsistencyError); STYLE.md: run these on Apache Kafka.
@pytest.mark.apache_only
def test_a_worker_stopped_mid_stream_resumes_without_losing_or_repeating_anything(
    settings: Settings, cli_env: dict[str, str], tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    expected = traffic_backlog(cli_env, tmp_path)
    assert len(expected["triggers"]) > 30
    worker = WorkerProcess(cli_env, RULES, tmp_path).start()
    workers.append(worker)
    worker.wait_ready()
    wait_for_first_record(settings, DECISIONS_TOPIC)
    assert worker.stop(signal.SIGTERM) == 0, worker.log()[-3000:]
    assert len(decisions(settings)) < len(expected["decisions"]), "stopped too late to tell"

    worker.start()
    worker.wait_ready(count=2)
    assert_same_outcome_as_replay(settings, expected)
    assert worker.stop(signal.SIGTERM) == 0
    assert "Traceback" not in worker.log()


@pytest.mark.apache_only
def test_two_workers_share_the_partitions_and_one_takes_over_when_the_other_is_killed(
    settings: Settings, cli_env: dict[str, str], tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    expected = traffic_backlog(cli_env, tmp_path)
    first = WorkerProcess(cli_env, RULES, tmp_path, "w1").start()
    second = WorkerProcess(cli_env, RULES, tmp_path, "w2").start()
    workers += [first, second]
    first.wait_ready()
    second.wait_ready()
    # Killed once it has begun: processed events whose offsets it may not have
    # committed, partitions it read in part.
    first.wait_processed(1)
    rebalances = len(second.ready_lines())
    first.kill()
    assert len(decisions(settings)) < len(expected["decisions"]), "killed too late to tell"

    # The survivor is given every partition, recovers the dead one's state from the
    # changelogs, and finishes the stream.
    second.wait_ready(count=rebalances + 1)
    assert "partitions [0, 1, 2, 3, 4, 5, 6, 7] ready" in second.ready_lines()[-1]
    got = wait_for_records(settings, DECISIONS_TOPIC, len(expected["decisions"]), must=False)
    if len(got) < len(expected["decisions"]):  # where the survivor stands, to see why
        with urllib.request.urlopen(f"http://127.0.0.1:{second.web_port}/metrics") as page:
            lag = [line for line in page.read().decode().splitlines() if "_lag{" in line]
        print("survivor's lag:", *lag, sep="\n")
    assert_same_decisions(got, expected["decisions"])
    # At-least-once: what the killed worker had sent but not yet stored may be sent again,
    # with the same ids. Nothing is lost, nothing is counted twice.
    assert set(decision_keys(got)) == set(decision_keys(expected["decisions"]))
    by_id: dict[str, list[tuple[Any, ...]]] = {}
    for key in decision_keys(got):
        by_id.setdefault(key[0], []).append(key)
    assert all(len(set(copies)) == 1 for copies in by_id.values()), "a repeat that differs"
    sent = {t["trigger_id"] for t in triggers(settings)}
    assert sent == {t["trigger_id"] for t in expected["triggers"]}
    assert second.stop(signal.SIGTERM) == 0


@pytest.mark.apache_only
def test_a_worker_that_joins_takes_over_partitions_begun_by_the_first(
    settings: Settings, cli_env: dict[str, str], tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    """Scaling out in the middle of a backlog: the newcomer is given partitions the
    first worker has read in part (some messages processed, some read and given back,
    offsets committed or not). Both finish, and together they decide what replay
    decides, each decision once. A backlog big enough that the first worker (about
    25,000 events/s) is still in it when the second has joined."""
    expected = traffic_backlog(cli_env, tmp_path, 150_000, 5000)
    first = WorkerProcess(cli_env, RULES, tmp_path, "w1").start()
    workers.append(first)
    first.wait_ready()
    first.wait_processed(200)
    # The first is held while the second starts (it would finish the backlog first):
    # frozen for less than a session timeout, then let go as the second joins.
    first.pause()
    second = WorkerProcess(cli_env, RULES, tmp_path, "w2").start()
    workers.append(second)
    try:
        second.wait_answering()
    finally:
        first.resume()
    second.wait_ready()
    assert first.processed() < 150_000, "joined too late to tell"
    first.wait_ready(count=2)  # gave half of its partitions to the second
    assert_same_outcome_as_replay(settings, expected)
    assert second.processed() > 0, "the second worker was given nothing left to do"
    assert first.stop(signal.SIGTERM) == 0
    assert second.stop(signal.SIGTERM) == 0


def test_a_timer_due_while_the_worker_is_down_fires_once_when_it_returns(
    settings: Settings, cli_env: dict[str, str], tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(rules_file([rule("later", delay="8s", channels=["in_app"])]))
    create_topics(cli_env)
    worker = WorkerProcess(cli_env, rules, tmp_path).start()
    workers.append(worker)
    worker.wait_ready()
    now = dt.datetime.now(dt.UTC)
    produce(
        cli_env,
        write_lines(
            tmp_path / "events.jsonl",
            [
                event("usage.session_started", "ava", now),
                event("usage.feature_used", "ava", now, feature="export"),
            ],
        ),
    )
    time.sleep(2)  # the events are processed and the timer set; it is not due yet
    assert worker.stop(signal.SIGTERM) == 0
    assert decisions(settings) == []
    time.sleep(max(0.0, (now + dt.timedelta(seconds=9) - dt.datetime.now(dt.UTC)).total_seconds()))

    worker.start()
    worker.wait_ready(count=2)
    (decision,) = wait_for_records(settings, DECISIONS_TOPIC, 1, timeout=30)
    assert decision["outcome"] == "emitted"
    (trigger,) = triggers(settings)
    assert dt.datetime.fromisoformat(trigger["triggered_at"]) == now.replace(
        microsecond=now.microsecond
    ) + dt.timedelta(seconds=8)
    time.sleep(3)  # more wake-ups come and go: still one
    assert len(decisions(settings)) == 1
    assert worker.stop(signal.SIGTERM) == 0


# --- bad input and changed rules -----------------------------------------------------

POISON: list[tuple[str, bytes, str]] = [
    ("usage-events", b"\xff\xfe not utf-8", "not_json"),
    ("usage-events", b"{not json", "not_json"),
    ("purchase-events", b"[1, 2, 3]", "not_object"),
    ("support-events", b'{"user_id": "u", "type": "nps_submitted"}', "missing_field"),
    (
        "usage-events",
        b'{"event_id": "p1", "user_id": "u", "type": "teleported", '
        b'"occurred_at": "2026-11-01T10:00:00Z"}',
        "unknown_type",
    ),
    (
        "usage-events",
        b'{"event_id": "p2", "user_id": "u", "type": "feature_used", '
        b'"occurred_at": "2026-11-01T10:00:00"}',
        "naive_timestamp",
    ),
    (
        "support-events",
        b'{"event_id": "p3", "user_id": "u", "type": "nps_submitted", '
        b'"occurred_at": "2026-11-01T10:00:00Z", "properties": {"score": 11}}',
        "out_of_range",
    ),
    (
        "profile-events",
        b'{"event_id": "p4", "user_id": 7, "type": "erasure_requested", '
        b'"occurred_at": "2026-11-01T10:00:00Z"}',
        "wrong_type",
    ),
    ("offer-feedback", b'{"a": ' * 600 + b"1" + b"}" * 600, "too_deep"),
    ("usage-events", b'{"pad": "' + b"x" * 70_000 + b'"}', "too_large"),
]


def test_poison_input_lands_in_the_dead_letter_topic_and_processing_goes_on(
    settings: Settings, cli_env: dict[str, str], tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(rules_file([rule("any", channels=["in_app"])]))
    create_topics(cli_env)
    worker = WorkerProcess(cli_env, rules, tmp_path).start()
    workers.append(worker)
    worker.wait_ready()
    now = dt.datetime.now(dt.UTC)
    asyncio.run(send_raw(settings, [(topic, b"u", value) for topic, value, _ in POISON]))
    produce(
        cli_env,
        write_lines(
            tmp_path / "after.jsonl",
            [
                event("usage.session_started", "u", now),
                event("usage.feature_used", "u", now, feature="export"),
            ],
        ),
    )
    dead = wait_for_records(settings, DEAD_LETTER_TOPIC, len(POISON))
    assert sorted((d["topic"], d["reason_code"]) for d in dead) == sorted(
        (topic, code) for topic, _, code in POISON
    )
    for letter in dead:
        assert letter["reason"]
        assert isinstance(letter["partition"], int)
        assert isinstance(letter["offset"], int)
        kept = base64.b64decode(letter["value_base64"])
        (original,) = [value for _, value, _ in POISON if value.startswith(kept)]
        assert letter["value_size"] == len(original)
        # At most the first 64 KiB of a value: a dead letter is always a record to send.
        assert letter["value_truncated"] == (len(original) > 64 * 1024)
        assert len(kept) == min(len(original), 64 * 1024)
    (decision,) = wait_for_records(settings, DECISIONS_TOPIC, 1)
    assert (decision["user_id"], decision["outcome"]) == ("u", "emitted")
    assert worker.process is not None
    assert worker.process.poll() is None
    assert "Traceback" not in worker.log()
    assert worker.stop(signal.SIGTERM) == 0


def test_a_changed_rules_file_applies_without_restart_and_a_broken_one_is_refused(
    settings: Settings, cli_env: dict[str, str], tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    rules = tmp_path / "rules.yaml"
    exports = {"event": {"type": "usage.feature_used", "where": {"feature": "export"}}}
    shares = {"event": {"type": "usage.feature_used", "where": {"feature": "share"}}}
    rules.write_text(rules_file([rule("on-export", exports, channels=["in_app"])]))
    create_topics(cli_env)
    worker = WorkerProcess(cli_env, rules, tmp_path).start()
    workers.append(worker)
    worker.wait_ready()
    first = hashlib.sha256(rules.read_bytes()).hexdigest()[:12]
    assert worker.rules_version() == first  # the same version as the file's decisions

    def use(user: str, feature: str, name: str) -> None:
        now = dt.datetime.now(dt.UTC)
        produce(
            cli_env,
            write_lines(
                tmp_path / f"{name}.jsonl",
                [
                    event("usage.session_started", user, now),
                    event("usage.feature_used", user, now, feature=feature),
                ],
            ),
        )

    use("ann", "share", "1")  # no rule for sharing yet
    use("ann", "export", "2")
    wait_for_records(settings, DECISIONS_TOPIC, 1)

    rules.write_text(rules_file([rule("on-share", shares, channels=["in_app"])]))
    wait_for_log(worker, "rules reloaded")
    second = hashlib.sha256(rules.read_bytes()).hexdigest()[:12]
    assert worker.rules_version() == second
    use("bob", "share", "3")
    use("bob", "export", "4")  # the old rule is gone
    wait_for_records(settings, DECISIONS_TOPIC, 2)

    rules.write_text("rules: [{id: broken, offer: nowhere}]\n")
    wait_for_log(worker, "refused")
    use("cat", "share", "5")  # the running rules stay
    got = wait_for_records(settings, DECISIONS_TOPIC, 3)
    assert sorted((d["user_id"], d["rule_id"], d["rules_version"]) for d in got) == [
        ("ann", "on-export", first),
        ("bob", "on-share", second),
        ("cat", "on-share", second),
    ]
    assert worker.rules_version() == second
    assert "rules[0].offer" in worker.log() or "nowhere" in worker.log()
    assert worker.stop(signal.SIGTERM) == 0


def wait_for_log(worker: WorkerProcess, text: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in worker.log():
            return
        time.sleep(0.2)
    raise AssertionError(f"{text!r} not in the worker's log:\n{worker.log()[-3000:]}")


# --- refusing to start ---------------------------------------------------------------


def test_the_worker_refuses_to_start_without_its_topics(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    result = run_cli(
        "worker", "--rules", str(RULES), "--data-dir", str(tmp_path / "d"), env=cli_env
    )
    assert result.returncode == 2
    assert "missing topic(s)" in result.stderr
    assert "triggerstream topics create" in result.stderr


def test_the_worker_refuses_input_topics_with_unequal_partitions(
    settings: Settings, cli_env: dict[str, str], tmp_path: Path
) -> None:
    purchases = [spec for spec in load_topics() if spec.name == "purchase-events"]
    asyncio.run(kafka.create_topics(settings.model_copy(update={"partitions": 6}), purchases))
    create_topics({**cli_env, "TRIGGERSTREAM_PARTITIONS": "4"}, expect_failure=True)
    result = run_cli(
        "worker", "--rules", str(RULES), "--data-dir", str(tmp_path / "d"), env=cli_env
    )
    assert result.returncode == 2
    assert "equal partition counts" in result.stderr
    assert f"{settings.topic('purchase-events')} 6" in result.stderr
    assert f"{settings.topic('usage-events')} 4" in result.stderr


def test_the_worker_refuses_state_changelogs_made_for_another_partition_count(
    settings: Settings, cli_env: dict[str, str], tmp_path: Path
) -> None:
    create_topics(cli_env)  # 8 partitions
    ticks = next(spec for spec in load_topics() if spec.name == "timer-ticks")
    users_changelog = ticks.model_copy(update={"name": "triggerstream-users-changelog"})
    asyncio.run(
        kafka.create_topics(settings.model_copy(update={"partitions": 3}), [users_changelog])
    )
    result = run_cli(
        "worker", "--rules", str(RULES), "--data-dir", str(tmp_path / "d"), env=cli_env
    )
    assert result.returncode == 2
    assert f"{settings.topic('triggerstream-users-changelog')} 3" in result.stderr
    assert "as many partitions as the input topics (8)" in result.stderr


def test_the_worker_refuses_an_invalid_rules_file(cli_env: dict[str, str], tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules: [{id: r1, offer: nowhere}]\n")
    result = run_cli("worker", "--rules", str(rules), env=cli_env)
    assert result.returncode == 2
    assert "valid rules file" in result.stderr
    assert str(rules) in result.stderr


@pytest.mark.own_broker
def test_a_restart_on_kept_state_on_the_embedded_broker_is_one_line_with_the_fix(
    tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    """Tansu answers where a log ends as the first offset of its last batch + 1, so a
    worker restarted on its RocksDB state finds that state ahead of the changelog. faust
    crashed with ConsistencyError, a traceback and a wrong hint; now it is our line."""
    port = free_port()
    broker = subprocess.Popen(
        [TRIGGERSTREAM, "broker", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRIGGERSTREAM_")}
        env["TRIGGERSTREAM_KAFKA_BOOTSTRAP"] = f"127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while run_cli("topics", "create", env=env).returncode != 0:
            assert time.monotonic() < deadline, "the embedded broker did not start"
            time.sleep(0.2)
        worker = WorkerProcess(env, RULES, tmp_path).start()
        workers.append(worker)
        worker.wait_ready()
        now = dt.datetime.now(dt.UTC)
        for round_ in range(2):  # two batches: each user's state written twice
            produce(
                env,
                write_lines(
                    tmp_path / f"skips-{round_}.jsonl",
                    (
                        event("usage.feature_used", f"u{n % 40}", now, feature="skip")
                        for n in range(200)
                    ),
                ),
            )
            worker.wait_processed(200 * (round_ + 1))
        assert worker.stop() == 0

        began = len(worker.log())
        worker.start()  # the same data directory
        assert worker.process is not None
        status = worker.process.wait(timeout=120)
        output = worker.log()[began:]
        assert status == 2, output[-3000:]
        assert "Traceback" not in output
        assert "ConsistencyError" not in output
        assert "removed data" not in output
        last = output.strip().splitlines()[-1]
        data_dir = worker.folder / "data"
        assert last.startswith(f"triggerstream: the state kept in {data_dir} has read "), last
        assert "the embedded broker (Tansu) answers where a log ends inexactly" in last
        assert f"Remove {data_dir} and start again" in last
        assert "or use Apache Kafka for state that survives restarts" in last
    finally:
        broker.terminate()
        broker.wait(10)


_LOGGED_AT = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\]")


def test_a_worker_with_default_settings_is_ready_within_10_seconds_and_never_silent_long(
    cli_env: dict[str, str], tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    """It took 19 s with a 30 s session timeout, 15 s of them without a word."""
    create_topics(cli_env)
    worker = WorkerProcess(cli_env, RULES, tmp_path)
    del worker.env["TRIGGERSTREAM_SESSION_TIMEOUT"]  # the default, as a user runs it
    workers.append(worker)
    began = time.monotonic()
    worker.start()
    worker.wait_ready(timeout=60)
    took = time.monotonic() - began
    assert took < 10, f"ready after {took:.1f} s:\n{worker.log()[-3000:]}"
    # While it waits, it says what for, at least every few seconds.
    before_ready = worker.log().split("ready:", 1)[0].splitlines()
    stamps = [
        dt.datetime.strptime(found.group(1), "%Y-%m-%d %H:%M:%S,%f")
        for found in map(_LOGGED_AT.match, before_ready)
        if found
    ]
    gaps = [(later - earlier).total_seconds() for earlier, later in itertools.pairwise(stamps)]
    assert max(gaps) < 4, f"{max(gaps):.1f} s without a log line:\n{worker.log()[-3000:]}"
    if took > 4:
        assert "waiting to join consumer group" in worker.log()
