"""faust's consumer, producer, recovery and app, subclassed where the worker needs what
their public API does not give (each class says why). Part of the fence
(:mod:`triggerstream.worker.fence`): the private names used here are listed and
checked there."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, cast

import faust
from aiokafka.client import AIOKafkaClient
from aiokafka.consumer import AIOKafkaConsumer
from faust.tables.manager import TableManager
from faust.tables.recovery import Recovery, ServiceStopped
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.transport.producer import ProducerBuffer
from faust.types import TP, EventT, Message

from triggerstream.worker.fence import require


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """faust's consumer with the fetch wait of the settings (``fetch_max_wait``, 50 ms
    by default). faust hard-codes 1.5 s, and it is on the path of every trigger:
    - a broker that answers a fetch only when the wait is over (Tansu does) adds it to
      every trigger's latency;
    - aiokafka keeps one fetch in flight per broker. When the worker has not taken a
      fetch's records within 100 ms (its ``prefetch_backoff``), it fetches the other
      partitions alone. If those have nothing new, the broker holds that fetch for
      the whole wait, and the busy partitions cannot be fetched meanwhile. With 0.5 s,
      a worker at 2,150 events/s spent 28 to 48% of its time waiting for records that
      were on the broker, and p50 latency was 339 ms (docs/performance.md)."""

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        require(consumer, AIOKafkaConsumer)
        consumer._fetch_max_wait_ms = int(cast(FencedApp, self.app).fetch_max_wait * 1000)
        return consumer

    async def on_start(self) -> None:
        """aiokafka's consumer started, its heartbeats are watched: the group has no
        other way to tell a worker cut off from it that it is out (aiokafka keeps the
        partitions of a member whose session expired, and says nothing). Each answer is
        passed on to the worker's loop: still a member, or not (the coordinator did not
        know the worker's generation: aiokafka resets it, and joins again)."""
        await super().on_start()
        consumer = self._ensure_consumer()
        require(consumer, AIOKafkaConsumer)
        coordinator = consumer._coordinator
        if coordinator is None:  # no group (never so for the worker)
            return
        app = cast(FencedApp, self.app)
        beat = coordinator._do_heartbeat
        worker_loop = self.parent_loop

        async def heartbeat() -> bool:
            generation = coordinator.generation
            answered = bool(await beat())
            if answered:
                app.heard_from_group = time.monotonic()
                worker_loop.call_soon_threadsafe(app.group_answered, True)
            elif generation > 0 and coordinator.generation != generation:
                worker_loop.call_soon_threadsafe(app.group_answered, False)
            return answered

        coordinator._do_heartbeat = heartbeat
        app.group_generation = lambda: int(coordinator.generation)

    async def seek_to_committed(self) -> Mapping[TP, int]:
        return cast(Mapping[TP, int], await self.call_thread(self._seek_to_committed))

    async def _seek_to_committed(self) -> dict[TP, int | None]:
        """Every input partition back to where reading must start: its committed
        offset, or the start of the log when nothing was ever committed.

        aiokafka's own ``seek_to_committed`` leaves a partition whose committed offset
        is missing (or 0) wherever its fetch position was. faust seeks to committed
        offsets after every rebalance and whenever a fetch came back while flow was
        stopped; messages fetched before that and given back were then never read
        again while the worker kept the partition: lost, and the event-time merge
        waited for ever on an input it knew had unread messages (the worker stalled).
        Changelog partitions keep aiokafka's behaviour: faust's recovery places them.
        """
        consumer = self._ensure_consumer()
        is_changelog = cast(_Consumer, self.consumer)._is_changelog_tp
        committed: dict[TP, int | None] = {}
        never_committed = []
        for tp in consumer.assignment():
            offset = await consumer.committed(tp)
            committed[tp] = offset
            if is_changelog(tp):
                if offset:
                    consumer.seek(tp, offset)
            elif offset is None:
                never_committed.append(tp)
            else:
                consumer.seek(tp, offset)
        starts = dict(committed)
        if never_committed:
            beginnings = await consumer.beginning_offsets(never_committed)
            for tp, offset in beginnings.items():
                consumer.seek(tp, offset)
                starts[tp] = offset
        inputs = [tp for tp in consumer.assignment() if not is_changelog(tp)]
        ends = await consumer.end_offsets(inputs) if inputs else {}
        faust_consumer = cast(_Consumer, self.consumer)
        faust_consumer.reading_starts = {
            TP(tp.topic, tp.partition): offset
            for tp, offset in starts.items()
            if offset is not None and not is_changelog(tp)
        }
        faust_consumer.reading_ends = {TP(tp.topic, tp.partition): end for tp, end in ends.items()}
        return committed


