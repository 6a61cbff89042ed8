"""Real producers of other Kafka clients, as product services use them: librdkafka
(confluent-kafka) and the Java client (kafka-clients, from the jars the Apache Kafka test
broker runs on). Each sends messages in order with ``acks=all``, flushes, and raises
:class:`NotDelivered` with the client's own error if any message is not delivered.

Both keep their client's defaults unless told otherwise, so their partitioners differ:
the Java client puts a key on murmur2(key) % n, librdkafka on crc32(key) % n
(``consistent_random``) unless ``partitioner=murmur2_random`` is passed in ``config``.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import zlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, Literal, NamedTuple

import confluent_kafka

from triggerstream.testing.apache_kafka import kafka_classpath

Codec = Literal["none", "gzip", "snappy", "lz4", "zstd"]
CODECS: Final[tuple[Codec, ...]] = ("none", "gzip", "snappy", "lz4", "zstd")
"""Every record batch compression a Kafka client may write (``compression.type``)."""

JAVA_PRODUCER: Final = Path(__file__).resolve().parent / "java" / "JavaProducer.java"

JAVA_ON_TANSU: Final[Mapping[str, str]] = {"metadata.recovery.strategy": "none"}
"""What the Java client needs on Tansu 0.6. With its default (``rebootstrap``), Java 4.x
sends the cluster id it has learnt in ApiVersions v5 (KIP-1242); Tansu parses that
request with an older schema, fails ("failed to fill whole buffer") and drops every
connection to the broker it advertises, so nothing is ever sent. Without rebootstrap
the client sends no cluster id. Placement, codecs and acks are unaffected."""


class Message(NamedTuple):
    """One message to send: a null key or value is sent as null (a tombstone)."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]] = ()


class Delivered(NamedTuple):
    """Where the broker acknowledged a message."""

    topic: str
    partition: int
    offset: int


class NotDelivered(RuntimeError):
    """A producer did not get every message acknowledged; the message holds its error."""


def crc32_partition(key: bytes, partitions: int) -> int:
    """Where librdkafka's default partitioner (``consistent_random``) puts a key."""
    return zlib.crc32(key) % partitions


def confluent_produce(
    bootstrap: str,
    messages: Sequence[Message],
    *,
    compression: Codec = "none",
    max_request_bytes: int | None = None,
    config: Mapping[str, str] | None = None,
    timeout: float = 60,
) -> list[Delivered]:
    """Send ``messages`` with a confluent-kafka (librdkafka) ``Producer`` and its default
    settings but ``acks=all``, ``compression.type`` and what ``config`` adds (e.g.
    ``{"partitioner": "murmur2_random"}``); ``max_request_bytes`` raises the largest
    message it will send (``message.max.bytes``). Where each was delivered, in order."""
    settings: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "acks": "all",
        "compression.type": compression,
    }
    if max_request_bytes is not None:
        settings["message.max.bytes"] = max_request_bytes
    settings.update(config or {})
    errors: list[str] = []
    # Errors outside a message (no broker, refused connection) come here; without this
    # callback librdkafka only logs them and flush() runs out of time saying nothing.
    settings["error_cb"] = lambda error: errors.append(str(error))
    producer = confluent_kafka.Producer(settings)
    results: list[Delivered | str | None] = [None] * len(messages)

    def report(n: int) -> Callable[[confluent_kafka.KafkaError | None, Any], None]:
        def delivered(error: confluent_kafka.KafkaError | None, sent: Any) -> None:
            results[n] = (
                str(error)
                if error is not None
                else Delivered(sent.topic(), sent.partition(), sent.offset())
            )

        return delivered

    try:
        for n, message in enumerate(messages):
            _produce_one(producer, n, message, report(n))
        left = producer.flush(timeout)
    finally:
        # Nothing may outlive the call (a test's traceback keeps this frame): what was
        # not delivered by now is dropped, so that close() does not wait for it.
        producer.purge()
        producer.close()
    if left:
        raise NotDelivered(
            f"confluent-kafka: {left} of {len(messages)} messages not delivered within "
            f"{timeout:g}s; client errors: {list(dict.fromkeys(errors))[:5] or 'none'}"
        )
    failures = [f"message {n}: {r}" for n, r in enumerate(results) if not isinstance(r, Delivered)]
    if failures:
        raise NotDelivered("confluent-kafka: " + "; ".join(failures[:10]))
    return [r for r in results if isinstance(r, Delivered)]


