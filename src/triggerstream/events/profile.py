"""profile-events: who a user is, and what they consent to and prefer."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field, StrictBool, StrictStr, StringConstraints

from triggerstream.events.envelope import EmptyProperties, Envelope, Properties, empty
from triggerstream.events.fields import (
    AttributeValue,
    Channel,
    Country,
    Locale,
    Name,
    Timestamp,
    TimeZone,
)


class ProfileEnvelope(Envelope):
    topic: ClassVar[str] = "profile-events"
    short_topic: ClassVar[str] = "profile"


class ProfileUpdatedProperties(Properties):
    first_name: Annotated[StrictStr, StringConstraints(max_length=128)] | None = None
    locale: Locale | None = None
    country: Country | None = None
    timezone: TimeZone | None = None
    plan: Name | None = None
    attributes: Annotated[dict[Name, AttributeValue], Field(max_length=64)] | None = None


class ConsentUpdatedProperties(Properties):
    channel: Channel
    granted: StrictBool


class PreferencesUpdatedProperties(Properties):
    offers_opt_out: StrictBool | None = None
    snooze_all_until: Timestamp | None = None


class ProfileUpdated(ProfileEnvelope):
    type: Literal["profile_updated"] = "profile_updated"
    properties: ProfileUpdatedProperties = ProfileUpdatedProperties()


class ConsentUpdated(ProfileEnvelope):
    type: Literal["consent_updated"] = "consent_updated"
    properties: ConsentUpdatedProperties = Field(default_factory=empty)


class PreferencesUpdated(ProfileEnvelope):
    type: Literal["preferences_updated"] = "preferences_updated"
    properties: PreferencesUpdatedProperties = PreferencesUpdatedProperties()


class ErasureRequested(ProfileEnvelope):
    type: Literal["erasure_requested"] = "erasure_requested"
    properties: EmptyProperties = EmptyProperties()
