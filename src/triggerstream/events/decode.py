"""Decoding: the raw bytes of one message, or one line of a file, into its event.

The one place input is validated, by the worker, ``replay`` and ``produce`` alike.
Anything unusable raises :class:`InvalidEvent`.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson
import pydantic_core
from pydantic import BaseModel, ConfigDict, StrictStr, TypeAdapter, ValidationError
from pydantic_core import SchemaValidator

from triggerstream.events.envelope import Envelope
from triggerstream.events.invalid import InvalidEvent, explain
from triggerstream.events.vocabulary import EVENT_UNIONS, INPUT_TOPICS, Event

MAX_EVENT_BYTES = 64 * 1024
"""An encoded event larger than this is refused (``too_large``)."""

_ADAPTERS: dict[str, TypeAdapter[Any]] = {
    topic: TypeAdapter(union) for topic, union in EVENT_UNIONS.items()
}
_VALIDATORS: dict[str, SchemaValidator] = {
    topic: adapter.validator  # type: ignore[misc]
    for topic, adapter in _ADAPTERS.items()
}
"""The adapters' validators, called directly on the path of every event."""


BOM = b"\xef\xbb\xbf"
"""The UTF-8 byte order mark that Windows tools put at the start of a file."""


def decode_event(topic: str, raw: bytes) -> Event:
    """Validate the raw bytes of one message of input ``topic`` into its event model.

    The one place input is validated: the worker calls it on a message's value, and
    ``replay`` and ``produce`` on a line's bytes (through :func:`decode_line`), so the
    same bytes get the same code and reason from all three. A leading UTF-8 byte order
    mark is ignored; ``NaN`` and ``Infinity``, which pydantic's JSON reader accepts, are
    not JSON (RFC 8259) and are refused as ``not_json``.

    Raises :class:`InvalidEvent` for anything unusable, and nothing else.
    """
    validator = _VALIDATORS.get(topic)
    if validator is None:
        _adapter(topic)  # raises unknown_topic
    if raw.startswith(BOM):
        raw = raw[3:]
    if len(raw) > MAX_EVENT_BYTES:
        raise _too_large(len(raw))
    if b"NaN" in raw or b"Infinity" in raw:
        # Rare enough to parse twice: only where the words appear at all.
        _refuse_non_json_numbers(raw)
    try:
        event: Event = validator.validate_json(raw)  # type: ignore[union-attr]
    except ValidationError as error:
        raise explain(topic, error) from None
    return event


def _too_large(size: int) -> InvalidEvent:
    return InvalidEvent(
        "too_large", f"event is {size} bytes; the limit is {MAX_EVENT_BYTES} (64 KiB)"
    )


def refuse_future(event: Event, read_at: float, max_future: dt.timedelta) -> Event:
    """``event``, unless it is dated more than ``max_future`` after ``read_at`` (the
    wall clock in the worker, ``--now`` in replay): then :class:`InvalidEvent`
    ``from_future``. One producer with a wrong clock must never move its user's clock
    ahead, after which every present-day event of theirs would be late and decide
    nothing."""
    limit = max_future.total_seconds()
    if event.at - read_at > limit:
        # Worded without the time it was read: the same event gets the same words from
        # produce, replay and the worker.
        raise InvalidEvent(
            "from_future",
            f"occurred_at: {event.occurred_at.isoformat()} is more than {_span(limit)} after "
            "the time the event was read (TRIGGERSTREAM_MAX_FUTURE): is the producer's clock "
            "wrong?",
        )
    return event


def _span(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.3g}{unit}"
    return f"{seconds:.3g}s"


def _refuse_non_json_numbers(raw: bytes) -> None:
    """``not_json`` if ``raw`` is JSON only with NaN or Infinity allowed as numbers."""
    try:
        pydantic_core.from_json(raw, allow_inf_nan=False)
    except ValueError as strict:
        try:
            pydantic_core.from_json(raw)
        except ValueError:
            return  # not JSON for another reason: validate_json words it as usual
        raise InvalidEvent(
            "not_json", f"event: invalid JSON: NaN and Infinity are not JSON numbers ({strict})"
        ) from None


class _Line(BaseModel):
    """What a replay or produce line has besides its event: the input topic it is for."""

    model_config = ConfigDict(extra="ignore")

    topic: StrictStr


_LINE = TypeAdapter(_Line)


def decode_line(line: bytes, topic: str | None = None) -> tuple[str, Event]:
    """One line of a replay or produce file: its input topic and its event.

    The topic is the line's ``"topic"`` field unless ``topic`` is given; the event is
    :func:`decode_event` of the line's bytes, where ``"topic"`` is an unknown field and
    ignored. So a line gets the code and reason its event would get on the topic.
    """
    named = topic or _line_topic(line)
    return named, decode_event(named, line)


def _line_topic(line: bytes) -> str:
    body = line.removeprefix(BOM)
    # The replay format writes the topic first: no need to parse the line for it.
    if body.startswith(b'{"topic":"'):
        named = body[10 : body.find(b'"', 10)].decode(errors="replace")
        if named in EVENT_UNIONS:
            return named
    if len(body) > MAX_EVENT_BYTES:
        raise _too_large(len(body))
    try:
        return _LINE.validate_json(body).topic
    except ValidationError as error:
        first = error.errors(include_url=False)[0]
        if first["type"] == "missing" and first["loc"] == ("topic",):
            raise InvalidEvent(
                "missing_field",
                "topic: field required: each line names its input topic "
                f"({', '.join(INPUT_TOPICS)}); produce also takes --topic",
            ) from None
        raise explain("", error) from None


def validate_event(topic: str, value: object) -> Event:
    """Validate a JSON-like value built in Python (a dict) as an event of input ``topic``:
    :func:`decode_event` of its JSON, so a dict is held to exactly what the wire accepts.
    """
    _adapter(topic)
    try:
        raw = orjson.dumps(value)
    except orjson.JSONEncodeError as error:
        raise InvalidEvent("wrong_type", f"not representable as JSON: {error}") from None
    return decode_event(topic, raw)


def encode_event(event: Envelope) -> bytes:
    """The JSON bytes of an event as it goes on the wire (no ``topic`` field)."""
    data = event.model_dump_json(exclude_none=True).encode()
    if len(data) > MAX_EVENT_BYTES:
        raise InvalidEvent(
            "too_large", f"event is {len(data)} bytes; the limit is {MAX_EVENT_BYTES} (64 KiB)"
        )
    return data


def _adapter(topic: str) -> TypeAdapter[Any]:
    try:
        return _ADAPTERS[topic]
    except KeyError:
        raise InvalidEvent(
            "unknown_topic",
            f"unknown input topic {topic!r}; input topics are {', '.join(INPUT_TOPICS)}",
        ) from None
