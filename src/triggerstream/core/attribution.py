"""Attribution: last touch within the window, per purchase line.

An emitted trigger or a held-out decision is a touch (:func:`remember`); a later purchase
of the touched offer's product or one of its items, within the window, is credited to
the latest such touch, treated or holdout alike.
"""

from __future__ import annotations

from typing import Any

from triggerstream.core.records import Attribution, utc
from triggerstream.core.state import MAX_TOUCHES, Touch, UserState


def remember(state: UserState, touch: Touch, window: float) -> None:
    """Keep ``touch`` for the window (the latest ``MAX_TOUCHES``)."""
    state.touches.append(touch)
    state.touches.sort(key=lambda t: t.at)
    horizon = state.touches[-1].at - window
    state.touches = [t for t in state.touches if t.at >= horizon][-MAX_TOUCHES:]


def credited(state: UserState, product: str, at: float, window: float) -> Touch | None:
    """The latest touch within the window before ``at`` whose offer covers
    ``product``: last-touch credit."""
    for touch in reversed(state.touches):
        inside = touch.at <= at and at - touch.at <= window
        if inside and product in touch.products:
            return touch
    return None


def attribute_order(
    user_id: str, state: UserState, props: Any, at: float, window: float
) -> list[Attribution]:
    """An order's lines, each credited to its own latest touch, if any."""
    found = []
    for item in props.items:
        touch = credited(state, item.sku, at, window)
        if touch is not None:
            revenue = float(item.price) * item.quantity
            found.append(
                _attribution(
                    user_id,
                    touch,
                    at,
                    revenue,
                    props.currency,
                    order_id=props.order_id,
                    sku=item.sku,
                )
            )
    return found


def attribute_plan(
    user_id: str, state: UserState, props: Any, at: float, window: float
) -> list[Attribution]:
    """A subscription started, credited to the latest touch of its plan, if any."""
    touch = credited(state, props.plan, at, window)
    if touch is None:
        return []
    revenue = float(props.price) if props.price is not None else 0.0
    return [_attribution(user_id, touch, at, revenue, props.currency, plan=props.plan)]


def _attribution(
    user_id: str,
    touch: Touch,
    at: float,
    revenue: float,
    currency: str | None,
    **purchase: str,
) -> Attribution:
    return Attribution(
        trigger_id=touch.trigger_id,
        user_id=user_id,
        rule_id=touch.rule_id,
        offer_id=touch.offer_id,
        channel=touch.channel,
        experiment=touch.experiment,
        variant=touch.variant,
        group=touch.group,
        revenue=round(revenue, 6),
        currency=currency,
        converted_at=utc(at),
        lag_seconds=round(at - touch.at, 6),
        **purchase,
    )
