"""Durations as the rules and topic files write them: ``<number><s|m|h|d>``."""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, TypeAlias

from pydantic import BeforeValidator, PlainSerializer

_DURATION = re.compile(r"^(\d+)(s|m|h|d)$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> dt.timedelta:
    """``"90s"`` -> 90 seconds, ``"7d"`` -> 7 days. Raises ValueError with the fix."""
    match = _DURATION.match(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"bad duration {text!r}: write <number><s|m|h|d>, e.g. 90s, 30m, 1h, 7d")
    return dt.timedelta(seconds=int(match.group(1)) * _UNIT_SECONDS[match.group(2)])


def format_duration(value: dt.timedelta) -> str:
    """The shortest exact ``<number><unit>`` form of a duration."""
    seconds = int(value.total_seconds())
    for unit in ("d", "h", "m"):
        if seconds and seconds % _UNIT_SECONDS[unit] == 0:
            return f"{seconds // _UNIT_SECONDS[unit]}{unit}"
    return f"{seconds}s"


def _parse(value: object) -> object:
    return parse_duration(value) if isinstance(value, str) else value


Duration: TypeAlias = Annotated[
    dt.timedelta,
    BeforeValidator(_parse),
    PlainSerializer(format_duration, return_type=str, when_used="json"),
]
"""A pydantic field type that reads and writes ``<number><s|m|h|d>``."""
