"""Input at the edge (docs/contract.md section 12) read by a real `triggerstream worker`: values
of any size, tombstones, events from the future, headers, records the broker refuses,
messages off their user's home partition, and inputs that arrive late across topics."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from tests.engine_support import event, rule, rules_file
from tests.worker_support import (
    WorkerProcess,
    assert_same_decisions,
    create_topics,
    decisions,
    replayed,
    wait_for_records,
    write_lines,
)
from triggerstream import kafka
from triggerstream.core.state import UserState
from triggerstream.records import CHANNEL_TOPICS, DEAD_LETTER_TOPIC, DECISIONS_TOPIC
from triggerstream.settings import Settings
from triggerstream.topics import load_topics, partition_of
from triggerstream.worker import codec

PARTITIONS = 8
Message = tuple[str, bytes | None, bytes | None, list[tuple[str, bytes]], int | None]
"""(topic, key, value, headers, partition or None for the producer's choice)."""


async def send(settings: Settings, messages: list[Message], **options: Any) -> None:
    """Publish with aiokafka, each message to the partition given (or the key's)."""
    producer = AIOKafkaProducer(**settings.kafka_options(), acks="all", **options)
    await producer.start()
    try:
        for topic, key, value, headers, partition in messages:
            await producer.send_and_wait(
                settings.topic(topic), value, key=key, headers=headers, partition=partition
            )
    finally:
        await producer.stop()


def envelope(line: dict[str, Any]) -> bytes:
    return orjson.dumps({k: v for k, v in line.items() if k != "topic"})


def records_with_headers(
    settings: Settings, name: str
) -> list[tuple[dict[str, Any], dict[str, bytes]]]:
    """Every record of a topic with its headers."""

    async def read() -> list[tuple[dict[str, Any], dict[str, bytes]]]:
        found: list[tuple[dict[str, Any], dict[str, bytes]]] = []
        async with kafka.reading(settings, [settings.topic(name)]) as (consumer, assigned):
            await consumer.seek_to_beginning(*assigned)
            while batches := await consumer.getmany(timeout_ms=1500):
                for records in batches.values():
                    found.extend((orjson.loads(r.value), dict(r.headers)) for r in records)
        return found

    return asyncio.run(read())


def start_worker(
    env: dict[str, str], rules: Path, folder: Path, workers: list[WorkerProcess], **settings: str
) -> WorkerProcess:
    worker = WorkerProcess({**env, **settings}, rules, folder)
    workers.append(worker.start())
    worker.wait_ready()
    return worker


def any_feature(folder: Path) -> Path:
    path = folder / "rules.yaml"
    path.write_text(rules_file([rule("any", channels=["in_app"])]))
    return path


def test_values_of_any_size_and_tombstones_become_bounded_dead_letters(
    settings: Settings, cli_env: dict[str, str], tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    create_topics(cli_env)
    worker = start_worker(cli_env, any_feature(tmp_path), tmp_path, workers)
    now = dt.datetime.now(dt.UTC)
    base = event("usage.session_started", "big", now)

    def padded(size: int) -> bytes:
        line = {**base, "event_id": f"pad-{size}"}
        value = envelope({**line, "pad": "x" * (size - len(envelope({**line, "pad": ""})))})
        assert len(value) == size
        return value

    limit = 64 * 1024
    sizes = [limit - 1, limit, limit + 1, 450_000, 2_000_000]
    home = partition_of("big", PARTITIONS)
    big: list[Message] = [("usage-events", b"big", padded(size), [], home) for size in sizes]
    tombstone: Message = ("profile-events", b"big", None, [], home)
    # gzip: the 2 MB value is a few KiB on the wire, under the broker's 1 MiB limit.
    asyncio.run(
        send(settings, [*big, tombstone], compression_type="gzip", max_request_size=4 << 20)
    )
    later = [
        event("usage.session_started", "u", now),
        event("usage.feature_used", "u", now, feature="export"),
    ]
    asyncio.run(send(settings, [(line["topic"], b"u", envelope(line), [], None) for line in later]))

    dead = wait_for_records(settings, DEAD_LETTER_TOPIC, 4)
    by_size = {letter.get("value_size"): letter for letter in dead}
    assert sorted(d["reason_code"] for d in dead) == ["tombstone", *["too_large"] * 3]
    for size in (limit + 1, 450_000, 2_000_000):
        letter = by_size[size]
        kept = base64.b64decode(letter["value_base64"])
        assert (len(kept), letter["value_truncated"]) == (limit, True)
        assert padded(size).startswith(kept)
        assert letter["value_text"] == kept.decode()
        assert f"event is {size} bytes" in letter["reason"]
    (letter,) = [d for d in dead if d["reason_code"] == "tombstone"]
    assert (letter["topic"], letter["value_base64"]) == ("profile-events", "")
    # The dead letters are keyed by the user id their value names.
    keys = asyncio.run(dead_letter_keys(settings))
    assert keys == [b"big"] * 4
    (decision,) = wait_for_records(settings, DECISIONS_TOPIC, 1)
    assert decision["user_id"] == "u"
    # Up to 64 KiB is an event: the two session starts of `big` were processed.
    assert worker.metric("triggerstream_events_total") == 4
    assert worker.process is not None
    assert worker.process.poll() is None
    assert "Traceback" not in worker.log()


async def dead_letter_keys(settings: Settings) -> list[bytes | None]:
    keys: list[bytes | None] = []
    async with kafka.reading(settings, [settings.topic(DEAD_LETTER_TOPIC)]) as (consumer, tps):
        await consumer.seek_to_beginning(*tps)
        while batches := await consumer.getmany(timeout_ms=1500):
            keys.extend(r.key for records in batches.values() for r in records)
    return keys


def test_an_event_from_the_future_is_refused_and_does_not_silence_its_user(
    settings: Settings, cli_env: dict[str, str], tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    rules = tmp_path / "rules.yaml"
    skips = {"type": "usage.feature_used", "where": {"feature": "skip"}}
    rules.write_text(
        rules_file(
            [
                rule(
                    "skips",
                    {"count": {**skips, "at_least": 6, "within": "1h"}},
                    channels=["in_app"],
                )
            ]
        )
    )
    create_topics(cli_env)
    worker = start_worker(cli_env, rules, tmp_path, workers)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    wrong_clock = event("usage.session_started", "maya", dt.datetime(2096, 1, 1, tzinfo=dt.UTC))
    lines = [
        wrong_clock,
        event("usage.session_started", "maya", now),
        *(
            event("usage.feature_used", "maya", now + dt.timedelta(seconds=n), feature="skip")
            for n in range(6)
        ),
    ]
    asyncio.run(
        send(settings, [(line["topic"], b"maya", envelope(line), [], None) for line in lines])
    )
    (decision,) = wait_for_records(settings, DECISIONS_TOPIC, 1)
    assert (decision["user_id"], decision["rule_id"], decision["outcome"]) == (
        "maya",
        "skips",
        "emitted",
    )
    (letter,) = wait_for_records(settings, DEAD_LETTER_TOPIC, 1)
    assert letter["reason_code"] == "from_future"
    assert "2096-01-01T00:00:00+00:00" in letter["reason"]
    assert "TRIGGERSTREAM_MAX_FUTURE" in letter["reason"]
    assert "from_future" in worker.metrics_text()
    # replay, as read now, refuses it the same way and decides the same
    events = write_lines(tmp_path / "events.jsonl", lines)
    assert_same_decisions(
        decisions(settings), replayed(events, tmp_path, cli_env, rules)["decisions"]
    )


def test_input_headers_reach_the_records_the_event_causes(
    settings: Settings, cli_env: dict[str, str], tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    create_topics(cli_env)
    start_worker(cli_env, any_feature(tmp_path), tmp_path, workers)
    now = dt.datetime.now(dt.UTC)
    trace = [("traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")]
    lines = [
        event("usage.session_started", "ann", now),
        event("usage.feature_used", "ann", now, feature="export"),
    ]
    # The second one reaches another partition than ann's home: forwarded, headers kept.
    elsewhere = (partition_of("ann", PARTITIONS) + 1) % PARTITIONS
    asyncio.run(
        send(
            settings,
            [
                (lines[0]["topic"], b"ann", envelope(lines[0]), [], None),
                (lines[1]["topic"], b"ann", envelope(lines[1]), trace, elsewhere),
            ],
        )
    )
    wait_for_records(settings, DECISIONS_TOPIC, 1)
    ((decision, decision_headers),) = records_with_headers(settings, DECISIONS_TOPIC)
    ((trigger, trigger_headers),) = records_with_headers(settings, CHANNEL_TOPICS["in_app"])
    assert decision["outcome"] == "emitted"
    assert decision_headers == dict(trace)
    assert trigger_headers == dict(trace)
    assert trigger["caused_by"]["event_id"] == lines[1]["event_id"]


def test_a_record_the_broker_refuses_is_dead_lettered_and_the_worker_goes_on(
    settings: Settings, cli_env: dict[str, str], tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    create_topics(cli_env)
    worker = start_worker(cli_env, any_feature(tmp_path), tmp_path, workers)
    now = dt.datetime.now(dt.UTC)
    first = [
        event("usage.session_started", "ann", now),
        event("usage.feature_used", "ann", now, feature="export"),
    ]
    # A 1.1 MB header: the event is fine, but its decision and trigger carry the header
    # and are over the worker's 1 MiB producer limit.
    huge = [("baggage", b"b" * 1_100_000)]
    asyncio.run(
        send(
            settings,
            [
                (first[0]["topic"], b"ann", envelope(first[0]), [], None),
                (first[1]["topic"], b"ann", envelope(first[1]), huge, None),
            ],
            compression_type="gzip",
            max_request_size=4 << 20,
        )
    )
    after = event("usage.feature_used", "ann", now, feature="share")
    asyncio.run(send(settings, [(after["topic"], b"ann", envelope(after), [], None)]))
    refused = wait_for_records(settings, DEAD_LETTER_TOPIC, 2)
    assert sorted(letter["reason_code"] for letter in refused) == ["output_refused"] * 2
    for letter in refused:
        assert "MessageSizeTooLargeError" in letter["reason"]
        assert letter["topic"] == "usage-events"
        assert isinstance(letter["offset"], int)
        assert orjson.loads(base64.b64decode(letter["value_base64"]))["user_id"] == "ann"
    # The next event is decided and sent as usual.
    (decision,) = wait_for_records(settings, DECISIONS_TOPIC, 1)
    assert decision["trigger_id"] is not None
    assert worker.metric("triggerstream_outputs_failed_total") == 2
    assert "was refused and is not sent" in worker.log()
    assert worker.process is not None
    assert worker.process.poll() is None


def test_messages_off_their_users_home_partition_are_decided_there(
    settings: Settings, cli_env: dict[str, str], tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    """Skips that reach another partition than the user's (a producer with another
    partitioner, a null key, a key other than the user_id) meet the user's session and
    consent on the home partition: the decisions are replay's, and no user has state on
    a second partition."""
    rules = tmp_path / "rules.yaml"
    skips = {"type": "usage.feature_used", "where": {"feature": "skip"}}
    rules.write_text(
        rules_file(
            [
                rule(
                    "skips",
                    {"count": {**skips, "at_least": 3, "within": "1h"}},
                    channels=["in_app"],
                )
            ]
        )
    )
    create_topics(cli_env)
    worker = start_worker(cli_env, rules, tmp_path, workers)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    users = [f"user-{n}" for n in range(24)]
    sessions = [event("usage.session_started", user, now) for user in users]
    asyncio.run(
        send(
            settings, [(s["topic"], s["user_id"].encode(), envelope(s), [], None) for s in sessions]
        )
    )
    skipped = []
    messages: list[Message] = []
    for n, user in enumerate(users):
        elsewhere = (partition_of(user, PARTITIONS) + 1 + n % 7) % PARTITIONS
        key = [user.encode(), None, b"someone-else"][n % 3]
        for second in range(1, 4):
            line = event(
                "usage.feature_used", user, now + dt.timedelta(seconds=second), feature="skip"
            )
            skipped.append(line)
            messages.append((line["topic"], key, envelope(line), [], elsewhere))
    asyncio.run(send(settings, messages))
    wait_for_records(settings, DECISIONS_TOPIC, len(users))
    events = write_lines(tmp_path / "events.jsonl", [*sessions, *skipped])
    expected = replayed(events, tmp_path, cli_env, rules)["decisions"]
    assert len(expected) == len(users)
    assert_same_decisions(decisions(settings), expected)
    text = worker.metrics_text()
    for cause in ("partitioner", "null_key", "key_mismatch"):  # a third of the users each
        series = f'triggerstream_events_misrouted_total{{cause="{cause}",topic="usage-events"}}'
        assert f"{series} {len(users):.1f}" in text, cause
    assert worker.metric("triggerstream_events_misrouted_total") == 3 * len(users)
    assert worker.metric("triggerstream_users_tracked") == len(users)
    log = worker.log()
    assert log.count("set partitioner=murmur2_random") == 1
    assert log.count("key every message with its user_id") == 2  # null_key, key_mismatch


def test_with_max_idle_a_slower_producers_earlier_events_are_decided_in_time_order(
    settings: Settings, cli_env: dict[str, str], tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    """The profiles (free plan) are dated ten minutes before the skips but reach Kafka
    1.4 s after them. With MAX_IDLE=5 the skips wait for them, as replay orders them."""
    rules = tmp_path / "rules.yaml"
    skips = {"type": "usage.feature_used", "where": {"feature": "skip"}}
    rules.write_text(
        rules_file(
            [
                rule(
                    "skips",
                    {"count": {**skips, "at_least": 2, "within": "1h"}},
                    channels=["in_app"],
                    profile={"plan": "free"},
                )
            ]
        )
    )
    create_topics(cli_env)
    start_worker(cli_env, rules, tmp_path, workers, TRIGGERSTREAM_MAX_IDLE="5")
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    users = [f"listener-{n}" for n in range(40)]
    profiles = [
        event("profile.profile_updated", user, now - dt.timedelta(minutes=10), plan="free")
        for user in users
    ]
    usage = [
        line
        for user in users
        for line in (
            event("usage.session_started", user, now),
            event("usage.feature_used", user, now, feature="skip"),
            event("usage.feature_used", user, now + dt.timedelta(seconds=1), feature="skip"),
        )
    ]

    def messages(lines: list[dict[str, Any]]) -> list[Message]:
        return [
            (line["topic"], line["user_id"].encode(), envelope(line), [], None) for line in lines
        ]

    asyncio.run(send(settings, messages(usage)))
    time.sleep(1.4)
    asyncio.run(send(settings, messages(profiles)))
    wait_for_records(settings, DECISIONS_TOPIC, len(users))
    events = write_lines(tmp_path / "events.jsonl", [*profiles, *usage])
    expected = replayed(events, tmp_path, cli_env, rules)["decisions"]
    assert len(expected) == len(users)
    assert_same_decisions(decisions(settings), expected)


@pytest.mark.apache_only
def test_a_state_kept_off_its_users_home_partition_is_deleted_at_start(
    settings: Settings, cli_env: dict[str, str], tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    """A version that processed misrouted messages where they landed left a second state
    of the user on another partition: never read again, it would keep an erased user's
    data and fire their timers twice. The worker deletes it (RocksDB and changelog)."""
    create_topics(cli_env)
    ticks = next(spec for spec in load_topics() if spec.name == "timer-ticks")
    changelog = settings.topic("triggerstream-users-changelog")
    asyncio.run(
        kafka.create_topics(
            settings, [ticks.model_copy(update={"name": "triggerstream-users-changelog"})]
        )
    )
    home = partition_of("stray", PARTITIONS)
    stray = UserState(first_name="Maya", consent={"push": True})
    asyncio.run(
        send_to(settings, changelog, [(b"stray", codec.encode(stray, {}), (home + 3) % PARTITIONS)])
    )
    worker = start_worker(cli_env, any_feature(tmp_path), tmp_path, workers)
    assert "deleted the state of 1 user(s) kept off their home partition" in worker.log()
    assert worker.metric("triggerstream_users_tracked") == 0
    kept = asyncio.run(last_values(settings, changelog))
    assert kept == {b"stray": None}


async def send_to(settings: Settings, topic: str, messages: list[tuple[bytes, bytes, int]]) -> None:
    producer = AIOKafkaProducer(**settings.kafka_options(), acks="all")
    await producer.start()
    try:
        for key, value, partition in messages:
            await producer.send_and_wait(topic, value, key=key, partition=partition)
    finally:
        await producer.stop()


async def last_values(settings: Settings, topic: str) -> dict[bytes | None, bytes | None]:
    """The latest value of each key of a topic (None: a tombstone)."""
    latest: dict[bytes | None, bytes | None] = {}
    async with kafka.reading(settings, [topic]) as (consumer, assigned):
        await consumer.seek_to_beginning(*assigned)
        while batches := await consumer.getmany(timeout_ms=1500):
            for records in batches.values():
                latest.update((r.key, r.value) for r in records)
    return latest
