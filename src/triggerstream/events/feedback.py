"""offer-feedback: what users do with the offers they get."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from triggerstream.events.envelope import Envelope, Properties, empty
from triggerstream.events.fields import Channel, Name, Timestamp


class FeedbackEnvelope(Envelope):
    topic: ClassVar[str] = "offer-feedback"
    short_topic: ClassVar[str] = "feedback"


class OfferFeedbackProperties(Properties):
    trigger_id: Name
    offer_id: Name
    channel: Channel


class OfferSnoozedProperties(OfferFeedbackProperties):
    until: Timestamp


class UnsubscribedProperties(Properties):
    channel: Channel


class OfferDelivered(FeedbackEnvelope):
    type: Literal["offer_delivered"] = "offer_delivered"
    properties: OfferFeedbackProperties = Field(default_factory=empty)


class OfferShown(FeedbackEnvelope):
    type: Literal["offer_shown"] = "offer_shown"
    properties: OfferFeedbackProperties = Field(default_factory=empty)


class OfferClicked(FeedbackEnvelope):
    type: Literal["offer_clicked"] = "offer_clicked"
    properties: OfferFeedbackProperties = Field(default_factory=empty)


class OfferDismissed(FeedbackEnvelope):
    type: Literal["offer_dismissed"] = "offer_dismissed"
    properties: OfferFeedbackProperties = Field(default_factory=empty)


class OfferSnoozed(FeedbackEnvelope):
    type: Literal["offer_snoozed"] = "offer_snoozed"
    properties: OfferSnoozedProperties = Field(default_factory=empty)


class Unsubscribed(FeedbackEnvelope):
    type: Literal["unsubscribed"] = "unsubscribed"
    properties: UnsubscribedProperties = Field(default_factory=empty)
