"""The state names a rule's profile conditions may use (docs/contract.md section 5).

They are words of the rules language: the loader checks a rules file against them, and
the core, which computes what each name sees (``core/state.py``), takes them from here.
So the rules never import the core.
"""

from __future__ import annotations

TIME_STATE_NAMES = frozenset({"trial_ends_at", "renews_at", "last_seen_at"})
"""The names that hold a time: their conditions take RFC 3339 timestamps."""
STATE_NAMES: tuple[str, ...] = (
    "plan",
    "first_name",
    "locale",
    "country",
    "timezone",
    "nps_score",
    "nps_category",
    "open_tickets",
    "owned",
    "orders_count",
    "total_spent",
    "trial_ends_at",
    "renews_at",
    "billing_period",
    "last_seen_at",
    "in_session",
    "in_critical_workflow",
    "onboarding_steps",
    "consent_in_app",
    "consent_push",
    "consent_email",
    "offers_opt_out",
)


def is_state_name(name: str) -> bool:
    return name in STATE_NAMES or (name.startswith("attributes.") and len(name) > 11)


def state_names_hint() -> str:
    return f"known: {', '.join(STATE_NAMES)}, attributes.<name>"
