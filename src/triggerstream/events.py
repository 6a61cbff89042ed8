"""Input events: the envelope of DESIGN.md section 4 and the properties of every type.

Every message on an input topic is one JSON object, the envelope
``{event_id, user_id, type, occurred_at, properties}``. Each event type is a model of
its own whose ``properties`` are typed; the five input topics each accept a
discriminated union of their types. Anything a model refuses raises
:class:`InvalidEvent`, which carries a short ``code`` (bounded, for metrics and
summaries) and a ``reason`` a person can read.

Validation is strict where a producer could be silently misread: strings must be JSON
strings, integers JSON integers, booleans JSON booleans, and timestamps RFC 3339 strings
with an offset. Unknown fields are ignored, so producers may add fields.
"""

from __future__ import annotations

import datetime as dt
import math
import zoneinfo
from collections.abc import Callable, Mapping
from functools import cache
from typing import Annotated, Any, ClassVar, Generic, Literal, Self, TypeAlias, TypeVar, overload

import orjson
import pydantic_core
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import SchemaValidator

T = TypeVar("T")

MAX_EVENT_BYTES = 64 * 1024
"""An encoded event larger than this is refused (``too_large``)."""

EARLIEST_TIME = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
LATEST_TIME = dt.datetime(2100, 1, 1, tzinfo=dt.UTC)
"""Timestamps outside [2000, 2100) are refused: they are clock or unit errors (seconds
read as milliseconds, a zero date), and one of them would move stream time for good."""


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


# --- field types ---------------------------------------------------------------------


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


def _empty() -> Any:
    # DESIGN section 4: `properties` defaults to {}; validated like any value (the
    # envelope validates defaults), the type's own model then says what is required.
    return {}


class Properties(BaseModel):
    """Base of every ``properties`` object: unknown fields ignored, values immutable.

    No float is infinite: a number too large for a double (``1e400``) reads as infinity,
    which would then sit in a user's state and break every comparison with it."""

    model_config = ConfigDict(extra="ignore", frozen=True, allow_inf_nan=False)


class _once(Generic[T]):
    """A property computed on first use and kept in the instance: functools'
    cached_property without its lock (Python 3.11 takes one at every read)."""

    def __init__(self, compute: Callable[[Any], T]) -> None:
        self.compute = compute
        self.name = compute.__name__
        self.__doc__ = compute.__doc__

    @overload
    def __get__(self, instance: None, owner: type) -> _once[T]: ...
    @overload
    def __get__(self, instance: object, owner: type) -> T: ...
    def __get__(self, instance: object, owner: type) -> T | _once[T]:
        if instance is None:
            return self
        value = self.compute(instance)
        instance.__dict__[self.name] = value  # later reads find it before the descriptor
        return value


class Envelope(BaseModel):
    """Fields every input event carries. Subclasses add ``type`` and ``properties``."""

    model_config = ConfigDict(
        extra="ignore", frozen=True, validate_default=True, ignored_types=(_once,)
    )

    topic: ClassVar[str]
    """The input topic (without prefix) that carries this type."""
    short_topic: ClassVar[str]
    """The topic's short name in rules: usage, purchase, support, profile, feedback."""
    qualified_type: ClassVar[str]
    """The type as rules name it: ``<short topic>.<type>``, e.g. ``usage.feature_used``."""

    event_id: Name
    user_id: Name
    occurred_at: Timestamp

    @_once
    def at(self) -> float:
        """``occurred_at`` as POSIX seconds, the time the core works in (computed once)."""
        return self.occurred_at.timestamp()

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        copied = super().model_copy(update=update, deep=deep)
        copied.__dict__.pop("at", None)  # computed again from the copy's occurred_at
        return copied

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        field = cls.model_fields.get("type")
        if field is not None:
            cls.qualified_type = f"{cls.short_topic}.{field.default}"


# --- usage-events --------------------------------------------------------------------


class UsageEnvelope(Envelope):
    topic: ClassVar[str] = "usage-events"
    short_topic: ClassVar[str] = "usage"


class FeatureUsedProperties(Properties):
    feature: Name
    quantity: Quantity = 1


class QuotaUsageProperties(Properties):
    resource: Name
    used: Amount
    limit: Annotated[StrictInt | StrictFloat, Field(gt=0, allow_inf_nan=False)]

    @model_validator(mode="after")
    def _finite_fraction(self) -> QuotaUsageProperties:
        if not math.isfinite(self.used / self.limit):
            raise ValueError(f"used/limit ({self.used}/{self.limit}) is not a finite number")
        return self


