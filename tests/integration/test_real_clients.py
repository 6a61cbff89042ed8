"""Producers other than our own, as product services run them: confluent-kafka
(librdkafka) and the Java client. Where their keys land, and whether the worker reads
every record batch they write (docs/contract.md section 12)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import random
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from aiokafka import TopicPartition
from aiokafka.admin import NewTopic
from aiokafka.client import AIOKafkaClient
from aiokafka.protocol.fetch import FetchRequest
from aiokafka.record.memory_records import MemoryRecords

from tests.conftest import RunningBroker
from tests.engine_support import event, rule, rules_file
from tests.real_clients import (
    CODECS,
    Codec,
    Delivered,
    Message,
    NotDelivered,
    confluent_produce,
    crc32_partition,
    java_config,
    java_produce,
)
from tests.worker_support import WorkerProcess, create_topics, read_topic, wait_for_records
from triggerstream import kafka
from triggerstream.records import DEAD_LETTER_TOPIC, DECISIONS_TOPIC
from triggerstream.settings import Settings
from triggerstream.topics import input_partitions, load_topics, partition_of


@dataclass(frozen=True)
class Landed:
    """A record as aiokafka's consumer reads it back."""

    partition: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]


def read_back(settings: Settings, topic: str, expected: int, within: float = 30) -> list[Landed]:
    """The records of a topic (its name on the broker), from the beginning, once
    ``expected`` have arrived (or what there is after ``within`` seconds)."""

    async def read() -> list[Landed]:
        found: list[Landed] = []
        async with kafka.reading(settings, [topic]) as (consumer, assigned):
            await consumer.seek_to_beginning(*assigned)
            deadline = time.monotonic() + within
            while len(found) < expected and time.monotonic() < deadline:
                batches = await consumer.getmany(timeout_ms=500)
                found += [
                    Landed(r.partition, r.key, r.value, tuple(r.headers))
                    for records in batches.values()
                    for r in records
                ]
        return found

    return asyncio.run(read())


CLIENTS = ("java", "confluent-kafka")


def send(
    broker: RunningBroker,
    client: str,
    messages: Sequence[Message],
    compression: Codec = "none",
    max_request_bytes: int | None = None,
    config: dict[str, str] | None = None,
) -> list[Delivered]:
    """Send with one real client and its defaults (the Java client with what Tansu
    needs), plus ``config``."""
    if client == "java":
        return java_produce(
            broker.bootstrap,
            messages,
            compression=compression,
            max_request_bytes=max_request_bytes,
            config={**java_config(broker.kind), **(config or {})},
        )
    return confluent_produce(
        broker.bootstrap,
        messages,
        compression=compression,
        max_request_bytes=max_request_bytes,
        config=config,
    )


# --- where a key lands -----------------------------------------------------------------

USERS = [f"u-{n:04d}" for n in range(200)]


