"""The scenarios of docs/contract.md section 1 as input events, with the decisions the design
asks of each, for the example rules (examples/rules.yaml). Replay's tests and the
worker's parity test both run them."""

from __future__ import annotations

from typing import Any

from tests.conftest import ROOT
from tests.engine_support import at, event
from triggerstream.topics import input_partitions, partition_of

RULES = ROOT / "examples" / "rules.yaml"

# Co-purchase counts are learned per input partition: the buyers whose orders teach
# sam's cross-sell share sam's partition (of the default 8).
BUYERS = [
    name
    for name in (f"buyer{n}" for n in range(200))
    if partition_of(name, input_partitions()) == partition_of("sam", input_partitions())
][:4]


def consenting(user: str, zone: str = "Europe/Berlin", **profile: Any) -> list[dict[str, Any]]:
    return [
        event("profile.profile_updated", user, at(), timezone=zone, **profile),
        event("profile.consent_updated", user, at(), channel="email", granted=True),
        event("profile.consent_updated", user, at(), channel="push", granted=True),
    ]


def session(user: str, minutes: float) -> dict[str, Any]:
    return event("usage.session_started", user, at(minutes=minutes))


def scenario_events() -> list[dict[str, Any]]:
    lines: list[dict[str, Any]] = []
    # A free listener skips a 6th track within an hour: Premium, in-app.
    lines += consenting("maya", first_name="Maya", plan="free", locale="de-DE", country="DE")
    lines += [session("maya", 0)]
    lines += [
        event("usage.feature_used", "maya", at(minutes=m), feature="skip")
        for m in (2, 9, 15, 31, 44, 52)
    ]
    # A team reaches 80%, then 95% of its storage: the bigger plan.
    lines += consenting("acme", plan="team") + [session("acme", 0)]
    lines += [
        event(
            "usage.quota_usage", "acme", at(minutes=1), resource="storage_gb", used=640, limit=1000
        ),
        event("usage.feature_used", "acme", at(minutes=2), feature="upload"),
        event(
            "usage.quota_usage", "acme", at(minutes=3), resource="storage_gb", used=815, limit=1000
        ),
        event("usage.session_started", "acme", at(days=3)),
        event(
            "usage.quota_usage",
            "acme",
            at(days=3, minutes=1),
            resource="storage_gb",
            used=962,
            limit=1000,
        ),
    ]
    # Others bought camera-x with a card and a bag: then an order of camera-x gets them.
    for n, extra in enumerate(["sd-card-64", "sd-card-64", "camera-bag", "lens-cap"]):
        lines.append(
            event(
                "purchase.order_completed",
                BUYERS[n],
                at(minutes=n),
                order_id=f"o{n}",
                currency="EUR",
                total=700,
                items=[{"sku": "camera-x", "price": 649}, {"sku": extra, "price": 20}],
            )
        )
    lines += consenting("sam", plan="free")
    lines += [
        event(
            "purchase.order_completed",
            "sam",
            at(hours=2),
            order_id="ord-88123",
            currency="EUR",
            total=700,
            items=[{"sku": "camera-x", "price": 649}, {"sku": "lens-cap", "price": 9}],
        )
    ]
    # A trial ends in 10 days: the paid plan. A monthly renewal: annual billing.
    lines += consenting("lena", plan="free") + [
        event(
            "purchase.trial_started",
            "lena",
            at(hours=1),
            plan="pro",
            trial_ends_at=at(days=30, hours=1),
        ),
    ]
    lines += consenting("omar", plan="pro") + [
        event(
            "purchase.subscription_renewed",
            "omar",
            at(hours=3),
            plan="pro",
            billing_period="monthly",
        ),
    ]
    # A ticket about a limitation is resolved: an hour later, the plan that lifts it.
    lines += consenting("ops", plan="team") + [
        event(
            "support.ticket_opened",
            "ops",
            at(hours=1),
            ticket_id="T-4412",
            category="api-rate-limit",
        ),
        event(
            "support.ticket_resolved",
            "ops",
            at(hours=4),
            ticket_id="T-4412",
            category="api-rate-limit",
        ),
    ]
    # Clicking a locked feature again and again: the plan that unlocks it.
    lines += consenting("ines", plan="team") + [session("ines", 0)]
    lines += [
        event(
            "usage.locked_feature_clicked",
            "ines",
            at(minutes=m),
            feature="sso",
            required_plan="business",
        )
        for m in (5, 30, 55)
    ]
    # A key workflow completed: the next step.
    lines += consenting("kai", plan="team") + [session("kai", 0)]
    lines += [event("usage.workflow_completed", "kai", at(minutes=4), workflow="first-report")]
    # Inactive for 14 days: win back.
    lines += consenting("zoe", plan="free") + [
        event("usage.feature_used", "zoe", at(hours=2), feature="play")
    ]
    # Never: detractor, open ticket, critical workflow, owned, dismissed, no consent, quiet.
    lines += consenting("dora", plan="free") + [
        session("dora", 0),
        event("support.nps_submitted", "dora", at(minutes=1), score=3),
    ]
    lines += [
        event("usage.feature_used", "dora", at(minutes=m), feature="skip") for m in range(2, 8)
    ]
    lines += consenting("tom", plan="team") + [
        session("tom", 0),
        event("support.ticket_opened", "tom", at(minutes=1), ticket_id="T-1"),
        event("usage.workflow_completed", "tom", at(minutes=2), workflow="first-report"),
    ]
    lines += consenting("cleo", plan="team") + [
        session("cleo", 0),
        event("usage.workflow_started", "cleo", at(minutes=1), workflow="payroll", critical=True),
        event("usage.workflow_completed", "cleo", at(minutes=2), workflow="first-report"),
    ]
    lines += consenting("ben", plan="team") + [
        session("ben", 0),
        event(
            "purchase.subscription_started",
            "ben",
            at(minutes=1),
            plan="automation",
            billing_period="monthly",
            price=9,
            currency="EUR",
        ),
        event("usage.workflow_completed", "ben", at(minutes=2), workflow="first-report"),
    ]
    lines += consenting("dan", plan="team") + [
        session("dan", 0),
        event(
            "feedback.offer_dismissed",
            "dan",
            at(minutes=1),
            trigger_id="t",
            offer_id="automation-addon",
            channel="in_app",
        ),
        event("usage.workflow_completed", "dan", at(minutes=2), workflow="first-report"),
    ]
    lines += [
        event("profile.profile_updated", "nia", at(), plan="team"),
        event(
            "purchase.subscription_renewed",
            "nia",
            at(hours=3),
            plan="pro",
            billing_period="monthly",
        ),
    ]
    lines += consenting("quinn", zone="Asia/Tokyo", plan="pro") + [
        event(
            "purchase.subscription_renewed",
            "quinn",
            at(hours=3),
            plan="pro",
            billing_period="monthly",
        ),  # 21:00 in Tokyo
    ]
    return lines


