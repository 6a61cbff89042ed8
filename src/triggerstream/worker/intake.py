"""Reading: what the consumer hands over, validated from its raw bytes and queued in
each partition's event-time order (:class:`EventTimeMerge`), and how far each input
partition is read and processed.

The consumer hands over every input message of a fetch at once (no faust agent: its
per-message path cost more than the work). A message stays unacknowledged until its
batch is stored: faust waits for it before a rebalance or a stop, and commits no offset
past it. Invalid input is kept in its place as an :class:`InvalidEvent`; the batch
loop dead-letters it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from faust.types import TP, Message

from triggerstream.events import INPUT_TOPICS, Event, InvalidEvent, decode_event, refuse_future
from triggerstream.settings import Settings
from triggerstream.topics import REPARTITION_TOPIC, TIMER_TICKS_TOPIC
from triggerstream.worker.app import WorkerApp
from triggerstream.worker.batch import Read
from triggerstream.worker.fence import paused_for_buffer, unacked_messages
from triggerstream.worker.forward import forwarded
from triggerstream.worker.merge import FIRST, EventTimeMerge
from triggerstream.worker.outputs import Headers

BUFFERED_PER_INPUT = 5_000
"""Messages read and waiting in one input topic partition (ahead in event time of
another input of its partition) at which the consumer stops fetching it, until half
have gone: memory stays bounded when one input is far behind the others (as Kafka
Streams' ``buffered.records.per.partition``). Seen: 1.3 GB of usage events held while a
backlog of 2.2 million profile events an hour earlier was read."""


class Intake:
    """The input topics as the worker reads them."""

    def __init__(self, app: WorkerApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.design_name = {
            settings.topic(name): name for name in (*INPUT_TOPICS, REPARTITION_TOPIC)
        }
        """The topics read as input (the five inputs, and the messages forwarded to
        their users' home partitions), by their broker names."""
        self.ticks_topic = settings.topic(TIMER_TICKS_TOPIC)
        self.merge: EventTimeMerge[Read] = EventTimeMerge(
            list(self.design_name), max_idle=settings.max_idle
        )
        self.read_offset: dict[tuple[str, int], int] = {}
        """Per input topic partition: the offset after the last message read."""
        self.processed_offset: dict[tuple[str, int], int] = {}
        """Per input topic partition: the offset after the last message processed."""
        self.idle_since: float | None = time.monotonic()
        """Since when the worker has been waiting for a message (None: it is busy)."""
        self.giving_back = False
        """Set from giving back what was read (a rebalance or a stop) until the next
        assignment is ready: whatever the consumer still hands over meanwhile is given back."""

    def take(self, messages: list[Message]) -> tuple[set[int], list[Message]] | None:
        """Every input message of one fetch, in offset order per topic partition: the
        partitions that got events, and the timer ticks (None: given back)."""
        if self.giving_back:
            # Fetched after the rest was given back (a rebalance or a stop is under
            # way): not taken; whoever owns the partition next reads them again.
            return None
        self.idle_since = None
        unacked = unacked_messages(self.app.consumer)
        ticks = []
        partitions = set()
        for message in messages:
            # Unacknowledged until processed: faust waits for these before a
            # rebalance or a stop, and commits no offset past them.
            unacked.add(message)
            if message.topic == self.ticks_topic:
                ticks.append(message)
            else:
                self.read(message)
                partitions.add(message.partition)
        return partitions, ticks

    def read(self, message: Message) -> None:
        """Validate a message and queue it in its partition's event-time order."""
        source = topic = self.design_name[message.topic]
        headers = _headers(message)
        if source == REPARTITION_TOPIC:
            topic, headers = forwarded(headers)
        decoded: Event | InvalidEvent
        try:
            if message.value is None:
                raise InvalidEvent("tombstone", "a null value (a tombstone) carries no event")
            decoded = refuse_future(
                decode_event(topic, message.value), time.time(), self.settings.max_future
            )
            at = decoded.at
        except InvalidEvent as error:
            decoded, at = error, FIRST
        self.read_offset[(message.topic, message.partition)] = message.offset + 1
        self.merge.add(
            message.topic, message.partition, at, Read(message, source, topic, headers, decoded)
        )

    def limit_reading(self) -> None:
        """Stop fetching an input whose waiting messages reached ``BUFFERED_PER_INPUT``
        (faust's consumer leaves it out of its fetches); fetch it again at half."""
        consumer = self.app.consumer
        held = paused_for_buffer(consumer)
        for tp, queue in self.merge.waiting.items():
            partition = TP(tp.topic, tp.partition)
            if len(queue) >= BUFFERED_PER_INPUT:
                if partition not in held:
                    consumer.on_buffer_full(partition)
            elif partition in held and len(queue) <= BUFFERED_PER_INPUT // 2:
                consumer.on_buffer_drop(partition)

    def processed(self, messages: list[Message]) -> None:
        """A batch's input messages are stored with their effects: acknowledged (their
        offsets become committable)."""
        ack = self.app.consumer.ack
        processed_offset = self.processed_offset
        for message in messages:
            ack(message)
            processed_offset[(message.topic, message.partition)] = message.offset + 1

    def abandon(self, messages: list[Message]) -> None:
        """A batch's input messages, processed by a worker that has since lost their
        partitions: never acknowledged, no longer waited for."""
        unacked = unacked_messages(self.app.consumer)
        for message in messages:
            unacked.discard(message)

    def give_back(self) -> None:
        """Drop what was read and not processed, unacknowledged (faust is about to wait
        for every message in hand: a rebalance or a stop)."""
        self.giving_back = True  # until the next assignment is ready
        unacked = unacked_messages(self.app.consumer)
        for read in self.merge.clear():
            unacked.discard(read.message)
        consumer = self.app.consumer
        for partition in list(paused_for_buffer(consumer)):
            consumer.on_buffer_drop(partition)  # nothing is waiting any more

    def reassigned(self, active: set[int]) -> None:
        """Partitions settled: read from the committed offsets of those owned."""
        self.merge.forget_partitions(active)
        self.read_offset = {}  # until a message is read: the committed offset
        self.processed_offset = {}

    # --- how far each input is read -----------------------------------------------

    def caught_up(self, partition: int) -> bool:
        """Whether the partition's inputs are read to the end (as the last fetch told)
        and processed: only then may its timers fire on the wall clock. Not before: a
        user's events still unread or waiting could come after the due time (seen: a
        backlog that reached the present fired inactivity timers of users whose later
        activity was still queued, where replay saw the activity first)."""
        return self.merge.pending(partition) == 0 and all(
            self.read_to_end((topic, partition)) for topic in self.design_name
        )

    def consumer_lag(self, partitions: list[int]) -> dict[tuple[str, int], int]:
        """Per input topic (its name without the prefix) and partition: the messages on the broker
        (as the consumer last heard) not yet processed."""
        lag = {}
        for partition in partitions:
            for topic, name in self.design_name.items():
                highwater = self.app.consumer.highwater(TP(topic, partition))
                if highwater is None:
                    continue
                done = self.processed_offset.get((topic, partition))
                if done is None:
                    done = self._reading_start((topic, partition))
                lag[(name, partition)] = max(0, highwater - done)
        return lag

    def _reading_start(self, tp: tuple[str, int]) -> int:
        """Where reading started after the last assignment: the committed offset, or
        the start of the log (0 until the consumer has sought)."""
        starts: dict[TP, int] = self.app.consumer.reading_starts  # type: ignore[attr-defined]
        return starts.get(TP(*tp), 0)

    def _end(self, tp: tuple[str, int]) -> int | None:
        """The end of an input topic partition as the consumer last heard it: from its
        last fetch, or before any fetch answered, from the broker when it was sought
        (else an input not fetched yet after a rebalance let the others go first)."""
        consumer: Any = self.app.consumer
        highwater: int | None = consumer.highwater(TP(*tp))
        if highwater is None:
            highwater = consumer.reading_ends.get(TP(*tp))
        return highwater

    def end_unknown(self, tp: tuple[str, int]) -> bool:
        return self._end(tp) is None

    def read_to_end(self, tp: tuple[str, int]) -> bool:
        """Whether every message of the input topic partition up to its end (as the
        consumer last heard it) has been read by the worker."""
        highwater = self._end(tp)
        if highwater is None:
            return False
        read = self.read_offset.get(tp)
        if read is None:
            # Nothing read since the partition was assigned. The consumer's own position
            # would not do: it runs ahead, over messages fetched but not yet handed to
            # the worker.
            read = self._reading_start(tp)
        return bool(read >= highwater)


def _headers(message: Message) -> Headers:
    """A message's headers as (name, value) pairs."""
    headers = message.headers
    if not headers:
        return ()
    if isinstance(headers, Mapping):
        return tuple(headers.items())
    return tuple(headers)
