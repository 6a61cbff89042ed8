"""What the worker holds while it processes one batch of input messages.

A batch is every input message of one fetch that may be processed now (the event-time
merge released it). Each user the batch touches is loaded from the state store once,
kept decoded while the batch's events go through the engine, and stored once at the
end; every output record is handed to the producer as it is made and awaited once for
the whole batch. The order of effects stays that of one event at a time: outputs
acknowledged by the broker, then state stored, then input offsets acknowledged. So a
crash anywhere in a batch leaves what a crash between two events leaves: events whose
state was stored are recognised and dropped when read again, the others are processed
again and give the same records with the same ids.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from triggerstream.core.state import UserState
from triggerstream.events import Event, InvalidEvent
from triggerstream.worker.outputs import Delivery, Headers


@dataclass(slots=True)
class Read:
    """An input message as read, waiting for its turn in event-time order."""

    message: Any
    source: str
    """The name (without the prefix) of the topic it was read from (an input, or
    ``repartition``)."""
    topic: str
    """The name (without the prefix) of the input topic of its event (for a forwarded message, the
    topic it was first published to)."""
    headers: Headers
    """Its headers, carried to the records it causes."""
    decoded: Event | InvalidEvent


@dataclass(slots=True)
class Redo:
    """One step already applied to a user's state in this batch: what to apply again if
    a later step of the same user fails half-way (the engine changes state in place)."""

    topic: str | None
    """The input topic of an event (None for a timer tick)."""
    message: Any
    event: Event | None
    now: float = 0.0
    """The wall-clock time a timer tick fired at."""


@dataclass(slots=True)
class TouchedUser:
    """A user's state as the batch has it."""

    partition: int
    stored: bool
    """Whether the store has a state of the user (as of the batch's start)."""
    state: UserState | None
    processed: dict[str, list[int]] = field(default_factory=dict)
    """Where the worker stands in the user's input (:mod:`triggerstream.worker.codec`)."""
    changed: bool = False
    done: list[Redo] = field(default_factory=list)
    ids_before: tuple[int, int, int, int] | None = None
    """Where the user's event ids stood when the batch first touched the user
    (:meth:`StateStore.ids_before`; None: the id store had none of this state's)."""
    erased: bool = False
    """Whether an erasure of the user was processed in the batch."""


@dataclass(slots=True)
class Batch:
    users: dict[tuple[int, bytes], TouchedUser] = field(default_factory=dict)
    """Per (partition, user id): a user's state is only ever read and written on the
    user's home partition, and a user's messages that reach another partition (a
    producer with another partitioner) must not meet a state of the user there."""
    deliveries: list[Delivery] = field(default_factory=list)
    """Acknowledgements of the records sent, awaited before any state is stored."""
    orders: dict[int, list[tuple[str, int, list[str]]]] = field(default_factory=dict)
    """Per partition: the orders counted for cross-sell, as (input, offset, skus)."""
    messages: list[Any] = field(default_factory=list)
    """The input messages taken (events, invalid ones, ticks), acknowledged once state
    is stored."""
    processed: int = 0
    """Events the engine processed (not invalid, not duplicates)."""
    generation: int = 0
    """The group generation the worker owned its partitions in when the batch began:
    its changelog records are marked with it (worker/changelog.py)."""
    session: int = 0
    """How many times the worker had lost its partitions when the batch began
    (worker/session.py): lost since, the batch leaves no state behind."""