class LockedFeatureClickedProperties(Properties):
    feature: Name
    required_plan: Name | None = None


class WorkflowStartedProperties(Properties):
    workflow: Name
    critical: StrictBool = False


class WorkflowCompletedProperties(Properties):
    workflow: Name


class OnboardingStepCompletedProperties(Properties):
    step: Name
    index: Annotated[StrictInt, Field(ge=0, le=1000)] | None = None
    total: Annotated[StrictInt, Field(ge=1, le=1000)] | None = None

    @model_validator(mode="after")
    def _index_within_total(self) -> OnboardingStepCompletedProperties:
        if self.index is not None and self.total is not None and self.index > self.total:
            raise ValueError(f"index {self.index} is past total {self.total}")
        return self


class SessionStartedProperties(Properties):
    platform: Name | None = None


class EmptyProperties(Properties):
    pass


class FeatureUsed(UsageEnvelope):
    type: Literal["feature_used"] = "feature_used"
    properties: FeatureUsedProperties = Field(default_factory=_empty)


class QuotaUsage(UsageEnvelope):
    type: Literal["quota_usage"] = "quota_usage"
    properties: QuotaUsageProperties = Field(default_factory=_empty)


class LockedFeatureClicked(UsageEnvelope):
    type: Literal["locked_feature_clicked"] = "locked_feature_clicked"
    properties: LockedFeatureClickedProperties = Field(default_factory=_empty)


class WorkflowStarted(UsageEnvelope):
    type: Literal["workflow_started"] = "workflow_started"
    properties: WorkflowStartedProperties = Field(default_factory=_empty)


class WorkflowCompleted(UsageEnvelope):
    type: Literal["workflow_completed"] = "workflow_completed"
    properties: WorkflowCompletedProperties = Field(default_factory=_empty)


class OnboardingStepCompleted(UsageEnvelope):
    type: Literal["onboarding_step_completed"] = "onboarding_step_completed"
    properties: OnboardingStepCompletedProperties = Field(default_factory=_empty)


class SessionStarted(UsageEnvelope):
    type: Literal["session_started"] = "session_started"
    properties: SessionStartedProperties = SessionStartedProperties()


class SessionEnded(UsageEnvelope):
    type: Literal["session_ended"] = "session_ended"
    properties: EmptyProperties = EmptyProperties()


# --- purchase-events -----------------------------------------------------------------


class PurchaseEnvelope(Envelope):
    topic: ClassVar[str] = "purchase-events"
    short_topic: ClassVar[str] = "purchase"


class OrderItem(Properties):
    sku: Name
    quantity: Quantity = 1
    price: Amount
    category: Name | None = None


class CartItem(Properties):
    sku: Name
    quantity: Quantity = 1
    price: Amount | None = None


class OrderCompletedProperties(Properties):
    order_id: Name
    items: Annotated[list[OrderItem], Field(min_length=1, max_length=500)]
    total: Amount
    currency: Currency


class CheckoutStartedProperties(Properties):
    cart: Annotated[list[CartItem], Field(min_length=1, max_length=500)]


class SubscriptionStartedProperties(Properties):
    plan: Name
    billing_period: BillingPeriod
    price: Amount | None = None
    currency: Currency | None = None
    renews_at: Timestamp | None = None


class SubscriptionRenewedProperties(Properties):
    plan: Name
    billing_period: BillingPeriod
    renews_at: Timestamp | None = None


class SubscriptionCancelledProperties(Properties):
    plan: Name


class TrialStartedProperties(Properties):
    plan: Name
    trial_ends_at: Timestamp


class OrderCompleted(PurchaseEnvelope):
    type: Literal["order_completed"] = "order_completed"
    properties: OrderCompletedProperties = Field(default_factory=_empty)


class CheckoutStarted(PurchaseEnvelope):
    type: Literal["checkout_started"] = "checkout_started"
    properties: CheckoutStartedProperties = Field(default_factory=_empty)


class SubscriptionStarted(PurchaseEnvelope):
    type: Literal["subscription_started"] = "subscription_started"
    properties: SubscriptionStartedProperties = Field(default_factory=_empty)


