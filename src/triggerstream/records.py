"""Output records (DESIGN.md section 8): triggers, decisions, attributions, dead letters.

These are what notification services, auditors and analysts read. Each has a JSON Schema
in ``topics/schemas/`` generated from the model here.
"""

from __future__ import annotations

import base64
import datetime as dt
from typing import Annotated, Any, Literal, TypeAlias

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from triggerstream.events import Channel

Outcome: TypeAlias = Literal["emitted", "suppressed", "holdout", "erased"]

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
"""Why a match was not sent, in the order the policy checks them (DESIGN section 7).
``holdout`` is the reason of a held-out decision, not a suppression."""

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
    line. ``value_text`` is the original value when it is UTF-8, ``value_base64`` always.
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
    received_at: dt.datetime | None = None
    schema_version: Literal[1] = 1

    @classmethod
    def of_value(cls, value: bytes, reason_code: str, reason: str, **where: Any) -> DeadLetter:
        """The dead letter of ``value``: its bytes in base64, and as text when UTF-8;
        ``where`` names where it came from (topic, partition, offset or file, line)."""
        try:
            text: str | None = value.decode()
        except UnicodeDecodeError:
            text = None
        return cls(
            reason_code=reason_code,
            reason=reason,
            value_text=text,
            value_base64=base64.b64encode(value).decode(),
            **where,
        )
