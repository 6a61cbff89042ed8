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
"""

from __future__ import annotations

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


class EventTimeMerge(Generic[Item]):
    """Messages read and not yet processed, per input topic partition."""

    def __init__(self, topics: Sequence[str]) -> None:
        self.topics = list(topics)
        self.rank = {topic: index for index, topic in enumerate(topics)}
        self.waiting: dict[TopicPartition, deque[Waiting[Item]]] = {}

    def add(self, topic: str, partition: int, at: float, item: Item) -> None:
        """A message read from ``topic`` (one of the inputs) with event time ``at``."""
        queue = self.waiting.setdefault(TopicPartition(topic, partition), deque())
        queue.append(Waiting(at, item))

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
            incomplete = len(heads) < len(inputs) and not all(
                self.waiting.get(tp) or nothing_more(tp) for tp in inputs
            )
            if incomplete and not drain and at != FIRST:
                return
            yield self.waiting[chosen].popleft().item

    def clear(self) -> list[Item]:
        """Everything waiting, removed."""
        items = [waiting.item for queue in self.waiting.values() for waiting in queue]
        self.waiting = {}
        return items

    def forget_partitions(self, keep: set[int]) -> None:
        """Drop what waits for partitions this worker no longer owns (unacknowledged, it
        will be read again by their new owner)."""
        self.waiting = {tp: q for tp, q in self.waiting.items() if tp.partition in keep}
