"""When each user's next timer falls due, on the worker's wall clock.

The timers themselves live in each user's state (and so in RocksDB and the changelog);
this is only the worker's index of them, rebuilt from the table after every rebalance.
"""

from __future__ import annotations

import heapq
from collections.abc import Collection

RETRY_AFTER = 60.0
"""A wake-up call is repeated after this many seconds if its answer never came (the tick
lost, or still queued behind a backlog): its answer sets the real next due time."""


class TimerSchedule:
    """``(partition, user)`` by next due time, earliest first; stale entries are skipped."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, str]] = []
        self._next: dict[tuple[int, str], float] = {}

    def __len__(self) -> int:
        return len(self._next)

    def set(self, partition: int, user: str, due: float | None) -> None:
        """The user's next due time (None: no timer left)."""
        key = (partition, user)
        if due is None:
            self._next.pop(key, None)
            return
        if self._next.get(key) == due:
            return
        self._next[key] = due
        heapq.heappush(self._heap, (due, partition, user))

    def pop_due(self, now: float) -> list[tuple[int, str]]:
        """The users due at or before ``now``; each is asked again after
        :data:`RETRY_AFTER` unless :meth:`set` is told its next due time first."""
        due: list[tuple[int, str]] = []
        while self._heap and self._heap[0][0] <= now:
            when, partition, user = heapq.heappop(self._heap)
            key = (partition, user)
            if self._next.get(key) != when:
                continue  # superseded by a later set
            due.append(key)
        for partition, user in due:
            self.set(partition, user, now + RETRY_AFTER)
        return due

    def forget_partitions(self, keep: Collection[int]) -> None:
        """Drop the users of every partition not in ``keep`` (after a rebalance)."""
        self._next = {key: due for key, due in self._next.items() if key[0] in keep}
        self._heap = [entry for entry in self._heap if entry[1] in keep]
        heapq.heapify(self._heap)
