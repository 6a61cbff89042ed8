"""The stream worker's batch loop: the engine's pure core on Kafka (docs/contract.md sections
2 to 10).

The consumer hands over every input message of a fetch at once; :class:`Intake`
validates each and queues it in its partition's event-time order. What may go is
processed as one batch (:mod:`triggerstream.worker.batch`): each user's state is loaded
once from the ``users`` table, with its event ids of the last 24 hours from the
``dedupe`` table (:mod:`triggerstream.worker.store`); every event goes through
:meth:`Engine.handle` (the call replay makes) and every record made is queued
(:mod:`triggerstream.worker.outputs`). Only once the broker has them all are the
co-purchase counts, the new ids and each changed state stored back, then the input
offsets acknowledged. After a crash, an event whose outputs were not all acknowledged is
processed again (same trigger ids), and one whose state was stored is recognised by its
offset or id and dropped. Invalid input goes to ``events.dlq`` with its bytes and
changes nothing. One batch at a time: one writer of the tables.

Around the loop: misrouted messages go home (:mod:`triggerstream.worker.forward`),
timers fire on the wall clock (:mod:`triggerstream.worker.timers`), and rebalances, the
rules file and the stop are :mod:`triggerstream.worker.lifecycle`'s.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

from faust.types import TP, Message

from triggerstream.core.engine import Engine
from triggerstream.events import INPUT_TOPICS, InvalidEvent
from triggerstream.rules.load import load_rules
from triggerstream.rules.model import RulesFile
from triggerstream.rules_topic import RulesFollower
from triggerstream.settings import Settings
from triggerstream.topics import REPARTITION_TOPIC, TIMER_TICKS_TOPIC, partition_of
from triggerstream.worker import metrics
from triggerstream.worker.app import build_app
from triggerstream.worker.batch import Batch, Read, Redo, TouchedUser
from triggerstream.worker.changelog import Generations
from triggerstream.worker.copurchases import CoPurchases
from triggerstream.worker.forward import Forwarding
from triggerstream.worker.inspector import Inspector
from triggerstream.worker.intake import Intake
from triggerstream.worker.lifecycle import Lifecycle
from triggerstream.worker.outputs import Origin, Outputs
from triggerstream.worker.preflight import OUTPUTS, Layout
from triggerstream.worker.session import SESSION_CHECK_INTERVAL, GroupSession
from triggerstream.worker.store import StateStore
from triggerstream.worker.timers import Timers
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
RULES_CHECK_INTERVAL = 2.0
"""Seconds between two looks at the rules file for a change (or at the rules topic for
a new version)."""


class TriggerWorker:
    """The batch loop, around one rules file: its collaborators read (:class:`Intake`),
    store (:class:`StateStore`, :class:`CoPurchases`), send (:class:`Outputs`,
    :class:`Forwarding`), keep time (:class:`Timers`) and follow the group
    (:class:`Lifecycle`)."""

    def __init__(self, settings: Settings, rules: Path | RulesFollower, layout: Layout) -> None:
        self.settings = settings
        self.follower = rules if isinstance(rules, RulesFollower) else None
        """Where new versions of the rules come from, with rules from the topic."""
        self.rules_path = None if isinstance(rules, RulesFollower) else rules
        """The rules file, with rules from a file."""
        self.rules_text: bytes | None = None
        if self.rules_path is not None:
            self.rules_text = self.rules_path.read_bytes()
            self.rules: RulesFile = load_rules(self.rules_path)
        else:
            assert self.follower is not None
            assert self.follower.rules is not None  # taken at start
            self.rules = self.follower.rules
        metrics.running_rules(self.rules.version)
        self.app = app = build_app(settings, layout.partitions, layout.replicas)
        self.partition_count = layout.partitions
        """The input topics' partition count: a user's home partition is
        murmur2(user_id) modulo this."""
        self.store = store = StateStore(app, settings, layout)
        self.intake = intake = Intake(app, settings)
        self.outputs = Outputs(
            app,
            {
                name: settings.topic(name)
                for name in (*OUTPUTS, TIMER_TICKS_TOPIC, REPARTITION_TOPIC)
            },
        )
        self.forwarding = Forwarding(settings, self.outputs, INPUT_TOPICS)
        self.copurchases = CoPurchases(store)
        self.timers = Timers(intake, self.outputs)
        self.engines: dict[int, Engine] = {}
        self.processing = asyncio.Lock()
        """Held while a batch is processed: one writer of the tables at a time."""
        self.lifecycle = lifecycle = Lifecycle(self)
        self.waiting_notes: asyncio.Task[None] | None = None
        """The task of :meth:`Lifecycle.say_what_it_waits_for`, once started."""
        self.session = GroupSession(self)
        app.give_back = self._give_back
        app.group_answered = self.session.answered
        app.keep_changes = Generations().current  # late changelog records left out
        metrics.CONSUMER_LAG.source = self.consumer_lag
        add_routes(app, lifecycle.readiness, Inspector(self))
        # The inputs are not read by a faust agent: the consumer hands every fetch of
        # them to the worker as one batch (fence/app.py, _Consumer._drain_messages).
        source = app.topic(
            *intake.design_name, intake.ticks_topic, key_serializer="raw", value_serializer="raw"
        )
        app.topics.add(source)
        app.batch_topics = frozenset(source.topics)
        app.take_batch = self._take
        app.timer(WAKE_INTERVAL, name="triggerstream.wake_due_users")(self._wake_due_users)
        app.timer(MAX_WAIT / 4, name="triggerstream.release_waiting")(self._release_waiting)
        watch = lifecycle.watch_rules if self.follower is None else lifecycle.follow_rules
        app.timer(RULES_CHECK_INTERVAL, name="triggerstream.watch_rules")(watch)
        app.timer(SESSION_CHECK_INTERVAL, name="triggerstream.check_session")(self.session.check)
        app.timer(ERASURE_COMPACTION_INTERVAL, name="triggerstream.compact_erased")(
            store.compact_erased
        )

    async def say_what_it_waits_for(self) -> None:
        await self.lifecycle.say_what_it_waits_for()

    def consumer_lag(self) -> dict[tuple[str, int], int]:
        """Per input topic and partition owned: the messages not yet processed."""
        if not self.lifecycle.ready:
            return {}
        return self.intake.consumer_lag(self.lifecycle.partitions)

    def engine(self, partition: int) -> Engine:
        engine = self.engines.get(partition)
        if engine is None:
            engine = self.engines[partition] = Engine(self.rules, self.copurchases.of(partition))
        return engine

    # --- batches ---------------------------------------------------------------------

    async def _take(self, messages: list[Message]) -> None:
        """Every input message of one fetch, handed over by the consumer
        (``app.take_batch``)."""
        taken = self.intake.take(messages)
        if taken is None:
            return
        partitions, ticks = taken
        try:
            await self._release(partitions, ticks)
        finally:
            self.intake.idle_since = time.monotonic()

    async def _release(
        self, partitions: set[int], ticks: list[Message] | None = None, idle: bool = False
    ) -> None:
        """Process the queued messages of ``partitions`` that may go now, then the timer
        ticks, in batches of at most ``BATCH_MESSAGES``: between two, the web server
        answers (/metrics, /readyz) and a rebalance may begin."""

        intake = self.intake

        def nothing_earlier(tp: tuple[str, int]) -> bool:
            return intake.read_to_end(tp) or (idle and intake.end_unknown(tp))

        # Each partition's share of a batch: a partition far behind does not hold the
        # others back for its whole backlog.
        share = max(1, BATCH_MESSAGES // max(1, len(partitions)))
        pending_ticks = ticks or []
        while True:
            if not self.session.verdict.is_set():  # cut off from the group: wait
                await self.session.verdict.wait()
                if intake.giving_back:  # the partitions were lost meanwhile
                    intake.abandon(pending_ticks)
                    return
            full = False
            async with self.processing:
                batch = Batch(generation=self.app.generation, session=self.session.lost)
                began = time.perf_counter()
                try:
                    for partition in sorted(partitions):
                        released = intake.merge.release(partition, nothing_earlier)
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
                    self.intake.limit_reading()
                if batch.processed:
                    # The batch's time, shared by the events the engine processed in it.
                    each = (time.perf_counter() - began) / batch.processed
                    for _ in range(batch.processed):
                        metrics.EVENT_PROCESSING.observe(each)
            if not full:
                return
            await asyncio.sleep(0)
            if intake.giving_back:
                return  # what is left was given back

    async def _complete(self, batch: Batch) -> None:
        """Make the batch durable (:meth:`_make_durable`), unless the group says
        meanwhile that the worker is no longer a member (worker/session.py): the batch
        is then abandoned at once. Its input is given back, its states forgotten, no
        offset of a changelog remembered; the worker the group gave the partitions to
        processes the input again, and what the batch wrote to the changelogs is left
        out when they are read (worker/changelog.py). At once: a worker whose network was
        cut waits out TCP's retransmission backoff (half a minute after a 30 s cut)
        before its last writes are answered, and its rebalance would wait as long."""
        if await self.session.unless_lost(self._make_durable(batch), batch.session):
            return
        self.store.recent.clear()  # states kept decoded were changed in place
        self.store.changelogs.queued.clear()
        self.intake.abandon(batch.messages)
        log.info(
            "a batch of %d message(s) abandoned: the worker lost its partitions while it "
            "waited for the broker",
            len(batch.messages),
        )

    def _give_back(self) -> None:
        """faust is about to wait for every message in hand (a stop, a rebalance): what
        was read and not processed is given back, and a worker cut off from its group
        gives up its batch under way too (worker/session.py)."""
        self.session.give_up()
        self.intake.give_back()

    async def _make_durable(self, batch: Batch) -> bool:
        """Once every record the batch sent is acknowledged, store the state of each
        user it changed, then acknowledge its input messages (their offsets become
        committable): a crash before the end costs a redelivery, never an effect.
        False, storing nothing more, once the worker lost its partitions since the
        batch began (a worker cut off from its group waits for the verdict before it
        stores anything, and before it acknowledges)."""
        session = self.session

        def lost() -> bool:
            return session.lost != batch.session

        await self.outputs.settle(batch.deliveries)
        if not await session.kept(batch.session):
            return False
        # The co-purchase counts first, acknowledged before any user's state is sent;
        # their mark once every state is (worker/copurchases.py says why).
        reached: dict[tuple[Any, TP], int] = {}
        pairs = await self.copurchases.store_pairs(batch)
        await self.store.persisted(self.copurchases.table, pairs, reached, batch.generation)
        if lost():
            return False
        # The event ids before the states that count them: a state stored says which
        # rows hold its ids, and those rows are on the broker by then.
        ids = [
            await self.store.write_ids(
                user.partition, key, user.state, user.processed, user.ids_before, user.erased
            )
            for (_, key), user in batch.users.items()
            if user.changed
        ]
        await self.store.persisted(self.store.ids, ids, reached, batch.generation)
        if lost():
            return False
        states = [
            await self._store(key, user) for (_, key), user in batch.users.items() if user.changed
        ]
        await self.store.persisted(self.store.users, states, reached, batch.generation)
        if lost():
            return False
        # An erased user's ids once the state without them is stored.
        erased = []
        for (_, key), user in batch.users.items():
            if user.erased:
                erased += await self.store.erase_ids(
                    user.partition, key, user.state, user.processed
                )
        await self.store.persisted(self.store.ids, erased, reached, batch.generation)
        if lost():
            return False
        marks = await self.copurchases.store_marks(batch)
        await self.store.persisted(self.copurchases.table, marks, reached, batch.generation)
        if not await session.kept(batch.session):
            return False
        # The changelogs hold every write before any input offset is acknowledged; the
        # offset each database has reached is remembered once per batch (faust's
        # recovery reads the changelog from there).
        for (table, tp), offset in reached.items():
            table.data.set_persisted_offset(tp, offset)
        self.intake.processed(batch.messages)
        return True

    async def _release_waiting(self) -> None:
        """Once the consumer has had nothing for the worker for a while, an input the
        consumer knows nothing about yet (no fetch answered) stops holding the others
        back. An input known to have unread messages always does: they will come. With
        ``max_idle``, messages that waited that long for an input with nothing buffered
        go too."""
        idle = self.intake.idle_since
        if idle is None:
            return  # a batch is under way
        if time.monotonic() - idle >= MAX_WAIT:
            waiting = self.intake.merge.partitions()
            if waiting:
                await self._release(waiting, idle=True)
        elif idled := self.intake.merge.idled():
            await self._release(idled)

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
            await self.forwarding.forward(batch, read, event, home)
            return
        metrics.EVENTS.labels(topic, event.type).inc()
        user: TouchedUser | None = None
        try:
            user = self._user(batch, partition, key)
            state = user.state
            if state is not None and _already_processed(user.processed, read.source, message):
                metrics.EVENTS_DUPLICATE.inc()
                self.copurchases.count_again(batch, read, event)
                return
            step = self.engine(partition).handle(event.user_id, state, event)
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
            self.copurchases.count_again(batch, read, event)
            return
        if step.state is not None:
            user.processed[read.source] = [partition, message.offset]
        else:
            user.erased = True
            user.processed = {}
        user.state = step.state
        user.changed = True
        user.done.append(Redo(read.source, message, event))
        batch.processed += 1
        await self.outputs.send_step(batch.deliveries, key, step, read.headers, origin)
        if event.qualified_type == "purchase.order_completed":
            self.copurchases.counted(batch, read, event)

    async def _on_tick(self, batch: Batch, message: Message) -> None:
        batch.messages.append(message)
        partition: int = message.partition
        user = self._user(batch, partition, message.key)  # type: ignore[arg-type]
        await self.timers.on_tick(batch, message, user, self.engine(partition))

    async def _wake_due_users(self) -> None:
        if self.lifecycle.ready:
            await self.timers.wake_due_users()

    # --- state -----------------------------------------------------------------------

    def _user(self, batch: Batch, partition: int, key: bytes) -> TouchedUser:
        """The user's state as this batch has it: kept from an earlier batch, or loaded
        from the store the first time."""
        place = (partition, key)
        user = batch.users.get(place)
        if user is None:
            kept = self.store.load(partition, key)
            state, processed = (None, {}) if kept is None else kept
            user = batch.users[place] = TouchedUser(
                partition,
                kept is not None,
                state,
                processed,
                ids_before=StateStore.ids_before(state, processed),
            )
        return user

    def _redo(self, key: bytes, user: TouchedUser) -> None:
        """The user's state back to before a step that failed half-way: the stored state
        with the batch's earlier steps of the user applied again (the engine is a pure
        function of state and input; their records were sent already)."""
        user_id = key.decode()
        self.store.recent.forget((user.partition, key))  # changed in place half-way
        # Its own copy of the co-purchase counts: the batch's orders are in them already.
        counts = copy.deepcopy(self.engine(user.partition).copurchases)
        engine = Engine(self.rules, counts)
        kept = self.store.stored(user.partition, key) if user.stored else None
        state, processed = (None, {}) if kept is None else kept
        # The ids' counts start again with the state read.
        user.ids_before = StateStore.ids_before(state, processed)
        for done in user.done:
            if done.event is None:
                assert state is not None
                state = engine.fire_due(user_id, state, done.now).state
                continue
            state = engine.handle(user_id, state, done.event).state
            if state is None:
                processed = {}
            elif done.topic is not None:
                processed[done.topic] = [user.partition, done.message.offset]
        user.state = state
        user.processed = processed

    async def _store(self, key: bytes, user: TouchedUser) -> Awaitable[Any] | None:
        """Write a user's state to the store (a tombstone if erased) and set when its
        next timer falls due; returns the changelog write's acknowledgement to wait for."""
        partition = user.partition
        self.timers.set(partition, key, self.engine(partition), user)
        return await self.store.write(partition, key, user.state, user.processed, user.stored)


def _already_processed(processed: dict[str, list[int]], topic: str, message: Any) -> bool:
    """A message delivered again after a crash (its offset committed late): its effects
    are in the state already, even when its event time is too old for the 24-hour
    event-id memory (a backlog read fast)."""
    last = processed.get(topic)
    return last is not None and last[0] == message.partition and message.offset <= last[1]