class _Consumer(faust_aiokafka.Consumer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        require(self, faust_aiokafka.Consumer)
        self.reading_starts: dict[TP, int] = {}
        """Per input partition: the offset reading started from after the last seek
        (the committed offset, or the start of the log)."""
        self.reading_ends: dict[TP, int] = {}
        """Per input partition: its end at the last seek, asked of the broker: known
        before any fetch has answered (a fetch tells the highwater)."""

    def _new_consumer_thread(self) -> _ConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def _drain_messages(self, fetcher: Any) -> None:
        """faust's fetch loop, handing the worker's inputs over a batch at a time.

        faust hands each message on by itself: a task raced against flow control, the
        conductor, a channel queue, the stream's iteration and an event around it,
        about 0.15 ms of CPU per message before any work is done (benchmarks/peers.py:
        a bare faust agent reads 6,500 messages/s where Quix Streams reads 27,000).
        Here every message of a fetch that belongs to the worker's inputs goes to
        ``app.take_batch`` in one call, and the table changelogs' messages (recovery and
        standbys) to ``app.apply_changelogs``. The offset bookkeeping is faust's: read
        offsets, gaps, acknowledgements, commits."""
        app = cast(FencedApp, self.app)
        take_batch = app.take_batch
        if take_batch is None:
            await super()._drain_messages(fetcher)
            return
        inputs = app.batch_topics
        changelogs = app.tables.changelog_topics
        callback = self.callback
        read_offset = self._read_offset
        acks_enabled_for = self.app.topics.acks_enabled_for
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                records, active = await self._wait_next_records(1.0)
                await self.sleep(0)
                if not records or self.should_stop:
                    continue
                if not self.flow_active:
                    # As faust's getmany: flow stopped (a rebalance) after the fetch
                    # went out; the partitions are sought back before flow resumes.
                    with contextlib.suppress(Exception):
                        await self.perform_seek()
                    continue
                generation = app.consumer_generation_id
                batch: list[Message] = []
                changes: dict[TP, list[Message]] = {}
                for tp, tp_records in records.items():
                    if (
                        active is not None
                        and tp not in active
                        and tp not in self._buffered_partitions
                    ):
                        continue
                    for record in tp_records:
                        offset = record.offset
                        last = read_offset[tp]
                        if last is not None and offset < last:
                            continue  # read before a seek back (faust drops it too)
                        if last and offset - last > 1 and acks_enabled_for(tp.topic):
                            await self._add_gap(tp, last + 1, offset)
                        message = self._to_message(tp, record)
                        if tp.topic in inputs:
                            batch.append(message)
                        elif tp.topic in changelogs:
                            changes.setdefault(tp, []).append(message)
                        else:
                            await self.wait_first(callback(message), self.suspend_flow.wait())
                        read_offset[tp] = offset
                if changes:
                    app.apply_changelogs(changes)
                if not batch:
                    continue
                if not self.flow_active or app.consumer_generation_id != generation:
                    continue  # a rebalance began: sought back to committed before resuming
                # Shielded: stopping the fetcher (on shutdown) must not cut a batch
                # short; faust then waits for its messages' acknowledgements.
                await asyncio.shield(take_batch(batch))
                if self._commit_every is not None and self._n_acked >= self._commit_every:
                    self._n_acked = 0
                    await self.commit()
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                return
            raise


class _Producer(faust_aiokafka.Producer):
    """faust's producer with every topic it sends to kept in its metadata.

    aiokafka's client refreshes metadata only for the topics it tracks, and a send to
    a topic its metadata already holds (a refresh asks for every topic while none is
    tracked) does not track it. Once some topic is tracked (the first send to a topic
    created after the producer started: a changelog), a refresh forgets the others; a
    record already queued for one of them then has no leader and waits for ever, and
    so did the worker waiting for its acknowledgement (seen: the agent stuck on a
    decision's delivery, faust's commit stuck on the producer's flush)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.handing_over = 0
        """Messages taken from faust's buffer (table changelog writes) and not yet
        handed to aiokafka."""
        buffer = cast(ProducerBuffer, self.buffer)
        send_pending = buffer._send_pending

        async def counted_send_pending(message: Any) -> None:
            self.handing_over += 1
            try:
                await send_pending(message)
            finally:
                self.handing_over -= 1

        buffer._send_pending = counted_send_pending  # type: ignore[method-assign,assignment]

    async def flush(self) -> None:
        """Wait until every message sent so far is acknowledged, table changelog
        writes included. faust commits offsets after this; its own flush gives up on
        the buffer of changelog writes when one takes more than 0.1 s to hand over, so
        offsets were committed for messages whose state never reached the changelog,
        and after a SIGKILL their effects were lost (seen: a detractor's NPS missing
        from the state the survivor recovered, and offers it should have held back)."""
        buffer = cast(ProducerBuffer, self.buffer)
        while buffer.size or self.handing_over:
            buffer.message_sent.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(buffer.message_sent.wait(), timeout=0.1)
        await super().flush()

    def _new_producer(self, transactional_id: str | None = None) -> Any:
        producer = super()._new_producer(transactional_id)
        client = producer.client
        require(client, AIOKafkaClient)
        wait_on_metadata = client._wait_on_metadata

        async def track_and_wait_on_metadata(topic: str) -> Any:
            if topic not in client._topics:
                client.add_topic(topic)
            return await wait_on_metadata(topic)

        client._wait_on_metadata = track_and_wait_on_metadata
        return producer


class _Recovery(Recovery):
    """faust's recovery, for changelogs applied by ``WorkerApp.apply_changelogs``, and
    with its consistency check made ours: where faust's own check (the same condition,
    run right after this) would crash the worker with ``ConsistencyError``, a traceback
    and a hint that is wrong on the embedded broker, the app stops it with our message."""

    async def _build_offsets(
        self, consumer: Any, tps: set[TP], destination: Counter[TP], title: str
    ) -> None:
        await super()._build_offsets(consumer, tps, destination, title)
        if title == "active":  # their highwaters are built just before
            self._refuse_state_ahead(tps, destination, self.active_highwaters)

    async def _build_highwaters(
        self, consumer: Any, tps: set[TP], destination: Counter[TP], title: str
    ) -> None:
        await super()._build_highwaters(consumer, tps, destination, title)
        if title == "standby":  # their offsets are built just before
            self._refuse_state_ahead(tps, self.standby_offsets, destination)

    def _refuse_state_ahead(
        self, tps: set[TP], offsets: Mapping[TP, int], highwaters: Mapping[TP, int]
    ) -> None:
        ahead = sorted(
            (tp.topic, tp.partition, offsets[tp], highwaters[tp])
            for tp in tps
            if offsets.get(tp) and highwaters.get(tp) and offsets[tp] > highwaters[tp]
        )
        if ahead:
            cast(FencedApp, self.app).refuse_state_ahead(*ahead[0])
            raise ServiceStopped()  # ends faust's recovery loop, which would crash

    def _set_recovery_started(self) -> None:
        # faust's own changelog loop clears the end-of-recovery signal before each
        # message it takes off its queue. Here the changelogs never reach that queue, so
        # a recovery begun within 5 s of the last (two rebalances in quick succession)
        # found the last one's end still signalled and ended at once, unread: the
        # partitions it took over were processed with their users' state missing.
        self.signal_recovery_end.clear()
        super()._set_recovery_started()


class FencedTableManager(TableManager):
    @property
    def recovery(self) -> Recovery:
        if self._recovery is None:
            self._recovery = _Recovery(self.app, self, beacon=self.beacon, loop=self.loop)
            require(self._recovery, Recovery)
        return self._recovery


class _Change:
    """A changelog message as faust's table stores take it (an event's ``message``)."""

    __slots__ = ("message",)

    def __init__(self, message: Message) -> None:
        self.message = message


class FencedApp(faust.App):
    """faust's app with the consumer, producer and recovery above, and the hooks the
    worker fills in."""

    def __init__(self, *args: Any, fetch_max_wait: float = 0.05, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fetch_max_wait = fetch_max_wait
        self.give_back: Callable[[], None] = lambda: None
        """Called before faust waits for every message in hand to be acknowledged."""
        self.take_batch: Callable[[list[Message]], Awaitable[None]] | None = None
        """Takes every message of a fetch from ``batch_topics`` (None: faust's agents
        get them one at a time)."""
        self.batch_topics: frozenset[str] = frozenset()
        self.heard_from_group = time.monotonic()
        """When the group coordinator last answered a heartbeat (or gave partitions)."""
        self.group_answered: Callable[[bool], None] = lambda member: None
        """Called on the app's loop when the group coordinator answered a heartbeat:
        whether it still counts the worker a member."""
        self.group_generation: Callable[[], int] = lambda: 0
        """The consumer group's generation, as the consumer last joined it."""
        self.generation = 0
        """The group generation the worker's partitions were assigned in."""
        self.keep_changes: Callable[[str, int, list[Message]], list[Message]] = (
            lambda topic, partition, messages: messages
        )
        """Of a fetch of one changelog partition, the messages to apply."""

    def refuse_state_ahead(self, topic: str, partition: int, stored: int, end: int) -> None:
        """Kept state is ahead of its changelog: the worker says why and stops."""

    def apply_changelogs(self, changes: Mapping[TP, list[Message]]) -> None:
        """Write a fetch's table changelog messages to the tables' RocksDB, a write
        batch per partition, and tell faust's recovery how far each partition has got.

        This is what faust's recovery does with them one message at a time: a message
        put on the changelog queue, taken off it by a task awaiting it with a timeout,
        offsets and estimates updated and the recovery's end checked after each, a write
        batch every 1,000 messages (about 6,000 messages/s; 100,000 users' state took
        17 s to recover). Messages at or below a partition's recovered offset are
        skipped, as faust skips them. A partition that is neither active nor standby
        (revoked since the fetch) is left alone."""
        tables = cast(TableManager, self.tables)
        recovery = tables.recovery
        now = time.monotonic()
        for tp, messages in changes.items():
            if tp in recovery.active_tps:
                offsets, received_at = recovery.active_offsets, recovery._active_events_received_at
            elif tp in recovery.standby_tps:
                offsets, received_at = (
                    recovery.standby_offsets,
                    recovery._standby_events_received_at,
                )
            else:
                continue
            recovered = offsets.get(tp)
            unread = [m for m in messages if recovered is None or m.offset > recovered]
            if not unread:
                continue
            kept = self.keep_changes(tp.topic, tp.partition, unread)
            offsets[tp] = unread[-1].offset
            received_at[tp] = now
            table = recovery.tp_to_table[tp]
            if kept:
                # faust's stores read only the event's message.
                table.apply_changelog_batch(cast(list[EventT[Any]], [_Change(m) for m in kept]))
            if len(kept) < len(unread):  # read past what was left out, for good
                cast(Any, table).data.set_persisted_offset(tp, unread[-1].offset)
        recovery._last_flush_at = now
        if recovery.in_recovery and not recovery.need_recovery():
            # As faust's recovery loop does once the actives have caught up.
            recovery.flush_buffers()
            recovery._set_recovery_ended()
            recovery.signal_recovery_end.set()
        if not tables.standbys_ready and not recovery.standby_remaining_total():
            tables.on_standbys_ready()

    def _new_transport(self) -> Any:
        transport = super()._new_transport()
        transport.Consumer = _Consumer  # type: ignore[misc]
        transport.Producer = _Producer  # type: ignore[misc]
        return transport

    async def _consumer_wait_empty(self, consumer: Any, logger: Any) -> None:
        self.give_back()
        await super()._consumer_wait_empty(consumer, logger)