def test_each_client_puts_a_key_where_its_partitioner_says(
    settings: Settings, kafka_broker: RunningBroker
) -> None:
    """The Java client and aiokafka place a user where `partition_of` (murmur2) says;
    confluent-kafka's default (crc32) puts most users elsewhere, unless it is set to
    `murmur2_random`."""
    inputs = [spec for spec in load_topics() if spec.direction == "in"]
    asyncio.run(kafka.create_topics(settings, inputs))
    partitions = input_partitions()

    topics = {
        "aiokafka": "usage-events",
        "java": "purchase-events",
        "confluent-kafka": "support-events",
        "confluent-kafka murmur2_random": "profile-events",
    }

    def keyed(client: str) -> list[Message]:
        return [Message(settings.topic(topics[client]), u.encode(), b"{}") for u in USERS]

    asyncio.run(kafka.produce(settings, [(m.topic, m.key, b"{}") for m in keyed("aiokafka")]))
    told = {
        "java": send(kafka_broker, "java", keyed("java")),
        "confluent-kafka": send(kafka_broker, "confluent-kafka", keyed("confluent-kafka")),
        "confluent-kafka murmur2_random": send(
            kafka_broker,
            "confluent-kafka",
            keyed("confluent-kafka murmur2_random"),
            config={"partitioner": "murmur2_random"},
        ),
    }
    landed: dict[str, dict[str, int]] = {}
    for client, topic in topics.items():
        records = read_back(settings, settings.topic(topic), len(USERS))
        landed[client] = {r.key.decode(): r.partition for r in records if r.key is not None}
        assert sorted(landed[client]) == USERS, f"{client}: {len(records)} records read"
    for client, delivered in told.items():
        # What the producer was told is where a consumer finds it.
        assert [d.partition for d in delivered] == [landed[client][u] for u in USERS], client

    murmur2 = {u: partition_of(u, partitions) for u in USERS}
    crc32 = {u: crc32_partition(u.encode(), partitions) for u in USERS}
    assert landed["aiokafka"] == murmur2
    assert landed["java"] == murmur2
    assert landed["confluent-kafka murmur2_random"] == murmur2
    assert landed["confluent-kafka"] == crc32
    elsewhere = sum(landed["confluent-kafka"][u] != murmur2[u] for u in USERS)
    # With 8 partitions, 7 keys in 8 are expected elsewhere (175 of 200).
    assert 0.8 * len(USERS) <= elsewhere <= 0.95 * len(USERS), elsewhere


# --- every codec, read by the worker ---------------------------------------------------

TRACEPARENT = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def without_topic(line: dict[str, object]) -> bytes:
    """The event a product service sends: a replay line without its "topic"."""
    return orjson.dumps({k: v for k, v in line.items() if k != "topic"})


def test_the_worker_reads_every_codec_each_client_writes(
    settings: Settings,
    cli_env: dict[str, str],
    kafka_broker: RunningBroker,
    tmp_path: Path,
    workers: list[WorkerProcess],
) -> None:
    """One user per (client, codec) starts a session and uses a feature, sent as one
    compressed batch; the worker processes all of it, decides for every user, refuses
    nothing and keeps running (snappy, lz4 and zstd need cramjam in aiokafka)."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(rules_file([rule("any", channels=["in_app"])]))
    create_topics(cli_env)
    worker = WorkerProcess(cli_env, rules, tmp_path).start()
    workers.append(worker)
    worker.wait_ready()

    now = dt.datetime.now(dt.UTC)
    topic = settings.topic("usage-events")
    sent: list[Message] = []
    for client in CLIENTS:
        for codec in CODECS:
            user = f"{client}-{codec}"
            batch = [
                Message(topic, user.encode(), without_topic(e), [("traceparent", TRACEPARENT)])
                for e in (
                    event("usage.session_started", user, now),
                    event("usage.feature_used", user, now, feature="export"),
                )
            ]
            # confluent-kafka placed by murmur2 too: this test is about codecs only.
            config = {"partitioner": "murmur2_random"} if client == "confluent-kafka" else None
            delivered = send(kafka_broker, client, batch, compression=codec, config=config)
            assert {d.partition for d in delivered} == {partition_of(user, input_partitions())}
            sent += batch
    users = {f"{client}-{codec}" for client in CLIENTS for codec in CODECS}

    assert processed_while_alive(worker, len(sent)) == len(sent)
    got = wait_for_records(settings, DECISIONS_TOPIC, len(users), timeout=30)
    assert sorted((d["user_id"], d["outcome"]) for d in got) == sorted(
        (user, "emitted") for user in users
    )
    assert read_topic(settings, DEAD_LETTER_TOPIC) == []
    assert worker.process is not None
    assert worker.process.poll() is None, worker.log()[-3000:]
    assert "Traceback" not in worker.log()
    # Each batch is on the broker as its client compressed it (librdkafka would send
    # uncompressed what compression does not shrink), and aiokafka's consumer reads
    # every one back as it was sent.
    assert asyncio.run(batch_codecs(settings, topic)) == set(CODECS)
    landed = read_back(settings, topic, len(sent))
    assert sorted((r.key, r.value, r.headers) for r in landed) == sorted(
        (m.key, m.value, tuple(m.headers)) for m in sent
    )
    assert worker.stop(signal.SIGTERM) == 0


async def batch_codecs(settings: Settings, topic: str) -> set[Codec]:
    """The compression of every record batch of a topic (its name on the broker), as
    the broker serves it: a consumer sees only the records, decompressed."""
    client = AIOKafkaClient(**settings.kafka_options())
    await client.bootstrap()
    codecs: set[Codec] = set()
    try:
        cluster = await client.fetch_all_metadata()
        for partition in cluster.partitions_for_topic(topic):
            leader = cluster.leader_for_partition(TopicPartition(topic, partition))
            everything = [(topic, [(partition, 0, 64 * 1024 * 1024)])]
            # Up to 500 ms: Tansu answered a fetch that may not wait (0 ms) with nothing.
            response = await client.send(
                leader, FetchRequest(500, 1, 64 * 1024 * 1024, 0, everything)
            )
            for _, partitions in response.topics:
                for fetched in partitions:
                    records = MemoryRecords(fetched[-1])
                    while (batch := records.next_batch()) is not None:
                        codecs.add(CODECS[batch.compression_type])  # 0 none ... 4 zstd
    finally:
        await client.close()
    return codecs


def processed_while_alive(worker: WorkerProcess, events: int, timeout: float = 60) -> float:
    """The events the worker has processed once there are ``events`` (or after
    ``timeout``); fails with its log as soon as it exits (as it did on snappy, lz4 and
    zstd batches without cramjam)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert worker.process is not None
        if worker.process.poll() is not None:
            raise AssertionError(f"worker exited {worker.process.returncode}:\n{worker.log()}")
        with contextlib.suppress(OSError):  # no answer: it is exiting, the next turn says how
            if (done := worker.processed()) >= events:
                return done
        time.sleep(0.1)
    return worker.processed()


