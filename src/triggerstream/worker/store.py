"""The worker's state store: its tables (RocksDB per partition, a changelog topic on the
broker each), the users' states encoded and decoded, the decoded states kept between
batches, and the writes that make a batch's changes durable.

The tables are faust's (faust creates their changelogs, recovers them and keeps
standbys), but a batch reads and writes their RocksDB databases directly and sends
each write to the changelog itself: faust's table layer (its current-event lookups, key
index and per-write changelog record) cost more than the engine, and a batch writes each
user once.
"""

from __future__ import annotations

import itertools
import logging
import struct
import time
from collections import OrderedDict
from collections.abc import Awaitable
from typing import Any

import faust
from faust.types import TP

from triggerstream.core.state import UserState
from triggerstream.events import INPUT_TOPICS
from triggerstream.settings import Settings
from triggerstream.topics import REPARTITION_TOPIC, TIMER_TICKS_TOPIC
from triggerstream.worker import metrics
from triggerstream.worker.app import WorkerApp, rocksdb_options
from triggerstream.worker.changelog import ChangelogBatches
from triggerstream.worker.codec import IDS, Processed, decode, encode
from triggerstream.worker.fence import partition_database, record_batches, trust_source_topics
from triggerstream.worker.preflight import Layout

log = logging.getLogger("triggerstream.worker")

RECENT_USERS = 10_000
"""Users whose state stays decoded in memory between batches (the most recent): a user
in a session sends several events a minute, each batch would decode them again."""
RECENT_BYTES = 8 * 1024 * 1024
"""And at most this much of their stored (encoded) state: a decoded state takes several
times its encoded size, and the states of very active users grow with their day (every
event id of the last 24 hours is kept). Counting users alone let a soak of 10,000 busy
users grow the worker by 0.2-0.7 MiB/s; with 2 MiB it grew 0.08 MiB/s (docs/reliability.md,
"Soak")."""


ID_ROW = struct.Struct(">Qd")
"""An id in a row's value: the event id's 64-bit key and its event time."""
SEQ = struct.Struct(">Q")
ID_BYTES = 40
"""What a kept id counts for in ``RECENT_BYTES``: its size in the state's JSON before
the ids had a store of their own."""
GC_EVERY = 64
"""Rows of ids the engine has forgotten (the oldest, past 24 hours) leave RocksDB a
range delete at a time, once this many more are forgotten: never a tombstone per id."""
IDS_RETENTION = 2 * 86_400
"""Seconds the id store's changelog keeps a row (wall clock since it was written): the
24 hours of the dedupe window and a day more, as Kafka Streams keeps a window store's
changelog (``windowstore.changelog.additional.retention.ms``). Older rows expire with
their log segments: no tombstone per id."""

UserKey = tuple[int, bytes]
"""A user's state's place: (partition, user id)."""
IdsBefore = tuple[int, int, int, int]
"""Where a user's ids stood when a batch first touched the user: the state's
``ids_appended`` and ``ids_retimed`` then, and the id store's span ``[first, next)``."""
Kept = tuple[UserState, Processed]
"""A user as the store keeps them: the state, and where the worker stands in their input
(:mod:`triggerstream.worker.codec`)."""


class RecentStates:
    """The decoded states of the users stored most recently, the least recent
    forgotten first, within ``RECENT_USERS`` users and ``RECENT_BYTES`` encoded bytes.
    Keyed by (partition, user id), as the store is."""

    def __init__(self) -> None:
        self.states: dict[UserKey, tuple[Kept, int]] = {}
        self.bytes = 0

    def get(self, key: UserKey) -> Kept | None:
        kept = self.states.get(key)
        return None if kept is None else kept[0]

    def forget(self, key: UserKey) -> None:
        kept = self.states.pop(key, None)
        if kept is not None:
            self.bytes -= kept[1]

    def clear(self) -> None:
        self.states.clear()
        self.bytes = 0

    def remember(self, key: UserKey, kept: Kept, size: int) -> None:
        self.forget(key)
        self.states[key] = (kept, size)
        self.bytes += size
        states = self.states
        while len(states) > RECENT_USERS or self.bytes > RECENT_BYTES:
            oldest = next(iter(states))
            self.bytes -= states.pop(oldest)[1]

    def __len__(self) -> int:
        return len(self.states)


