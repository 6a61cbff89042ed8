"""The rules file (docs/contract.md section 6) as pydantic models.

Field checks live on the models; checks that span the file (an unknown offer, a
duplicate rule id, a property the event type does not have) are in
:mod:`triggerstream.rules.load`, which reports every problem with its place.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal, TypeAlias

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    StringConstraints,
    field_validator,
    model_validator,
)

from triggerstream.durations import Duration
from triggerstream.events import Channel

Scalar: TypeAlias = str | int | float | bool | None


class Strict(BaseModel):
    """Rules models refuse unknown keys: in a hand-written file they are typos."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Operators(Strict):
    """``{eq, ne, in, not_in, gt, gte, lt, lte, exists}``: every one given must hold."""

    eq: Scalar = None
    ne: Scalar = None
    in_: list[Scalar] | None = Field(None, alias="in")
    not_in: list[Scalar] | None = None
    gt: float | str | None = None
    gte: float | str | None = None
    lt: float | str | None = None
    lte: float | str | None = None
    exists: bool | None = None

    @model_validator(mode="after")
    def _at_least_one(self) -> Operators:
        if not self.model_fields_set:
            raise ValueError(
                "an operator object needs one of eq, ne, in, not_in, gt, gte, lt, lte, exists"
            )
        return self


def _parse_condition(value: Any) -> Any:
    """One readable error per condition, instead of one per member of the union."""
    if isinstance(value, Operators):
        return value
    if isinstance(value, dict):
        unknown = sorted(str(k) for k in value if k not in _OPERATOR_NAMES)
        if unknown:
            raise ValueError(
                f"unknown operator `{unknown[0]}`; use eq, ne, in, not_in, gt, gte, lt, lte, exists"
            )
        try:
            return Operators.model_validate(value)
        except ValueError as error:
            raise ValueError(_first_message(error)) from None
    if isinstance(value, list):
        for item in value:
            if isinstance(item, dict | list):
                raise ValueError("a list condition holds plain values (any of them matches)")
        return value
    return value


def _first_message(error: Exception) -> str:
    errors = getattr(error, "errors", None)
    if callable(errors):
        first = errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        message = str(first["msg"]).removeprefix("Value error, ")
        return f"{where}: {message}" if where else message
    return str(error)


_OPERATOR_NAMES = frozenset({"eq", "ne", "in", "not_in", "gt", "gte", "lt", "lte", "exists"})

Condition: TypeAlias = Annotated[
    Operators | list[Scalar] | Scalar, BeforeValidator(_parse_condition)
]
"""A value (equality, or "contains" against a list), a list (any of), or operators."""

EventTypeName: TypeAlias = Annotated[str, StringConstraints(pattern=r"^[a-z_]+\.[a-z_]+$")]


class EventTrigger(Strict):
    type: EventTypeName
    where: dict[str, Condition] = {}


class CountTrigger(Strict):
    type: EventTypeName
    where: dict[str, Condition] = {}
    at_least: int = Field(ge=1, le=100_000)
    within: Duration


class SumTrigger(Strict):
    type: EventTypeName
    where: dict[str, Condition] = {}
    field: str
    at_least: float
    within: Duration


class QuotaTrigger(Strict):
    resource: str
    at_least: float = Field(gt=0, le=1)


class NpsTrigger(Strict):
    at_least: int | None = Field(None, ge=0, le=10)
    at_most: int | None = Field(None, ge=0, le=10)

    @model_validator(mode="after")
    def _range(self) -> NpsTrigger:
        if self.at_least is not None and self.at_most is not None and self.at_least > self.at_most:
            raise ValueError(f"at_least {self.at_least} is above at_most {self.at_most}")
        return self


class DeadlineTrigger(Strict):
    field: Literal["trial_ends_at", "renews_at"]
    before: Duration


class InactivityTrigger(Strict):
    for_: Duration = Field(alias="for")


