"""The worker's life around its batches: joining the group (and saying what it waits
for meanwhile), partitions assigned and revoked, the rebuild once a rebalance is
complete, the rules reloaded when their file changes or a new version is published on
the rules topic, and the stop."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from aiokafka.errors import KafkaError

from triggerstream.rules.load import RulesError, load_rules
from triggerstream.rules.model import RulesFile
from triggerstream.rules_topic import parse_published
from triggerstream.topics import partition_of
from triggerstream.worker import metrics
from triggerstream.worker.codec import decode
from triggerstream.worker.fence import stored_items

if TYPE_CHECKING:
    from triggerstream.worker.stream import TriggerWorker

log = logging.getLogger("triggerstream.worker")

WAITING_NOTE_INTERVAL = 3.0
"""Seconds between two log lines saying what a starting worker waits for."""


class Lifecycle:
    """What the worker does when the group, the rules file or the process changes."""

    def __init__(self, worker: TriggerWorker) -> None:
        self.worker = worker
        self.ready = False
        """Partitions assigned and tables recovered: batches may run."""
        self.assigned = False
        """Whether the group has given this worker its partitions (since the last revoke)."""
        self.partitions: list[int] = []
        """The partitions this worker owns, once ready."""
        app = worker.app
        # mode types a receiver as a union of callables, which mypy cannot match.
        app.on_rebalance_complete.connect(self.rebalance_complete)  # type: ignore[arg-type]
        app.on_partitions_revoked.connect(self.partitions_revoked)  # type: ignore[arg-type]
        app.on_partitions_assigned.connect(self.partitions_assigned)  # type: ignore[arg-type]
        app.on_before_shutdown.connect(self.before_shutdown)  # type: ignore[arg-type]

    def readiness(self) -> list[int] | None:
        """The partitions owned once ready (None: not ready), for ``/readyz``."""
        return self.partitions if self.ready else None

    async def say_what_it_waits_for(self) -> None:
        """Until the worker is first ready, say every few seconds what it waits for.

        Joining the group is silent otherwise, and takes seconds: a broker holds a
        first join while other members may join (the embedded broker for half the
        session timeout, Kafka for its group.initial.rebalance.delay.ms)."""
        began = time.monotonic()
        app = self.worker.app
        settings = self.worker.settings
        held = (
            f"the embedded broker holds a first join for half the session timeout "
            f"({settings.session_timeout / 2:g}s)"
            if app.embedded_broker
            else "Kafka holds a first join for its group.initial.rebalance.delay.ms (3s by default)"
        )
        while True:
            await asyncio.sleep(WAITING_NOTE_INTERVAL)
            if self.ready or app.should_stop:
                return
            waited = time.monotonic() - began
            if not self.assigned:
                log.info(
                    "waiting to join consumer group %s on %s and be given partitions "
                    "(%.0fs so far): %s, while other workers may join",
                    app.conf.id,
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

    async def partitions_assigned(
        self, sender: Any, *args: Any, signal: Any, **kwargs: Any
    ) -> None:
        self.assigned = True
        app = self.worker.app
        app.heard_from_group = time.monotonic()  # the group just answered
        app.generation = app.group_generation()  # what this worker's writes are marked with

    async def partitions_revoked(self, sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
        self.assigned = False
        self.ready = False
        store = self.worker.store
        store.recent.clear()
        await store.compact_erased()
        # faust has let go of the revoked partitions' databases; a handle kept here
        # would hold RocksDB's lock when faust opens one again.
        store.forget_databases()
        metrics.READY.set(0)

    async def before_shutdown(self, sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
        if self.worker.follower is not None:
            await self.worker.follower.stop()
        store = self.worker.store
        await store.compact_erased()  # the input stopped: no batch is under way
        # No RocksDB handle of ours may outlive faust's closing of its stores (a handle
        # kept to interpreter exit was seen ending a stopped worker with SIGSEGV).
        store.forget_databases()

    async def rebalance_complete(self, sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
        """Partitions settled and tables recovered: rebuild the co-purchase counts and
        the timer schedule of the partitions this worker now owns."""
        began = time.perf_counter()
        worker = self.worker
        # faust resumes the input partitions and only then seeks them to their committed
        # offsets; in between, its fetcher hands out what it had fetched before the
        # rebalance, past messages given back. Processed, those would make the ones
        # before them look already processed when read again. Sought now, while the
        # partitions are still paused, nothing stale is left to hand out.
        await worker.app.consumer.perform_seek()
        active = {
            tp.partition
            for tp in worker.app.assignor.assigned_actives()
            if tp.topic == worker.intake.ticks_topic
        }
        worker.copurchases.load(active)
        worker.engines = {}
        worker.timers.schedules = {}
        worker.store.recent.clear()  # the store may have changed (recovered from changelogs)
        worker.store.forget_databases()
        worker.intake.reassigned(active)
        users = 0
        strays: list[tuple[int, bytes]] = []
        for partition in sorted(active):
            engine = worker.engine(partition)
            schedule = worker.timers.of(partition)
            for key, value in stored_items(worker.store.users, partition):
                if partition_of(key.decode(), worker.partition_count) != partition:
                    strays.append((partition, key))
                    continue
                users += 1
                due = engine.next_due(decode(value)[0])
                if due is not None:
                    schedule.set(key.decode(), due)
        if strays:
            await self._remove_strays(strays)
        self.partitions = sorted(active)
        worker.store.set_users_tracked(users)
        worker.intake.giving_back = False
        self.ready = True
        metrics.READY.set(1)
        log.info(
            "partitions %s ready: %d users, %d with timers, in %.2fs",
            sorted(active),
            users,
            len(worker.timers),
            time.perf_counter() - began,
        )

    async def _remove_strays(self, strays: list[tuple[int, bytes]]) -> None:
        """Delete states kept on another partition than their user's home: written by a
        version that processed misrouted messages where they landed. Never read again
        (state lives on the home partition), they would keep an erased user's data and
        fire their timers a second time."""
        store = self.worker.store
        acknowledgements = []
        for partition, key in strays:
            acknowledgements.append(await store.remove(partition, key))
        await store.persisted(store.users, acknowledgements, {}, self.worker.app.generation)
        log.warning(
            "deleted the state of %d user(s) kept off their home partition (murmur2 of the "
            "user_id), e.g. %r on partition %d: written before misrouted messages were "
            "forwarded home, and never read since; their home partition's state stays",
            len(strays),
            strays[0][1].decode(),
            strays[0][0],
        )

    async def watch_rules(self) -> None:
        """Apply a changed rules file once it validates; keep the running rules if not."""
        worker = self.worker
        assert worker.rules_path is not None  # a worker with rules from a file
        try:
            text = worker.rules_path.read_bytes()
        except OSError as error:
            if worker.rules_text is not None:
                log.error(
                    "cannot read the rules file %s (%s); keeping the running rules",
                    worker.rules_path,
                    error,
                )
                worker.rules_text = None
            return
        if text == worker.rules_text:
            return
        worker.rules_text = text
        try:
            rules = load_rules(worker.rules_path)
        except RulesError as error:
            self.refuse("rules file changed but refused", error)
            return
        self.apply(rules, str(worker.rules_path))

    async def follow_rules(self) -> None:
        """Apply each version published on the rules topic since the last look (the same
        path as a changed file: refused and counted if invalid, the running rules stay)."""
        follower = self.worker.follower
        assert follower is not None
        try:
            arrived = await follower.poll()
        except KafkaError as error:  # the next look tries again; the running rules stay
            log.warning("cannot read the rules topic %s for now: %s", follower.topic, error)
            return
        for offset, value in arrived:
            where = follower.where(offset)
            try:
                published, rules = parse_published(value, where)
            except RulesError as error:
                self.refuse(f"rules published at {where} refused", error)
                continue
            self.apply(rules, f"{where}, published by {published.published_by}")

    def refuse(self, what: str, error: RulesError) -> None:
        metrics.RULES_RELOADS.labels("refused").inc()
        log.error(
            "%s; the running rules (version %s) stay:\n%s", what, self.worker.rules.version, error
        )

    def apply(self, rules: RulesFile, origin: str) -> None:
        worker = self.worker
        worker.rules = rules
        worker.engines = {}  # rebuilt on demand, with the same co-purchase counts
        metrics.RULES_RELOADS.labels("applied").inc()
        metrics.running_rules(rules.version)
        log.info(
            "rules reloaded from %s (version %s): %d rule(s)",
            origin,
            rules.version,
            len(rules.rules),
        )
