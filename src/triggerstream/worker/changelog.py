"""A batch's table writes on their way to the changelogs: queued while the batch
stores, then handed to aiokafka as one record batch per changelog partition (faust's
table path adds a buffer and a callback per write, and a producer send per record costs
more than encoding the state).

Each record says which group generation its writer owned the partition in (the
``triggerstream-generation`` header). A worker cut off from its group keeps what it
had handed over; once its network is back, those records reach the changelog after the
records of the worker the group gave the partition to, and would win when the
changelog is read again. :class:`Generations` leaves them out when it is read: a
record of an older generation than one already read, written before that generation's
first record, comes from a worker that had lost the partition.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("triggerstream.worker")

GENERATION = "triggerstream-generation"
"""The header naming the group generation a changelog record was written in."""
_GENERATION = struct.Struct(">i")


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

    async def hand_over(self, producer: Any, generation: int) -> None:
        """One record batch (or more, when full) per topic partition, in order, each
        record marked with the group generation the writes were made in."""
        queued, self.queued = self.queued, {}
        if not queued:
            return
        sender = producer
        headers = [(GENERATION, _GENERATION.pack(generation))]
        for (topic, partition), records in queued.items():
            builder = sender.create_batch()
            members: list[Queued] = []
            for key, value, write in records:
                if builder.append(timestamp=None, key=key, value=value, headers=headers) is None:
                    await _send(sender, builder, topic, partition, members)
                    builder, members = sender.create_batch(), []
                    if (
                        builder.append(timestamp=None, key=key, value=value, headers=headers)
                        is None
                    ):
                        # Larger than a batch: alone, as the producer sends it.
                        write.ack = await sender.send(
                            topic, value, key=key, partition=partition, headers=headers
                        )
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


class Generations:
    """Per changelog partition read, the newest group generation its records were
    written in, and when that generation's first record was written; what is read is
    kept unless a worker wrote it after it had lost the partition.

    A record is left out when its generation is older than the newest read and it was
    written before that generation's first record: its writer had the partition before
    the group gave it on, and its record arrived late (the writer was cut off). A
    record of an older generation written later is kept, and its generation becomes
    the newest: the group began again (a group whose offsets expired starts from
    generation 1). Records without the header (written by an older version, or in a
    Kafka transaction, which fences its own writers) are always kept. What was read
    is remembered while the worker runs: a worker restarted between a newer
    generation's records and a late one reads that late one as current (its clock
    decides too: a late writer whose clock was ahead is not recognised)."""

    def __init__(self) -> None:
        self.newest: dict[tuple[str, int], tuple[int, float]] = {}

    def current(self, topic: str, partition: int, messages: Sequence[Any]) -> list[Any]:
        """The messages of a fetch of one changelog partition that are not late."""
        tp = (topic, partition)
        newest = self.newest.get(tp)
        kept = []
        late: list[int] = []
        for message in messages:
            generation = _generation_of(message)
            if generation is None:
                kept.append(message)
                continue
            written = float(message.timestamp)
            if newest is None or generation > newest[0]:
                newest = (generation, written)
            elif generation < newest[0]:
                if written < newest[1]:
                    late.append(generation)
                    continue
                newest = (generation, written)
            kept.append(message)
        if newest is not None:
            self.newest[tp] = newest
        if late:
            log.warning(
                "%s[%d]: left out %d changelog record(s) of generation %s that came after "
                "records of generation %d: written by a worker the group had since taken "
                "the partition from (cut off from the group, its network came back)",
                topic,
                partition,
                len(late),
                "/".join(str(g) for g in sorted(set(late))),
                newest[0] if newest is not None else -1,
            )
        return kept


def _generation_of(message: Any) -> int | None:
    headers = message.headers
    if not headers:
        return None
    pairs = headers.items() if isinstance(headers, dict) else headers
    for name, value in pairs:
        if name == GENERATION and value is not None and len(value) == _GENERATION.size:
            generation: int = _GENERATION.unpack(value)[0]
            return generation
    return None
