"""The Kafka messages of a JSON Lines file of events, for ``triggerstream produce``.

Each line is checked as the worker will check its message (the same decoding, the same
codes and reasons), so a file with a problem is refused before anything is sent.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import IO, TypeAlias

import orjson
import pydantic_core

from triggerstream.events import (
    BOM,
    MAX_EVENT_BYTES,
    InvalidEvent,
    decode_event,
    decode_line,
    refuse_future,
)

Message: TypeAlias = tuple[str, bytes | None, bytes]
"""(input topic without prefix, key, value)."""


def read_messages(
    lines: IO[bytes], topic: str | None, validate: bool, max_future: dt.timedelta
) -> tuple[list[Message], list[str]]:
    """The messages of every line, and the problems of the invalid ones (``line N:
    code: reason``). ``validate=False`` takes lines as they are (:func:`verbatim`)."""
    messages: list[Message] = []
    problems: list[str] = []
    # Read now: an event further ahead than the worker takes is refused here as there.
    read_at = time.time()
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if number == 1:
            line = line.removeprefix(BOM)  # a file saved by a Windows tool
        if not line:
            continue
        try:
            messages.append(
                message(line, topic, read_at, max_future) if validate else verbatim(line, topic)
            )
        except InvalidEvent as error:
            problems.append(f"line {number}: {error.code}: {error.reason}")
    return messages, problems


def message(line: bytes, topic: str | None, read_at: float, max_future: dt.timedelta) -> Message:
    """(topic, key, value) of a valid line; raises InvalidEvent as the worker would.

    The line is validated by the worker's own decoding, and sent without its "topic".
    """
    destination, event = decode_line(line, topic)
    refuse_future(event, read_at, max_future)
    document = pydantic_core.from_json(line.removeprefix(BOM))
    document.pop("topic", None)
    # pydantic's JSON, not orjson: integers beyond 64 bits stay what they were.
    value = pydantic_core.to_json(document)
    if len(value) > MAX_EVENT_BYTES:
        decode_event(destination, value)  # the worker's own too_large
    return destination, event.user_id.encode(), value


def verbatim(line: bytes, topic: str | None) -> Message:
    """(topic, key, value) of a line sent as it is (--no-validate): to --topic, or to
    the line's "topic" field; keyed by its user_id if it has one."""
    try:
        document = orjson.loads(line)
    except orjson.JSONDecodeError:
        document = None
    if not isinstance(document, dict):
        document = {}
    destination = topic or document.get("topic")
    if not isinstance(destination, str):
        raise InvalidEvent("missing_field", 'no "topic" field to send it to; pass --topic')
    user = document.get("user_id")
    return destination, user.encode() if isinstance(user, str) else None, line
