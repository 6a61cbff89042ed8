"""Realistic traffic for replay files, tests, benchmarks and the demo.

Drawn from the users' world of the seed articles: free listeners who skip tracks in
bursts, teams whose storage fills toward its quota, shoppers whose orders teach
cross-sell and who leave carts at checkout, trials that end, tickets about limits, NPS
answers, consent given per channel, and what users did with earlier offers.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable
from pathlib import Path

import orjson

START = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
PER_USER_DAY = 2
"""Events a user makes a day on average, when only users and days are given: a few
busy users make most of them, as in life."""


def history(
    events: int,
    users: int,
    seed: int = 7,
    start: dt.datetime = START,
    days: float = 30,
    progress: Callable[[int], None] | None = None,
) -> list[bytes]:
    """A month (or ``days``) of traffic from ``start`` as replay lines (with their
    "topic"), in time order: listeners skipping, teams filling quotas, shoppers, trials,
    tickets, NPS answers, consent changes and offer feedback. The same arguments give
    the same lines. ``progress`` is told how many lines are drawn, every 100,000."""
    rng = random.Random(seed)
    span = days * 86400
    zones = ["Europe/Berlin", "America/New_York", "Asia/Tokyo", "UTC", "Europe/London"]
    skus = [f"sku-{n}" for n in range(400)] + ["camera-x", "sd-card-64", "camera-bag", "tripod"]
    lines: list[tuple[float, bytes]] = []
    n = 0

    def emit(user: str, at: float, topic: str, type_: str, props: dict[str, object]) -> None:
        nonlocal n
        n += 1
        stamp = (start + dt.timedelta(seconds=at)).isoformat()
        lines.append(
            (
                at,
                orjson.dumps(
                    {
                        "topic": topic,
                        "event_id": f"e{n}",
                        "user_id": user,
                        "type": type_,
                        "occurred_at": stamp,
                        "properties": props,
                    }
                ),
            )
        )

    # Every user gets a profile and consent first; the rest is drawn by weight.
    for u in range(users):
        user = f"u{u}"
        at = rng.uniform(0, 3600)
        plan = rng.choice(["free", "free", "free", "team", "starter", "pro"])
        emit(
            user,
            at,
            "profile-events",
            "profile_updated",
            {"plan": plan, "timezone": rng.choice(zones), "first_name": f"User{u}"},
        )
        for channel in ("push", "email"):
            if rng.random() < 0.6:
                emit(
                    user,
                    at + 1,
                    "profile-events",
                    "consent_updated",
                    {"channel": channel, "granted": True},
                )
    kinds = [
        (0.40, "skip"),
        (0.12, "feature"),
        (0.10, "session"),
        (0.06, "quota"),
        (0.05, "locked"),
        (0.04, "workflow"),
        (0.05, "order"),
        (0.03, "checkout"),
        (0.02, "subscription"),
        (0.02, "trial"),
        (0.03, "ticket"),
        (0.02, "nps"),
        (0.04, "feedback"),
        (0.05, "session_end"),
    ]
    weights = [w for w, _ in kinds]
    names = [k for _, k in kinds]
    told = 0
    while len(lines) < events:
        if progress is not None and len(lines) - told >= 100_000:
            told = len(lines)
            progress(told)
        user = f"u{int(rng.paretovariate(1.2)) % users}"
        at = rng.uniform(0, span)
        kind = rng.choices(names, weights)[0]
        if kind == "skip":
            burst_at = at
            for _ in range(rng.randint(1, 8)):
                burst_at += rng.uniform(20, 600)
                emit(user, burst_at, "usage-events", "feature_used", {"feature": "skip"})
        elif kind == "feature":
            emit(
                user,
                at,
                "usage-events",
                "feature_used",
                {"feature": rng.choice(["export", "play", "share"]), "quantity": rng.randint(1, 5)},
            )
        elif kind == "session":
            emit(user, at, "usage-events", "session_started", {"platform": "ios"})
        elif kind == "session_end":
            emit(user, at, "usage-events", "session_ended", {})
        elif kind == "quota":
            emit(
                user,
                at,
                "usage-events",
                "quota_usage",
                {"resource": "storage_gb", "used": rng.randint(100, 1000), "limit": 1000},
            )
        elif kind == "locked":
            emit(
                user,
                at,
                "usage-events",
                "locked_feature_clicked",
                {"feature": "sso", "required_plan": "business"},
            )
        elif kind == "workflow":
            name = rng.choice(["first-report", "payroll"])
            emit(
                user,
                at,
                "usage-events",
                "workflow_started",
                {"workflow": name, "critical": name == "payroll"},
            )
            emit(
                user,
                at + rng.uniform(60, 1800),
                "usage-events",
                "workflow_completed",
                {"workflow": name},
            )
        elif kind == "order":
            items: list[dict[str, float | int | str]] = [
                {"sku": rng.choice(skus), "price": round(rng.uniform(5, 500), 2), "quantity": 1}
                for _ in range(rng.randint(1, 3))
            ]
            emit(
                user,
                at,
                "purchase-events",
                "order_completed",
                {
                    "order_id": f"o{len(lines)}",
                    "items": items,
                    "total": round(sum(float(i["price"]) for i in items), 2),
                    "currency": "EUR",
                },
            )
        elif kind == "checkout":  # half of the carts are bought within the hour
            sku = rng.choice(["camera-x", "espresso-1"])  # with complements to suggest
            cart = [{"sku": sku, "price": round(rng.uniform(5, 500), 2), "quantity": 1}]
            emit(user, at, "purchase-events", "checkout_started", {"cart": cart})
            if rng.random() < 0.5:
                paid = {"sku": sku, "price": cart[0]["price"], "quantity": 1}
                emit(
                    user,
                    at + rng.uniform(60, 3000),
                    "purchase-events",
                    "order_completed",
                    {
                        "order_id": f"o{len(lines)}",
                        "items": [paid],
                        "total": paid["price"],
                        "currency": "EUR",
                    },
                )
        elif kind == "subscription":
            emit(
                user,
                at,
                "purchase-events",
                "subscription_renewed",
                {"plan": "pro", "billing_period": rng.choice(["monthly", "annual"])},
            )
        elif kind == "trial":
            ends = start + dt.timedelta(seconds=at + rng.uniform(5, 30) * 86400)
            emit(
                user,
                at,
                "purchase-events",
                "trial_started",
                {"plan": "pro", "trial_ends_at": ends.isoformat()},
            )
        elif kind == "ticket":
            ticket = f"T-{len(lines)}"
            emit(
                user,
                at,
                "support-events",
                "ticket_opened",
                {"ticket_id": ticket, "category": "api-rate-limit"},
            )
            emit(
                user,
                at + rng.uniform(600, 86400),
                "support-events",
                "ticket_resolved",
                {"ticket_id": ticket, "category": "api-rate-limit"},
            )
        elif kind == "nps":
            emit(user, at, "support-events", "nps_submitted", {"score": rng.randint(0, 10)})
        else:
            emit(
                user,
                at,
                "offer-feedback",
                rng.choice(["offer_shown", "offer_clicked", "offer_dismissed"]),
                {"trigger_id": "trg-x", "offer_id": "premium", "channel": "in_app"},
            )
    lines.sort(key=lambda pair: pair[0])
    return [line for _, line in lines[:events]]


def generate(
    path: Path, events: int, users: int, seed: int = 7, start: dt.datetime = START
) -> None:
    """:func:`history` written to a JSON Lines file."""
    with path.open("wb") as handle:
        for line in history(events, users, seed, start):
            handle.write(line + b"\n")


def events_for(users: int, days: float) -> int:
    """How many events ``users`` make in ``days``, at :data:`PER_USER_DAY`."""
    return max(1, round(users * days * PER_USER_DAY))
