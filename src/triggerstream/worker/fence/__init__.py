"""The fence: every private name of faust-streaming, mode and aiokafka the worker
relies on, in this module only, each with why the public API does not serve.

faust-streaming moves fast with few hands (0.12 to 0.15 within two months; one of
those releases broke every rebalance), so a minor release can silently change what a
private name means. Three guards stand around what is here:
- ``pyproject.toml`` pins faust-streaming and aiokafka to the range tested
  (``SUPPORTED``; ``tests/unit/test_fence.py`` fails outside it);
- :func:`check` runs before the worker starts: every private class member it relies
  on must exist with the parameters it expects, or the worker stops with one line
  naming it and the supported versions;
- the private attributes faust and aiokafka set on their instances are checked when
  those are made (:func:`require`), before the first message is read.

Everything else in the worker uses the public API only.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import inspect
import re
from collections.abc import Iterator
from typing import Any, NamedTuple, cast

import faust
from aiokafka.client import AIOKafkaClient
from aiokafka.conn import CloseReason
from aiokafka.consumer import AIOKafkaConsumer
from aiokafka.consumer.group_coordinator import GroupCoordinator
from aiokafka.producer import AIOKafkaProducer
from faust.stores.rocksdb import Store as RocksDBStore
from faust.tables.base import Collection
from faust.tables.manager import TableManager
from faust.tables.recovery import Recovery
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.transport.producer import ProducerBuffer
from faust.types import TP, Message
from faust.types.tables import CollectionT

SUPPORTED = {"faust-streaming": ((0, 15, 3), (0, 16)), "aiokafka": ((0, 14, 0), (0, 15))}
"""The versions tested, as pyproject.toml pins them: at least the first, below the second."""


class FrameworkMismatch(RuntimeError):
    """faust-streaming or aiokafka lacks a private name the worker relies on."""


class Private(NamedTuple):
    owner: type
    name: str
    parameters: tuple[str, ...] | None
    """A method's parameters after ``self`` (None: an attribute or property)."""


PRIVATE = (
    # faust's fetch loop hands messages on one at a time (0.15 ms each); ours hands a
    # fetch over as one batch, and there is no public hook between fetch and dispatch.
    Private(faust_aiokafka.Consumer, "_drain_messages", ("fetcher",)),
    Private(faust_aiokafka.Consumer, "_wait_next_records", ("timeout",)),
    Private(faust_aiokafka.Consumer, "_to_message", ("tp", "record")),
    Private(faust_aiokafka.Consumer, "_add_gap", ("tp", "offset_from", "offset_to")),
    Private(faust_aiokafka.Consumer, "_new_consumer_thread", ()),
    # faust hard-codes a 1.5 s fetch wait; aiokafka's consumer is made inside faust.
    Private(faust_aiokafka.AIOKafkaConsumerThread, "_create_worker_consumer", ("transport",)),
    Private(faust_aiokafka.AIOKafkaConsumerThread, "_ensure_consumer", ()),
    # aiokafka keeps the partitions of a member cut off from its group and tells no one:
    # the worker watches its heartbeats, and asks to join again once they stopped.
    Private(GroupCoordinator, "_do_heartbeat", ()),
    Private(faust_aiokafka.AIOKafkaConsumerThread, "on_start", ()),
    # faust's transport has no setting for its consumer and producer classes.
    Private(faust.App, "_new_transport", ()),
    # Giving back unprocessed messages must happen before faust waits for them.
    Private(faust.App, "_consumer_wait_empty", ("consumer", "logger")),
    # aiokafka tracks only some topics' metadata; no public way to track one.
    Private(faust_aiokafka.Producer, "_new_producer", ("transactional_id",)),
    Private(AIOKafkaClient, "_wait_on_metadata", ("topic",)),
    # faust's flush gives up on its buffer of changelog writes after 0.1 s.
    Private(ProducerBuffer, "_send_pending", ("fut",)),
    # Record batches: faust's producer has no batch API; aiokafka's does.
    Private(faust_aiokafka.Producer, "_ensure_producer", ()),
    # The recovery's consistency check, made ours (faust's crashes with a wrong hint).
    Private(Recovery, "_build_offsets", ("consumer", "tps", "destination", "title")),
    Private(Recovery, "_build_highwaters", ("consumer", "tps", "destination", "title")),
    Private(Recovery, "_set_recovery_started", ()),
    Private(Recovery, "_set_recovery_ended", ()),
    # The RocksDB database of one partition: faust's table layer costs more than the
    # engine, and its iteration does not say which partition.
    Private(RocksDBStore, "_db_for_partition", ("partition",)),
    Private(RocksDBStore, "_visible_items", ("db",)),
)

INSTANCE_ATTRIBUTES: dict[type, tuple[str, ...]] = {
    faust_aiokafka.Consumer: (
        "_unacked_messages",  # acknowledgement is per message; a batch is taken whole
        "_buffered_partitions",  # whether faust has stopped fetching a partition
        "_read_offset",  # the fetch loop's bookkeeping, kept as faust keeps it
        "_commit_every",
        "_n_acked",
        "_stopped",  # mode's Service: its stop event
    ),
    AIOKafkaConsumer: (
        "_fetch_max_wait_ms",  # the fetch wait faust hard-codes
        "_coordinator",  # its group coordinator, whose heartbeats the worker watches
    ),
    GroupCoordinator: ("generation",),  # marks the worker's changelog records
    AIOKafkaClient: (
        "_topics",  # the topics whose metadata it tracks
        "_conns",  # its connections, closed after a cut (reconnect_producer)
    ),
    Recovery: (  # the recovery's progress, advanced by the batched changelog reader
        "_active_events_received_at",
        "_standby_events_received_at",
        "_last_flush_at",
    ),
    TableManager: ("_recovery",),  # where faust keeps its recovery service
    Collection: ("_verified_source_topics_for_partitions",),
    RocksDBStore: ("_dbs",),  # the open database of each partition
}
"""Attributes faust, mode and aiokafka set on their instances: :func:`check` finds each
assigned in the source of the class or a base, :func:`require` on the instance when one
is made."""