# --- the producers themselves -------------------------------------------------------------


@pytest.mark.parametrize("client", CLIENTS)
def test_a_real_producer_sends_null_keys_tombstones_headers_and_large_values(
    settings: Settings, kafka_broker: RunningBroker, client: str
) -> None:
    """What the tests above rely on: each client sends what it is given, as given, and
    says so when it cannot."""
    topic = settings.topic("odd-messages")
    limit = 4 * 1024 * 1024
    asyncio.run(create_topic(settings, topic, {"max.message.bytes": str(limit)}))
    large = random.Random(19).randbytes(1_500_000)  # incompressible: over 1 MiB on the wire
    messages = [
        Message(topic, b"u-1", b"keyed", [("traceparent", b"00-1-2-01"), ("empty", b"")]),
        Message(topic, None, b"no key"),
        Message(topic, b"u-1", None),
        Message(topic, b"u-2", large),
    ]
    delivered = send(kafka_broker, client, messages, max_request_bytes=limit)
    offsets = [d.offset for d in delivered]
    assert offsets == sorted(set(offsets)), f"not sent in order: {offsets}"
    # One partition: read back in the order sent, each as it was sent.
    landed = read_back(settings, topic, len(messages))
    assert [(r.key, r.value, r.headers) for r in landed] == [
        (m.key, m.value, tuple(m.headers)) for m in messages
    ]

    # Over the client's own limit (1 MiB by default): the client's error, at once.
    with pytest.raises(NotDelivered, match=TOO_LARGE[client]):
        send(kafka_broker, client, [Message(topic, b"u-3", large)])


TOO_LARGE = {"java": "RecordTooLargeException", "confluent-kafka": "MSG_SIZE_TOO_LARGE"}


async def create_topic(settings: Settings, name: str, configs: dict[str, str]) -> None:
    """A topic of one partition."""
    replicas = settings.replication_factor
    # aiokafka's NewTopic wants an (empty) assignment with the broker's default of -1.
    assignments: dict[int, list[int]] | None = {} if replicas == -1 else None
    async with kafka.Admin(settings) as admin:
        await admin.create([NewTopic(name, 1, replicas, assignments, configs)])