EXPECTED: dict[str, list[tuple[str, str, str | None, str | None]]] = {
    "maya": [
        ("free-skip-limit", "emitted", None, "in_app"),
        ("win-back", "emitted", None, "email"),  # nothing for 14 days after the skips
    ],
    "acme": [("storage-80", "emitted", None, "in_app"), ("storage-95", "emitted", None, "in_app")],
    "sam": [("order-cross-sell", "emitted", None, "email")],
    BUYERS[0]: [("order-cross-sell", "suppressed", "no_channel", None)],
    "lena": [("trial-ending", "emitted", None, "email")],
    "omar": [("renewal-annual", "emitted", None, "email")],
    "ops": [("limit-ticket-resolved", "emitted", None, "email")],
    "ines": [("locked-feature", "emitted", None, "in_app")],
    "kai": [("workflow-next-step", "emitted", None, "in_app")],
    "zoe": [("win-back", "emitted", None, "email")],
    "dora": [
        ("free-skip-limit", "suppressed", "detractor", None),
        ("win-back", "suppressed", "detractor", None),
    ],
    "tom": [("workflow-next-step", "suppressed", "open_tickets", None)],
    "cleo": [("workflow-next-step", "suppressed", "critical_workflow", None)],
    "ben": [("workflow-next-step", "suppressed", "already_owned", None)],
    "dan": [("workflow-next-step", "suppressed", "dismissed", None)],
    "nia": [("renewal-annual", "suppressed", "no_channel", None)],
    "quinn": [("renewal-annual", "suppressed", "no_channel", None)],
}
