"""Where the worker's records go: queued as they are made, handed to the producer once
per batch as one record batch per topic partition, awaited once per batch, and never a
reason for the worker to stop.

Handing records over a batch at a time is what makes outputs cheap: aiokafka's
``send`` costs a future, a partitioner call and an accumulator lookup per record (15 to
20 microseconds in Python); a record appended to a batch builder costs a tenth of that.
A batch the broker refuses is sent again record by record, so that each record gets its
own outcome below.

A record the broker cannot take for now (a broker down, a leader moving: a retriable
error, or a timeout) is sent again until it is taken. A record it will never take (too
large for the broker or the topic, a topic the worker may not write: a permanent error)
is not retried for ever and does not stop the worker: it is logged, counted in
``triggerstream_outputs_failed_total{topic,reason}`` (reason ``too_large``,
``not_authorized`` or ``other``) and sent to ``events.dlq`` as a
dead letter (``output_refused``) naming the input message that caused it, with at most
the first 64 KiB of the record. A dead letter that cannot be sent either is logged and
counted.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    RecordTooLargeError,
    RequestTimedOutError,
    TopicAuthorizationFailedError,
)
from aiokafka.partitioner import murmur2
from faust.exceptions import ProducerSendError

from triggerstream.core.engine import Step
from triggerstream.records import (
    ATTRIBUTIONS_TOPIC,
    CHANNEL_TOPICS,
    DEAD_LETTER_TOPIC,
    DECISIONS_TOPIC,
    DeadLetter,
)
from triggerstream.worker import metrics
from triggerstream.worker.fence import record_batches

log = logging.getLogger("triggerstream.worker")

Headers = Sequence[tuple[str, bytes]]

SEND_RETRY = 1.0
"""Seconds between two attempts to send a record the broker did not take for now."""
WARN_EVERY = 30.0
"""Seconds between two warnings about the same topic's retried sends."""


@dataclass(slots=True)
class Origin:
    """The input message a record was made for (where its dead letter points)."""

    topic: str
    partition: int
    offset: int


@dataclass(slots=True)
class Delivery:
    """A record handed to the producer, and the broker's acknowledgement to wait for."""

    topic: str
    """The topic's name in the design (without prefix)."""
    key: bytes | None
    value: bytes
    partition: int | None
    headers: Headers | None
    origin: Origin | None
    ack: Awaitable[Any] | None
    batched: bool = False
    """``ack`` is a whole record batch's: its error may be another record's."""


def permanent(error: BaseException) -> bool:
    """Whether sending again can never succeed (faust wraps aiokafka's errors)."""
    if isinstance(error, ProducerSendError) and error.__cause__ is not None:
        error = error.__cause__
    if isinstance(error, KafkaTimeoutError | KafkaConnectionError | RequestTimedOutError):
        return False  # the broker is away or slow: it comes back
    if isinstance(error, KafkaError):
        return not error.retriable
    return not isinstance(error, ProducerSendError)


def _name(error: BaseException) -> str:
    return type(_cause(error)).__name__


def _cause(error: BaseException) -> BaseException:
    if isinstance(error, ProducerSendError) and error.__cause__ is not None:
        return error.__cause__
    return error


REFUSALS = ("too_large", "not_authorized", "other")
"""Why the broker refused a record for good, as the metric labels it (bounded)."""


def refusal(error: BaseException) -> str:
    cause = _cause(error)
    if isinstance(cause, MessageSizeTooLargeError | RecordTooLargeError):
        return "too_large"
    if isinstance(cause, TopicAuthorizationFailedError | ClusterAuthorizationFailedError):
        return "not_authorized"
    return "other"


