"""How each event type changes the user's facts.

One function per event type, in :data:`FACTS`; the engine calls the event's one before it
matches any rule, so rules and the policy see the facts with the event in them. A word
that can arrive late (consent, opt-out, snooze, NPS, a quota reading) replaces the one
held only if it is not older (:func:`latest_word`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from triggerstream.core.state import MAX_LISTED, MAX_OWNED, UserState

DAY = 86_400.0
CRITICAL_WORKFLOW_MAX_AGE = DAY
"""A critical workflow never completed stops holding offers back after this long."""

ACTIVITY = frozenset(
    {
        "usage.feature_used",
        "usage.locked_feature_clicked",
        "usage.workflow_started",
        "usage.workflow_completed",
        "usage.onboarding_step_completed",
        "usage.session_started",
        "usage.session_ended",
    }
)
"""Usage that shows the user is there: every usage event but quota_usage, which services
may send without the user (docs/contract.md section 6)."""


def _nothing(state: UserState, props: Any, at: float) -> None:
    return


def _activity(state: UserState, props: Any, at: float) -> None:
    if state.last_seen_at is None or at > state.last_seen_at:
        state.last_seen_at = at


def _quota_usage(state: UserState, props: Any, at: float) -> None:
    if latest_word(state, f"quota.{props.resource}", at):
        state.quotas[props.resource] = (float(props.used), float(props.limit))


def _workflow_started(state: UserState, props: Any, at: float) -> None:
    _activity(state, props, at)
    if props.critical:
        _expire_workflows(state, at)
        state.critical_workflows[props.workflow] = at
        if len(state.critical_workflows) > MAX_LISTED:
            oldest = min(state.critical_workflows, key=state.critical_workflows.__getitem__)
            del state.critical_workflows[oldest]


def _workflow_completed(state: UserState, props: Any, at: float) -> None:
    _activity(state, props, at)
    state.critical_workflows.pop(props.workflow, None)
    _expire_workflows(state, at)


def _expire_workflows(state: UserState, at: float) -> None:
    for name, started in list(state.critical_workflows.items()):
        if at - started > CRITICAL_WORKFLOW_MAX_AGE:
            del state.critical_workflows[name]


def _onboarding_step(state: UserState, props: Any, at: float) -> None:
    _activity(state, props, at)
    if props.step not in state.onboarding_steps:
        state.onboarding_steps.append(props.step)
        del state.onboarding_steps[:-MAX_LISTED]


def _session_started(state: UserState, props: Any, at: float) -> None:
    _activity(state, props, at)
    state.session_open = True


def _session_ended(state: UserState, props: Any, at: float) -> None:
    _activity(state, props, at)
    state.session_open = False


def _own(state: UserState, product: str) -> None:
    if product in state.owned:
        state.owned.remove(product)
    state.owned.append(product)
    del state.owned[:-MAX_OWNED]


def _order_completed(state: UserState, props: Any, at: float) -> None:
    skus = [item.sku for item in props.items]
    for sku in skus:
        _own(state, sku)
    state.orders_count += 1
    state.total_spent += float(props.total)


def _subscription_started(state: UserState, props: Any, at: float) -> None:
    _own(state, props.plan)
    state.plan = props.plan
    state.billing_period = props.billing_period
    state.trial_ends_at = None
    if props.renews_at is not None:
        state.renews_at = props.renews_at.timestamp()
    if props.price is not None:
        state.total_spent += float(props.price)


def _subscription_renewed(state: UserState, props: Any, at: float) -> None:
    _own(state, props.plan)
    state.plan = props.plan
    state.billing_period = props.billing_period
    if props.renews_at is not None:
        state.renews_at = props.renews_at.timestamp()


def _subscription_cancelled(state: UserState, props: Any, at: float) -> None:
    if props.plan in state.owned:
        state.owned.remove(props.plan)
    if state.plan == props.plan:
        state.plan = None
        state.renews_at = None
        state.billing_period = None


def _trial_started(state: UserState, props: Any, at: float) -> None:
    state.trial_ends_at = props.trial_ends_at.timestamp()


def _ticket_opened(state: UserState, props: Any, at: float) -> None:
    if props.ticket_id not in state.open_tickets:
        state.open_tickets.append(props.ticket_id)
        del state.open_tickets[:-MAX_LISTED]


def _ticket_resolved(state: UserState, props: Any, at: float) -> None:
    if props.ticket_id in state.open_tickets:
        state.open_tickets.remove(props.ticket_id)


def _nps_submitted(state: UserState, props: Any, at: float) -> None:
    if latest_word(state, "nps", at):
        state.nps_score = props.score


def _profile_updated(state: UserState, props: Any, at: float) -> None:
    for name in ("first_name", "locale", "country", "timezone", "plan"):
        value = getattr(props, name)
        if value is not None:
            setattr(state, name, value)
    if props.attributes:
        state.attributes.update(props.attributes)


def _consent_updated(state: UserState, props: Any, at: float) -> None:
    if latest_word(state, f"consent.{props.channel}", at):
        state.consent[props.channel] = props.granted


def _preferences_updated(state: UserState, props: Any, at: float) -> None:
    if props.offers_opt_out is not None and latest_word(state, "offers_opt_out", at):
        state.offers_opt_out = props.offers_opt_out
    if props.snooze_all_until is not None and latest_word(state, "snooze_all_until", at):
        state.snooze_all_until = props.snooze_all_until.timestamp()


def _offer_dismissed(state: UserState, props: Any, at: float) -> None:
    # An older dismissal delivered late does not shorten the dismiss cooldown.
    state.dismissed[props.offer_id] = max(at, state.dismissed.get(props.offer_id, at))


def _offer_snoozed(state: UserState, props: Any, at: float) -> None:
    state.snoozed[props.offer_id] = props.until.timestamp()


def _unsubscribed(state: UserState, props: Any, at: float) -> None:
    if latest_word(state, f"consent.{props.channel}", at):
        state.consent[props.channel] = False


def latest_word(state: UserState, fact: str, at: float) -> bool:
    """Whether a value of ``fact`` said at ``at`` is the user's latest word on it (not
    older than the one held; equal times: the later arrival). Out of order, a consent
    given before a withdrawal and delivered after it must not undo the withdrawal."""
    if state.said_at.get(fact, -math.inf) > at:
        return False
    state.said_at[fact] = at
    return True


FACTS: dict[str, Callable[[UserState, Any, float], None]] = {
    "usage.feature_used": _activity,
    "usage.quota_usage": _quota_usage,
    "usage.locked_feature_clicked": _activity,
    "usage.workflow_started": _workflow_started,
    "usage.workflow_completed": _workflow_completed,
    "usage.onboarding_step_completed": _onboarding_step,
    "usage.session_started": _session_started,
    "usage.session_ended": _session_ended,
    "purchase.order_completed": _order_completed,
    "purchase.checkout_started": _nothing,
    "purchase.subscription_started": _subscription_started,
    "purchase.subscription_renewed": _subscription_renewed,
    "purchase.subscription_cancelled": _subscription_cancelled,
    "purchase.trial_started": _trial_started,
    "support.ticket_opened": _ticket_opened,
    "support.ticket_resolved": _ticket_resolved,
    "support.nps_submitted": _nps_submitted,
    "profile.profile_updated": _profile_updated,
    "profile.consent_updated": _consent_updated,
    "profile.preferences_updated": _preferences_updated,
    "feedback.offer_delivered": _nothing,
    "feedback.offer_shown": _nothing,
    "feedback.offer_clicked": _nothing,
    "feedback.offer_dismissed": _offer_dismissed,
    "feedback.offer_snoozed": _offer_snoozed,
    "feedback.unsubscribed": _unsubscribed,
}
"""The change each event type makes (erasure aside: the engine deletes the state)."""
