"""Talking to Kafka: waiting for a broker, provisioning topics, producing and tailing.

The commands of docs/contract.md section 9 are thin wrappers over these coroutines.
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import ssl
import subprocess
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.conn import create_conn
from aiokafka.errors import AuthenticationFailedError, KafkaError, SaslAuthenticationFailed

from triggerstream.events import INPUT_TOPICS
from triggerstream.settings import Settings
from triggerstream.topics import REPARTITION_TOPIC, TIMER_TICKS_TOPIC, TopicSpec, thin_replication

_TOPIC_ALREADY_EXISTS = 36


class KafkaUnavailable(RuntimeError):
    """The broker could not be reached or refused what was asked; the message says which."""


async def wait_for_broker(
    bootstrap: str,
    within: float,
    process: subprocess.Popen[bytes] | None = None,
) -> None:
    """Return once a metadata request to ``bootstrap`` succeeds.

    Gives up after ``within`` seconds, or at once if ``process`` (the broker being
    started) has exited.
    """
    deadline = time.monotonic() + within
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise KafkaUnavailable(f"the broker exited with status {process.returncode}")
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=2000)
        try:
            await admin.start()
            await admin.list_topics()
            return
        except (KafkaError, OSError) as error:
            last_error = error
        finally:
            await admin.close()
        await asyncio.sleep(0.1)
    raise KafkaUnavailable(f"no metadata answer within {within:g}s (last error: {last_error})")


class Admin:
    """An admin client that fails with one clear line when the broker is unreachable."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._client = AIOKafkaAdminClient(**settings.kafka_options())

    async def __aenter__(self) -> Admin:
        try:
            await asyncio.wait_for(self._client.start(), self.settings.request_timeout)
        except (KafkaError, OSError, TimeoutError) as error:
            await self._client.close()
            raise await unreachable(self.settings, error) from None
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._client.close()

    async def topic_partitions(self) -> dict[str, int]:
        """Every topic on the cluster with its partition count."""
        names = await self._client.list_topics()
        if not names:
            return {}
        described = await self._client.describe_topics(list(names))
        return {t["topic"]: len(t["partitions"]) for t in described if t["error_code"] == 0}

    async def cluster(self) -> tuple[int, str]:
        """How many brokers the cluster has, and its id."""
        cluster = await self._client.describe_cluster()
        return len(cluster["brokers"]), str(cluster["cluster_id"])

    async def default_replication_factor(self) -> int:
        """The ``default.replication.factor`` of one of the brokers (the one that
        answers; a cluster's brokers share it when they are configured alike)."""
        cluster = await self._client.describe_cluster()
        broker = str(cluster["brokers"][0]["node_id"])
        resource = ConfigResource(
            ConfigResourceType.BROKER, broker, {"default.replication.factor": None}
        )
        (response,) = await self._client.describe_configs([resource])
        for _type, _name, entries in _config_entries(response):
            for name, value in entries:
                if name == "default.replication.factor" and value is not None:
                    return int(value)
        return 1  # Kafka's own default

    async def create(self, topics: Iterable[NewTopic]) -> None:
        new = list(topics)
        if not new:
            return
        response = await self._client.create_topics(new)
        failures = [
            f"{name}: {message or code}"
            for name, code, message in response.topic_errors
            if code not in (0, _TOPIC_ALREADY_EXISTS)
        ]
        if failures:
            raise KafkaUnavailable("the broker refused to create " + "; ".join(failures))


async def unreachable(settings: Settings, error: BaseException) -> KafkaUnavailable:
    """One clear line for a client that could not start: the credentials or the
    certificate refused if a direct connection says so, else the broker not reached.
    (aiokafka reports every failed bootstrap as "Unable to bootstrap".)"""
    refused = await _refusal(settings)
    if refused is not None:
        return KafkaUnavailable(refused)
    detail = str(error) or type(error).__name__
    return KafkaUnavailable(
        f"cannot reach Kafka at {settings.kafka_bootstrap} ({detail}); is the broker running? "
        "Set TRIGGERSTREAM_KAFKA_BOOTSTRAP or --bootstrap to its address."
    )


