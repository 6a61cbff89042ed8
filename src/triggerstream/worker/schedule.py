"""When each user's next timer falls due, on the worker's wall clock.

The timers themselves live in each user's state (and so in RocksDB and the changelog);
this is only the worker's index of them for one partition, rebuilt from the table after
every rebalance.
"""

from __future__ import annotations

import heapq

RETRY_AFTER = 60.0
"""A wake-up call is repeated after this many seconds if its answer never came (the tick
lost, or still queued behind a backlog): its answer sets the real next due time."""


class TimerSchedule:
    """Users by next due time, earliest first; stale entries are skipped."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, str]] = []
        self._next: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self._next)

    def set(self, user: str, due: float | None) -> None:
        """The user's next due time (None: no timer left)."""
        if due is None:
            self._next.pop(user, None)
            return
        if self._next.get(user) == due:
            return
        self._next[user] = due
        heapq.heappush(self._heap, (due, user))
        if len(self._heap) > 2 * len(self._next) + 1024:
            # Superseded entries leave the heap only once due: an inactivity timer moved
            # a week ahead by every event would keep one per event for a week.
            self._heap = [(when, name) for name, when in self._next.items()]
            heapq.heapify(self._heap)

    def pop_due(self, now: float) -> list[str]:
        """The users due at or before ``now``; each is asked again after
        :data:`RETRY_AFTER` unless :meth:`set` is told its next due time first."""
        due: list[str] = []
        while self._heap and self._heap[0][0] <= now:
            when, user = heapq.heappop(self._heap)
            if self._next.get(user) != when:
                continue  # superseded by a later set
            due.append(user)
        for user in due:
            self.set(user, now + RETRY_AFTER)
        return due
