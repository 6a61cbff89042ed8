"""The stream worker: the engine's pure core on Kafka (DESIGN.md sections 2 to 10).

One faust agent reads the five input topics and the worker's own ``timer-ticks`` topic,
one message at a time (concurrency 1: with more, faust-streaming can commit past an
unprocessed message, issue 606). For an input message it validates the raw bytes, loads
the user's state from the ``users`` table (RocksDB, changelog on the broker), hands both
to :meth:`Engine.handle` (the call replay makes), sends what came out, and only then
stores the state back: after a crash, an event whose outputs were not all acknowledged
is processed again (same trigger ids), and one whose state was stored is recognised by
its id and dropped. Invalid input goes to ``events.dlq`` with its bytes and changes
nothing.

Timers (deadline, inactivity, delay) live in each user's state. The worker keeps an
index of when each user's next one falls due (:class:`TimerSchedule` per partition,
rebuilt from the table after every rebalance) and, once a timer falls due on the wall
clock, sends the user a tick on ``timer-ticks`` (same partition as the user's state), so
the firing happens inside the agent like any event: one writer per user, changelogged,
never twice.

The wall clock rules a partition only once the worker has caught up with it (or is
reading live events): while it works through a backlog, a user's timers fire when that
user's own events pass their due time, as in replay, or once the backlog is read. So a
backlog of history gives the triggers replay gives; a wall-clock tick never overtakes
an older event of the same user still waiting in the partition.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
import weakref
from collections.abc import Awaitable, Iterator
from pathlib import Path
from typing import Any, cast

import faust
import orjson
from aiokafka.errors import KafkaError
from faust.streams import _current_event
from faust.types import TP

from triggerstream.core.engine import Engine, Step
from triggerstream.core.recommend import CoPurchaseCounts
from triggerstream.core.state import UserState
from triggerstream.events import INPUT_TOPICS, Event, InvalidEvent, decode_event
from triggerstream.records import (
    ATTRIBUTIONS_TOPIC,
    CHANNEL_TOPICS,
    DEAD_LETTER_TOPIC,
    DECISIONS_TOPIC,
    DeadLetter,
)
from triggerstream.rules.load import RulesError, load_rules
from triggerstream.rules.model import RulesFile
from triggerstream.settings import Settings
from triggerstream.topics import TIMER_TICKS_TOPIC
from triggerstream.worker import metrics
from triggerstream.worker.app import build_app, rocksdb_options
from triggerstream.worker.merge import FIRST, EventTimeMerge
from triggerstream.worker.preflight import OUTPUTS, Layout
from triggerstream.worker.schedule import TimerSchedule
from triggerstream.worker.web import add_routes

log = logging.getLogger("triggerstream.worker")

WAKE_INTERVAL = 1.0
"""Seconds between two looks at the timer schedule: timers fire well within a minute."""
LIVE_WINDOW = 60.0
"""A partition whose latest event occurred less than this long ago is read live: its
timers follow the wall clock even if a few events are still queued."""
MAX_WAIT = 0.5
"""Seconds the consumer must have had nothing for the agent before read messages stop
waiting for an input of their partition whose end is not known yet (event-time order)."""
RULES_CHECK_INTERVAL = 2.0
"""Seconds between two looks at the rules file for a change."""
SEND_RETRY = 1.0
"""Seconds between two attempts to send an output the broker did not take."""


class TriggerWorker:
    """The faust app with its agent, tables and timers, around one rules file."""

    def __init__(self, settings: Settings, rules_path: Path, layout: Layout) -> None:
        self.settings = settings
        self.rules_path = rules_path
        self.rules_text: bytes | None = rules_path.read_bytes()
        self.rules: RulesFile = load_rules(rules_path)
        self.app = app = build_app(settings, layout.partitions, layout.replicas)
        table_options = rocksdb_options(settings, layout.partitions)

        def table(name: str, meaning: str) -> faust.types.TableT[bytes, bytes]:
            created = app.Table(
                name,
                key_type=bytes,
                value_type=bytes,
                partitions=layout.partitions,
                options=dict(table_options),  # faust's store takes keys out of it
                help=meaning,
            )
            # faust checks co-partitioning on a table's first write from each topic,
            # against the consumer's metadata, which can still show a changelog created
            # moments ago with 0 partitions: the agent crashed with the message in hand
            # (seen on Apache Kafka). The preflight checks it on the broker instead.
            created._verified_source_topics_for_partitions.update(  # type: ignore[attr-defined]
                (
                    *(settings.topic(name) for name in INPUT_TOPICS),
                    settings.topic(TIMER_TICKS_TOPIC),
                )
            )
            return created

        self.users = table("users", "UserState of each user, as bytes.")
        self.copurchase_table = table(
            "copurchases", "Co-purchase counts: b'<partition>:<sku>' -> {other sku: orders}."
        )
        self.design_name = {settings.topic(name): name for name in INPUT_TOPICS}
        self.ticks_topic = settings.topic(TIMER_TICKS_TOPIC)
        source = app.topic(
            *self.design_name,
            self.ticks_topic,
            key_serializer="raw",
            value_serializer="raw",
        )
        self.outputs = {
            name: app.topic(settings.topic(name), key_serializer="raw", value_serializer="raw")
            for name in (*OUTPUTS, TIMER_TICKS_TOPIC)
        }
        self.copurchases: dict[int, CoPurchaseCounts] = {}
        self.engines: dict[int, Engine] = {}
        self.schedules: dict[int, TimerSchedule] = {}
        self.read_offset: dict[tuple[str, int], int] = {}
        """Per input topic partition: the offset after the last message read."""
        self.processed_offset: dict[tuple[str, int], int] = {}
        """Per input topic partition: the offset after the last message processed."""
        self.partitions: list[int] = []
        """The partitions this worker owns, once ready."""
        self.users_tracked = 0
        self.merge: EventTimeMerge[tuple[faust.types.EventT[bytes], Event | InvalidEvent]] = (
            EventTimeMerge(list(self.design_name))
        )
        self.idle_since: float | None = time.monotonic()
        """Since when the agent has been waiting for a message (None: it is busy)."""
        self.processing = asyncio.Lock()
        """Held while a message is processed: one writer of the tables at a time."""
        self.latest_event_at: dict[int, float] = {}
        self.ready = False
        self.giving_back = False
        """Set from giving back what was read (a rebalance or a stop) until the next
        assignment is ready: whatever the agent still reads meanwhile is given back."""
        app.give_back = self._give_back
        metrics.CONSUMER_LAG.source = self.consumer_lag
        add_routes(self)
        app.agent(source, name="triggerstream.events", concurrency=1)(self._consume)
        app.timer(WAKE_INTERVAL, name="triggerstream.wake_due_users")(self._wake_due_users)
        app.timer(MAX_WAIT / 4, name="triggerstream.release_waiting")(self._release_waiting)
        app.timer(RULES_CHECK_INTERVAL, name="triggerstream.watch_rules")(self._watch_rules)
        # mode types a receiver as a union of callables, which mypy cannot match.
        app.on_rebalance_complete.connect(self._on_rebalance_complete)  # type: ignore[arg-type]
        app.on_partitions_revoked.connect(self._on_partitions_revoked)  # type: ignore[arg-type]

    # --- the agent -------------------------------------------------------------------

    async def _consume(self, stream: faust.StreamT[bytes]) -> None:
        # Acknowledged by hand: an input message is acknowledged (and its offset becomes
        # committable) only once processed, which may be after later ones were read.
        async for event in cast(faust.Stream[bytes], stream).noack().events():
            self.idle_since = None
            message = event.message
            if message.topic == self.ticks_topic:
                async with self.processing:
                    await self._on_tick(message)
                event.ack()
            elif self.giving_back:
                # Read after the rest was given back (faust's stream had it in hand):
                # given back too, or faust would wait for its acknowledgement forever.
                self.app.consumer._unacked_messages.discard(message)  # type: ignore[attr-defined]
            else:
                self._read(event)
                await self._release(message.partition)
            self.idle_since = time.monotonic()

    def _read(self, event: faust.types.EventT[bytes]) -> None:
        """Validate a message and queue it in its partition's event-time order."""
        message = event.message
        topic = self.design_name[message.topic]
        decoded: Event | InvalidEvent
        try:
            decoded = decode_event(topic, message.value if message.value is not None else b"")
            at = decoded.occurred_at.timestamp()
            self.latest_event_at[message.partition] = at
        except InvalidEvent as error:
            decoded, at = error, FIRST
        self.read_offset[(message.topic, message.partition)] = message.offset + 1
        self.merge.add(message.topic, message.partition, at, (event, decoded))

    async def _release(self, partition: int, idle: bool = False) -> None:
        """Process the partition's queued messages that may go now."""

        def nothing_earlier(tp: tuple[str, int]) -> bool:
            return self._read_to_end(tp) or (idle and self._end_unknown(tp))

        async with self.processing:
            released = self.merge.release(partition, nothing_earlier)
            for event, decoded in released:
                # Tables write to the partition of faust's "current event": the message
                # being processed, which is no longer the one the stream last yielded.
                token = _current_event.set(weakref.ref(event))
                try:
                    await self._on_event(event.message, decoded)
                finally:
                    _current_event.reset(token)
                event.ack()
                message = event.message
                self.processed_offset[(message.topic, message.partition)] = message.offset + 1

    def _give_back(self) -> None:
        """Drop what was read and not processed, unacknowledged (faust is about to wait
        for every message in hand: a rebalance or a stop)."""
        self.giving_back = True  # until the next assignment is ready
        unacked = self.app.consumer._unacked_messages  # type: ignore[attr-defined]
        for event, _ in self.merge.clear():
            unacked.discard(event.message)

    async def _release_waiting(self) -> None:
        """Once the consumer has had nothing for the agent for a while, an input the
        consumer knows nothing about yet (no fetch answered) stops holding the others
        back. An input known to have unread messages always does: they will come."""
        idle = self.idle_since
        if idle is None or time.monotonic() - idle < MAX_WAIT:
            return
        for partition in self.merge.partitions():
            await self._release(partition, idle=True)

    def consumer_lag(self) -> dict[tuple[str, int], int]:
        """Per input topic (its DESIGN name) and partition owned: the messages on the
        broker (as the consumer last heard) not yet processed."""
        if not self.ready:
            return {}
        lag = {}
        for partition in self.partitions:
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

    def _end_unknown(self, tp: tuple[str, int]) -> bool:
        return self._end(tp) is None

    def _read_to_end(self, tp: tuple[str, int]) -> bool:
        """Whether every message of the input topic partition up to its end (as the
        consumer last heard it) has been read by the agent."""
        highwater = self._end(tp)
        if highwater is None:
            return False
        read = self.read_offset.get(tp)
        if read is None:
            # Nothing read since the partition was assigned. The consumer's own position
            # would not do: it runs ahead, over messages fetched but not yet handed to
            # the agent.
            read = self._reading_start(tp)
        return bool(read >= highwater)

    async def _on_event(self, message: Any, decoded: Event | InvalidEvent) -> None:
        began = time.perf_counter()
        topic = self.design_name[message.topic]
        if isinstance(decoded, InvalidEvent):
            metrics.EVENTS_INVALID.labels(topic, decoded.code).inc()
            await self._dead_letter(message, decoded.code, decoded.reason)
            return
        event = decoded
        metrics.EVENTS.labels(topic, event.type).inc()
        user = event.user_id
        key = user.encode()
        partition: int = message.partition
        engine = self._engine(partition)
        try:
            state = self._load(key)
            if state is not None and _already_processed(state, topic, message):
                metrics.EVENTS_DUPLICATE.inc()
                return
            step = engine.handle(user, state, event)
        except Exception as error:  # a bug must cost one event, never the worker
            log.exception("the engine failed on %s offset %s", message.topic, message.offset)
            metrics.EVENTS_INVALID.labels(topic, "internal_error").inc()
            await self._dead_letter(message, "internal_error", f"the engine failed: {error!r}")
            return
        if step.duplicate:
            metrics.EVENTS_DUPLICATE.inc()
            return
        if step.state is not None:
            step.state.processed[topic] = [message.partition, message.offset]
        await self._send_step(key, step)
        self._store(partition, key, step.state, new=state is None)
        if event.qualified_type == "purchase.order_completed":
            self._store_copurchases(partition, event.properties.items)  # type: ignore[union-attr]
        metrics.EVENT_PROCESSING.observe(time.perf_counter() - began)

    async def _on_tick(self, message: Any) -> None:
        key: bytes = message.key
        partition: int = message.partition
        user = key.decode()
        state = self._load(key)
        if state is None:
            self._schedule(partition).set(user, None)  # erased meanwhile
            return
        engine = self._engine(partition)
        now = time.time()
        if engine.has_due(state, now):
            step = engine.fire_due(user, state, now)
            await self._send_step(key, step)
            self._store(partition, key, step.state)
        else:
            self._schedule(partition).set(user, engine.next_due(state))

    # --- state -----------------------------------------------------------------------

    def _engine(self, partition: int) -> Engine:
        engine = self.engines.get(partition)
        if engine is None:
            counts = self.copurchases.setdefault(partition, CoPurchaseCounts())
            engine = self.engines[partition] = Engine(self.rules, counts)
        return engine

    def _schedule(self, partition: int) -> TimerSchedule:
        return self.schedules.setdefault(partition, TimerSchedule())

    def _load(self, key: bytes) -> UserState | None:
        raw = self.users.get(key)
        return None if raw is None else UserState.from_bytes(raw)

    def _store(
        self, partition: int, key: bytes, state: UserState | None, new: bool = False
    ) -> None:
        user = key.decode()
        if state is None:  # erased: a tombstone goes to the changelog
            if key in self.users:
                del self.users[key]
                self._count_users(-1)
            self._schedule(partition).set(user, None)
            return
        if new:
            self._count_users(+1)
        self.users[key] = state.to_bytes()  # always assigned back: faust changelogs sets
        self._schedule(partition).set(user, self._engine(partition).next_due(state))

    def _count_users(self, change: int) -> None:
        self.users_tracked += change
        metrics.USERS_TRACKED.set(self.users_tracked)

    def _store_copurchases(self, partition: int, items: Any) -> None:
        counts = self.copurchases[partition]
        for sku in {item.sku for item in items}:
            partners = counts.pairs.get(sku)
            if partners is not None:
                self.copurchase_table[f"{partition}:{sku}".encode()] = orjson.dumps(partners)

    # --- outputs ---------------------------------------------------------------------

    async def _send_step(self, key: bytes, step: Step) -> None:
        """Send every record of a step and wait until the broker has them all."""
        now = dt.datetime.now(dt.UTC)
        pending: list[Awaitable[Any]] = []
        for decision in step.decisions:
            metrics.DECISIONS.labels(
                decision.rule_id or "", decision.outcome, decision.reason or ""
            ).inc()
            pending.append(await self._send(DECISIONS_TOPIC, key, decision.model_dump_json()))
        for trigger in step.triggers:
            emitted = trigger.model_copy(update={"emitted_at": now})
            metrics.TRIGGERS.labels(trigger.rule_id, trigger.channel, trigger.variant or "").inc()
            metrics.TRIGGER_LATENCY.observe(max(0.0, (now - trigger.triggered_at).total_seconds()))
            pending.append(
                await self._send(CHANNEL_TOPICS[trigger.channel], key, emitted.model_dump_json())
            )
        for attribution in step.attributions:
            metrics.ATTRIBUTIONS.labels(
                attribution.rule_id, attribution.variant or "", attribution.group
            ).inc()
            metrics.ATTRIBUTED_REVENUE.labels(attribution.rule_id, attribution.currency).inc(
                attribution.revenue
            )
            pending.append(await self._send(ATTRIBUTIONS_TOPIC, key, attribution.model_dump_json()))
        for delivery in pending:
            await delivery

    async def _send(
        self, topic: str, key: bytes, value: str | bytes, partition: int | None = None
    ) -> Awaitable[Any]:
        """Hand a record to the producer, retrying while the broker refuses it; returns
        the acknowledgement to wait for."""
        payload = value.encode() if isinstance(value, str) else value
        while True:
            try:
                return await self.outputs[topic].send(key=key, value=payload, partition=partition)
            except KafkaError as error:
                log.warning("sending to %s failed (%s); retrying in %ss", topic, error, SEND_RETRY)
                await asyncio.sleep(SEND_RETRY)

    async def _dead_letter(self, message: Any, code: str, reason: str) -> None:
        record = DeadLetter.of_value(
            message.value if message.value is not None else b"",
            code,
            reason,
            topic=self.design_name.get(message.topic, message.topic),
            partition=message.partition,
            offset=message.offset,
        )
        ack = await self._send(
            DEAD_LETTER_TOPIC, message.key, record.model_dump_json(exclude_none=True)
        )
        await ack

    # --- timers ----------------------------------------------------------------------

    async def _wake_due_users(self) -> None:
        if not self.ready:
            return
        now = time.time()
        due = [
            (partition, user)
            for partition, schedule in self.schedules.items()
            if self._follows_wall_clock(partition, now)
            for user in schedule.pop_due(now)
        ]
        acks = []
        for partition, user in due:
            acks.append(
                await self._send(
                    TIMER_TICKS_TOPIC,
                    user.encode(),
                    orjson.dumps({"user_id": user}),
                    partition=partition,
                )
            )
        for ack in acks:
            await ack

    def _follows_wall_clock(self, partition: int, now: float) -> bool:
        """Whether the partition's timers may fire on the wall clock: its input read to
        the end and processed, or its latest event recent (a live stream, a little
        behind)."""
        if self.latest_event_at.get(partition, float("-inf")) >= now - LIVE_WINDOW:
            return True
        return self.merge.pending(partition) == 0 and all(
            self._read_to_end((topic, partition)) for topic in self.design_name
        )

    async def _on_partitions_revoked(
        self, sender: Any, *args: Any, signal: Any, **kwargs: Any
    ) -> None:
        self.ready = False
        metrics.READY.set(0)

    async def _on_rebalance_complete(
        self, sender: Any, *args: Any, signal: Any, **kwargs: Any
    ) -> None:
        """Partitions settled and tables recovered: rebuild the co-purchase counts and
        the timer schedule of the partitions this worker now owns."""
        began = time.perf_counter()
        # faust resumes the input partitions and only then seeks them to their committed
        # offsets; in between, its fetcher hands out what it had fetched before the
        # rebalance, past messages given back. Processed, those would make the ones
        # before them look already processed when read again. Sought now, while the
        # partitions are still paused, nothing stale is left to hand out.
        await self.app.consumer.perform_seek()
        active = {
            tp.partition
            for tp in self.app.assignor.assigned_actives()
            if tp.topic == self.ticks_topic
        }
        self.copurchases = {partition: CoPurchaseCounts() for partition in active}
        for key, value in self.copurchase_table.items():
            partition_text, _, sku = key.decode().partition(":")
            counts = self.copurchases.get(int(partition_text))
            if counts is not None:
                counts.pairs[sku] = orjson.loads(value)
        self.engines = {}
        self.schedules = {}
        self.merge.forget_partitions(active)
        self.read_offset = {}  # until a message is read: the committed offset
        self.processed_offset = {}
        users = 0
        for partition in sorted(active):
            engine = self._engine(partition)
            schedule = self._schedule(partition)
            for key, value in _stored(self.users, partition):
                users += 1
                due = engine.next_due(UserState.from_bytes(value))
                if due is not None:
                    schedule.set(key.decode(), due)
        self.partitions = sorted(active)
        self.users_tracked = users
        self.giving_back = False
        self.ready = True
        metrics.READY.set(1)
        metrics.USERS_TRACKED.set(users)
        log.info(
            "partitions %s ready: %d users, %d with timers, in %.2fs",
            sorted(active),
            users,
            sum(len(schedule) for schedule in self.schedules.values()),
            time.perf_counter() - began,
        )

    # --- rules -----------------------------------------------------------------------

    async def _watch_rules(self) -> None:
        """Apply a changed rules file once it validates; keep the running rules if not."""
        try:
            text = self.rules_path.read_bytes()
        except OSError as error:
            if self.rules_text is not None:
                log.error(
                    "cannot read the rules file %s (%s); keeping the running rules",
                    self.rules_path,
                    error,
                )
                self.rules_text = None
            return
        if text == self.rules_text:
            return
        self.rules_text = text
        try:
            rules = load_rules(self.rules_path)
        except RulesError as error:
            metrics.RULES_RELOADS.labels("refused").inc()
            log.error("rules file changed but refused; the running rules stay:\n%s", error)
            return
        self.rules = rules
        self.engines = {}  # rebuilt on demand, with the same co-purchase counts
        metrics.RULES_RELOADS.labels("applied").inc()
        log.info("rules reloaded from %s: %d rule(s)", self.rules_path, len(rules.rules))


def _already_processed(state: UserState, topic: str, message: Any) -> bool:
    """A message delivered again after a crash (its offset committed late): its effects
    are in the state already, even when its event time is too old for the 24-hour
    event-id memory (a backlog read fast)."""
    last = state.processed.get(topic)
    return last is not None and last[0] == message.partition and message.offset <= last[1]


def _stored(table: Any, partition: int) -> Iterator[tuple[bytes, bytes]]:
    """Every key and value a table holds for one partition. faust's RocksDB store keeps
    a database per partition; its iteration API does not say which, so this reads the
    partition's database directly."""
    store = table.data
    database = store._dbs.get(partition)
    if database is None:
        return
    yield from store._visible_items(database)
