"""The topic declarations of ``topics/topics.yaml`` (docs/contract.md section 3)."""

from __future__ import annotations

import importlib.resources
from functools import cache
from pathlib import Path
from typing import Literal

import yaml
from aiokafka.partitioner import murmur2
from pydantic import BaseModel, ConfigDict, Field

from triggerstream.durations import Duration

TIMER_TICKS_TOPIC = "timer-ticks"
"""The worker's own topic: a message wakes a user whose timer fell due."""
REPARTITION_TOPIC = "repartition"
"""The worker's own topic: input messages that reached another partition than their
user's home partition, forwarded there (docs/contract.md section 12)."""


class TopicSpec(BaseModel):
    """One topic as declared: what it carries, how many partitions, how long it is kept."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    direction: Literal["in", "out", "internal", "control"]
    """``control``: the operators' own (the published rules), read and written by
    triggerstream's commands and workers; its partition count is never overridden."""
    key: str = "user_id"
    partitions: int = Field(ge=1)
    retention: Duration
    cleanup_policy: Literal["delete", "compact"]
    records: list[str]
    description: str

    def configs(self, min_insync_replicas: int | None = None) -> dict[str, str]:
        """Broker-side topic configs (``min.insync.replicas`` only when it is given:
        else the broker's applies)."""
        configs = {
            "cleanup.policy": self.cleanup_policy,
            "retention.ms": str(int(self.retention.total_seconds() * 1000)),
        }
        if min_insync_replicas is not None:
            configs["min.insync.replicas"] = str(min_insync_replicas)
        return configs

    def partitions_with(self, override: int | None) -> int:
        """The partition count to create it with, given TRIGGERSTREAM_PARTITIONS."""
        return self.partitions if self.direction == "control" else override or self.partitions


def thin_replication(brokers: int, replicas: int) -> str | None:
    """The warning for topics given ``replicas`` replicas on a cluster of ``brokers``,
    if they deserve one: a single copy on a cluster of three or more, where one broker
    lost loses (or stops) the partitions it held though the cluster could have kept them."""
    if brokers < 3 or replicas != 1:
        return None
    return (
        f"warning: topics created with replication factor 1 on a cluster of {brokers} "
        "brokers: a broker lost takes its partitions with it; set "
        "TRIGGERSTREAM_REPLICATION_FACTOR=3 and TRIGGERSTREAM_MIN_INSYNC_REPLICAS=2"
    )


def topics_dir() -> Path:
    """The ``topics/`` folder: inside the installed wheel, or at the repository top."""
    packaged = importlib.resources.files("triggerstream").joinpath("topics")
    if packaged.is_dir():
        return Path(str(packaged))
    return Path(__file__).resolve().parents[2] / "topics"


@cache
def load_topics(path: Path | None = None) -> tuple[TopicSpec, ...]:
    """Every declared topic, in file order."""
    path = path or topics_dir() / "topics.yaml"
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    return tuple(TopicSpec(name=name, **fields) for name, fields in document["topics"].items())


def partition_of(user_id: str, partitions: int) -> int:
    """A user's home partition: the one Kafka's default partitioner (murmur2 of the key,
    as the Java client and aiokafka compute it) gives a message keyed by ``user_id``.
    The worker keeps the user's state there and forwards messages that reach another."""
    hashed: int = murmur2(user_id.encode())
    return (hashed & 0x7FFFFFFF) % partitions


def input_partitions() -> int:
    """The partition count declared for the input topics."""
    return next(spec.partitions for spec in load_topics() if spec.direction == "in")