def supported() -> str:
    return ", ".join(
        f"{name} >={'.'.join(map(str, low))},<{'.'.join(map(str, high))}"
        for name, (low, high) in SUPPORTED.items()
    )


def installed() -> str:
    return ", ".join(f"{name} {importlib.metadata.version(name)}" for name in SUPPORTED)


def _mismatch(what: str) -> FrameworkMismatch:
    return FrameworkMismatch(
        f"{what}: this worker relies on it (triggerstream/worker/fence); installed "
        f"{installed()}, supported {supported()}. Install a supported version "
        f"(pip install 'faust-streaming>=0.15.3,<0.16' 'aiokafka>=0.14,<0.15')"
    )


def check() -> None:
    """Every private member in :data:`PRIVATE` exists with the parameters expected and
    every attribute of :data:`INSTANCE_ATTRIBUTES` is still assigned in the modules of
    its class and its bases;
    raises :class:`FrameworkMismatch` naming the first that is not."""
    for private in PRIVATE:
        where = f"{_name(private.owner)}.{private.name}"
        member = inspect.getattr_static(private.owner, private.name, None)
        if member is None:
            raise _mismatch(f"{where} is missing")
        if private.parameters is None:
            continue
        function = getattr(private.owner, private.name)
        if not callable(function):
            raise _mismatch(f"{where} is no longer a method")
        names = tuple(inspect.signature(function).parameters)[1:]
        if names[: len(private.parameters)] != private.parameters:
            raise _mismatch(
                f"{where} takes ({', '.join(names)}), not ({', '.join(private.parameters)})"
            )
    for owner, attributes in INSTANCE_ATTRIBUTES.items():
        source = "\n".join(_sources(owner))
        for attribute in attributes:
            if not re.search(rf"self\.{attribute}\s*(:[^=\n]*)?=", source):
                raise _mismatch(f"{_name(owner)} no longer sets self.{attribute}")


def _name(owner: type) -> str:
    return f"{owner.__module__}.{owner.__qualname__}"


def _sources(owner: type) -> Iterator[str]:
    """The source of every module defining a class of ``owner``'s MRO (each read once:
    ``inspect.getsource`` of each class tokenizes its file and took a second at start)."""
    for cls in owner.__mro__:
        with contextlib.suppress(TypeError, OSError):
            path = inspect.getsourcefile(cls)
            if path is not None:
                yield _read(path)


@functools.cache
def _read(path: str) -> str:
    with open(path, encoding="utf-8") as file:
        return file.read()


def require(instance: object, owner: type) -> None:
    """The private attributes of :data:`INSTANCE_ATTRIBUTES` ``owner`` on an instance."""
    for attribute in INSTANCE_ATTRIBUTES[owner]:
        if not hasattr(instance, attribute):
            raise _mismatch(f"{_name(owner)} instance has no attribute {attribute}")


# --- private attributes read by the worker ------------------------------------------


def unacked_messages(consumer: Any) -> set[Message]:
    """faust's messages in hand: acknowledgement is per message and faust offers no way
    to take a message it did not dispatch (a batch is taken whole)."""
    return cast(set[Message], consumer._unacked_messages)


def paused_for_buffer(consumer: Any) -> set[TP]:
    """The partitions faust leaves out of its fetches (``on_buffer_full``); it has no
    public way to ask."""
    return cast(set[TP], consumer._buffered_partitions)


def record_batches(app: faust.App) -> AIOKafkaProducer:
    """aiokafka's producer under faust's, for its record batches (faust has none)."""
    return cast(AIOKafkaProducer, cast(Any, app.producer)._ensure_producer())


def reconnect_producer(app: faust.App) -> int:
    """Close every connection of aiokafka's producer (how many): a connection that was
    cut waits out TCP's retransmission backoff before what it holds is answered (half a
    minute after a 30 s cut), and faust's commit, and with it a rebalance, waits for
    every record in flight. Closed, aiokafka sends those records again at once on new
    connections. aiokafka has no public way to drop one connection."""
    producer = record_batches(app)
    client = producer.client
    require(client, AIOKafkaClient)
    connections = list(cast(Any, client)._conns.values())
    for connection in connections:
        connection.close(reason=CloseReason.CONNECTION_BROKEN)
    return len(connections)


def trust_source_topics(table: CollectionT, topics: tuple[str, ...]) -> None:
    """faust checks co-partitioning on a table's first write from each topic, against
    the consumer's metadata, which can still show a changelog created moments ago with 0
    partitions; the worker's preflight checks it on the broker instead."""
    require(table, Collection)
    cast(Any, table)._verified_source_topics_for_partitions.update(topics)


def partition_database(table: CollectionT, partition: int) -> Any:
    """The RocksDB database of one partition of a table (faust keeps one per partition
    and has no public accessor)."""
    return cast(Any, table).data._db_for_partition(partition)


def stored_items(table: CollectionT, partition: int) -> Iterator[tuple[bytes, bytes]]:
    """Every key and value a table holds for one partition; faust's iteration API does
    not say which partition an item is from."""
    store = cast(Any, table).data
    require(store, RocksDBStore)
    database = store._dbs.get(partition)
    if database is None:
        return
    yield from store._visible_items(database)