class NotFollowedTrigger(Strict):
    """A ``first`` event with no ``then`` event after it ``within`` (cart abandonment)."""

    first: EventTrigger
    then: EventTrigger
    within: Duration

    @field_validator("within")
    @classmethod
    def _waits(cls, within: dt.timedelta) -> dt.timedelta:
        if within <= dt.timedelta(0):
            raise ValueError("must be more than 0s: the wait for `then` after `first`")
        return within


TRIGGER_KINDS = (
    "event",
    "count",
    "sum",
    "quota",
    "nps",
    "deadline",
    "inactivity",
    "not_followed",
)


class Trigger(Strict):
    """Exactly one trigger kind per rule."""

    event: EventTrigger | None = None
    count: CountTrigger | None = None
    sum: SumTrigger | None = None
    quota: QuotaTrigger | None = None
    nps: NpsTrigger | None = None
    deadline: DeadlineTrigger | None = None
    inactivity: InactivityTrigger | None = None
    not_followed: NotFollowedTrigger | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Trigger:
        given = [kind for kind in TRIGGER_KINDS if getattr(self, kind) is not None]
        if len(given) != 1:
            raise ValueError(
                f"give exactly one trigger kind of {', '.join(TRIGGER_KINDS)}"
                + (f" (got {', '.join(given)})" if given else "")
            )
        return self

    @property
    def kind(self) -> str:
        return next(kind for kind in TRIGGER_KINDS if getattr(self, kind) is not None)

    @property
    def spec(self) -> Any:
        return getattr(self, self.kind)


class Recommend(Strict):
    max_items: int = Field(3, ge=1, le=3)


class Offer(Strict):
    kind: Literal["upsell", "cross_sell"]
    product: str | None = None
    title: str = Field(min_length=1)
    benefits: list[str] = Field(default_factory=list, max_length=3)
    discount_percent: float = Field(0, ge=0, le=100)
    expires_after: Duration = dt.timedelta(days=7)
    recommend: Recommend | None = None
    family: RuleId | None = None
    """Offers that ask for the same decision (section 13); None: the offer's own id."""

    @model_validator(mode="after")
    def _product_or_items(self) -> Offer:
        if self.kind == "upsell" and not self.product:
            raise ValueError("an upsell offer needs `product` (the sku or plan it sells)")
        if self.kind == "cross_sell" and not (self.product or self.recommend):
            raise ValueError("a cross_sell offer needs `recommend` or a `product`")
        return self


class Catalog(Strict):
    complements: dict[str, list[str]] = {}


def _all_channels() -> list[Channel]:
    return ["in_app", "push", "email"]


RuleId: TypeAlias = Annotated[
    str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]*$", max_length=64)
]


MAX_DEFER = dt.timedelta(days=7)


class Defer(Strict):
    """How long a match held back by a block that ends by itself may wait (section 14)."""

    up_to: Duration

    @field_validator("up_to")
    @classmethod
    def _bounded(cls, up_to: dt.timedelta) -> dt.timedelta:
        if not dt.timedelta(0) < up_to <= MAX_DEFER:
            raise ValueError("must be more than 0s and at most 7d: how long a match may wait")
        return up_to


class Rule(Strict):
    id: RuleId
    offer: str
    trigger: Trigger
    profile: dict[str, Condition] = {}
    channels: list[Channel] = Field(default_factory=_all_channels, min_length=1)
    cooldown: Duration = dt.timedelta(days=1)
    priority: int = 0
    delay: Duration = dt.timedelta(0)
    defer: Defer | None = None
    """Wait instead of being lost when held back by a block that ends by itself."""

    @field_validator("channels")
    @classmethod
    def _unique_channels(cls, channels: list[Channel]) -> list[Channel]:
        if len(set(channels)) != len(channels):
            raise ValueError(f"a channel is listed twice: {channels}")
        return channels