class Outputs:
    """Sends records to the worker's output topics through faust's producer."""

    def __init__(self, app: Any, topics: Mapping[str, str]) -> None:
        self.app = app
        """The faust app, whose producer is made when first used."""
        self.topics = dict(topics)
        """Design name -> the topic's name on the broker."""
        self._warned_at: dict[str, float] = {}
        self._queued: list[Delivery] = []
        self.decided: Counter[tuple[str, str, str]] = Counter()
        """Decisions by (rule, outcome, reason) not yet in the metric: counted per batch
        (a labelled counter's lookup per record costs more than deciding it)."""
        for topic in self.topics:  # every series from the start, for rates and alerts
            for reason in REFUSALS:
                metrics.OUTPUTS_FAILED.labels(topic, reason)

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        *,
        partition: int | None = None,
        headers: Headers | None = None,
        origin: Origin | None = None,
    ) -> Delivery:
        """Queue a record for the producer; :meth:`settle` hands it over and waits for
        it."""
        delivery = Delivery(topic, key, value, partition, headers, origin, None)
        self._queued.append(delivery)
        return delivery

    async def send_step(
        self,
        deliveries: list[Delivery],
        key: bytes,
        step: Step,
        headers: Headers,
        origin: Origin | None,
    ) -> None:
        """Hand every record of a step to the producer, with the headers of the input
        that caused it; ``deliveries`` gets them, for the batch to await."""
        now = dt.datetime.now(dt.UTC)
        send = self.send
        for decision in step.decisions:
            self.decided[decision.rule_id or "", decision.outcome, decision.reason or ""] += 1
            deliveries.append(
                await send(DECISIONS_TOPIC, key, decision.to_json(), headers=headers, origin=origin)
            )
        for trigger in step.triggers:
            emitted = trigger.emitted(now)
            metrics.TRIGGERS.labels(trigger.rule_id, trigger.channel, trigger.variant or "").inc()
            metrics.TRIGGER_LATENCY.observe(max(0.0, (now - trigger.triggered_at).total_seconds()))
            deliveries.append(
                await send(
                    CHANNEL_TOPICS[trigger.channel],
                    key,
                    emitted.to_json(),
                    headers=headers,
                    origin=origin,
                )
            )
        for attribution in step.attributions:
            metrics.ATTRIBUTIONS.labels(
                attribution.rule_id, attribution.variant or "", attribution.group
            ).inc()
            metrics.ATTRIBUTED_REVENUE.labels(attribution.rule_id, attribution.currency).inc(
                attribution.revenue
            )
            deliveries.append(
                await send(
                    ATTRIBUTIONS_TOPIC,
                    key,
                    attribution.to_json(),
                    headers=headers,
                    origin=origin,
                )
            )

    async def dead_letter(
        self,
        deliveries: list[Delivery],
        message: Any,
        source: str,
        headers: Headers,
        code: str,
        reason: str,
    ) -> None:
        """Send an input message that cannot be used to ``events.dlq``, keyed by its
        user_id when its value has one (else by its own key). ``source``: the design
        name of the topic it was read from."""
        record = DeadLetter.of_value(
            message.value,
            code,
            reason,
            topic=source,
            partition=message.partition,
            offset=message.offset,
        )
        deliveries.append(
            await self.send(
                DEAD_LETTER_TOPIC,
                _user_key(message.value) or message.key,
                record.model_dump_json(exclude_none=True).encode(),
                headers=headers,
                origin=Origin(source, message.partition, message.offset),
            )
        )

    async def settle(self, deliveries: Sequence[Delivery]) -> None:
        """Hand every queued record to the producer, then wait until the broker has each
        of ``deliveries``, or it has refused one for good (then the record is logged,
        counted and dead-lettered)."""
        await self.hand_over()
        for delivery in deliveries:
            while delivery.ack is not None:
                try:
                    await delivery.ack
                    break
                except Exception as error:
                    if delivery.batched:
                        # The batch failed: alone, the record gets its own outcome.
                        delivery.batched = False
                        await self._hand_over(delivery)
                        continue
                    if permanent(error):
                        await self._refused(delivery, error)
                        break
                    self._warn_retrying(delivery.topic, error)
                    await asyncio.sleep(SEND_RETRY)
                    await self._hand_over(delivery)

    async def hand_over(self) -> None:
        """Give every queued record to the producer: one record batch per topic
        partition, in the order they were queued (a record whose partition cannot be
        known yet goes alone, as the producer would send it)."""
        for (rule, outcome, reason), count in self.decided.items():
            metrics.DECISIONS.labels(rule, outcome, reason).inc(count)
        self.decided.clear()
        queued, self._queued = self._queued, []
        if not queued:
            return
        producer = record_batches(self.app)
        groups: dict[tuple[str, int], list[Delivery]] = {}
        homes: dict[tuple[str, bytes], int] = {}
        known: dict[str, list[int]] = {}
        for delivery in queued:
            name = self.topics[delivery.topic]
            partition = delivery.partition
            if partition is None and delivery.key is not None:
                partition = homes.get((name, delivery.key))
                if partition is None:
                    partitions = known.get(name)
                    if partitions is None:
                        partitions = known[name] = sorted(
                            producer.client.cluster.partitions_for_topic(name) or ()
                        )
                    partition = _default_partition(partitions, delivery.key)
                    if partition is not None:
                        homes[name, delivery.key] = partition
            if partition is None or _size(delivery) > ALONE_OVER:
                await self._hand_over(delivery)
            else:
                groups.setdefault((name, partition), []).append(delivery)
        for (name, partition), group in groups.items():
            await self._send_batches(producer, name, partition, group)

    async def _send_batches(
        self, producer: Any, name: str, partition: int, group: list[Delivery]
    ) -> None:
        builder = producer.create_batch()
        members: list[Delivery] = []
        for delivery in group:
            if not _append(builder, delivery):  # full: send it, begin the next
                await self._send_batch(producer, builder, name, partition, members)
                builder, members = producer.create_batch(), []
                if not _append(builder, delivery):
                    # Larger than a batch: the producer says what to do with it.
                    await self._hand_over(delivery)
                    continue
            members.append(delivery)
        if members:
            await self._send_batch(producer, builder, name, partition, members)

    async def _send_batch(
        self, producer: Any, builder: Any, name: str, partition: int, members: list[Delivery]
    ) -> None:
        try:
            ack = await producer.send_batch(builder, name, partition=partition)
        except Exception:
            for delivery in members:  # each alone: its own outcome
                await self._hand_over(delivery)
            return
        for delivery in members:
            delivery.ack = ack
            delivery.batched = True

    async def _hand_over(self, delivery: Delivery) -> None:
        """Give the record to the producer, waiting while it cannot take it for now;
        a record it refuses for good is dealt with here (no acknowledgement then)."""
        while True:
            try:
                delivery.ack = await self.app.producer.send(
                    self.topics[delivery.topic],
                    delivery.key,
                    delivery.value,
                    delivery.partition,
                    None,
                    list(delivery.headers) if delivery.headers else None,
                )
                return
            except Exception as error:
                if permanent(error):
                    delivery.ack = None
                    delivery.batched = False
                    await self._refused(delivery, error)
                    return
                self._warn_retrying(delivery.topic, error)
                await asyncio.sleep(SEND_RETRY)

    def _warn_retrying(self, topic: str, error: BaseException) -> None:
        now = time.monotonic()
        if now - self._warned_at.get(topic, float("-inf")) >= WARN_EVERY:
            self._warned_at[topic] = now
            log.warning(
                "sending to %s failed for now (%s: %s); retrying every %ss",
                self.topics[topic],
                _name(error),
                error,
                SEND_RETRY,
            )

    async def _refused(self, delivery: Delivery, error: BaseException) -> None:
        """A record the broker will never take: logged, counted, and dead-lettered
        (unless it is a dead letter itself)."""
        reason = _name(error)
        metrics.OUTPUTS_FAILED.labels(delivery.topic, refusal(error)).inc()
        origin = delivery.origin
        where = (
            f" (caused by {origin.topic} partition {origin.partition} offset {origin.offset})"
            if origin
            else ""
        )
        log.error(
            "a %d-byte record for %s was refused and is not sent: %s: %s%s",
            len(delivery.value),
            self.topics[delivery.topic],
            reason,
            error,
            where,
        )
        if delivery.topic == DEAD_LETTER_TOPIC:
            return
        record = DeadLetter.of_value(
            delivery.value,
            "output_refused",
            f"a record for {delivery.topic} could not be sent: {reason}: {error}"[:1000],
            topic=origin.topic if origin else delivery.topic,
            partition=origin.partition if origin else None,
            offset=origin.offset if origin else None,
        )
        # Without the input's headers: they may be what made the record too large.
        letter = await self.send(
            DEAD_LETTER_TOPIC, delivery.key, record.model_dump_json(exclude_none=True).encode()
        )
        await self.settle([letter])


