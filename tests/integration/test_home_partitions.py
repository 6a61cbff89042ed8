"""Services on other Kafka clients (docs/contract.md section 12): profiles and sessions from a
Java service, skips, feedback and erasures from a confluent-kafka one with its default
partitioner (crc32: 7 users in 8 on another partition than murmur2 puts them). The
worker decides as replay does, with one worker and with two, and keeps no state of a
user off the user's home partition, erased or not."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.conftest import RunningBroker
from tests.engine_support import event, rule, rules_file
from tests.real_clients import (
    Message,
    confluent_produce,
    crc32_partition,
    java_config,
    java_produce,
)
from tests.worker_support import (
    WorkerProcess,
    assert_same_decisions,
    create_topics,
    read_topic,
    replayed,
    triggers,
    wait_for_records,
    write_lines,
)
from triggerstream import kafka
from triggerstream.records import DEAD_LETTER_TOPIC, DECISIONS_TOPIC
from triggerstream.settings import Settings
from triggerstream.topics import input_partitions, partition_of

USERS = [f"listener-{n:03d}" for n in range(120)]
ERASED = USERS[::3]


def envelope(line: dict[str, Any]) -> bytes:
    return orjson.dumps({k: v for k, v in line.items() if k != "topic"})


def java(broker: RunningBroker, settings: Settings, lines: Sequence[dict[str, Any]]) -> None:
    messages = [
        Message(settings.topic(line["topic"]), line["user_id"].encode(), envelope(line))
        for line in lines
    ]
    java_produce(broker.bootstrap, messages, config=java_config(broker.kind))


def librdkafka(settings: Settings, broker: RunningBroker, lines: Sequence[dict[str, Any]]) -> None:
    """confluent-kafka with its defaults: keys placed by crc32."""
    messages = [
        Message(settings.topic(line["topic"]), line["user_id"].encode(), envelope(line))
        for line in lines
    ]
    confluent_produce(broker.bootstrap, messages)


@pytest.mark.parametrize(
    "worker_count", [1, pytest.param(2, marks=pytest.mark.apache_only)], ids=["one", "two"]
)
def test_services_on_other_clients_get_the_decisions_of_replay(
    worker_count: int,
    settings: Settings,
    cli_env: dict[str, str],
    kafka_broker: RunningBroker,
    tmp_path: Path,
    workers: list[WorkerProcess],
) -> None:
    partitions = input_partitions()
    moved = [
        u for u in USERS if crc32_partition(u.encode(), partitions) != partition_of(u, partitions)
    ]
    assert len(moved) > len(USERS) * 3 // 4  # most users are split by the two partitioners
    rules = tmp_path / "rules.yaml"
    skips = {"type": "usage.feature_used", "where": {"feature": "skip"}}
    rules.write_text(
        rules_file(
            [
                rule(
                    "free-skip-limit",
                    {"count": {**skips, "at_least": 3, "within": "1h"}},
                    channels=["in_app"],
                    profile={"plan": "free"},
                    cooldown="0s",
                )
            ]
        )
    )
    create_topics(cli_env)
    for n in range(worker_count):
        workers.append(WorkerProcess(cli_env, rules, tmp_path, f"w{n}").start())
    wait_sharing(workers, partitions)

    t0 = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(minutes=30)

    def at(minutes: float) -> dt.datetime:
        return t0 + dt.timedelta(minutes=minutes)

    # A Java service: the plan and a session, each user on their home partition.
    profiles = [
        line
        for user in USERS
        for line in (
            event("profile.profile_updated", user, at(0), plan="free"),
            event("usage.session_started", user, at(0)),
        )
    ]
    java(kafka_broker, settings, profiles)
    wait_processed(workers, len(profiles))
    # A confluent-kafka service: three skips each.
    first_skips = [
        event("usage.feature_used", user, at(1) + dt.timedelta(seconds=s), feature="skip")
        for user in USERS
        for s in range(3)
    ]
    librdkafka(settings, kafka_broker, first_skips)
    offered = wait_for_records(settings, DECISIONS_TOPIC, len(USERS))
    assert {d["outcome"] for d in offered} == {"emitted"}
    # The notification service (confluent-kafka defaults) reports each offer dismissed.
    sent = {t["user_id"]: t for t in triggers(settings)}
    assert set(sent) == set(USERS)
    dismissals = [
        event(
            "feedback.offer_dismissed",
            user,
            at(2),
            trigger_id=sent[user]["trigger_id"],
            offer_id="premium",
            channel="in_app",
        )
        for user in USERS
    ]
    librdkafka(settings, kafka_broker, dismissals)
    # Three more skips, each a match: the same offer, dismissed, is held back each time.
    second_skips = [
        event("usage.feature_used", user, at(3) + dt.timedelta(seconds=s), feature="skip")
        for user in USERS
        for s in range(3)
    ]
    librdkafka(settings, kafka_broker, second_skips)
    wait_for_records(settings, DECISIONS_TOPIC, 4 * len(USERS))
    # A third of them ask to be forgotten, through the confluent-kafka service.
    erasures = [event("profile.erasure_requested", user, at(4)) for user in ERASED]
    librdkafka(settings, kafka_broker, erasures)
    got = wait_for_records(settings, DECISIONS_TOPIC, 4 * len(USERS) + len(ERASED))

    lines = [*profiles, *first_skips, *dismissals, *second_skips, *erasures]
    expected = replayed(write_lines(tmp_path / "events.jsonl", lines), tmp_path, cli_env, rules)
    assert sorted((d["outcome"], d["reason"]) for d in expected["decisions"]).count(
        ("suppressed", "dismissed")
    ) == 3 * len(USERS)
    assert_same_decisions(got, expected["decisions"])
    assert read_topic(settings, DEAD_LETTER_TOPIC) == []
    # Every stored state is on its user's home partition; an erased user has none left.
    stored = asyncio.run(latest_states(settings))
    assert {key for key, (_, value) in stored.items() if value is not None} == {
        u for u in USERS if u not in ERASED
    }
    for user, (partition, _) in stored.items():
        assert partition == partition_of(user, partitions), user
    tracked = sum(w.metric("triggerstream_users_tracked") for w in workers)
    assert tracked == len(USERS) - len(ERASED)
    misrouted = sum(w.metric("triggerstream_events_misrouted_total") for w in workers)
    moved_erased = [u for u in ERASED if u in moved]
    assert misrouted == 3 * len(moved) + len(moved) + 3 * len(moved) + len(moved_erased)
    warned = [w for w in workers if "set partitioner=murmur2_random" in w.log()]
    assert warned, "no worker said how to fix the producer"
    assert all("Traceback" not in w.log() for w in workers)


def wait_sharing(workers: list[WorkerProcess], partitions: int, timeout: float = 120) -> None:
    """Wait until every worker is ready and they own every partition between them, each
    some: the group has settled."""
    deadline = time.monotonic() + timeout
    owned: list[list[int]] = []
    while time.monotonic() < deadline:
        owned = [ready_partitions(w) for w in workers]
        every = sorted(p for mine in owned for p in mine)
        if all(owned) and every == list(range(partitions)):
            return
        time.sleep(0.2)
    raise AssertionError(f"the workers own {owned} after {timeout}s")


def ready_partitions(worker: WorkerProcess) -> list[int]:
    """The partitions a worker owns as its /readyz says (none while not ready)."""
    try:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{worker.web_port}/readyz", timeout=2
        ) as page:
            return list(json.loads(page.read())["partitions"])
    except OSError:
        return []


def wait_processed(workers: list[WorkerProcess], events: int, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while sum(w.processed() for w in workers) < events:
        assert time.monotonic() < deadline, f"fewer than {events} events processed"
        time.sleep(0.1)


async def latest_states(settings: Settings) -> dict[str, tuple[int, bytes | None]]:
    """Per user key of the users table's changelog: the partition and latest value."""
    latest: dict[str, tuple[int, bytes | None]] = {}
    changelog = settings.topic("triggerstream-users-changelog")
    async with kafka.reading(settings, [changelog]) as (consumer, assigned):
        await consumer.seek_to_beginning(*assigned)
        while batches := await consumer.getmany(timeout_ms=1500):
            for tp, records in batches.items():
                for record in records:
                    if record.key is not None:
                        latest[record.key.decode()] = (tp.partition, record.value)
    return latest


