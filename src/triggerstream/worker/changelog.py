"""A batch's table writes on their way to the changelogs: queued while the batch
stores, then handed to aiokafka as one record batch per changelog partition (faust's
table path adds a buffer and a callback per write, and a producer send per record costs
more than encoding the state)."""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class Written:
    """Where a changelog record was written: its topic, partition and offset."""

    topic: str
    partition: int
    offset: int


class Queued:
    """A changelog record in a record batch: awaiting it gives where it was written
    (the batch's first offset plus the record's place in it)."""

    __slots__ = ("ack", "place")

    def __init__(self) -> None:
        self.ack: Any = None
        self.place = 0

    def __await__(self) -> Generator[Any, None, Written]:
        metadata = yield from self.ack.__await__()
        return Written(metadata.topic, metadata.partition, metadata.offset + self.place)


class ChangelogBatches:
    """Table writes waiting for their changelogs, a list per topic partition."""

    def __init__(self) -> None:
        self.queued: dict[tuple[str, int], list[tuple[bytes, bytes | None, Queued]]] = {}

    def add(self, topic: str, partition: int, key: bytes, value: bytes | None) -> Queued:
        queued = Queued()
        self.queued.setdefault((topic, partition), []).append((key, value, queued))
        return queued

    async def hand_over(self, producer: Any) -> None:
        """One record batch (or more, when full) per topic partition, in order."""
        queued, self.queued = self.queued, {}
        if not queued:
            return
        sender = producer
        for (topic, partition), records in queued.items():
            builder = sender.create_batch()
            members: list[Queued] = []
            for key, value, write in records:
                if builder.append(timestamp=None, key=key, value=value, headers=[]) is None:
                    await _send(sender, builder, topic, partition, members)
                    builder, members = sender.create_batch(), []
                    if builder.append(timestamp=None, key=key, value=value, headers=[]) is None:
                        # Larger than a batch: alone, as the producer sends it.
                        write.ack = await sender.send(topic, value, key=key, partition=partition)
                        continue
                write.place = len(members)
                members.append(write)
            await _send(sender, builder, topic, partition, members)


async def _send(
    sender: Any, builder: Any, topic: str, partition: int, members: list[Queued]
) -> None:
    if not members:
        return
    ack = await sender.send_batch(builder, topic, partition=partition)
    for write in members:
        write.ack = ack