class StateStore:
    """The worker's tables, and the users' states in them."""

    def __init__(self, app: WorkerApp, settings: Settings, layout: Layout) -> None:
        self.app = app
        table_options = rocksdb_options(settings, layout.partitions)
        # Changelogs are created by faust, with layout.replicas replicas; their min ISR
        # is the topics' (the broker's if unset).
        replication = (
            {"min.insync.replicas": str(settings.min_insync_replicas)}
            if settings.min_insync_replicas is not None
            else {}
        )

        def table(
            name: str, meaning: str, changelog: dict[str, str] | None = None
        ) -> faust.types.TableT[bytes, bytes]:
            created = app.Table(
                name,
                key_type=bytes,
                value_type=bytes,
                partitions=layout.partitions,
                options=dict(table_options),  # faust's store takes keys out of it
                help=meaning,
                extra_topic_configs=(changelog or {}) | replication,
            )
            # faust checks co-partitioning on a table's first write from each topic,
            # against the consumer's metadata, which can still show a changelog created
            # moments ago with 0 partitions: the agent crashed with the message in hand
            # (seen on Apache Kafka). The preflight checks it on the broker instead.
            trust_source_topics(
                created,
                (
                    *(settings.topic(name) for name in (*INPUT_TOPICS, REPARTITION_TOPIC)),
                    settings.topic(TIMER_TICKS_TOPIC),
                ),
            )
            return created

        self.users = table("users", "UserState of each user, as bytes.")
        self.copurchase_table = table(
            "copurchases",
            "Co-purchase counts: b'<partition>:<sku>' -> [{other sku: orders}, last offset].",
        )
        self.ids = table(
            "dedupe",
            "Each user's event ids of the last 24 hours (event time), one row per id: "
            "<length><user id><sequence number> -> <id key><event time>.",
            {"cleanup.policy": "compact,delete", "retention.ms": str(IDS_RETENTION * 1000)},
        )
        self.users_tracked = 0
        self.erased: dict[int, set[bytes]] = {}
        """Per partition: the users erased since the store was last compacted."""
        self.erased_ids: dict[int, set[bytes]] = {}
        """Per partition: the first and last id rows of the users erased since."""
        self.databases: dict[tuple[str, int], Any] = {}
        """Each table's RocksDB database per partition owned (by table name)."""
        self.changelogs = ChangelogBatches()
        """Table writes of the batch, for their changelogs (handed over by persisted)."""
        self.recent = RecentStates()
        """The decoded state of the users stored most recently, oldest first: exactly
        what the store has (forgotten at every rebalance and after a failed batch)."""

    def database(self, partition: int, table: Any = None) -> Any:
        """The RocksDB database of a table (the users table unless told) for one
        partition. Read and written directly: faust's table layer around it (its
        current-event lookups, key index and per-write changelog record) cost more than
        the engine, and a batch writes each user once."""
        table = self.users if table is None else table
        database = self.databases.get((table.name, partition))
        if database is None:
            database = partition_database(table, partition)
            self.databases[(table.name, partition)] = database
        return database

    def forget_databases(self) -> None:
        """faust lets go of a revoked partition's database; a handle kept here would
        hold RocksDB's lock when faust opens one again."""
        self.databases = {}

    def load(self, partition: int, key: bytes) -> Kept | None:
        """A user's state: kept decoded from an earlier batch, or read from the store."""
        kept = self.recent.get((partition, key))
        if kept is None:
            kept = self.stored(partition, key)
        return kept

    def stored(self, partition: int, key: bytes) -> Kept | None:
        """A user's state as the store has it (never the decoded one kept in memory),
        with its event ids from the id store."""
        stored = self.database(partition).get(key)
        if stored is None:
            return None
        state, processed = decode(stored)
        span = processed.get(IDS)
        if span is not None:
            self._load_ids(partition, key, state, span)
        return state, processed

    def _load_ids(self, partition: int, key: bytes, state: UserState, span: list[int]) -> None:
        """Fill ``state.seen`` with the ids of sequence numbers ``[first, next)``, from
        the rows that hold them (each row the ids one batch added, from its sequence
        number on). Rows the changelog let expire (a worker recovered from it after a
        user's silence of more than ``IDS_RETENTION``) leave a gap: the ids after the
        newest gap are kept, and the span starts there."""
        first, end = span
        if first >= end:
            return
        prefix = _user_prefix(key)
        skip = len(prefix)
        kept: list[tuple[int, float]] = []
        expected = -1
        for row, value in self.database(partition, self.ids).items(from_key=prefix):
            if not row.startswith(prefix):
                break
            start = SEQ.unpack_from(row, skip)[0]
            if start >= end:
                break
            size = len(value) // ID_ROW.size
            if start + size <= first:
                continue  # forgotten, not deleted yet
            if (start != expected and expected != -1) or (expected == -1 and start > first):
                kept = []  # a gap: what came before it is not kept
                span[0] = start
            ids = ID_ROW.iter_unpack(value)
            if start < first:
                ids = itertools.islice(ids, first - start, None)
            kept.extend(ids)
            expected = start + size
        if expected != end:  # the newest rows are missing: none kept
            kept = []
            span[0] = end
        state.seen = OrderedDict(kept)

    @staticmethod
    def ids_before(state: UserState | None, processed: Processed) -> IdsBefore | None:
        """Where the user's ids stand when a batch first touches the user (None: the id
        store has none of this state's)."""
        span = processed.get(IDS)
        if state is None or span is None:
            return None
        return state.ids_appended, state.ids_retimed, span[0], span[1]

    async def write_ids(
        self,
        partition: int,
        key: bytes,
        state: UserState | None,
        processed: Processed,
        before: IdsBefore | None,
        erased: bool,
    ) -> Awaitable[Any] | None:
        """Write the ids a batch gave the user, each once, as one row (from the next
        sequence number on) to the id store and its changelog, and set the state's span.

        The engine adds ids at the end of ``state.seen`` and forgets the oldest from the
        front, so the ids kept are consecutive sequence numbers, and the batch's new ids
        are the last ones it counted (``UserState.ids_appended``): finding them costs
        what they are, not the user's day. Rarely it changes one's time in place (the
        same id again more than a day later): then the whole day is written again as one
        new row. Rows past the stored state's span are never read: a batch whose state
        was not stored leaves nothing visible. Returns the changelog write to wait for."""
        if state is None:
            return None
        seen = state.seen
        if before is None or erased:  # the ids of a state new to the id store
            # After an erasure, past the old rows: those go once the state is stored.
            first = end = 0 if before is None else before[3]
            added = list(seen.items())
        else:
            appended, retimed, first, end = before
            appended = state.ids_appended - appended
            if state.ids_retimed != retimed or appended >= len(seen):
                # A time changed in place, or no stored id is left: all again.
                added = list(seen.items())
            else:
                added = list(itertools.islice(reversed(seen.items()), appended))
                added.reverse()
        new_first = end - len(seen) + len(added)
        acknowledgement = None
        if added:
            row = _user_prefix(key) + SEQ.pack(end)
            value = b"".join([ID_ROW.pack(*entry) for entry in added])
            self.database(partition, self.ids).put(row, value)
            acknowledgement = await self.changelog(self.ids, partition, row, value)
        if first // GC_EVERY != new_first // GC_EVERY:
            self._forget_ids(partition, key, first)  # as far as the stored state has
        processed[IDS] = [new_first, end + len(added)]
        return acknowledgement

    def _forget_ids(self, partition: int, key: bytes, first: int) -> None:
        """Delete from RocksDB the rows wholly before sequence number ``first`` (the
        stored state's: a batch not stored yet must not lose the ids its state counts),
        one range delete."""
        prefix = _user_prefix(key)
        database = self.database(partition, self.ids)
        for row in database.keys(from_key=prefix + SEQ.pack(first), backwards=True):
            if row.startswith(prefix):
                database.delete_range(prefix, row)  # up to the row holding ``first``
            break

    async def erase_ids(
        self, partition: int, key: bytes, state: UserState | None, processed: Processed
    ) -> list[Awaitable[Any] | None]:
        """After an erasure, once the state is stored (or deleted): delete the user's
        rows from before it, from RocksDB and (tombstones) the changelog. Before that,
        a crash would leave the old state without its ids; after, the erasure is
        processed again and deletes them then."""
        prefix = _user_prefix(key)
        database = self.database(partition, self.ids)
        span = None if state is None else processed.get(IDS)
        stop = prefix + SEQ.pack(span[0]) if span is not None else prefix + b"\xff" * 9
        rows = []
        for row in database.keys(from_key=prefix):
            if not row.startswith(prefix) or row >= stop:
                break
            rows.append(row)
        if not rows:
            return []
        database.delete_range(prefix, stop)
        self.erased_ids.setdefault(partition, set()).update((rows[0], rows[-1]))
        return [await self.changelog(self.ids, partition, row, None) for row in rows]

    async def write(
        self,
        partition: int,
        key: bytes,
        state: UserState | None,
        processed: Processed,
        stored: bool,
    ) -> Awaitable[Any] | None:
        """Write a user's state to RocksDB and its changelog (a tombstone if erased),
        without its event ids (:meth:`write_ids` wrote them first); returns the
        changelog write's acknowledgement to wait for. ``stored``: whether the store had
        a state of the user before."""
        if state is None:  # erased
            self.recent.forget((partition, key))
            if not stored:
                return None
            self.database(partition).delete(key)
            self.erased.setdefault(partition, set()).add(key)
            self.count_users(-1)
            return await self.changelog(self.users, partition, key, None)
        value = encode(state, processed)
        self.database(partition).put(key, value)
        size = len(value) + ID_BYTES * len(state.seen)
        self.recent.remember((partition, key), (state, processed), size)
        if not stored:
            self.count_users(+1)
        return await self.changelog(self.users, partition, key, value)

    async def remove(self, partition: int, key: bytes) -> Awaitable[Any] | None:
        """Delete a state from RocksDB and (by tombstone) its changelog."""
        self.database(partition).delete(key)
        self.erased.setdefault(partition, set()).add(key)
        return await self.changelog(self.users, partition, key, None)

    async def compact_erased(self) -> None:
        """Rewrite the RocksDB files that held the users erased lately: a delete only
        adds a tombstone, and the erased state stays in older files until compaction
        drops both. One compaction per partition over the erased keys' range (on a
        timer, and before partitions are given up: on a rebalance and on stopping).
        Compaction changes no value read, so a batch may be half-way meanwhile."""
        erased_ids, self.erased_ids = self.erased_ids, {}
        for partition, rows in erased_ids.items():
            database = self.databases.get((self.ids.name, partition))
            if database is not None:
                database.compact_range(min(rows), max(rows))
        erased, self.erased = self.erased, {}
        for partition, keys in erased.items():
            # The handle the deletes went through (faust may have let go of its own).
            database = self.databases.get((self.users.name, partition))
            if database is None:
                continue
            began = time.perf_counter()
            database.compact_range(min(keys), max(keys))
            log.info(
                "partition %s: %s erased user(s) compacted out of RocksDB in %.2fs",
                partition,
                len(keys),
                time.perf_counter() - began,
            )

    async def changelog(
        self, table: Any, partition: int, key: bytes, value: bytes | None
    ) -> Awaitable[Any] | None:
        """Queue a table write for its changelog; :meth:`persisted` hands the queued
        writes to the producer, one record batch per changelog partition (faust's table
        path adds a buffer and a callback per write, and a producer send per record
        costs more than encoding the state). With Kafka transactions (exactly_once),
        faust's path, which puts the write in the partition's transaction."""
        if self.app.in_transaction:
            table.send_changelog(partition, key, value, value_serializer="raw")
            return None
        topic = table.changelog_topic.get_topic_name()
        return self.changelogs.add(topic, partition, key, value)

    async def persisted(
        self,
        table: Any,
        acknowledgements: list[Awaitable[Any] | None],
        reached: dict[tuple[Any, TP], int],
        generation: int,
    ) -> None:
        """Hand the queued changelog writes over, marked with the group generation they
        were made in, wait for a table's, and note the last offset of each partition."""
        await self.changelogs.hand_over(record_batches(self.app), generation)
        for acknowledgement in acknowledgements:
            if acknowledgement is not None:
                metadata = await acknowledgement
                tp = TP(metadata.topic, metadata.partition)
                reached[(table, tp)] = max(metadata.offset, reached.get((table, tp), -1))

    def count_users(self, change: int) -> None:
        self.users_tracked += change
        metrics.USERS_TRACKED.set(self.users_tracked)

    def set_users_tracked(self, users: int) -> None:
        self.users_tracked = users
        metrics.USERS_TRACKED.set(users)


def _user_prefix(key: bytes) -> bytes:
    """Where a user's rows begin in the id store: the user id's length first, so that
    no user's rows run into another's whose id begins with it."""
    return struct.pack(">H", len(key)) + key
