"""support-events: tickets and NPS answers."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field, StrictInt

from triggerstream.events.envelope import Envelope, Properties, empty
from triggerstream.events.fields import Name, Text


class SupportEnvelope(Envelope):
    topic: ClassVar[str] = "support-events"
    short_topic: ClassVar[str] = "support"


class TicketOpenedProperties(Properties):
    ticket_id: Name
    category: Name | None = None
    severity: Literal["low", "normal", "high", "urgent"] | None = None


class TicketResolvedProperties(Properties):
    ticket_id: Name
    category: Name | None = None


class NpsSubmittedProperties(Properties):
    score: Annotated[StrictInt, Field(ge=0, le=10)]
    comment: Text | None = None


class TicketOpened(SupportEnvelope):
    type: Literal["ticket_opened"] = "ticket_opened"
    properties: TicketOpenedProperties = Field(default_factory=empty)


class TicketResolved(SupportEnvelope):
    type: Literal["ticket_resolved"] = "ticket_resolved"
    properties: TicketResolvedProperties = Field(default_factory=empty)


class NpsSubmitted(SupportEnvelope):
    type: Literal["nps_submitted"] = "nps_submitted"
    properties: NpsSubmittedProperties = Field(default_factory=empty)
