"""What a worker checks before it starts: its topics exist and are co-partitioned."""

from __future__ import annotations

from dataclasses import dataclass

from triggerstream.broker import EMBEDDED_CLUSTER_ID
from triggerstream.events import INPUT_TOPICS
from triggerstream.kafka import Admin, KafkaUnavailable
from triggerstream.records import (
    ATTRIBUTIONS_TOPIC,
    CHANNEL_TOPICS,
    DEAD_LETTER_TOPIC,
    DECISIONS_TOPIC,
)
from triggerstream.settings import Settings
from triggerstream.topics import REPARTITION_TOPIC, TIMER_TICKS_TOPIC
from triggerstream.worker.app import TABLES, app_id

CO_PARTITIONED = (*INPUT_TOPICS, TIMER_TICKS_TOPIC, REPARTITION_TOPIC)
"""Topics a user's messages must all land on the same partition number of."""
OUTPUTS = (*CHANNEL_TOPICS.values(), DECISIONS_TOPIC, ATTRIBUTIONS_TOPIC, DEAD_LETTER_TOPIC)


class TopicsNotReady(KafkaUnavailable):
    """The worker's topics are missing or not co-partitioned; the message says the fix."""


@dataclass(frozen=True)
class Layout:
    """What the cluster offers the worker."""

    partitions: int
    """The input topics' (equal) partition count: at most this many workers share work."""
    replicas: int
    """Replicas for the changelog topics the worker creates."""
    embedded: bool = False
    """Whether the broker is the embedded one (Tansu), whose answers to "where does this
    log end" are not exact (STYLE.md, broker facts)."""


async def check_topics(settings: Settings) -> Layout:
    """The partition count of the input topics, or :class:`TopicsNotReady`."""
    async with Admin(settings) as admin:
        existing = await admin.topic_partitions()
        brokers, cluster_id = await admin.cluster()
    missing = [
        settings.topic(name)
        for name in (*CO_PARTITIONED, *OUTPUTS)
        if settings.topic(name) not in existing
    ]
    if missing:
        raise TopicsNotReady(
            f"missing topic(s) on {settings.kafka_bootstrap}: {', '.join(missing)}; "
            "create them with `triggerstream topics create` (same TRIGGERSTREAM_TOPIC_PREFIX)"
        )
    counts = {settings.topic(name): existing[settings.topic(name)] for name in CO_PARTITIONED}
    if len(set(counts.values())) > 1:
        listed = ", ".join(f"{name} {count}" for name, count in counts.items())
        raise TopicsNotReady(
            f"the input topics, {settings.topic(TIMER_TICKS_TOPIC)} and "
            f"{settings.topic(REPARTITION_TOPIC)} must have equal partition "
            f"counts, so that each user's events meet their state on one partition; found "
            f"{listed}. Add partitions to the smaller ones (kafka-topics.sh --alter "
            "--partitions N) or recreate them all with one TRIGGERSTREAM_PARTITIONS"
        )
    partitions = next(iter(counts.values()))
    changelogs = {
        f"{app_id(settings)}-{table}-changelog": existing.get(
            f"{app_id(settings)}-{table}-changelog"
        )
        for table in TABLES
    }
    wrong = {name: count for name, count in changelogs.items() if count not in (None, partitions)}
    if wrong:
        listed = ", ".join(f"{name} {count}" for name, count in wrong.items())
        raise TopicsNotReady(
            f"the worker's state changelogs must have as many partitions as the input topics "
            f"({partitions}); found {listed}. They were made for another partition count: "
            "delete them (the state is rebuilt from the input topics only if those still hold "
            "all events) or recreate the input topics with the old count"
        )
    replicas = settings.replication_factor
    if replicas == -1:
        replicas = min(3, brokers)
    return Layout(
        partitions=partitions, replicas=replicas, embedded=cluster_id == EMBEDDED_CLUSTER_ID
    )
