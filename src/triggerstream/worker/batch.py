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

from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any

from triggerstream.core.state import UserState
from triggerstream.events import Event


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
    changed: bool = False
    done: list[Redo] = field(default_factory=list)


@dataclass(slots=True)
class Batch:
    users: dict[bytes, TouchedUser] = field(default_factory=dict)
    deliveries: list[Awaitable[Any]] = field(default_factory=list)
    """Acknowledgements of the records sent, awaited before any state is stored."""
    purchased: dict[int, set[str]] = field(default_factory=dict)
    """Per partition: the SKUs whose co-purchase counts changed."""
    messages: list[Any] = field(default_factory=list)
    """The input messages taken (events, invalid ones, ticks), acknowledged once state
    is stored."""
    processed: int = 0
    """Events the engine processed (not invalid, not duplicates)."""