async def _refusal(settings: Settings) -> str | None:
    """Why a broker that answers refuses this client (authentication or TLS), if it
    does: what one direct connection to each bootstrap address says. Over PLAINTEXT
    there is nothing to refuse, and no second wait for a broker that is not there."""
    if settings.security_protocol == "PLAINTEXT":
        return None
    options = settings.kafka_options()
    for address in settings.kafka_bootstrap.split(","):
        host, _, port = address.strip().rpartition(":")
        try:
            connection = await asyncio.wait_for(
                create_conn(
                    host,
                    int(port),
                    security_protocol=settings.security_protocol,
                    ssl_context=options.get("ssl_context"),
                    sasl_mechanism=options.get("sasl_mechanism"),
                    sasl_plain_username=options.get("sasl_plain_username"),
                    sasl_plain_password=options.get("sasl_plain_password"),
                    request_timeout_ms=int(settings.request_timeout * 1000),
                ),
                settings.request_timeout,
            )
        except (SaslAuthenticationFailed, AuthenticationFailedError):
            return (
                f"Kafka at {address} refused the credentials of user "
                f"{settings.sasl_username!r} ({settings.sasl_mechanism}): check "
                "TRIGGERSTREAM_SASL_USERNAME, TRIGGERSTREAM_SASL_PASSWORD and "
                "TRIGGERSTREAM_SASL_MECHANISM."
            )
        except ssl.SSLCertVerificationError as failure:
            return (
                f"the TLS certificate of Kafka at {address} is not trusted "
                f"({failure.verify_message}): set TRIGGERSTREAM_SSL_CAFILE to the CA that "
                "signed it."
            )
        except ssl.SSLError as failure:
            return (
                f"no TLS connection to Kafka at {address} ({failure.reason}): is that "
                f"listener's protocol TRIGGERSTREAM_SECURITY_PROTOCOL="
                f"{settings.security_protocol}?"
            )
        except (KafkaError, OSError, TimeoutError, ValueError):
            continue
        connection.close()
    return None


def _new_topic(name: str, partitions: int, replicas: int, configs: dict[str, str]) -> NewTopic:
    # aiokafka's NewTopic wrongly demands replica assignments with replication factor -1
    # (the broker's default, CreateTopics v4+); an empty assignment passes its check and
    # sends nothing extra.
    assignments: dict[int, list[int]] | None = {} if replicas == -1 else None
    return NewTopic(name, partitions, replicas, assignments, configs)


def _config_entries(response: Any) -> list[tuple[int, str, list[tuple[str, str | None]]]]:
    """(resource type, name, [(config, value)]) of a DescribeConfigs response."""
    return [
        (resource[2], resource[3], [(entry[0], entry[1]) for entry in resource[4]])
        for resource in response.resources
    ]


async def thin_replication_warning(settings: Settings) -> str | None:
    """The warning of :func:`topics.thin_replication` for the topics `topics create`
    makes with these settings on this cluster (the broker's default when
    TRIGGERSTREAM_REPLICATION_FACTOR is -1), if there is one."""
    async with Admin(settings) as admin:
        brokers, _cluster_id = await admin.cluster()
        replicas = settings.replication_factor
        if replicas == -1 and brokers >= 3:
            replicas = await admin.default_replication_factor()
    return thin_replication(brokers, replicas)


@dataclass(frozen=True)
class TopicOutcome:
    """What `topics create` did with one topic."""

    name: str
    partitions: int
    action: str  # created | exists | exists-with-other-partitions


async def create_topics(settings: Settings, specs: Iterable[TopicSpec]) -> list[TopicOutcome]:
    """Create every missing topic; leave existing ones as they are (idempotent)."""
    wanted = [
        (settings.topic(spec.name), spec.partitions_with(settings.partitions), spec)
        for spec in specs
    ]
    async with Admin(settings) as admin:
        existing = await admin.topic_partitions()
        await admin.create(
            _new_topic(
                name,
                partitions,
                settings.replication_factor,
                spec.configs(settings.min_insync_replicas),
            )
            for name, partitions, spec in wanted
            if name not in existing
        )
    outcomes = []
    for name, partitions, _spec in wanted:
        if name not in existing:
            outcomes.append(TopicOutcome(name, partitions, "created"))
        elif existing[name] == partitions:
            outcomes.append(TopicOutcome(name, existing[name], "exists"))
        else:
            outcomes.append(TopicOutcome(name, existing[name], "exists-with-other-partitions"))
    return outcomes


def unequal_co_partitioned(settings: Settings, outcomes: Iterable[TopicOutcome]) -> list[int]:
    """The partition counts, sorted, of the topics a worker reads together (the input
    topics, timer ticks and repartition) when they differ; empty when they are equal,
    as the worker needs them."""
    together = {settings.topic(t) for t in (*INPUT_TOPICS, TIMER_TICKS_TOPIC, REPARTITION_TOPIC)}
    counts = {o.partitions for o in outcomes if o.name in together}
    return sorted(counts) if len(counts) > 1 else []


