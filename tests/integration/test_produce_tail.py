"""`produce`, `tail` and the Python publisher against a real broker."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from tests.conftest import run_cli
from triggerstream import kafka
from triggerstream.events import (
    INPUT_TOPICS,
    FeatureUsed,
    FeatureUsedProperties,
    InvalidEvent,
    NpsSubmitted,
    NpsSubmittedProperties,
)
from triggerstream.publish import EventPublisher
from triggerstream.settings import Settings
from triggerstream.topics import topics_dir

EXAMPLES = topics_dir() / "examples"


def example_events(topic: str) -> list[dict[str, Any]]:
    events = []
    for line in (EXAMPLES / f"{topic}.jsonl").read_bytes().splitlines():
        document = orjson.loads(line)
        document.pop("topic")
        events.append(document)
    return events


async def records(settings: Settings, topic: str, expected: int) -> list[Any]:
    """Every record of a topic, read from the beginning until `expected` arrived
    (for `expected` 0: what arrives within 3 seconds)."""
    consumer = AIOKafkaConsumer(
        settings.topic(topic),
        **settings.kafka_options(),
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    found: list[Any] = []
    try:
        for _ in range(40 if expected else 12):
            batches = await consumer.getmany(timeout_ms=250)
            found.extend(r for rs in batches.values() for r in rs)
            if len(found) >= expected:
                break
        found.extend(r for rs in (await consumer.getmany(timeout_ms=500)).values() for r in rs)
    finally:
        await consumer.stop()
    return found


@pytest.fixture
def topics(cli_env: dict[str, str]) -> None:
    created = run_cli("topics", "create", "--partitions", "4", env=cli_env)
    assert created.returncode == 0, created.stderr


@pytest.mark.usefixtures("topics")
@pytest.mark.parametrize("topic", INPUT_TOPICS)
async def test_every_example_is_produced_and_tailed_back_unchanged(
    topic: str, settings: Settings, cli_env: dict[str, str]
) -> None:
    sent = example_events(topic)

    produced = run_cli("produce", str(EXAMPLES / f"{topic}.jsonl"), env=cli_env)
    assert produced.returncode == 0, produced.stderr
    assert f"produced {len(sent)} event(s) to {settings.topic(topic)}" in produced.stderr

    tailed = run_cli(
        "tail",
        topic,
        "--from-beginning",
        "--timeout",
        "3",
        "--max-records",
        str(len(sent)),
        env=cli_env,
    )
    assert tailed.returncode == 0, tailed.stderr
    received = [orjson.loads(line) for line in tailed.stdout.splitlines()]
    key = lambda e: e["event_id"]  # noqa: E731
    assert sorted(received, key=key) == sorted(sent, key=key)

    # Keyed by user: each user's events on one partition, in the order of the file.
    by_partition: dict[int, set[bytes]] = defaultdict(set)
    order: dict[str, list[str]] = defaultdict(list)
    for record in await records(settings, topic, len(sent)):
        value = orjson.loads(record.value)
        assert record.key == value["user_id"].encode()
        by_partition[record.partition].add(record.key)
        order[value["user_id"]].append(value["event_id"])
    users = [k for keys in by_partition.values() for k in keys]
    assert len(users) == len(set(users)), "a user's events spread over partitions"
    for user, event_ids in order.items():
        assert event_ids == [e["event_id"] for e in sent if e["user_id"] == user]


@pytest.mark.usefixtures("topics")
async def test_a_file_with_invalid_lines_is_refused_whole_and_nothing_is_sent(
    tmp_path: Path, settings: Settings, cli_env: dict[str, str]
) -> None:
    valid = (EXAMPLES / "support-events.jsonl").read_text().splitlines()
    bad = [
        '{"topic": "support-events", "event_id": "x", "user_id": "u", "type": "nps_submitted",'
        ' "occurred_at": "2026-11-02T09:00:00Z", "properties": {"score": 12}}',
        "not json at all",
        '{"event_id": "y", "user_id": "u", "type": "nps_submitted",'
        ' "occurred_at": "2026-11-02T09:00:00Z", "properties": {"score": 3}}',
    ]
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join([valid[0], bad[0], valid[1], bad[1], bad[2]]) + "\n")

    result = run_cli("produce", str(path), env=cli_env)
    assert result.returncode == 1
    assert (
        "line 2: out_of_range: properties.score: input should be less than or equal to 10"
        in result.stderr
    )
    assert "line 4: not_json: event: invalid JSON" in result.stderr
    assert "line 5: missing_field: topic: field required" in result.stderr
    assert "3 invalid line(s); nothing was sent" in result.stderr
    assert await records(settings, "support-events", 1) == []


@pytest.mark.usefixtures("topics")
async def test_no_validate_sends_lines_as_they_are(
    tmp_path: Path, settings: Settings, cli_env: dict[str, str]
) -> None:
    path = tmp_path / "poison.jsonl"
    path.write_bytes(b'not json\n{"event_id": 5}\n')
    result = run_cli("produce", str(path), "--topic", "usage-events", "--no-validate", env=cli_env)
    assert result.returncode == 0, result.stderr
    values = sorted(r.value for r in await records(settings, "usage-events", 2))
    assert values == [b"not json", b'{"event_id": 5}']

    tailed = run_cli("tail", "usage-events", "--from-beginning", "--timeout", "2", env=cli_env)
    lines = [orjson.loads(line) for line in tailed.stdout.splitlines()]
    assert {"event_id": 5} in lines
    assert {"value_base64": "bm90IGpzb24="} in lines


@pytest.mark.usefixtures("topics")
async def test_tail_waits_for_new_records_and_stops_when_idle(
    settings: Settings, cli_env: dict[str, str]
) -> None:
    result = run_cli("tail", "offer-decisions", "--timeout", "1", env=cli_env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert "0 record(s)" in result.stderr


async def test_tail_of_a_missing_topic_says_how_to_create_it(cli_env: dict[str, str]) -> None:
    result = run_cli("tail", "usage-events", "--timeout", "1", env=cli_env)
    assert result.returncode == 2
    assert "does not exist" in result.stderr
    assert "triggerstream topics create" in result.stderr
    assert "Traceback" not in result.stderr


async def topic_names(settings: Settings) -> set[str]:
    async with kafka.Admin(settings) as admin:
        return set(await admin.topic_partitions())


async def test_produce_before_topics_create_is_refused_and_creates_nothing(
    settings: Settings, cli_env: dict[str, str]
) -> None:
    result = run_cli("produce", str(EXAMPLES / "usage-events.jsonl"), env=cli_env)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(
        f"triggerstream: nothing was sent: topic '{settings.topic('usage-events')}' "
        f"does not exist on {settings.kafka_bootstrap}; create the topics with "
        f"`triggerstream topics create` and the same prefix (--topic-prefix "
        f"{settings.topic_prefix} or TRIGGERSTREAM_TOPIC_PREFIX)"
    ), line
    # Not auto-created with the broker's partition count: topics create still works.
    assert not {n for n in await topic_names(settings) if n.startswith(settings.topic_prefix)}
    created = run_cli("topics", "create", env=cli_env)
    assert created.returncode == 0, created.stderr
    assert "OTHER PARTITION COUNT" not in created.stdout
    assert "0 already there" in created.stderr


@pytest.mark.usefixtures("topics")
async def test_a_mistyped_topic_prefix_is_refused_naming_the_prefix_the_topics_have(
    settings: Settings, cli_env: dict[str, str]
) -> None:
    typo = settings.topic_prefix.rstrip(".") + "x."
    result = run_cli(
        "produce", str(EXAMPLES / "support-events.jsonl"), "--topic-prefix", typo, env=cli_env
    )
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert f"topic '{typo}support-events' does not exist" in line
    assert f"they exist with the prefix '{settings.topic_prefix}'" in line
    assert line.endswith(": is the prefix right?")
    assert not {n for n in await topic_names(settings) if n.startswith(typo)}
    assert await records(settings, "support-events", 0) == []


@pytest.mark.usefixtures("topics")
async def test_the_publisher_validates_serializes_and_keys_by_user(settings: Settings) -> None:
    at = dt.datetime(2026, 11, 2, 9, 0, tzinfo=dt.UTC)
    async with EventPublisher(settings) as publisher:
        await publisher.publish(
            FeatureUsed(
                event_id="p-1",
                user_id="u-maya",
                occurred_at=at,
                properties=FeatureUsedProperties(feature="skip"),
            )
        )
        await publisher.publish(
            NpsSubmitted(
                event_id="p-2",
                user_id="u-sam",
                occurred_at=at,
                properties=NpsSubmittedProperties(score=4),
            )
        )
        await publisher.publish(
            {
                "event_id": "p-3",
                "user_id": "u-maya",
                "type": "feature_used",
                "occurred_at": "2026-11-02T09:01:00+01:00",
                "properties": {"feature": "skip"},
            },
            topic="usage-events",
        )
        with pytest.raises(InvalidEvent, match="timezone"):
            await publisher.publish(
                {
                    "event_id": "p-4",
                    "user_id": "u-maya",
                    "type": "feature_used",
                    "occurred_at": "2026-11-02T09:02:00",
                    "properties": {"feature": "skip"},
                },
                topic="usage-events",
            )

    usage = await records(settings, "usage-events", 2)
    assert [orjson.loads(r.value)["event_id"] for r in usage] == ["p-1", "p-3"]
    assert {r.key for r in usage} == {b"u-maya"}
    assert orjson.loads(usage[0].value) == {
        "event_id": "p-1",
        "user_id": "u-maya",
        "type": "feature_used",
        "occurred_at": "2026-11-02T09:00:00Z",
        "properties": {"feature": "skip", "quantity": 1},
    }
    support = await records(settings, "support-events", 1)
    assert [(r.key, orjson.loads(r.value)["properties"]) for r in support] == [
        (b"u-sam", {"score": 4})
    ]