class SubscriptionRenewed(PurchaseEnvelope):
    type: Literal["subscription_renewed"] = "subscription_renewed"
    properties: SubscriptionRenewedProperties = Field(default_factory=_empty)


class SubscriptionCancelled(PurchaseEnvelope):
    type: Literal["subscription_cancelled"] = "subscription_cancelled"
    properties: SubscriptionCancelledProperties = Field(default_factory=_empty)


class TrialStarted(PurchaseEnvelope):
    type: Literal["trial_started"] = "trial_started"
    properties: TrialStartedProperties = Field(default_factory=_empty)


# --- support-events ------------------------------------------------------------------


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
    properties: TicketOpenedProperties = Field(default_factory=_empty)


class TicketResolved(SupportEnvelope):
    type: Literal["ticket_resolved"] = "ticket_resolved"
    properties: TicketResolvedProperties = Field(default_factory=_empty)


class NpsSubmitted(SupportEnvelope):
    type: Literal["nps_submitted"] = "nps_submitted"
    properties: NpsSubmittedProperties = Field(default_factory=_empty)


# --- profile-events ------------------------------------------------------------------


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
    properties: ConsentUpdatedProperties = Field(default_factory=_empty)


class PreferencesUpdated(ProfileEnvelope):
    type: Literal["preferences_updated"] = "preferences_updated"
    properties: PreferencesUpdatedProperties = PreferencesUpdatedProperties()


class ErasureRequested(ProfileEnvelope):
    type: Literal["erasure_requested"] = "erasure_requested"
    properties: EmptyProperties = EmptyProperties()


# --- offer-feedback ------------------------------------------------------------------


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
    properties: OfferFeedbackProperties = Field(default_factory=_empty)


class OfferShown(FeedbackEnvelope):
    type: Literal["offer_shown"] = "offer_shown"
    properties: OfferFeedbackProperties = Field(default_factory=_empty)


class OfferClicked(FeedbackEnvelope):
    type: Literal["offer_clicked"] = "offer_clicked"
    properties: OfferFeedbackProperties = Field(default_factory=_empty)


class OfferDismissed(FeedbackEnvelope):
    type: Literal["offer_dismissed"] = "offer_dismissed"
    properties: OfferFeedbackProperties = Field(default_factory=_empty)


class OfferSnoozed(FeedbackEnvelope):
    type: Literal["offer_snoozed"] = "offer_snoozed"
    properties: OfferSnoozedProperties = Field(default_factory=_empty)


class Unsubscribed(FeedbackEnvelope):
    type: Literal["unsubscribed"] = "unsubscribed"
    properties: UnsubscribedProperties = Field(default_factory=_empty)


# --- the topics and their unions -----------------------------------------------------

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
    return {
        event_cls.qualified_type: event_cls
        for topic_cls in Envelope.__subclasses__()
        for event_cls in topic_cls.__subclasses__()
    }


EVENT_TYPES: dict[str, type[Envelope]] = _event_classes()
"""Every event type by its qualified name (``usage.feature_used``) to its model."""

_ADAPTERS: dict[str, TypeAdapter[Any]] = {
    topic: TypeAdapter(union) for topic, union in EVENT_UNIONS.items()
}
_VALIDATORS: dict[str, SchemaValidator] = {
    topic: adapter.validator  # type: ignore[misc]
    for topic, adapter in _ADAPTERS.items()
}
"""The adapters' validators, called directly on the path of every event."""
_TYPES_BY_TOPIC: dict[str, tuple[str, ...]] = {
    topic: tuple(
        qualified.split(".", 1)[1] for qualified, cls in EVENT_TYPES.items() if cls.topic == topic
    )
    for topic in INPUT_TOPICS
}


# --- decoding ------------------------------------------------------------------------


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
        raise _explain(topic, error) from None
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
        raise _explain("", error) from None


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


def _explain(topic: str, error: ValidationError) -> InvalidEvent:
    """Turn pydantic's errors into one code and one readable sentence."""
    details = error.errors(include_url=False)
    first = details[0]
    kind = first["type"]
    loc = _path(first["loc"])
    if kind in ("model_type", "model_attributes_type", "dict_type") and not loc:
        return InvalidEvent("not_object", "event must be a JSON object")
    if kind == "union_tag_invalid":
        got = (first.get("ctx") or {}).get("tag", "")
        known = ", ".join(_TYPES_BY_TOPIC[topic])
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
