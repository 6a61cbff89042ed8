"""The order a worker processes a partition's input in: earliest event time first.

A user's events come on five topics, and Kafka orders each topic partition, not the
five together: a consumer that has fallen behind reads them in whatever interleaving
its fetches bring (a purchase before the consent that came an hour earlier). As Kafka
Streams does for a task with several inputs, the worker keeps what it has read of each
topic partition in arrival order, and releases the head with the earliest event time
once every other input of that partition has a message waiting or is known to have
nothing earlier (read to its end, as the consumer's last fetch tells; the shell
decides). An input known to have unread messages is always waited for: they will come,
however slow a fetch. A topic partition's own order is never changed, so "the order of arrival
per partition" holds.

An input read to its end may still be about to receive an earlier event from a slower
producer. ``max_idle`` (Kafka Streams' ``max.task.idle.ms``) holds a partition whose other
inputs have nothing buffered up to that long after its oldest waiting message was read,
for such an input to get something; 0 waits only for inputs known to hold unread
messages.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Generic, NamedTuple, TypeVar

Item = TypeVar("Item")

FIRST = float("-inf")
"""The event time of a message that has none (invalid input): released once at the head."""


class TopicPartition(NamedTuple):
    topic: str
    partition: int


@dataclass(slots=True)
class Waiting(Generic[Item]):
    at: float
    item: Item
    read_at: float
    """When it was read (``time.monotonic``)."""


class EventTimeMerge(Generic[Item]):
    """Messages read and not yet processed, per input topic partition."""

    def __init__(
        self,
        topics: Sequence[str],
        max_idle: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.topics = list(topics)
        self.max_idle = max_idle
        self.clock = clock
        self.rank = {topic: index for index, topic in enumerate(topics)}
        self.waiting: dict[TopicPartition, deque[Waiting[Item]]] = {}

    def add(self, topic: str, partition: int, at: float, item: Item) -> None:
        """A message read from ``topic`` (one of the inputs) with event time ``at``."""
        queue = self.waiting.setdefault(TopicPartition(topic, partition), deque())
        queue.append(Waiting(at, item, self.clock()))

    def pending(self, partition: int | None = None) -> int:
        """Messages waiting (in one partition, or in all)."""
        return sum(
            len(queue)
            for tp, queue in self.waiting.items()
            if partition is None or tp.partition == partition
        )

    def partitions(self) -> set[int]:
        """Partitions with messages waiting."""
        return {tp.partition for tp, queue in self.waiting.items() if queue}

    def idled(self) -> set[int]:
        """Partitions with a message that has waited ``max_idle`` or longer."""
        if not self.max_idle:
            return set()
        since = self.clock() - self.max_idle
        return {
            tp.partition
            for tp, queue in self.waiting.items()
            if queue and queue[0].read_at <= since
        }

    def release(
        self,
        partition: int,
        read_to_end: Callable[[TopicPartition], bool],
        drain: bool = False,
    ) -> Iterator[Item]:
        """The messages of ``partition`` that may be processed now, in order. Lazily: a
        caller that stops iterating leaves the rest waiting. ``drain`` releases all
        (nothing more is coming for now)."""
        inputs = [TopicPartition(topic, partition) for topic in self.topics]
        # Asked once per input and release: nothing is read while releasing.
        ended: dict[TopicPartition, bool] = {}

        def nothing_more(tp: TopicPartition) -> bool:
            known = ended.get(tp)
            if known is None:
                known = ended[tp] = read_to_end(tp)
            return known

        while True:
            heads = [
                (queue[0].at, self.rank[tp.topic], tp)
                for tp in inputs
                if (queue := self.waiting.get(tp))
            ]
            if not heads:
                return
            at, _, chosen = min(heads)
            if len(heads) < len(inputs) and not drain and at != FIRST:
                if not all(self.waiting.get(tp) or nothing_more(tp) for tp in inputs):
                    return  # an input with unread messages: they will come
                if self.max_idle and self._waited(heads) < self.max_idle:
                    return  # a slower producer's earlier event may still come
            yield self.waiting[chosen].popleft().item

    def _waited(self, heads: list[tuple[float, int, TopicPartition]]) -> float:
        """How long the partition has been held: since its oldest head was read."""
        return self.clock() - min(self.waiting[tp][0].read_at for _, _, tp in heads)

    def clear(self) -> list[Item]:
        """Everything waiting, removed."""
        items = [waiting.item for queue in self.waiting.values() for waiting in queue]
        self.waiting = {}
        return items

    def forget_partitions(self, keep: set[int]) -> None:
        """Drop what waits for partitions this worker no longer owns (unacknowledged, it
        will be read again by their new owner)."""
        self.waiting = {tp: q for tp, q in self.waiting.items() if tp.partition in keep}
