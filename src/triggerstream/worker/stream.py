"""The stream worker: the engine's pure core on Kafka (DESIGN.md sections 2 to 10).

The worker reads the five input topics and its own ``timer-ticks`` topic in batches:
the consumer hands over every input message of a fetch at once (no faust agent: its
per-message path cost more than the work). Each message is validated from its raw
bytes and queued in its partition's event-time order; what may go is processed as one
batch (:mod:`triggerstream.worker.batch`): each user's state is loaded from the
``users`` table (RocksDB, changelog on the broker), with its event ids of the last 24
hours from the ``dedupe`` table (:mod:`triggerstream.worker.store`), once; every event
goes through :meth:`Engine.handle` (the call replay makes), every record made is sent,
and only once the broker has them all are the new ids and each changed state stored
back, then the input offsets acknowledged. After a crash, an event whose outputs were
not all acknowledged is processed again (same trigger ids), and one whose state was
stored is recognised by its offset or id and dropped. Invalid input goes to
``events.dlq`` with its bytes and changes nothing. One batch at a time: one writer of
the tables.

Timers (deadline, inactivity, delay) live in each user's state. The worker keeps an
index of when each user's next one falls due (:class:`TimerSchedule` per partition,
rebuilt from the table after every rebalance) and, once a timer falls due on the wall
clock, sends the user a tick on ``timer-ticks`` (same partition as the user's state), so
the firing happens in a batch like any event: one writer per user, changelogged,
never twice.

The wall clock rules a partition only once the worker has caught up with it (its
inputs read to the end and processed; live traffic is, between two fetches): while it
works through a backlog, a user's timers fire when that user's own events pass their due
time, as in replay, or once the backlog is read. So a backlog of history gives the
triggers replay gives; a wall-clock tick never overtakes an older event of the same
user still waiting in the partition, and a tick that finds its partition behind (after a
rebalance) fires nothing.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from collections.abc import Awaitable, Mapping
from pathlib import Path
from typing import Any

import orjson
from faust.types import TP, Message

from triggerstream.core.engine import Engine
from triggerstream.core.recommend import CoPurchaseCounts
from triggerstream.core.state import UserState
from triggerstream.events import (
    INPUT_TOPICS,
    Event,
    InvalidEvent,
    decode_event,
    refuse_future,
)
from triggerstream.rules.load import RulesError, load_rules
from triggerstream.rules.model import RulesFile
from triggerstream.settings import Settings
from triggerstream.topics import REPARTITION_TOPIC, TIMER_TICKS_TOPIC, partition_of
from triggerstream.worker import metrics
from triggerstream.worker.app import build_app
from triggerstream.worker.batch import Batch, Read, Redo, TouchedUser
from triggerstream.worker.fence import paused_for_buffer, stored_items, unacked_messages
from triggerstream.worker.merge import FIRST, EventTimeMerge
from triggerstream.worker.outputs import Headers, Origin, Outputs
from triggerstream.worker.preflight import OUTPUTS, Layout
from triggerstream.worker.schedule import TimerSchedule
from triggerstream.worker.store import StateStore
from triggerstream.worker.web import add_routes

log = logging.getLogger("triggerstream.worker")

WAKE_INTERVAL = 1.0
"""Seconds between two looks at the timer schedule: timers fire well within a minute."""
ERASURE_COMPACTION_INTERVAL = 30.0
"""Seconds between two compactions of erased users out of the RocksDB files."""
BATCH_MESSAGES = 5_000
"""Input messages processed in one batch at most (shared out over the partitions that
have some): a backlog's first fetch can bring 60,000, whose processing blocked the web
server for 3 s."""
MAX_WAIT = 0.5
"""Seconds the consumer must have had nothing for the worker before read messages stop
waiting for an input of their partition whose end is not known yet (event-time order)."""
WAITING_NOTE_INTERVAL = 3.0
"""Seconds between two log lines saying what a starting worker waits for."""
RULES_CHECK_INTERVAL = 2.0
"""Seconds between two looks at the rules file for a change."""
FORWARDED_FROM = "triggerstream-topic"
"""The header of a message forwarded to ``repartition``: the input topic (its design
name) it was published to."""
PRODUCER_FIX = {
    "partitioner": "the producer places keys with another partitioner than Kafka's "
    "default murmur2 (librdkafka clients: confluent-kafka, Go, .NET, node, kcat default "
    "to consistent_random): set partitioner=murmur2_random",
    "null_key": "the producer sends no key: key every message with its user_id",
    "key_mismatch": "the producer's key is not the event's user_id: key every message "
    "with its user_id",
}
"""Per cause of a misrouted message: what the producer must change."""
BUFFERED_PER_INPUT = 5_000
"""Messages read and waiting in one input topic partition (ahead in event time of
another input of its partition) at which the consumer stops fetching it, until half
have gone: memory stays bounded when one input is far behind the others (as Kafka
Streams' ``buffered.records.per.partition``). Seen: 1.3 GB of usage events held while a
backlog of 2.2 million profile events an hour earlier was read."""


class TriggerWorker:
    """The faust app with its tables and timers, around one rules file."""

    def __init__(self, settings: Settings, rules_path: Path, layout: Layout) -> None:
        self.settings = settings
        self.rules_path = rules_path
        self.rules_text: bytes | None = rules_path.read_bytes()
        self.rules: RulesFile = load_rules(rules_path)
        self.app = app = build_app(settings, layout.partitions, layout.replicas)
        self.partition_count = layout.partitions
        """The input topics' partition count: a user's home partition is
        murmur2(user_id) modulo this."""
        self.store = store = StateStore(app, settings, layout)
        self.users = store.users
        self.copurchase_table = store.copurchase_table
        self.design_name = {
            settings.topic(name): name for name in (*INPUT_TOPICS, REPARTITION_TOPIC)
        }
        """The topics read as input (the five inputs, and the messages forwarded to
        their users' home partitions), by their broker names."""
        self.ticks_topic = settings.topic(TIMER_TICKS_TOPIC)
        source = app.topic(
            *self.design_name,
            self.ticks_topic,
            key_serializer="raw",
            value_serializer="raw",
        )
        self.outputs = Outputs(
            app,
            {
                name: settings.topic(name)
                for name in (*OUTPUTS, TIMER_TICKS_TOPIC, REPARTITION_TOPIC)
            },
        )
        self.misrouted_told: set[tuple[str, str]] = set()
        """The (topic, cause) of misrouted messages already logged."""
        for name in INPUT_TOPICS:  # every series from the start, for rates and alerts
            for cause in PRODUCER_FIX:
                metrics.EVENTS_MISROUTED.labels(name, cause)
        self.copurchases: dict[int, CoPurchaseCounts] = {}
        self.stored_marks: dict[int, dict[str, int]] = {}
        """Per partition and input: the offset up to which orders are counted and their
        users stored (the co-purchase table's mark)."""
        self.rolled_back: dict[int, set[tuple[str, int]]] = {}
        """Per partition: the orders (input, offset) taken back out of the counts at
        recovery, not yet read again."""
        self.engines: dict[int, Engine] = {}
        self.schedules: dict[int, TimerSchedule] = {}
        self.read_offset: dict[tuple[str, int], int] = {}
        """Per input topic partition: the offset after the last message read."""
        self.processed_offset: dict[tuple[str, int], int] = {}
        """Per input topic partition: the offset after the last message processed."""
        self.partitions: list[int] = []
        """The partitions this worker owns, once ready."""
        self.merge: EventTimeMerge[Read] = EventTimeMerge(
            list(self.design_name), max_idle=settings.max_idle
        )
        self.idle_since: float | None = time.monotonic()
        """Since when the worker has been waiting for a message (None: it is busy)."""
        self.processing = asyncio.Lock()
        """Held while a message is processed: one writer of the tables at a time."""
        self.ready = False
        self.assigned = False
        """Whether the group has given this worker its partitions (since the last revoke)."""
        self.waiting_notes: asyncio.Task[None] | None = None
        """The task of :meth:`say_what_it_waits_for`, once started."""
        self.giving_back = False
        """Set from giving back what was read (a rebalance or a stop) until the next
        assignment is ready: whatever the consumer still hands over meanwhile is given back."""
        app.give_back = self._give_back
        metrics.CONSUMER_LAG.source = self.consumer_lag
        add_routes(self)
        # The inputs are not read by a faust agent: the consumer hands every fetch of
        # them to the worker as one batch (fence/app.py, _Consumer._drain_messages).
        app.topics.add(source)
        app.batch_topics = frozenset(source.topics)
        app.take_batch = self._take
        app.timer(WAKE_INTERVAL, name="triggerstream.wake_due_users")(self._wake_due_users)
        app.timer(MAX_WAIT / 4, name="triggerstream.release_waiting")(self._release_waiting)
        app.timer(RULES_CHECK_INTERVAL, name="triggerstream.watch_rules")(self._watch_rules)
        app.timer(ERASURE_COMPACTION_INTERVAL, name="triggerstream.compact_erased")(
            store.compact_erased
        )
        # mode types a receiver as a union of callables, which mypy cannot match.
        app.on_rebalance_complete.connect(self._on_rebalance_complete)  # type: ignore[arg-type]
        app.on_partitions_revoked.connect(self._on_partitions_revoked)  # type: ignore[arg-type]
        app.on_partitions_assigned.connect(self._on_partitions_assigned)  # type: ignore[arg-type]
        app.on_before_shutdown.connect(self._on_before_shutdown)  # type: ignore[arg-type]

    # --- input ----------------------------------------------------------------------

    async def _take(self, messages: list[Message]) -> None:
        """Every input message of one fetch, handed over by the consumer
        (``app.take_batch``), in offset order per topic partition."""
        if self.giving_back:
            # Fetched after the rest was given back (a rebalance or a stop is under
            # way): not taken; whoever owns the partition next reads them again.
            return
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
                self._read(message)
                partitions.add(message.partition)
        try:
            await self._release(partitions, ticks)
        finally:
            self.idle_since = time.monotonic()

    def _limit_reading(self) -> None:
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

    def _read(self, message: Message) -> None:
        """Validate a message and queue it in its partition's event-time order."""
        source = topic = self.design_name[message.topic]
        headers = _headers(message)
        if source == REPARTITION_TOPIC:
            topic, headers = _forwarded(headers)
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

    async def _release(
        self, partitions: set[int], ticks: list[Message] | None = None, idle: bool = False
    ) -> None:
        """Process the queued messages of ``partitions`` that may go now, then the timer
        ticks, in batches of at most ``BATCH_MESSAGES``: between two, the web server
        answers (/metrics, /readyz) and a rebalance may begin."""

        def nothing_earlier(tp: tuple[str, int]) -> bool:
            return self._read_to_end(tp) or (idle and self._end_unknown(tp))

        # Each partition's share of a batch: a partition far behind does not hold the
        # others back for its whole backlog.
        share = max(1, BATCH_MESSAGES // max(1, len(partitions)))
        pending_ticks = ticks or []
        while True:
            full = False
            async with self.processing:
                batch = Batch()
                began = time.perf_counter()
                try:
                    for partition in sorted(partitions):
                        released = self.merge.release(partition, nothing_earlier)
                        for taken, read in enumerate(released, start=1):
                            await self._on_event(batch, read)
                            if taken >= share:
                                full = True
                                break
                    if not full:  # after every event of the fetch that may go now
                        for message in pending_ticks:
                            await self._on_tick(batch, message)
                        pending_ticks = []
                    await self._complete(batch)
                except BaseException:
                    # States kept decoded were changed in place and not stored.
                    self.store.recent.clear()
                    raise
                finally:
                    # Here, not in _take: a held input drained by an idle release (no
                    # fetch brings anything else) must be fetched again.
                    self._limit_reading()
                if batch.processed:
                    # The batch's time, shared by the events the engine processed in it.
                    each = (time.perf_counter() - began) / batch.processed
                    for _ in range(batch.processed):
                        metrics.EVENT_PROCESSING.observe(each)
            if not full:
                return
            await asyncio.sleep(0)
            if self.giving_back:
                return  # what is left was given back

    async def _complete(self, batch: Batch) -> None:
        """Once every record the batch sent is acknowledged, store the state of each
        user it changed, then acknowledge its input messages (their offsets become
        committable): a crash before the end costs a redelivery, never an effect."""
        await self.outputs.settle(batch.deliveries)
        # The co-purchase counts first, acknowledged before any user's state is sent:
        # a user stored as past an order means the order is in the counts. Each row
        # names the orders of this batch in it, and once every state is stored, a mark
        # says how far the orders are stored with their users. A crash before the mark
        # takes the orders past it back out at recovery; they are read again and
        # counted then, in order, so a decision made again sees the counts it saw.
        reached: dict[tuple[Any, TP], int] = {}
        pairs = [
            await self._store_pairs(partition, sku, orders)
            for partition, orders in batch.orders.items()
            for sku in sorted({sku for _, _, skus in orders for sku in skus})
        ]
        await self.store.persisted(self.copurchase_table, pairs, reached)
        # The event ids before the states that count them: a state stored says which
        # rows hold its ids, and those rows are on the broker by then.
        ids = [
            await self.store.write_ids(
                user.partition, key, user.state, user.ids_before, user.erased
            )
            for (_, key), user in batch.users.items()
            if user.changed
        ]
        await self.store.persisted(self.store.ids, ids, reached)
        states = [
            await self._store(key, user) for (_, key), user in batch.users.items() if user.changed
        ]
        await self.store.persisted(self.users, states, reached)
        # An erased user's ids once the state without them is stored.
        erased = []
        for (_, key), user in batch.users.items():
            if user.erased:
                erased += await self.store.erase_ids(user.partition, key, user.state)
        await self.store.persisted(self.store.ids, erased, reached)
        marks = [
            await self._store_mark(partition, orders) for partition, orders in batch.orders.items()
        ]
        await self.store.persisted(self.copurchase_table, marks, reached)
        # The changelogs hold every write before any input offset is acknowledged; the
        # offset each database has reached is remembered once per batch (faust's
        # recovery reads the changelog from there).
        for (table, tp), offset in reached.items():
            table.data.set_persisted_offset(tp, offset)
        ack = self.app.consumer.ack
        for message in batch.messages:
            ack(message)
            self.processed_offset[(message.topic, message.partition)] = message.offset + 1

    def _give_back(self) -> None:
        """Drop what was read and not processed, unacknowledged (faust is about to wait
        for every message in hand: a rebalance or a stop)."""
        self.giving_back = True  # until the next assignment is ready
        unacked = unacked_messages(self.app.consumer)
        for read in self.merge.clear():
            unacked.discard(read.message)
        consumer = self.app.consumer
        for partition in list(paused_for_buffer(consumer)):
            consumer.on_buffer_drop(partition)  # nothing is waiting any more

    async def _release_waiting(self) -> None:
        """Once the consumer has had nothing for the worker for a while, an input the
        consumer knows nothing about yet (no fetch answered) stops holding the others
        back. An input known to have unread messages always does: they will come. With
        ``max_idle``, messages that waited that long for an input with nothing buffered
        go too."""
        idle = self.idle_since
        if idle is None:
            return  # a batch is under way
        if time.monotonic() - idle >= MAX_WAIT:
            waiting = self.merge.partitions()
            if waiting:
                await self._release(waiting, idle=True)
        elif idled := self.merge.idled():
            await self._release(idled)

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

    # --- one event, one tick ---------------------------------------------------------

    async def _on_event(self, batch: Batch, read: Read) -> None:
        message = read.message
        batch.messages.append(message)
        topic, decoded = read.topic, read.decoded
        origin = Origin(topic, message.partition, message.offset)
        if isinstance(decoded, InvalidEvent):
            metrics.EVENTS_INVALID.labels(topic, decoded.code).inc()
            await self.outputs.dead_letter(
                batch.deliveries,
                read.message,
                read.source,
                read.headers,
                decoded.code,
                decoded.reason,
            )
            return
        event = decoded
        key = event.user_id.encode()
        partition: int = message.partition
        home = partition_of(event.user_id, self.partition_count)
        if home != partition:
            await self._forward(batch, read, event, home)
            return
        metrics.EVENTS.labels(topic, event.type).inc()
        user: TouchedUser | None = None
        try:
            user = self._user(batch, partition, key)
            state = user.state
            if state is not None and _already_processed(state, read.source, message):
                metrics.EVENTS_DUPLICATE.inc()
                self._count_again(batch, read, event)
                return
            step = self._engine(partition).handle(event.user_id, state, event)
        except Exception as error:  # a bug must cost one event, never the worker
            log.exception("the engine failed on %s offset %s", message.topic, message.offset)
            if user is not None:
                self._redo(key, user)
            metrics.EVENTS_INVALID.labels(topic, "internal_error").inc()
            await self.outputs.dead_letter(
                batch.deliveries,
                read.message,
                read.source,
                read.headers,
                "internal_error",
                f"the engine failed: {error!r}",
            )
            return
        if step.duplicate:
            metrics.EVENTS_DUPLICATE.inc()
            self._count_again(batch, read, event)
            return
        if step.state is not None:
            step.state.processed[read.source] = [partition, message.offset]
        else:
            user.erased = True
        user.state = step.state
        user.changed = True
        user.done.append(Redo(read.source, message, event))
        batch.processed += 1
        await self.outputs.send_step(batch.deliveries, key, step, read.headers, origin)
        if event.qualified_type == "purchase.order_completed":
            self._rolled_back(partition).discard((read.source, message.offset))
            batch.orders.setdefault(partition, []).append(_order(read, event))

    def _count_again(self, batch: Batch, read: Read, event: Event) -> None:
        """An order read again whose user's state has it (processed before a crash)
        while its counts were taken back out at recovery: counted again, in its place."""
        message = read.message
        if event.qualified_type != "purchase.order_completed":
            return
        place = (read.source, message.offset)
        rolled_back = self._rolled_back(message.partition)
        if place in rolled_back:
            rolled_back.discard(place)
            order = _order(read, event)
            self._engine(message.partition).copurchases.record_order(order[2])
            batch.orders.setdefault(message.partition, []).append(order)

    def _rolled_back(self, partition: int) -> set[tuple[str, int]]:
        return self.rolled_back.setdefault(partition, set())

    async def _forward(self, batch: Batch, read: Read, event: Event, home: int) -> None:
        """Send a message that reached another partition than its user's home to the
        home partition, through ``repartition``: processed here, it would meet no state
        of the user, or a second one (state lives on the home partition only)."""
        message = read.message
        if read.source == REPARTITION_TOPIC:
            # Forwarded by murmur2 % the same partition count: only a repartition topic
            # with another partition count than the inputs' (refused at start) does it.
            await self.outputs.dead_letter(
                batch.deliveries,
                read.message,
                read.source,
                read.headers,
                "internal_error",
                f"forwarded to partition {message.partition}, but its user's home is {home}",
            )
            return
        if message.key is None:
            cause = "null_key"
        elif message.key != event.user_id.encode():
            cause = "key_mismatch"
        else:
            cause = "partitioner"
        metrics.EVENTS_MISROUTED.labels(read.topic, cause).inc()
        if (read.topic, cause) not in self.misrouted_told:
            self.misrouted_told.add((read.topic, cause))
            log.warning(
                "%s partition %d: the event of user %r belongs on partition %d "
                "(murmur2 of the user_id, as Kafka's default partitioner places it); "
                "forwarding such messages (cause %s) to their home partition through %s, "
                "which costs a second write and read each. Fix: %s "
                "(said once per topic and cause; counted in "
                "triggerstream_events_misrouted_total)",
                message.topic,
                message.partition,
                event.user_id,
                home,
                cause,
                self.settings.topic(REPARTITION_TOPIC),
                PRODUCER_FIX[cause],
            )
        batch.deliveries.append(
            await self.outputs.send(
                REPARTITION_TOPIC,
                event.user_id.encode(),
                message.value,
                partition=home,
                headers=[*read.headers, (FORWARDED_FROM, read.topic.encode())],
                origin=Origin(read.topic, message.partition, message.offset),
            )
        )

    async def _on_tick(self, batch: Batch, message: Message) -> None:
        batch.messages.append(message)
        key: bytes = message.key  # type: ignore[assignment]
        partition: int = message.partition
        user_id = key.decode()
        user = self._user(batch, partition, key)
        if user.state is None:
            self._schedule(partition).set(user_id, None)  # erased meanwhile
            return
        engine = self._engine(partition)
        now = time.time()
        if not self._follows_wall_clock(partition):
            # Sent when the partition was caught up (by this worker, or by the one that
            # had it before a rebalance); events of the user may be waiting now. Due
            # again at the next wake-up once it has caught up.
            self._schedule(partition).set(user_id, engine.next_due(user.state))
            return
        if engine.has_due(user.state, now):
            step = engine.fire_due(user_id, user.state, now)
            user.state = step.state
            user.changed = True
            user.done.append(Redo(None, message, None, now))
            await self.outputs.send_step(batch.deliveries, key, step, (), None)
        elif not user.changed:
            self._schedule(partition).set(user_id, engine.next_due(user.state))

    # --- state -----------------------------------------------------------------------

    def _engine(self, partition: int) -> Engine:
        engine = self.engines.get(partition)
        if engine is None:
            counts = self.copurchases.setdefault(partition, CoPurchaseCounts())
            engine = self.engines[partition] = Engine(self.rules, counts)
        return engine

    def _schedule(self, partition: int) -> TimerSchedule:
        return self.schedules.setdefault(partition, TimerSchedule())

    def _user(self, batch: Batch, partition: int, key: bytes) -> TouchedUser:
        """The user's state as this batch has it: kept from an earlier batch, or loaded
        from the store the first time."""
        place = (partition, key)
        user = batch.users.get(place)
        if user is None:
            state = self.store.load(partition, key)
            user = batch.users[place] = TouchedUser(
                partition, state is not None, state, ids_before=StateStore.ids_before(state)
            )
        return user

    def _redo(self, key: bytes, user: TouchedUser) -> None:
        """The user's state back to before a step that failed half-way: the stored state
        with the batch's earlier steps of the user applied again (the engine is a pure
        function of state and input; their records were sent already)."""
        user_id = key.decode()
        self.store.recent.forget((user.partition, key))  # changed in place half-way
        # Its own copy of the co-purchase counts: the batch's orders are in them already.
        counts = copy.deepcopy(self._engine(user.partition).copurchases)
        engine = Engine(self.rules, counts)
        state = self.store.stored(user.partition, key) if user.stored else None
        for done in user.done:
            if done.event is None:
                assert state is not None
                state = engine.fire_due(user_id, state, done.now).state
                continue
            state = engine.handle(user_id, state, done.event).state
            if state is not None and done.topic is not None:
                state.processed[done.topic] = [user.partition, done.message.offset]
        user.state = state

    async def _store(self, key: bytes, user: TouchedUser) -> Awaitable[Any] | None:
        """Write a user's state to the store (a tombstone if erased) and set when its
        next timer falls due; returns the changelog write's acknowledgement to wait for."""
        partition = user.partition
        state = user.state
        due = None if state is None else self._engine(partition).next_due(state)
        self._schedule(partition).set(key.decode(), due)
        return await self.store.write(partition, key, state, user.stored)

    async def _store_pairs(
        self, partition: int, sku: str, orders: list[Order]
    ) -> Awaitable[Any] | None:
        """Write the co-purchase counts of one SKU to RocksDB and the changelog, with
        the orders of this batch that counted in it (no user: where each was read)."""
        partners = self.copurchases[partition].pairs.get(sku)
        if partners is None:
            return None
        key = f"{partition}:{sku}".encode()
        value = orjson.dumps(
            {"pairs": partners, "orders": [list(order) for order in orders if sku in order[2]]}
        )
        self.store.database(partition, self.copurchase_table).put(key, value)
        return await self.store.changelog(self.copurchase_table, partition, key, value)

    async def _store_mark(self, partition: int, orders: list[Order]) -> Awaitable[Any] | None:
        """Once the users of a batch's orders are stored: how far, per input, the
        orders' counts are stored with them."""
        mark = self.stored_marks.setdefault(partition, {})
        for source, offset, _ in orders:
            mark[source] = max(offset, mark.get(source, -1))
        key = _mark_key(partition)
        value = orjson.dumps(mark)
        self.store.database(partition, self.copurchase_table).put(key, value)
        return await self.store.changelog(self.copurchase_table, partition, key, value)

    def _load_copurchases(self, active: set[int]) -> None:
        """The co-purchase counts of the partitions owned, from the table: orders
        counted past the stored mark (their users' states may not have been stored) are
        taken back out, to be counted again when they are read again."""
        self.copurchases = {partition: CoPurchaseCounts() for partition in active}
        self.stored_marks = {}
        self.rolled_back = {}
        rows: list[tuple[int, str, Any]] = []
        for key, value in self.copurchase_table.items():
            partition_text, separator, sku = key.decode().partition(":")
            if not separator:  # a mark
                partition = int(key.split(b"\x00")[0])
                if partition in active:
                    self.stored_marks[partition] = orjson.loads(value)
            elif int(partition_text) in active:
                rows.append((int(partition_text), sku, orjson.loads(value)))
        for partition, sku, stored in rows:
            counts = self.copurchases[partition]
            if isinstance(stored, list):  # [pairs, last offset], as written before
                stored = {"pairs": stored[0]}
            elif "pairs" not in stored:  # the pairs alone, as written first
                stored = {"pairs": stored}
            counts.pairs[sku] = stored["pairs"]
            mark = self.stored_marks.get(partition, {})
            for source, offset, skus in stored.get("orders", ()):
                if offset > mark.get(source, -1):
                    counts.forget_order(sku, skus)
                    self._rolled_back(partition).add((source, offset))
        taken_back = sum(len(places) for places in self.rolled_back.values())
        if taken_back:
            log.info(
                "%d order(s) counted for cross-sell after their users were last stored: "
                "taken back out, counted again when read again",
                taken_back,
            )

    # --- timers ----------------------------------------------------------------------

    async def _wake_due_users(self) -> None:
        if not self.ready:
            return
        now = time.time()
        due = [
            (partition, user)
            for partition, schedule in self.schedules.items()
            if self._follows_wall_clock(partition)
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

    def _follows_wall_clock(self, partition: int) -> bool:
        """Whether the partition's timers may fire on the wall clock: its input read to
        the end (as the last fetch told) and processed. Not before: a user's events
        still unread or waiting could come after the due time (seen: a backlog that
        reached the present fired inactivity timers of users whose later activity was
        still queued, where replay saw the activity first)."""
        return self.merge.pending(partition) == 0 and all(
            self._read_to_end((topic, partition)) for topic in self.design_name
        )

    async def say_what_it_waits_for(self) -> None:
        """Until the worker is first ready, say every few seconds what it waits for.

        Joining the group is silent otherwise, and takes seconds: a broker holds a
        first join while other members may join (the embedded broker for half the
        session timeout, Kafka for its group.initial.rebalance.delay.ms)."""
        began = time.monotonic()
        settings = self.settings
        held = (
            f"the embedded broker holds a first join for half the session timeout "
            f"({settings.session_timeout / 2:g}s)"
            if self.app.embedded_broker
            else "Kafka holds a first join for its group.initial.rebalance.delay.ms (3s by default)"
        )
        while True:
            await asyncio.sleep(WAITING_NOTE_INTERVAL)
            if self.ready or self.app.should_stop:
                return
            waited = time.monotonic() - began
            if not self.assigned:
                log.info(
                    "waiting to join consumer group %s on %s and be given partitions "
                    "(%.0fs so far): %s, while other workers may join",
                    self.app.conf.id,
                    settings.kafka_bootstrap,
                    waited,
                    held,
                )
            else:
                log.info(
                    "partitions assigned; recovering the tables from their changelogs "
                    "(%.0fs so far)",
                    waited,
                )

    async def _on_partitions_assigned(
        self, sender: Any, *args: Any, signal: Any, **kwargs: Any
    ) -> None:
        self.assigned = True

    async def _on_partitions_revoked(
        self, sender: Any, *args: Any, signal: Any, **kwargs: Any
    ) -> None:
        self.assigned = False
        self.ready = False
        self.store.recent.clear()
        await self.store.compact_erased()
        # faust has let go of the revoked partitions' databases; a handle kept here
        # would hold RocksDB's lock when faust opens one again.
        self.store.forget_databases()
        metrics.READY.set(0)

    async def _on_before_shutdown(
        self, sender: Any, *args: Any, signal: Any, **kwargs: Any
    ) -> None:
        await self.store.compact_erased()  # the input stopped: no batch is under way
        # No RocksDB handle of ours may outlive faust's closing of its stores (a handle
        # kept to interpreter exit was seen ending a stopped worker with SIGSEGV).
        self.store.forget_databases()

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
        self._load_copurchases(active)
        self.engines = {}
        self.schedules = {}
        self.store.recent.clear()  # the store may have changed (recovered from changelogs)
        self.store.forget_databases()
        self.merge.forget_partitions(active)
        self.read_offset = {}  # until a message is read: the committed offset
        self.processed_offset = {}
        users = 0
        strays: list[tuple[int, bytes]] = []
        for partition in sorted(active):
            engine = self._engine(partition)
            schedule = self._schedule(partition)
            for key, value in stored_items(self.users, partition):
                if partition_of(key.decode(), self.partition_count) != partition:
                    strays.append((partition, key))
                    continue
                users += 1
                due = engine.next_due(UserState.from_bytes(value))
                if due is not None:
                    schedule.set(key.decode(), due)
        if strays:
            await self._remove_strays(strays)
        self.partitions = sorted(active)
        self.store.set_users_tracked(users)
        self.giving_back = False
        self.ready = True
        metrics.READY.set(1)
        log.info(
            "partitions %s ready: %d users, %d with timers, in %.2fs",
            sorted(active),
            users,
            sum(len(schedule) for schedule in self.schedules.values()),
            time.perf_counter() - began,
        )

    async def _remove_strays(self, strays: list[tuple[int, bytes]]) -> None:
        """Delete states kept on another partition than their user's home: written by a
        version that processed misrouted messages where they landed. Never read again
        (state lives on the home partition), they would keep an erased user's data and
        fire their timers a second time."""
        acknowledgements = []
        for partition, key in strays:
            acknowledgements.append(await self.store.remove(partition, key))
        await self.store.persisted(self.users, acknowledgements, {})
        log.warning(
            "deleted the state of %d user(s) kept off their home partition (murmur2 of the "
            "user_id), e.g. %r on partition %d: written before misrouted messages were "
            "forwarded home, and never read since; their home partition's state stays",
            len(strays),
            strays[0][1].decode(),
            strays[0][0],
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


Order = tuple[str, int, list[str]]
"""An order counted for cross-sell: the input it was read from, its offset, its skus."""


def _order(read: Read, event: Event) -> Order:
    items = event.properties.items  # type: ignore[union-attr]
    return (read.source, read.message.offset, [item.sku for item in items])


def _mark_key(partition: int) -> bytes:
    """The key of a partition's stored mark in the co-purchase table (no sku has it:
    no ':')."""
    return f"{partition}\x00stored".encode()


def _headers(message: Message) -> Headers:
    """A message's headers as (name, value) pairs."""
    headers = message.headers
    if not headers:
        return ()
    if isinstance(headers, Mapping):
        return tuple(headers.items())
    return tuple(headers)


def _forwarded(headers: Headers) -> tuple[str, Headers]:
    """The input topic a forwarded message was published to, and its own headers."""
    topic = next((value for name, value in headers if name == FORWARDED_FROM), b"")
    return topic.decode(errors="replace"), tuple(h for h in headers if h[0] != FORWARDED_FROM)


def _already_processed(state: UserState, topic: str, message: Any) -> bool:
    """A message delivered again after a crash (its offset committed late): its effects
    are in the state already, even when its event time is too old for the 24-hour
    event-id memory (a backlog read fast)."""
    last = state.processed.get(topic)
    return last is not None and last[0] == message.partition and message.offset <= last[1]
