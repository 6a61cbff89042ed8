"""Rules on a topic (docs/contract.md section 17): published, listed and followed.

``triggerstream rules publish FILE`` writes a checked rules file to the compacted topic
``<prefix>rules`` under the key ``rules``; workers started with ``--rules-from-topic``
take the latest version at start and each new one as it arrives, so every worker of a
group converges on one version without a shared file. Compaction keeps the latest
version for good, and older ones only until the broker compacts them away.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import Literal

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from triggerstream import kafka
from triggerstream.rules.load import Problem, RulesError, parse_rules, rules_version
from triggerstream.rules.model import RulesFile
from triggerstream.settings import Settings

RULES_TOPIC = "rules"
"""The topic of published rules (before the prefix)."""
RULES_KEY = b"rules"
"""Every version has this key: compaction keeps the latest."""


class PublishedRules(BaseModel):
    """One published version of the rules, on ``rules`` under the key ``rules``."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    version: str = Field(
        description="The first 12 hex digits of the sha256 of `text` (UTF-8): the "
        "`rules_version` of the decisions these rules make."
    )
    published_at: AwareDatetime
    published_by: str = Field(
        description="Who published it: the setting TRIGGERSTREAM_USER, else the OS user."
    )
    text: str = Field(description="The rules file's text (YAML), as it was checked.")
    schema_version: Literal[1] = 1

    @classmethod
    def of(cls, text: str, by: str, at: dt.datetime) -> PublishedRules:
        return cls(version=rules_version(text), published_at=at, published_by=by, text=text)


def parse_published(value: bytes | None, where: str) -> tuple[PublishedRules, RulesFile]:
    """A record of the rules topic and the rules it carries, or :class:`RulesError` with
    every problem (as ``rules check`` names them, the file being ``where``)."""
    try:
        published = PublishedRules.model_validate_json(value or b"")
    except ValidationError as error:
        first = error.errors()[0]
        place = ".".join(map(str, first["loc"]))
        why = f"{place}: {first['msg']}" if place else first["msg"]
        raise RulesError(where, [Problem((), f"not a published rules record ({why})")]) from None
    rules = parse_rules(published.text, f"{where} (version {published.version})")
    return published, rules


async def publish(settings: Settings, published: PublishedRules) -> str:
    """Write a version to the rules topic; the topic's name on the broker."""
    topic = settings.topic(RULES_TOPIC)
    await kafka.require_topics(settings, [topic])
    await kafka.produce(settings, [(topic, RULES_KEY, published.model_dump_json().encode())])
    return topic


class RulesFollower:
    """A consumer without a group of every partition of the rules topic, from the
    beginning: the versions published, in order, and then each new one."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topic = settings.topic(RULES_TOPIC)
        self.consumer: AIOKafkaConsumer | None = None
        self.partitions: list[TopicPartition] = []
        self.rules: RulesFile | None = None
        """The version taken at start (:func:`latest`)."""

    async def start(self) -> None:
        partitions = await kafka.require_topics(self.settings, [self.topic])
        consumer = AIOKafkaConsumer(
            **self.settings.kafka_options(), enable_auto_commit=False, group_id=None
        )
        try:
            await asyncio.wait_for(consumer.start(), self.settings.request_timeout)
        except (KafkaError, OSError, TimeoutError) as error:
            await consumer.stop()
            raise await kafka.unreachable(self.settings, error) from None
        self.consumer = consumer
        self.partitions = [TopicPartition(self.topic, p) for p in range(partitions[self.topic])]
        consumer.assign(self.partitions)
        await consumer.seek_to_beginning(*self.partitions)

    async def stop(self) -> None:
        if self.consumer is not None:
            await self.consumer.stop()
            self.consumer = None

    async def poll(self, wait: float = 0.0) -> list[tuple[int, bytes | None]]:
        """The records that arrived, ``(offset, value)`` in order; waits up to ``wait``
        seconds for the first."""
        assert self.consumer is not None, "start() first"
        batches = await self.consumer.getmany(timeout_ms=int(wait * 1000))
        return [(r.offset, r.value) for records in batches.values() for r in records]

    async def to_the_end(self, within: float) -> list[tuple[int, bytes | None]]:
        """Every record published so far (within ``within`` seconds of reading)."""
        assert self.consumer is not None, "start() first"
        ends = await self.consumer.end_offsets(self.partitions)
        read: list[tuple[int, bytes | None]] = []
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            positions = [await self.consumer.position(tp) for tp in self.partitions]
            if all(p >= ends[tp] for p, tp in zip(positions, self.partitions, strict=True)):
                break
            read += await self.poll(0.2)
        return read

    def where(self, offset: int) -> str:
        return f"{self.topic} offset {offset}"


async def history(settings: Settings, within: float) -> list[tuple[int, PublishedRules | str]]:
    """Every version still on the rules topic, oldest first, with its offset: the record,
    or why it is not one."""
    follower = RulesFollower(settings)
    await follower.start()
    try:
        read = await follower.to_the_end(within)
    finally:
        await follower.stop()
    listed: list[tuple[int, PublishedRules | str]] = []
    for offset, value in read:
        try:
            listed.append((offset, PublishedRules.model_validate_json(value or b"")))
        except ValidationError as error:
            listed.append(
                (offset, f"not a published rules record ({error.error_count()} error(s))")
            )
    return listed


class RulesNotPublished(kafka.KafkaUnavailable):
    """No usable version on the rules topic within the wait; the message says the fix."""


async def latest(
    follower: RulesFollower, within: float
) -> tuple[PublishedRules, RulesFile, list[RulesError]]:
    """The latest valid version on the rules topic, read to its end (waiting up to
    ``within`` seconds for one to be published), and the invalid ones after it."""
    deadline = time.monotonic() + within
    read = await follower.to_the_end(within)
    while True:
        refused: list[RulesError] = []
        for offset, value in reversed(read):
            try:
                published, rules = parse_published(value, follower.where(offset))
            except RulesError as error:
                refused.insert(0, error)
                continue
            follower.rules = rules
            return published, rules, refused
        left = deadline - time.monotonic()
        if left <= 0:
            break
        read += await follower.poll(min(left, 0.5))
    found = (
        f"only {len(refused)} invalid version(s) there (the latest: "
        f"{refused[-1].problems[0].render(refused[-1].file)}), and "
        if refused
        else ""
    )
    raise RulesNotPublished(
        f"no rules published on {follower.topic} within {within:g}s "
        f"(TRIGGERSTREAM_RULES_WAIT): {found}the worker needs a valid version; publish "
        "one with `triggerstream rules publish FILE` (same --bootstrap and "
        "--topic-prefix), or run the worker with --rules FILE"
    )
