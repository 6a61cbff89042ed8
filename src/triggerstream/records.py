"""Output records (docs/contract.md section 8): triggers, decisions, attributions, dead letters.

These are what notification services, auditors and analysts read. Each has a JSON Schema
in ``topics/schemas/`` generated from the model here.
"""

from __future__ import annotations

import base64
import datetime as dt
from typing import Annotated, Any, Literal, TypeAlias

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from triggerstream.events import Channel

Outcome: TypeAlias = Literal["emitted", "suppressed", "holdout", "deferred", "expired", "erased"]

SuppressionReason: TypeAlias = Literal[
    "opted_out",
    "already_owned",
    "nothing_to_recommend",
    "detractor",
    "open_tickets",
    "critical_workflow",
    "snoozed",
    "dismissed",
    "cooldown",
    "frequency_cap",
    "holdout",
    "no_channel",
    "lower_priority",
]
"""Why a match was not sent, in the order the policy checks them (docs/contract.md section 7).
``holdout`` is the reason of a held-out decision, not a suppression."""

REASON_WORDS: dict[SuppressionReason, str] = {
    "opted_out": "the user opted out of offers",
    "already_owned": "the user already owns the offer's product",
    "nothing_to_recommend": "a cross-sell offer had no item left to recommend",
    "detractor": "the user's latest NPS answer makes them a detractor",
    "open_tickets": "the user has too many open support tickets",
    "critical_workflow": "the user is in the middle of a critical workflow",
    "snoozed": "the user snoozed all offers, or this one",
    "dismissed": "the user dismissed this offer a short while ago",
    "cooldown": "this rule reached the user too recently",
    "frequency_cap": "the user already had as many offers as a frequency cap allows",
    "holdout": "the user is in the control group: nothing is sent, the lift is measured",
    "no_channel": "no channel could reach the user (no session, no consent, quiet hours, a cap)",
    "lower_priority": "a more important offer went to the user at the same moment",
}
"""Each reason in one short sentence, for people (the demo's legend; section 7 has the
precise conditions)."""

CHANNEL_TOPICS: dict[str, str] = {
    "in_app": "offer-triggers.in-app",
    "push": "offer-triggers.push",
    "email": "offer-triggers.email",
}
"""Channel value in records to the topic (without prefix) its triggers go to."""

DECISIONS_TOPIC = "offer-decisions"
ATTRIBUTIONS_TOPIC = "attributions"
DEAD_LETTER_TOPIC = "events.dlq"


class Record(BaseModel):
    """Base of output records: immutable; readers ignore fields they do not know."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class OfferItem(Record):
    """One recommended item of a cross-sell offer, best first."""

    sku: str
    score: Annotated[float, Field(ge=0)]


class Offer(Record):
    """The offer as the channel shows it, after any experiment variant is applied."""

    id: str
    kind: Literal["upsell", "cross_sell"]
    product: str | None = None
    title: str
    benefits: Annotated[list[str], Field(max_length=3)] = []
    discount_percent: Annotated[float, Field(ge=0, le=100)] = 0
    expires_at: AwareDatetime
    items: list[OfferItem] = []


class TriggerReason(Record):
    """Why the offer was triggered: a sentence for people and the facts behind it."""

    summary: str
    facts: dict[str, Any] = {}


class Personalization(Record):
    first_name: str | None = None
    locale: str | None = None
    country: str | None = None
    plan: str | None = None


class CausedBy(Record):
    """The input event that caused the trigger (for timers: the event that set it)."""

    event_id: str
    type: str
    occurred_at: AwareDatetime


class Trigger(Record):
    """An offer to show or send, on ``offer-triggers.<channel>``, keyed by ``user_id``."""

    trigger_id: str
    user_id: str
    rule_id: str
    offer: Offer
    channel: Channel
    experiment: str | None = None
    variant: str | None = None
    reason: TriggerReason
    personalization: Personalization = Personalization()
    caused_by: CausedBy
    triggered_at: AwareDatetime
    emitted_at: AwareDatetime
    promotional: Literal[True] = True
    schema_version: Literal[1] = 1


class Decision(Record):
    """One per rule match (and one per erasure), on ``offer-decisions``: the audit trail."""

    decision_id: str
    user_id: str
    rule_id: str | None
    outcome: Outcome
    reason: SuppressionReason | None = None
    detail: str = ""
    trigger_id: str | None
    at: AwareDatetime
    channel: Channel | None = None
    experiment: str | None = None
    variant: str | None = None
    rules_version: str | None = Field(
        None,
        description="The version of the rules that decided: the first 12 hex digits of "
        "the sha256 of the rules file's text (null in records written before it existed).",
    )
    schema_version: Literal[1] = 1


class Attribution(Record):
    """A purchase credited to the latest emitted (or held-out) trigger before it."""

    trigger_id: str
    user_id: str
    rule_id: str
    offer_id: str
    channel: Channel | None = None
    experiment: str | None = None
    variant: str | None = None
    group: Literal["treated", "holdout"]
    order_id: str | None = None
    plan: str | None = None
    sku: str | None = None
    revenue: Annotated[float, Field(ge=0)]
    currency: str | None = None
    converted_at: AwareDatetime
    lag_seconds: Annotated[float, Field(ge=0)]
    schema_version: Literal[1] = 1


class DeadLetter(Record):
    """Input that could not be used, on ``events.dlq``, with the original bytes.

    From the worker it names the topic, partition and offset; from replay, the file and
    line. ``value_base64`` holds the value's bytes, ``value_text`` the same as text when
    they are UTF-8; of a value over 64 KiB, only its first 64 KiB (``value_truncated``),
    so that a dead letter is never a record the worker cannot send. ``value_size`` is
    the whole value's size; a null value (a tombstone) has neither.
    """

    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    file: str | None = None
    line: int | None = None
    key: str | None = None
    reason_code: str
    reason: str
    value_text: str | None = None
    value_base64: str
    value_size: int | None = None
    value_truncated: bool = False
    received_at: dt.datetime | None = None
    schema_version: Literal[1] = 1

    @classmethod
    def of_value(
        cls, value: bytes | None, reason_code: str, reason: str, **where: Any
    ) -> DeadLetter:
        """The dead letter of ``value`` (None: a tombstone): at most its first
        ``DEAD_LETTER_VALUE_BYTES``, in base64 and as text when UTF-8; ``where`` names
        where it came from (topic, partition, offset or file, line)."""
        if value is None:
            return cls(reason_code=reason_code, reason=reason, value_base64="", **where)
        kept = value[:DEAD_LETTER_VALUE_BYTES]
        return cls(
            reason_code=reason_code,
            reason=reason,
            value_text=_utf8_prefix(kept, whole=len(kept) == len(value)),
            value_base64=base64.b64encode(kept).decode(),
            value_size=len(value),
            value_truncated=len(kept) < len(value),
            **where,
        )


DEAD_LETTER_VALUE_BYTES = 64 * 1024
"""The most of a value a dead letter holds: with its base64 and text, a dead letter
stays far below the producer's and the broker's 1 MiB (a 450 KB value held whole, twice,
made one the worker could not send)."""


def _utf8_prefix(kept: bytes, whole: bool) -> str | None:
    """``kept`` as text if it is UTF-8; a cut value may end inside a character."""
    try:
        return kept.decode()
    except UnicodeDecodeError as error:
        if whole or error.start < len(kept) - 3 or error.reason != "unexpected end of data":
            return None
        return kept[: error.start].decode()
