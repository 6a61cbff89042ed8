"""Users living in real time: the traffic of ``triggerstream demo`` and ``loadgen``.

The people of the seed articles, each with a persona that decides what they do:

- free listeners skip tracks in bursts (six skips in an hour is the moment to offer
  Premium), and some upgrade on their own;
- teams on the Team or Starter plan fill their storage toward its quota (near it, uploads
  fail and some open a ticket first) and click on the SSO feature their plan lacks;
- shoppers buy a camera or an espresso machine (complements to cross-sell) or anything,
  or take one to checkout and leave it there (cart abandonment) or buy it a while later;
- trialists start a Pro trial that ends within ten days;
- monthly subscribers renew (a moment to offer annual billing);
- analysts run workflows: a first report (the moment for the automation add-on) or
  payroll (critical: nobody interrupts it);
- and anyone may open a ticket about API rate limits, resolved a little later, or
  answer an NPS survey (detractors are not sold to).

Every user starts with a profile (plan, timezone, first name), consent per channel
(given by about two in three) and a session. A moment is a short sequence of events a
few seconds apart, so rules with sub-minute windows see them as they would in life.

:meth:`Population.react` is the user answering an offer: shown, then clicked or
dismissed, and sometimes a purchase of what was offered, a little later, which is what
attribution credits.
"""

from __future__ import annotations

import datetime as dt
import heapq
import itertools
import random
from collections.abc import Callable
from typing import Any

Event = tuple[str, dict[str, Any]]
"""An input topic (its name without the prefix) and an event envelope."""

PERSONAS: list[tuple[str, float]] = [
    ("listener", 0.40),
    ("team", 0.15),
    ("shopper", 0.15),
    ("trialist", 0.07),
    ("subscriber", 0.08),
    ("analyst", 0.07),
]
ZONES = ["Europe/Berlin", "America/New_York", "America/Los_Angeles", "Asia/Tokyo", "Europe/London"]
PLANS = {
    "listener": ["free"],
    "team": ["team", "starter"],
    "shopper": ["free", "pro"],
    "trialist": ["free"],
    "subscriber": ["pro"],
    "analyst": ["team", "starter"],
}
COMPLEMENTS = {"camera-x": 899.0, "espresso-1": 349.0}
"""What shoppers buy that has complements in examples/rules.yaml's catalog, and its price."""
ACCESSORY_PRICE = {
    "sd-card-64": 19.9,
    "camera-bag": 59.0,
    "tripod": 79.0,
    "milk-jug": 24.0,
    "descaler": 9.5,
    "beans-1kg": 18.0,
}
PLAN_PRICE = {"premium": 9.99, "business": 49.0, "pro": 19.0, "pro-annual": 190.0}
CONVERSION = {"upsell": 0.25, "cross_sell": 0.35}
"""Chance that a user buys what an offer proposed, soon after seeing it."""
SUPPORT_SHARE = 0.08
"""Share of moments, whoever the user, that are a support ticket or an NPS answer."""