@pytest.mark.parametrize("client", ["confluent-kafka", "java"])
def test_a_2_mb_value_from_a_real_client_is_a_bounded_dead_letter(
    client: str,
    settings: Settings,
    cli_env: dict[str, str],
    kafka_broker: RunningBroker,
    tmp_path: Path,
    workers: list[WorkerProcess],
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(rules_file([rule("any", channels=["in_app"])]))
    create_topics(cli_env)
    worker = WorkerProcess(cli_env, rules, tmp_path).start()
    workers.append(worker)
    worker.wait_ready()
    now = dt.datetime.now(dt.UTC)
    line = event("usage.session_started", "big", now)
    value = envelope({**line, "pad": "x" * 2_000_000})
    after = [
        event("usage.session_started", "big", now),
        event("usage.feature_used", "big", now, feature="export"),
    ]
    topic = settings.topic("usage-events")
    messages = [
        Message(topic, b"big", value),
        *(Message(topic, b"big", envelope(e)) for e in after),
    ]
    if client == "java":
        config = java_config(kafka_broker.kind)
        java_produce(
            kafka_broker.bootstrap,
            messages,
            compression="zstd",
            max_request_bytes=4 << 20,
            config=config,
        )
    else:
        confluent_produce(
            kafka_broker.bootstrap, messages, compression="zstd", max_request_bytes=4 << 20
        )
    (letter,) = wait_for_records(settings, DEAD_LETTER_TOPIC, 1)
    assert (letter["reason_code"], letter["value_size"], letter["value_truncated"]) == (
        "too_large",
        len(value),
        True,
    )
    (decision,) = wait_for_records(settings, DECISIONS_TOPIC, 1)
    assert (decision["user_id"], decision["outcome"]) == ("big", "emitted")
    assert worker.process is not None
    assert worker.process.poll() is None