ALONE_OVER = 128 * 1024
"""A record larger than this is handed to the producer alone: its own checks against
its size limits then refuse it at once if they must (in a batch, a record over the
request limit would wait in the producer, never sent, never failed)."""


def _size(delivery: Delivery) -> int:
    size = len(delivery.value) + (len(delivery.key) if delivery.key else 0)
    if delivery.headers:
        size += sum(len(name) + len(value) for name, value in delivery.headers)
    return size


def _append(builder: Any, delivery: Delivery) -> bool:
    """Whether the record went into the batch (False: the batch is full)."""
    headers = list(delivery.headers) if delivery.headers else []
    added = builder.append(timestamp=None, key=delivery.key, value=delivery.value, headers=headers)
    return added is not None


def _default_partition(partitions: list[int], key: bytes) -> int | None:
    """The partition aiokafka's default partitioner gives ``key`` among a topic's
    ``partitions`` (murmur2, as the Java client), or None while the producer knows none."""
    if not partitions:
        return None
    hashed: int = murmur2(key)
    return partitions[(hashed & 0x7FFFFFFF) % len(partitions)]


def _user_key(value: bytes | None) -> bytes | None:
    """The ``user_id`` of a value that has one (a dead letter's key)."""
    if not value:
        return None
    try:
        document = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    user = document.get("user_id") if isinstance(document, dict) else None
    return user.encode() if isinstance(user, str) and user else None
