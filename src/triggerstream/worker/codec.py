"""How the worker stores a user: the state's document (:meth:`UserState.to_document`,
without the day's event ids, which the id store keeps) and, beside it, where the worker
stands in the user's input, as compact JSON.

``processed`` is the worker's, not the engine's: input topic -> [partition, offset] of
the last message of this user it processed (a message at or before it, delivered again
after a crash, is already in this state, however old its event time), and under
:data:`IDS` the id store's sequence numbers that hold the user's event ids. It is the
document's last key, as when it was a field of the state: states written before read
the same.
"""

from __future__ import annotations

from typing import Any

import orjson

from triggerstream.core.state import UserState

Processed = dict[str, list[int]]

IDS = "#ids"
"""The entry of ``processed`` (never a topic's name) that says which of the id store's
sequence numbers hold the user's event ids: ``[first, next)``. A state written before the
id store has none, and its ids in itself."""


def encode(state: UserState, processed: Processed) -> bytes:
    document: dict[str, Any] = state.to_document(seen=False)
    if processed:
        document["processed"] = processed
    return orjson.dumps(document)


def decode(data: bytes) -> tuple[UserState, Processed]:
    document = orjson.loads(data)
    processed: Processed = document.pop("processed", {})
    return UserState.from_document(document), processed