class Population:
    """``users`` people, deterministic for a ``seed``; events come out in time order
    from :meth:`due`, as moments started by :meth:`start_moment` and reactions to
    offers (:meth:`react`) fall due."""

    def __init__(
        self, users: int, seed: int = 7, prefix: str = "user", faults: float = 0.0
    ) -> None:
        """``faults``: the share of events that producers get wrong, as they do in life:
        half of them sent twice (a retry), half with a timestamp that has no offset (a
        dead letter)."""
        if users < 1:
            raise ValueError("a population needs at least one user")
        if not 0 <= faults <= 1:
            raise ValueError("faults is a share between 0 and 1")
        self.faults = faults
        self.rng = random.Random(seed)
        self.users = users
        self.prefix = prefix
        self.run = f"{seed:x}-{self.rng.getrandbits(32):08x}"
        self.ids = itertools.count(1)
        self.pending: list[tuple[float, int, Event]] = []
        self.introduced: set[int] = set()
        self.quota: dict[int, float] = {}
        self._horizon = float("-inf")
        self._soon = 0
        names, weights = zip(*PERSONAS, strict=True)
        self.persona = [self.rng.choices(names, weights)[0] for _ in range(users)]
        self.moments: dict[str, Callable[[int, float], None]] = {
            "listener": self._listener,
            "team": self._team,
            "shopper": self._shopper,
            "trialist": self._trialist,
            "subscriber": self._subscriber,
            "analyst": self._analyst,
        }

    # --- driving it ------------------------------------------------------------------

    def start_moment(self, now: float) -> None:
        """A user, drawn with a heavy tail (a few are busy, most are not), does
        something their persona does, beginning at ``now`` (Unix seconds)."""
        number = int(self.users * self.rng.random() ** 2) * 7919 % self.users
        if number not in self.introduced:
            self.introduced.add(number)
            self._introduce(number, now)
            now += 0.5
        if self.rng.random() < SUPPORT_SHARE:
            self._support(number, now)
        else:
            self.moments[self.persona[number]](number, now)

    def keep_pace(self, now: float, produced: int, wanted: float, ahead: float = 1.0) -> None:
        """Start moments until the events ``produced`` so far and those falling due in
        the next ``ahead`` seconds reach ``wanted``: a steady rate from the first
        second, though most of a moment's events come later."""
        horizon = now + ahead
        self._soon = sum(1 for at, _, _ in self.pending if at <= horizon)
        self._horizon = horizon
        while produced + self._soon < wanted:
            self.start_moment(now)
        self._horizon = float("-inf")

    def due(self, now: float) -> list[Event]:
        """Every event whose time has come, oldest first."""
        out = []
        while self.pending and self.pending[0][0] <= now:
            out.append(heapq.heappop(self.pending)[2])
        return out

    def history(self, events: int, start: float, rate: float = 100.0) -> list[Event]:
        """``events`` events lived from ``start`` (Unix seconds) at about ``rate`` events a
        second of simulated time, without answers to offers (nobody sees them)."""
        out: list[Event] = []
        now = start
        while len(out) < events:
            self.keep_pace(now, len(out), rate * (now - start + 1))
            now += 0.1
            out.extend(self.due(now))
        return out[:events]

    def waiting(self) -> int:
        return len(self.pending)

    def react(self, trigger: dict[str, Any], now: float) -> None:
        """The user answers an offer (a trigger record): it is shown (in-app at once,
        push and email a little later), then clicked or dismissed; sometimes they buy
        what it offered."""
        number = self._number(trigger["user_id"])
        if number is None:
            return
        offer = trigger["offer"]
        feedback = {
            "trigger_id": trigger["trigger_id"],
            "offer_id": offer["id"],
            "channel": trigger["channel"],
        }
        at = now + (0.5 if trigger["channel"] == "in_app" else self.rng.uniform(3, 15))
        self._at(at, number, "offer-feedback", "offer_shown", feedback)
        answer = self.rng.random()
        if answer < 0.35:
            self._at(
                at + self.rng.uniform(1, 5), number, "offer-feedback", "offer_clicked", feedback
            )
        elif answer < 0.55:
            self._at(
                at + self.rng.uniform(1, 5), number, "offer-feedback", "offer_dismissed", feedback
            )
            return
        kind = offer.get("kind", "upsell")
        if self.rng.random() >= CONVERSION.get(kind, 0.2):
            return
        buy_at = at + self.rng.uniform(5, 30)
        items = [item["sku"] for item in offer.get("items") or []]
        if items:
            self._order(number, buy_at, self.rng.sample(items, self.rng.randint(1, len(items))))
        elif offer.get("product"):
            self._subscribe(number, buy_at, offer["product"])

    # --- who they are ----------------------------------------------------------------

    def user_id(self, number: int) -> str:
        return f"{self.prefix}-{number:05d}"

    def _number(self, user: str) -> int | None:
        head, _, tail = user.rpartition("-")
        if head != self.prefix or not tail.isdigit() or int(tail) >= self.users:
            return None
        return int(tail)

    def _introduce(self, number: int, now: float) -> None:
        rng = self.rng
        plan = rng.choice(PLANS[self.persona[number]])
        profile = {"plan": plan, "timezone": rng.choice(ZONES), "first_name": f"User{number}"}
        self._at(now, number, "profile-events", "profile_updated", profile)
        for channel in ("push", "email"):
            if rng.random() < 0.65:
                consent = {"channel": channel, "granted": True}
                self._at(now + 0.1, number, "profile-events", "consent_updated", consent)
        self._at(now + 0.2, number, "usage-events", "session_started", {"platform": "web"})

    # --- what they do ----------------------------------------------------------------

    def _listener(self, number: int, now: float) -> None:
        rng = self.rng
        if rng.random() < 0.02:  # some upgrade with no offer at all
            self._subscribe(number, now, "premium")
            return
        at = now
        for _ in range(rng.randint(2, 9)):
            at += rng.uniform(1, 6)
            self._at(at, number, "usage-events", "feature_used", {"feature": "skip"})
        if rng.random() < 0.3:
            self._at(at + rng.uniform(1, 5), number, "usage-events", "session_ended", {})

    def _team(self, number: int, now: float) -> None:
        rng = self.rng
        if rng.random() < 0.3:
            for i in range(3):
                locked = {"feature": "sso", "required_plan": "business"}
                self._at(
                    now + i * rng.uniform(1, 4),
                    number,
                    "usage-events",
                    "locked_feature_clicked",
                    locked,
                )
            return
        used = self.quota.get(number, rng.uniform(0.55, 0.8))
        used = min(1.0, used + rng.uniform(0.03, 0.15))
        self.quota[number] = used
        usage = {"resource": "storage_gb", "used": round(used * 1000), "limit": 1000}
        if used >= 0.85 and rng.random() < 0.8:
            # Uploads fail near the quota: a ticket first. The bigger plan waits for it
            # to be resolved (a deferred offer), rather than being sold into a complaint.
            # (Never dated before the moment: the traffic comes out in time order.)
            ticket = {"ticket_id": f"T-{self.run}-{next(self.ids)}", "category": "storage-full"}
            self._at(now, number, "support-events", "ticket_opened", ticket)
            resolved = now + rng.uniform(3, 15)  # support lifts the upload limit
            self._at(resolved, number, "support-events", "ticket_resolved", ticket)
            now += 1
        self._at(now, number, "usage-events", "quota_usage", usage)

    def _shopper(self, number: int, now: float) -> None:
        rng = self.rng
        if rng.random() < 0.3:  # a cart taken to checkout; half of them bought a while later
            sku = rng.choice(list(COMPLEMENTS))
            cart = {"cart": [{"sku": sku, "price": COMPLEMENTS[sku], "quantity": 1}]}
            self._at(now, number, "purchase-events", "checkout_started", cart)
            if rng.random() < 0.5:
                self._order(number, now + rng.uniform(20, 900), [sku])
            return
        if rng.random() < 0.5:
            self._order(number, now, [rng.choice(list(COMPLEMENTS))])
        else:
            self._order(number, now, [f"sku-{rng.randrange(200)}"])

    def _trialist(self, number: int, now: float) -> None:
        ends = dt.datetime.fromtimestamp(now, dt.UTC) + dt.timedelta(days=self.rng.uniform(3, 9))
        trial = {"plan": "pro", "trial_ends_at": ends.isoformat()}
        self._at(now, number, "purchase-events", "trial_started", trial)

    def _subscriber(self, number: int, now: float) -> None:
        period = self.rng.choice(["monthly", "monthly", "annual"])
        renewal = {"plan": "pro", "billing_period": period}
        self._at(now, number, "purchase-events", "subscription_renewed", renewal)

    def _support(self, number: int, now: float) -> None:
        rng = self.rng
        if rng.random() < 0.4:
            self._at(now, number, "support-events", "nps_submitted", {"score": rng.randint(0, 10)})
            return
        ticket = {"ticket_id": f"T-{self.run}-{next(self.ids)}", "category": "api-rate-limit"}
        self._at(now, number, "support-events", "ticket_opened", ticket)
        self._at(now + rng.uniform(20, 120), number, "support-events", "ticket_resolved", ticket)

    def _analyst(self, number: int, now: float) -> None:
        rng = self.rng
        name = rng.choice(["first-report", "first-report", "payroll"])
        started = {"workflow": name, "critical": name == "payroll"}
        self._at(now, number, "usage-events", "workflow_started", started)
        completed = {"workflow": name}
        self._at(now + rng.uniform(5, 40), number, "usage-events", "workflow_completed", completed)

    # --- purchases -------------------------------------------------------------------

    def _order(self, number: int, at: float, skus: list[str]) -> None:
        prices = []
        for sku in skus:
            price = COMPLEMENTS.get(sku, ACCESSORY_PRICE.get(sku))
            prices.append(round(self.rng.uniform(5, 200), 2) if price is None else price)
        order = {
            "order_id": f"O-{self.run}-{next(self.ids)}",
            "items": [
                {"sku": sku, "price": price, "quantity": 1}
                for sku, price in zip(skus, prices, strict=True)
            ],
            "total": round(sum(prices), 2),
            "currency": "EUR",
        }
        self._at(at, number, "purchase-events", "order_completed", order)

    def _subscribe(self, number: int, at: float, product: str) -> None:
        annual = product.endswith("-annual")
        subscription = {
            "plan": product,
            "billing_period": "annual" if annual else "monthly",
            "price": PLAN_PRICE.get(product, 10.0),
            "currency": "EUR",
        }
        self._at(at, number, "purchase-events", "subscription_started", subscription)

    def _at(
        self, at: float, number: int, topic: str, type_: str, properties: dict[str, Any]
    ) -> None:
        envelope: dict[str, Any] = {
            "event_id": f"{self.run}-{next(self.ids)}",
            "user_id": self.user_id(number),
            "type": type_,
            "occurred_at": dt.datetime.fromtimestamp(at, dt.UTC).isoformat(timespec="milliseconds"),
            "properties": properties,
        }
        self._push(at, topic, envelope)
        if self.faults and self.rng.random() < self.faults:
            if self.rng.random() < 0.5:
                self._push(at + self.rng.uniform(0.1, 2), topic, envelope)  # a retry
            else:  # a producer that forgot the offset
                envelope["occurred_at"] = envelope["occurred_at"].removesuffix("+00:00")

    def _push(self, at: float, topic: str, envelope: dict[str, Any]) -> None:
        heapq.heappush(self.pending, (at, next(self.ids), (topic, envelope)))
        if at <= self._horizon:
            self._soon += 1
