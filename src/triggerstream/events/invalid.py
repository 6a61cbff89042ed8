"""Why an input cannot be used: :class:`InvalidEvent`, with a bounded code and a reason.

pydantic's errors become one code (for metrics, summaries and dead letters) and one
sentence a person can read, naming the field and the value.
"""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import ValidationError

from triggerstream.events.vocabulary import EVENT_TYPES, TYPES_BY_TOPIC


class InvalidEvent(ValueError):
    """An input that cannot be used, with a bounded ``code`` and a readable ``reason``.

    Codes: ``not_json``, ``not_object``, ``too_large``, ``too_deep``, ``unknown_topic``,
    ``unknown_type``, ``missing_field``, ``wrong_type``, ``naive_timestamp``,
    ``out_of_range``, ``invalid_value``, ``from_future``, ``tombstone``.
    """

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


# pydantic error types -> our bounded codes. Anything not listed is ``invalid_value``.
_CODES: dict[str, str] = {
    "json_invalid": "not_json",
    "json_type": "not_json",
    "missing": "missing_field",
    "union_tag_not_found": "missing_field",
    "union_tag_invalid": "unknown_type",
    "timezone_aware": "naive_timestamp",
    "greater_than": "out_of_range",
    "greater_than_equal": "out_of_range",
    "less_than": "out_of_range",
    "less_than_equal": "out_of_range",
    "finite_number": "out_of_range",
}


def explain(topic: str, error: ValidationError) -> InvalidEvent:
    """Turn pydantic's errors into one code and one readable sentence."""
    details = error.errors(include_url=False)
    first = details[0]
    kind = first["type"]
    loc = _path(first["loc"])
    if kind in ("model_type", "model_attributes_type", "dict_type") and not loc:
        return InvalidEvent("not_object", "event must be a JSON object")
    if kind == "union_tag_invalid":
        got = (first.get("ctx") or {}).get("tag", "")
        known = ", ".join(TYPES_BY_TOPIC[topic])
        return InvalidEvent("unknown_type", f"unknown type {got!r} on {topic}; known: {known}")
    if kind == "union_tag_not_found":
        return InvalidEvent("missing_field", "type: field required")
    if kind == "json_invalid" and "recursion limit" in first["msg"]:
        return InvalidEvent("too_deep", "event nests arrays or objects too deeply to read")
    infinite = [d for d in details if d["type"] == "finite_number"]
    if infinite and len(details) > 1:
        # A number too large for a double where a union of types is allowed (attribute
        # values): its range is the problem, not the other members' types.
        detail: dict[str, Any] = dict(infinite[0])
        if detail["loc"] and detail["loc"][-1] in _UNION_MEMBERS:
            detail["loc"] = detail["loc"][:-1]
        return InvalidEvent("out_of_range", _sentence(detail))
    code = _CODES.get(kind)
    if code is None:
        code = "wrong_type" if kind.endswith(("_type", "_parsing")) else "invalid_value"
    sentences = [_sentence(d) for d in details[:3]]
    more = f" (and {len(details) - 3} more)" if len(details) > 3 else ""
    return InvalidEvent(code, "; ".join(sentences) + more)


_UNION_MEMBERS = frozenset({"bool", "int", "float", "str", "constrained-str"})
"""How pydantic names the members of a union of plain types in an error's place."""


def _path(loc: tuple[int | str, ...]) -> str:
    # A discriminated union puts the tag first (("feature_used", "properties", ...)):
    # the reader knows the type already, so it is left out.
    parts = [str(p) for p in loc]
    if parts and parts[0] in _ALL_TAGS:
        parts = parts[1:]
    return ".".join(parts)


_ALL_TAGS = frozenset(q.split(".", 1)[1] for q in EVENT_TYPES)


def _sentence(detail: Any) -> str:
    where = _path(detail["loc"]) or "event"
    message = str(detail["msg"])
    message = message.removeprefix("Value error, ")
    if detail["type"] == "missing":
        return f"{where}: field required"
    if detail["type"] == "datetime_type":
        message = "must be an RFC 3339 timestamp string with an offset"
    shown = "" if "(got " in message else _shown(detail.get("input"))
    return f"{where}: {message[0].lower()}{message[1:]}" + (f" (got {shown})" if shown else "")


def _shown(value: object) -> str:
    if isinstance(value, dict | list) or value is None:
        return ""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str):
        text = orjson.dumps(value).decode()
    else:  # numbers, of any size
        text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."
