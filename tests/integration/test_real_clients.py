"""Producers other than our own, as product services run them: confluent-kafka
(librdkafka) and the Java client (DESIGN.md section 12)."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass

import pytest
from aiokafka.admin import NewTopic

from tests.conftest import RunningBroker
from tests.real_clients import (
    Codec,
    Delivered,
    Message,
    NotDelivered,
    confluent_produce,
    java_config,
    java_produce,
)
from triggerstream import kafka
from triggerstream.settings import Settings


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
