"""The field types of the events: what a producer's strings, numbers and times must be.

Strict where a producer could be silently misread: strings must be JSON strings, integers
JSON integers, booleans JSON booleans, and timestamps RFC 3339 strings with an offset.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from functools import cache
from typing import Annotated, Literal, TypeAlias

from pydantic import (
    AfterValidator,
    AwareDatetime,
    Field,
    Strict,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    StringConstraints,
    WithJsonSchema,
)

EARLIEST_TIME = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
LATEST_TIME = dt.datetime(2100, 1, 1, tzinfo=dt.UTC)
"""Timestamps outside [2000, 2100) are refused: they are clock or unit errors (seconds
read as milliseconds, a zero date), and one of them would move stream time for good."""


def _known_timezone(value: str) -> str:
    if value not in _timezone_names():
        raise ValueError(f"must be an IANA time zone such as Europe/Paris (got {value!r})")
    return value


@cache
def _timezone_names() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


_RFC3339_IN_RANGE = (
    r"^20[0-9]{2}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}(:[0-9]{2}([.,][0-9]+)?)?"
    r"([Zz]|[+-][0-9]{2}:?[0-9]{2})$"
)

Timestamp: TypeAlias = Annotated[
    AwareDatetime,
    # Strict: in JSON only RFC 3339 text, never a number (Unix seconds or milliseconds
    # read by mistake); from Python, a timezone-aware datetime.
    Strict(),
    Field(ge=EARLIEST_TIME, lt=LATEST_TIME),
    # Validators of other languages often skip `format`; the pattern says it anyway.
    WithJsonSchema({"type": "string", "format": "date-time", "pattern": _RFC3339_IN_RANGE}),
]
Name: TypeAlias = Annotated[StrictStr, StringConstraints(min_length=1, max_length=128)]
Text: TypeAlias = Annotated[StrictStr, StringConstraints(max_length=2000)]
Quantity: TypeAlias = Annotated[StrictInt, Field(ge=1, le=1_000_000)]
Amount: TypeAlias = Annotated[StrictInt | StrictFloat, Field(ge=0, allow_inf_nan=False)]
Currency: TypeAlias = Annotated[StrictStr, StringConstraints(pattern=r"^[A-Z]{3}$")]
Locale: TypeAlias = Annotated[
    StrictStr, StringConstraints(pattern=r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*$")
]
Country: TypeAlias = Annotated[StrictStr, StringConstraints(pattern=r"^[A-Z]{2}$")]
TimeZone: TypeAlias = Annotated[StrictStr, AfterValidator(_known_timezone)]
Channel: TypeAlias = Literal["in_app", "push", "email"]
BillingPeriod: TypeAlias = Literal["monthly", "annual"]
AttributeValue: TypeAlias = StrictBool | StrictInt | StrictFloat | Text
