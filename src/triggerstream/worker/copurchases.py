"""The co-purchase counts of each partition (what cross-sell recommends from), stored
in the ``copurchases`` table so that a worker taking a partition over recommends what
the last one would have.

The counts are stored before any user's state in a batch: a user stored as past an
order means the order is in the counts. Each row names the orders of its batch, and
once every state of the batch is stored, a mark says how far the orders are stored
with their users. A crash before the mark takes the orders past it back out at
recovery; they are read again and counted then, in order, so a decision made again
sees the counts it saw.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import Any

import orjson

from triggerstream.core.recommend import CoPurchaseCounts
from triggerstream.events import Event
from triggerstream.worker.batch import Batch, Read
from triggerstream.worker.store import StateStore

log = logging.getLogger("triggerstream.worker")

Order = tuple[str, int, list[str]]
"""An order counted for cross-sell: the input it was read from, its offset, its skus."""


class CoPurchases:
    """The counts of the partitions owned, and where they stand in the table."""

    def __init__(self, store: StateStore) -> None:
        self.store = store
        self.table = store.copurchase_table
        self.counts: dict[int, CoPurchaseCounts] = {}
        self.stored_marks: dict[int, dict[str, int]] = {}
        """Per partition and input: the offset up to which orders are counted and their
        users stored (the co-purchase table's mark)."""
        self.rolled_back: dict[int, set[tuple[str, int]]] = {}
        """Per partition: the orders (input, offset) taken back out of the counts at
        recovery, not yet read again."""

    def of(self, partition: int) -> CoPurchaseCounts:
        return self.counts.setdefault(partition, CoPurchaseCounts())

    def counted(self, batch: Batch, read: Read, event: Event) -> None:
        """An order the engine has just counted: stored with the batch."""
        partition = read.message.partition
        self._rolled_back(partition).discard((read.source, read.message.offset))
        batch.orders.setdefault(partition, []).append(_order(read, event))

    def count_again(self, batch: Batch, read: Read, event: Event) -> None:
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
            self.of(message.partition).record_order(order[2])
            batch.orders.setdefault(message.partition, []).append(order)

    def _rolled_back(self, partition: int) -> set[tuple[str, int]]:
        return self.rolled_back.setdefault(partition, set())

    async def store_pairs(self, batch: Batch) -> list[Awaitable[Any] | None]:
        """Write the counts of every SKU the batch's orders changed to RocksDB and the
        changelog, each row with the orders of this batch that counted in it."""
        return [
            await self._store_pairs(partition, sku, orders)
            for partition, orders in batch.orders.items()
            for sku in sorted({sku for _, _, skus in orders for sku in skus})
        ]

    async def _store_pairs(
        self, partition: int, sku: str, orders: list[Order]
    ) -> Awaitable[Any] | None:
        partners = self.counts[partition].pairs.get(sku)
        if partners is None:
            return None
        key = f"{partition}:{sku}".encode()
        value = orjson.dumps(
            {"pairs": partners, "orders": [list(order) for order in orders if sku in order[2]]}
        )
        self.store.database(partition, self.table).put(key, value)
        return await self.store.changelog(self.table, partition, key, value)

    async def store_marks(self, batch: Batch) -> list[Awaitable[Any] | None]:
        """Once the users of a batch's orders are stored: how far, per input, the
        orders' counts are stored with them."""
        return [
            await self._store_mark(partition, orders) for partition, orders in batch.orders.items()
        ]

    async def _store_mark(self, partition: int, orders: list[Order]) -> Awaitable[Any] | None:
        mark = self.stored_marks.setdefault(partition, {})
        for source, offset, _ in orders:
            mark[source] = max(offset, mark.get(source, -1))
        key = _mark_key(partition)
        value = orjson.dumps(mark)
        self.store.database(partition, self.table).put(key, value)
        return await self.store.changelog(self.table, partition, key, value)

    def load(self, active: set[int]) -> None:
        """The co-purchase counts of the partitions owned, from the table: orders
        counted past the stored mark (their users' states may not have been stored) are
        taken back out, to be counted again when they are read again."""
        self.counts = {partition: CoPurchaseCounts() for partition in active}
        self.stored_marks = {}
        self.rolled_back = {}
        rows: list[tuple[int, str, Any]] = []
        for key, value in self.table.items():
            partition_text, separator, sku = key.decode().partition(":")
            if not separator:  # a mark
                partition = int(key.split(b"\x00")[0])
                if partition in active:
                    self.stored_marks[partition] = orjson.loads(value)
            elif int(partition_text) in active:
                rows.append((int(partition_text), sku, orjson.loads(value)))
        for partition, sku, stored in rows:
            counts = self.counts[partition]
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


def _order(read: Read, event: Event) -> Order:
    items = event.properties.items  # type: ignore[union-attr]
    return (read.source, read.message.offset, [item.sku for item in items])


def _mark_key(partition: int) -> bytes:
    """The key of a partition's stored mark in the co-purchase table (no sku has it:
    no ':')."""
    return f"{partition}\x00stored".encode()