def _produce_one(
    producer: confluent_kafka.Producer,
    n: int,
    message: Message,
    on_delivery: Callable[[confluent_kafka.KafkaError | None, Any], None],
) -> None:
    while True:
        try:
            producer.produce(
                message.topic,
                value=message.value,
                key=message.key,
                headers=list(message.headers),
                on_delivery=on_delivery,
            )
            return
        except BufferError:  # the local queue is full: let deliveries drain it
            producer.poll(0.1)
        except confluent_kafka.KafkaException as error:
            raise NotDelivered(f"confluent-kafka refused message {n}: {error}") from None


def java_config(broker_kind: str) -> dict[str, str]:
    """The Java client's settings on a test broker (``tansu``, ``apache`` or
    ``external``): its defaults, but :data:`JAVA_ON_TANSU` on Tansu."""
    return dict(JAVA_ON_TANSU) if broker_kind == "tansu" else {}


def java_produce(
    bootstrap: str,
    messages: Sequence[Message],
    *,
    compression: Codec = "none",
    max_request_bytes: int | None = None,
    config: Mapping[str, str] | None = None,
    timeout: float = 120,
) -> list[Delivered]:
    """Send ``messages`` with the Java client's ``KafkaProducer`` (tests/java/
    JavaProducer.java, run from source) and its default settings but ``acks=all``,
    ``compression.type`` and what ``config`` adds; ``max_request_bytes`` raises
    ``max.request.size``. Where each was delivered, in order."""
    properties = {
        "bootstrap.servers": bootstrap,
        "acks": "all",
        "compression.type": compression,
    }
    if max_request_bytes is not None:
        properties["max.request.size"] = str(max_request_bytes)
    properties.update(config or {})
    command = [
        java_executable(),
        # A short-lived JVM: the quick compiler alone starts it sooner.
        "-XX:TieredStopAtLevel=1",
        "-Dlog4j2.level=WARN",
        "-cp",
        f"{kafka_classpath()}/*",
        str(JAVA_PRODUCER),
        *(f"{name}={value}" for name, value in properties.items()),
    ]
    lines = b"".join(_java_line(message) for message in messages)
    try:
        done = subprocess.run(
            command, input=lines, capture_output=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as expired:
        stderr = (expired.stderr or b"").decode(errors="replace")
        raise NotDelivered(
            f"the Java producer did not finish within {timeout:g}s:\n{stderr[-3000:]}"
        ) from None
    stderr = done.stderr.decode(errors="replace")
    if done.returncode != 0:
        raise NotDelivered(f"the Java producer exited {done.returncode}:\n{stderr[-5000:]}")
    answers = [line.split("\t") for line in done.stdout.decode().splitlines()]
    if len(answers) != len(messages):
        raise NotDelivered(
            f"the Java producer answered {len(answers)} of {len(messages)} messages:\n{stderr}"
        )
    return [
        Delivered(message.topic, int(partition), int(offset))
        for message, (partition, offset) in zip(messages, answers, strict=True)
    ]


def _java_line(message: Message) -> bytes:
    fields = [_field(message.topic.encode()), _field(message.key), _field(message.value)]
    for name, value in message.headers:
        fields += [_field(name.encode()), _field(value)]
    return b"\t".join(fields) + b"\n"


def _field(data: bytes | None) -> bytes:
    return b"-" if data is None else base64.b64encode(data)


def java_executable() -> str:
    """``$JAVA_HOME/bin/java``, else ``java`` on PATH (Java 17+ runs a source file)."""
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").is_file():
        return str(Path(home) / "bin" / "java")
    java = shutil.which("java")
    if java is None:
        raise RuntimeError("Java 17+ is needed for the Java producer, but java is not on PATH")
    return java
