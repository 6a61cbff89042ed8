"""The event-type vocabulary: which types each input topic carries, as unions and tables.

The five input topics each accept a discriminated union of their types (on ``type``);
rules name a type ``<short topic>.<type>``, e.g. ``usage.feature_used``.
"""

from __future__ import annotations

from typing import Annotated, Any, TypeAlias, get_args

from pydantic import Field

from triggerstream.events.envelope import Envelope
from triggerstream.events.feedback import (
    OfferClicked,
    OfferDelivered,
    OfferDismissed,
    OfferShown,
    OfferSnoozed,
    Unsubscribed,
)
from triggerstream.events.profile import (
    ConsentUpdated,
    ErasureRequested,
    PreferencesUpdated,
    ProfileUpdated,
)
from triggerstream.events.purchase import (
    CheckoutStarted,
    OrderCompleted,
    SubscriptionCancelled,
    SubscriptionRenewed,
    SubscriptionStarted,
    TrialStarted,
)
from triggerstream.events.support import NpsSubmitted, TicketOpened, TicketResolved
from triggerstream.events.usage import (
    FeatureUsed,
    LockedFeatureClicked,
    OnboardingStepCompleted,
    QuotaUsage,
    SessionEnded,
    SessionStarted,
    WorkflowCompleted,
    WorkflowStarted,
)

UsageEvent: TypeAlias = Annotated[
    FeatureUsed
    | QuotaUsage
    | LockedFeatureClicked
    | WorkflowStarted
    | WorkflowCompleted
    | OnboardingStepCompleted
    | SessionStarted
    | SessionEnded,
    Field(discriminator="type"),
]
PurchaseEvent: TypeAlias = Annotated[
    OrderCompleted
    | CheckoutStarted
    | SubscriptionStarted
    | SubscriptionRenewed
    | SubscriptionCancelled
    | TrialStarted,
    Field(discriminator="type"),
]
SupportEvent: TypeAlias = Annotated[
    TicketOpened | TicketResolved | NpsSubmitted, Field(discriminator="type")
]
ProfileEvent: TypeAlias = Annotated[
    ProfileUpdated | ConsentUpdated | PreferencesUpdated | ErasureRequested,
    Field(discriminator="type"),
]
FeedbackEvent: TypeAlias = Annotated[
    OfferDelivered | OfferShown | OfferClicked | OfferDismissed | OfferSnoozed | Unsubscribed,
    Field(discriminator="type"),
]
Event: TypeAlias = (
    FeatureUsed
    | QuotaUsage
    | LockedFeatureClicked
    | WorkflowStarted
    | WorkflowCompleted
    | OnboardingStepCompleted
    | SessionStarted
    | SessionEnded
    | OrderCompleted
    | CheckoutStarted
    | SubscriptionStarted
    | SubscriptionRenewed
    | SubscriptionCancelled
    | TrialStarted
    | TicketOpened
    | TicketResolved
    | NpsSubmitted
    | ProfileUpdated
    | ConsentUpdated
    | PreferencesUpdated
    | ErasureRequested
    | OfferDelivered
    | OfferShown
    | OfferClicked
    | OfferDismissed
    | OfferSnoozed
    | Unsubscribed
)

EVENT_UNIONS: dict[str, Any] = {
    "usage-events": UsageEvent,
    "purchase-events": PurchaseEvent,
    "support-events": SupportEvent,
    "profile-events": ProfileEvent,
    "offer-feedback": FeedbackEvent,
}
"""Input topic name (without prefix) to the union of the event types it carries."""

INPUT_TOPICS: tuple[str, ...] = tuple(EVENT_UNIONS)

SHORT_TOPIC_NAMES: dict[str, str] = {
    "usage": "usage-events",
    "purchase": "purchase-events",
    "support": "support-events",
    "profile": "profile-events",
    "feedback": "offer-feedback",
}
"""The short names rules use in ``<short>.<type>`` to the topic names."""


def _event_classes() -> dict[str, type[Envelope]]:
    # In the order of the topics and of each union: the order known types are listed in.
    return {
        event_cls.qualified_type: event_cls
        for union in EVENT_UNIONS.values()
        for event_cls in get_args(get_args(union)[0])
    }


EVENT_TYPES: dict[str, type[Envelope]] = _event_classes()
"""Every event type by its qualified name (``usage.feature_used``) to its model."""

TYPES_BY_TOPIC: dict[str, tuple[str, ...]] = {
    topic: tuple(
        qualified.split(".", 1)[1] for qualified, cls in EVENT_TYPES.items() if cls.topic == topic
    )
    for topic in INPUT_TOPICS
}
"""The types of each input topic, unqualified (``feature_used``), to name the known ones."""
