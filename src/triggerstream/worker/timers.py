"""Timers on the wall clock. The timers themselves (deadline, inactivity, delay,
not_followed) live in each user's state; the worker keeps an index of when each user's
next one falls due (a :class:`TimerSchedule` per partition, rebuilt from the table after
every rebalance) and, once a timer falls due on the wall clock, sends the user a tick on
``timer-ticks`` (the partition of the user's state). The firing happens in a batch like
any event: one writer per user, changelogged, never twice.

The wall clock rules a partition only once the worker has caught up with it (its
inputs read to the end and processed; live traffic is, between two fetches): while it
works through a backlog, a user's timers fire when that user's own events pass their due
time, as in replay, or once the backlog is read. So a backlog of history gives the
triggers replay gives; a wall-clock tick never overtakes an older event of the same
user still waiting in the partition, and a tick that finds its partition behind (after a
rebalance) fires nothing.
"""

from __future__ import annotations

import time

import orjson
from faust.types import Message

from triggerstream.core.engine import Engine
from triggerstream.topics import TIMER_TICKS_TOPIC
from triggerstream.worker.batch import Batch, Redo, TouchedUser
from triggerstream.worker.intake import Intake
from triggerstream.worker.outputs import Outputs
from triggerstream.worker.schedule import TimerSchedule


class Timers:
    """The timer schedule of each partition owned, and the ticks that wake users."""

    def __init__(self, intake: Intake, outputs: Outputs) -> None:
        self.intake = intake
        self.outputs = outputs
        self.schedules: dict[int, TimerSchedule] = {}

    def of(self, partition: int) -> TimerSchedule:
        return self.schedules.setdefault(partition, TimerSchedule())

    def set(self, partition: int, key: bytes, engine: Engine, user: TouchedUser) -> None:
        """The user's next due time, as the state being stored has it."""
        state = user.state
        self.of(partition).set(key.decode(), None if state is None else engine.next_due(state))

    def __len__(self) -> int:
        return sum(len(schedule) for schedule in self.schedules.values())

    async def wake_due_users(self) -> None:
        """Send a tick to every user whose timer fell due on the wall clock, on the
        partitions that follow it (:meth:`Intake.caught_up`)."""
        now = time.time()
        due = [
            (partition, user)
            for partition, schedule in self.schedules.items()
            if self.intake.caught_up(partition)
            for user in schedule.pop_due(now)
        ]
        ticks = [
            await self.outputs.send(
                TIMER_TICKS_TOPIC,
                user.encode(),
                orjson.dumps({"user_id": user}),
                partition=partition,
            )
            for partition, user in due
        ]
        await self.outputs.settle(ticks)

    async def on_tick(
        self, batch: Batch, message: Message, user: TouchedUser, engine: Engine
    ) -> None:
        """A tick read back: the user's due timers fire now, if the partition still
        follows the wall clock."""
        key: bytes = message.key  # type: ignore[assignment]
        partition: int = message.partition
        user_id = key.decode()
        if user.state is None:
            self.of(partition).set(user_id, None)  # erased meanwhile
            return
        now = time.time()
        if not self.intake.caught_up(partition):
            # Sent when the partition was caught up (by this worker, or by the one that
            # had it before a rebalance); events of the user may be waiting now. Due
            # again at the next wake-up once it has caught up.
            self.of(partition).set(user_id, engine.next_due(user.state))
            return
        if engine.has_due(user.state, now):
            step = engine.fire_due(user_id, user.state, now)
            user.state = step.state
            user.changed = True
            user.done.append(Redo(None, message, None, now))
            await self.outputs.send_step(batch.deliveries, key, step, (), None)
        elif not user.changed:
            self.of(partition).set(user_id, engine.next_due(user.state))
