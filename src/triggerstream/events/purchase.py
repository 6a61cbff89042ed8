"""purchase-events: orders, checkouts, subscriptions and trials."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field

from triggerstream.events.envelope import Envelope, Properties, empty
from triggerstream.events.fields import Amount, BillingPeriod, Currency, Name, Quantity, Timestamp


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
    properties: OrderCompletedProperties = Field(default_factory=empty)


class CheckoutStarted(PurchaseEnvelope):
    type: Literal["checkout_started"] = "checkout_started"
    properties: CheckoutStartedProperties = Field(default_factory=empty)


class SubscriptionStarted(PurchaseEnvelope):
    type: Literal["subscription_started"] = "subscription_started"
    properties: SubscriptionStartedProperties = Field(default_factory=empty)


class SubscriptionRenewed(PurchaseEnvelope):
    type: Literal["subscription_renewed"] = "subscription_renewed"
    properties: SubscriptionRenewedProperties = Field(default_factory=empty)


class SubscriptionCancelled(PurchaseEnvelope):
    type: Literal["subscription_cancelled"] = "subscription_cancelled"
    properties: SubscriptionCancelledProperties = Field(default_factory=empty)


class TrialStarted(PurchaseEnvelope):
    type: Literal["trial_started"] = "trial_started"
    properties: TrialStartedProperties = Field(default_factory=empty)