async def require_topics(settings: Settings, names: Iterable[str]) -> dict[str, int]:
    """Every topic on the cluster with its partition count, or :class:`KafkaUnavailable`
    naming those of ``names`` (names on the broker) that do not exist, and the fix.

    Sending to or reading a missing topic must not create it: a broker with automatic
    creation makes it with its own partition count (4 on the embedded broker), which
    `topics create` cannot fix afterwards.
    """
    # The admin client asks for the topics' metadata; a fresh client's own view of the
    # cluster may not include a topic it has not used yet.
    async with Admin(settings) as admin:
        partitions = await admin.topic_partitions()
    missing = sorted({name for name in names if not partitions.get(name)})
    if not missing:
        return partitions
    prefix = settings.topic_prefix
    fix = "create the topics with `triggerstream topics create`" + (
        f" and the same prefix (--topic-prefix {prefix} or TRIGGERSTREAM_TOPIC_PREFIX)"
        if prefix
        else ""
    )
    # A mistyped prefix: the same topics under another one (the closest few: a shared
    # cluster may hold many prefixes).
    designs = {name.removeprefix(prefix) for name in missing}
    others = {
        name.removesuffix(design)
        for name in partitions
        for design in designs
        if name.endswith(design) and name.removesuffix(design) != prefix
    }
    close = difflib.get_close_matches(prefix, sorted(others), n=3, cutoff=0.75)
    if not close and len(others) <= 3:
        close = sorted(others)
    shown = " or ".join(f"the prefix {other!r}" if other else "no prefix" for other in close)
    hint = f"; they exist with {shown}: is the prefix right?" if close else ""
    named = ", ".join(map(repr, missing))
    what = f"topic {named} does not" if len(missing) == 1 else f"topics {named} do not"
    raise KafkaUnavailable(f"{what} exist on {settings.kafka_bootstrap}; {fix}{hint}")


async def produce(settings: Settings, messages: Iterable[tuple[str, bytes | None, bytes]]) -> int:
    """Send ``(topic, key, value)`` messages and wait for every acknowledgement."""
    producer = AIOKafkaProducer(**settings.kafka_options(), linger_ms=5, acks="all")
    try:
        await asyncio.wait_for(producer.start(), settings.request_timeout)
    except (KafkaError, OSError, TimeoutError) as error:
        await producer.stop()
        raise await unreachable(settings, error) from None
    sent = 0
    try:
        pending = []
        for topic, key, value in messages:
            pending.append(await producer.send(topic, value=value, key=key))
            sent += 1
            if len(pending) >= 1000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    except KafkaError as error:
        raise KafkaUnavailable(f"producing failed after {sent} messages: {error}") from None
    finally:
        await producer.stop()
    return sent


@contextlib.asynccontextmanager
async def reading(
    settings: Settings, topics: Iterable[str], **options: Any
) -> AsyncIterator[tuple[AIOKafkaConsumer, list[TopicPartition]]]:
    """A consumer without a group, assigned every partition of ``topics`` (names on the
    broker), and those partitions; stopped on leaving. A missing topic is an error that
    says to create the topics."""
    names = list(topics)
    partitions = await require_topics(settings, names)
    consumer = AIOKafkaConsumer(
        **settings.kafka_options(), enable_auto_commit=False, group_id=None, **options
    )
    try:
        await asyncio.wait_for(consumer.start(), settings.request_timeout)
    except (KafkaError, OSError, TimeoutError) as error:
        await consumer.stop()
        raise await unreachable(settings, error) from None
    try:
        assigned = [TopicPartition(name, p) for name in names for p in range(partitions[name])]
        consumer.assign(assigned)
        yield consumer, assigned
    finally:
        await consumer.stop()


async def tail(
    settings: Settings,
    topic: str,
    from_beginning: bool,
    idle_timeout: float | None,
    max_records: int | None,
) -> AsyncIterator[bytes | None]:
    """Values of ``topic`` as they arrive, across all its partitions, without a group.

    Stops after ``max_records`` values, or when ``idle_timeout`` seconds pass without one.
    """
    async with reading(settings, [topic]) as (consumer, assigned):
        if from_beginning:
            await consumer.seek_to_beginning(*assigned)
        else:
            await consumer.seek_to_end(*assigned)
        seen = 0
        last = time.monotonic()
        while max_records is None or seen < max_records:
            if idle_timeout is not None and time.monotonic() - last >= idle_timeout:
                return
            wait = 0.5 if idle_timeout is None else min(0.5, idle_timeout)
            batches = await consumer.getmany(timeout_ms=int(wait * 1000), max_records=500)
            for records in batches.values():
                for record in records:
                    yield record.value
                    seen += 1
                    last = time.monotonic()
                    if max_records is not None and seen >= max_records:
                        return