class FrequencyCap(Strict):
    channel: Channel | None = None
    family: RuleId | None = None
    max: int = Field(ge=1)
    per: Duration


class Suppress(Strict):
    nps_at_most: int | None = Field(6, ge=0, le=10)
    open_tickets_at_least: int | None = Field(1, ge=1)
    during_critical_workflow: bool = True
    already_owned: bool = True


_SUPPRESS_OFF = Suppress(
    nps_at_most=None,
    open_tickets_at_least=None,
    during_critical_workflow=False,
    already_owned=False,
)


class QuietHours(Strict):
    from_: Annotated[str, StringConstraints(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")] = Field(
        alias="from"
    )
    to: Annotated[str, StringConstraints(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")]

    @model_validator(mode="after")
    def _not_empty(self) -> QuietHours:
        if self.from_ == self.to:
            raise ValueError("`from` and `to` are equal; use null for no quiet hours")
        return self

    @property
    def minutes(self) -> tuple[int, int]:
        """``from`` and ``to`` as minutes after midnight."""
        start_h, start_m = self.from_.split(":")
        end_h, end_m = self.to.split(":")
        return int(start_h) * 60 + int(start_m), int(end_h) * 60 + int(end_m)


class Holdout(Strict):
    percent: float = Field(0, ge=0, le=100)
    salt: str = ""


class Attribution(Strict):
    window: Duration = dt.timedelta(days=7)


class Policy(Strict):
    frequency_caps: list[FrequencyCap] = Field(
        default_factory=lambda: [FrequencyCap(max=3, per=dt.timedelta(days=7))]
    )
    dismiss_cooldown: Duration | None = dt.timedelta(days=30)
    suppress: Suppress = Suppress()
    quiet_hours: QuietHours | None = None
    holdout: Holdout = Holdout()
    attribution: Attribution = Attribution()
    in_app_session_timeout: Duration = dt.timedelta(minutes=30)

    @model_validator(mode="before")
    @classmethod
    def _nulls_turn_checks_off(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if "frequency_caps" in data and data["frequency_caps"] is None:
            data["frequency_caps"] = []
        if "suppress" in data and data["suppress"] is None:
            data["suppress"] = _SUPPRESS_OFF
        if "holdout" in data and data["holdout"] is None:
            data["holdout"] = Holdout()
        if "attribution" in data and data["attribution"] is None:
            data["attribution"] = Attribution()
        return data


class Variant(Strict):
    """A variant's weight and the offer fields it overrides."""

    weight: int = Field(ge=0, le=100)
    title: str | None = None
    benefits: list[str] | None = Field(None, max_length=3)
    discount_percent: float | None = Field(None, ge=0, le=100)
    expires_after: Duration | None = None


class Experiment(Strict):
    id: RuleId
    rule: str
    variants: dict[str, Variant] = Field(min_length=1)


class RulesFile(Strict):
    """The whole rules file."""

    offers: dict[str, Offer] = Field(min_length=1)
    catalog: Catalog = Catalog()
    rules: list[Rule] = Field(min_length=1)
    policy: Policy = Policy()
    experiments: list[Experiment] = []
    _version: str = PrivateAttr("")

    @property
    def version(self) -> str:
        """The first 12 hex digits of the sha256 of the file's text (empty for rules not
        read from a text): the same text gives the same version wherever it is loaded."""
        return self._version

    def with_version(self, version: str) -> RulesFile:
        """These rules, known by ``version``."""
        self._version = version
        return self

    @model_validator(mode="before")
    @classmethod
    def _null_sections_take_defaults(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if not (v is None and k in _OPTIONAL)}
        return data

    def families(self) -> dict[str, str]:
        """Offer id -> its family (section 13): the offer's own id unless it names one."""
        return {offer_id: offer.family or offer_id for offer_id, offer in self.offers.items()}


_OPTIONAL = frozenset({"catalog", "policy", "experiments"})
