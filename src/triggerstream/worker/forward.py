"""Home partitions: a user's state lives on one partition, murmur2 of the user id
modulo the input partition count (Kafka's default partitioner). A message that
reached another partition (a producer with another partitioner, no key, or another
key) is forwarded to its user's home through ``repartition``, counted and explained
once per topic and cause; processed where it landed, it would meet no state of the
user, or a second one."""

from __future__ import annotations

import logging

from triggerstream.events import Event
from triggerstream.settings import Settings
from triggerstream.topics import REPARTITION_TOPIC
from triggerstream.worker import metrics
from triggerstream.worker.batch import Batch, Read
from triggerstream.worker.outputs import Headers, Origin, Outputs

log = logging.getLogger("triggerstream.worker")

FORWARDED_FROM = "triggerstream-topic"
"""The header of a message forwarded to ``repartition``: the input topic (its design
name) it was published to."""
PRODUCER_FIX = {
    "partitioner": "the producer places keys with another partitioner than Kafka's "
    "default murmur2 (librdkafka clients: confluent-kafka, Go, .NET, node, kcat default "
    "to consistent_random): set partitioner=murmur2_random",
    "null_key": "the producer sends no key: key every message with its user_id",
    "key_mismatch": "the producer's key is not the event's user_id: key every message "
    "with its user_id",
}
"""Per cause of a misrouted message: what the producer must change."""


class Forwarding:
    """Misrouted messages on their way home."""

    def __init__(self, settings: Settings, outputs: Outputs, inputs: tuple[str, ...]) -> None:
        self.settings = settings
        self.outputs = outputs
        self.told: set[tuple[str, str]] = set()
        """The (topic, cause) of misrouted messages already logged."""
        for name in inputs:  # every series from the start, for rates and alerts
            for cause in PRODUCER_FIX:
                metrics.EVENTS_MISROUTED.labels(name, cause)

    async def forward(self, batch: Batch, read: Read, event: Event, home: int) -> None:
        """Send a message that reached another partition than its user's home to the
        home partition, through ``repartition``."""
        message = read.message
        if read.source == REPARTITION_TOPIC:
            # Forwarded by murmur2 % the same partition count: only a repartition topic
            # with another partition count than the inputs' (refused at start) does it.
            await self.outputs.dead_letter(
                batch.deliveries,
                read.message,
                read.source,
                read.headers,
                "internal_error",
                f"forwarded to partition {message.partition}, but its user's home is {home}",
            )
            return
        if message.key is None:
            cause = "null_key"
        elif message.key != event.user_id.encode():
            cause = "key_mismatch"
        else:
            cause = "partitioner"
        metrics.EVENTS_MISROUTED.labels(read.topic, cause).inc()
        if (read.topic, cause) not in self.told:
            self.told.add((read.topic, cause))
            log.warning(
                "%s partition %d: the event of user %r belongs on partition %d "
                "(murmur2 of the user_id, as Kafka's default partitioner places it); "
                "forwarding such messages (cause %s) to their home partition through %s, "
                "which costs a second write and read each. Fix: %s "
                "(said once per topic and cause; counted in "
                "triggerstream_events_misrouted_total)",
                message.topic,
                message.partition,
                event.user_id,
                home,
                cause,
                self.settings.topic(REPARTITION_TOPIC),
                PRODUCER_FIX[cause],
            )
        batch.deliveries.append(
            await self.outputs.send(
                REPARTITION_TOPIC,
                event.user_id.encode(),
                message.value,
                partition=home,
                headers=[*read.headers, (FORWARDED_FROM, read.topic.encode())],
                origin=Origin(read.topic, message.partition, message.offset),
            )
        )


def forwarded(headers: Headers) -> tuple[str, Headers]:
    """The input topic a forwarded message was published to, and its own headers."""
    topic = next((value for name, value in headers if name == FORWARDED_FROM), b"")
    return topic.decode(errors="replace"), tuple(h for h in headers if h[0] != FORWARDED_FROM)
