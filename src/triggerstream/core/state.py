"""Per-user state (docs/contract.md section 5): what rule conditions and the policy can see.

One :class:`UserState` per user, kept by the shell (a dict in replay, a RocksDB table in
the worker) and changed only by the engine. Times are POSIX seconds (floats) inside the
core; records carry RFC 3339 timestamps. Everything here is bounded: windows keep only
what the rules need, the dedupe memory 24 hours of event ids.
"""

from __future__ import annotations

import dataclasses
import operator
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

# The names conditions may use are words of the rules language, kept by the rules.
from triggerstream.rules.state_names import TIME_STATE_NAMES as TIME_STATE_NAMES

Scalar = str | int | float | bool | None

MAX_OWNED = 256
"""Owned skus and plans kept per user (oldest forgotten first)."""
MAX_LISTED = 64
"""Open tickets, onboarding steps and critical workflows kept per user."""


@dataclass(slots=True)
class Timer:
    """A time-based trigger waiting for its due time (deadline, inactivity, delay or
    not_followed).

    ``cause_*`` name the event that set it: its id goes into the trigger id with the due
    time, so a re-run gives the same id.
    """

    due: float
    rule_id: str
    kind: str  # deadline | inactivity | delay | not_followed
    set_at: float
    cause_id: str
    cause_type: str
    cause_at: float
    facts: dict[str, Any] = field(default_factory=dict)

    def triggered_at(self) -> float:
        """The due time, or the time of the event that set the timer if that is later."""
        return max(self.due, self.set_at)


@dataclass(slots=True)
class Deferred:
    """A match held back by a block that ends by itself, waiting to be decided again
    (docs/contract.md section 14; core/deferral.py). One per rule and user.

    ``cause_*`` and ``due`` are the match's: its trigger id, whenever it is released."""

    rule_id: str
    matched_at: float
    until: float
    """``matched_at`` plus the rule's ``defer.up_to``: still blocked then, it expires."""
    wake: float
    """When it is decided again if no event of the user comes first: when the block ends
    by itself, or ``until``."""
    reason: str
    """The code of the block that holds it back (the latest)."""
    cause_id: str
    cause_type: str
    cause_at: float
    due: float | None
    summary: str
    facts: dict[str, Any] = field(default_factory=dict)
    basket: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Touch:
    """An emitted trigger or a held-out decision that a later purchase may be credited to,
    kept for the attribution window."""

    at: float
    trigger_id: str
    rule_id: str
    offer_id: str
    channel: str | None
    experiment: str | None
    variant: str | None
    group: str  # treated | holdout
    products: list[str]
    """The offer's product and the recommended items: what counts as its conversion."""


MAX_TOUCHES = 32
"""Touches kept per user inside the attribution window (the latest)."""


@dataclass(slots=True)
class UserState:
    """Everything triggerstream holds about one user."""

    # profile and subscription facts
    first_name: str | None = None
    locale: str | None = None
    country: str | None = None
    timezone: str | None = None
    plan: str | None = None
    attributes: dict[str, Scalar] = field(default_factory=dict)
    billing_period: str | None = None
    trial_ends_at: float | None = None
    renews_at: float | None = None
    # support
    nps_score: int | None = None
    open_tickets: list[str] = field(default_factory=list)
    # purchases
    owned: list[str] = field(default_factory=list)
    orders_count: int = 0
    total_spent: float = 0.0
    # usage
    last_seen_at: float | None = None
    last_activity: tuple[str, str] | None = None
    """(event id, type) of the activity at ``last_seen_at``: what an inactivity trigger
    names as its cause."""
    session_open: bool = False
    critical_workflows: dict[str, float] = field(default_factory=dict)
    onboarding_steps: list[str] = field(default_factory=list)
    # consent and preferences
    consent: dict[str, bool] = field(default_factory=dict)
    offers_opt_out: bool = False
    snooze_all_until: float | None = None
    said_at: dict[str, float] = field(default_factory=dict)
    """fact -> event time of the value held, for the facts whose latest word counts
    (consent per channel, opt-out, snooze, NPS, each quota's reading): a value said
    earlier that arrives later does not replace it."""
    # offer history
    last_trigger: dict[str, float] = field(default_factory=dict)
    """rule id -> time of its last emitted or held-out decision (cooldowns)."""
    sent: list[tuple[float, str | None, str | None]] = field(default_factory=list)
    """(time, channel, offer id) of emitted and held-out decisions (frequency caps),
    channel None for holdout; offer None for a send stored before offer families whose
    touch is gone (family caps cannot tell whose it was)."""
    dismissed: dict[str, float] = field(default_factory=dict)
    """offer id -> when it was dismissed."""
    snoozed: dict[str, float] = field(default_factory=dict)
    """offer id -> until when it is snoozed."""
    quotas: dict[str, tuple[float, float]] = field(default_factory=dict)
    """resource -> (used, limit) of its latest reading: what ``explain`` shows against a
    quota rule's fraction."""
    # trigger memory
    windows: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    """rule id -> (time, value) of matching events inside its window (count and sum)."""
    quota_above: dict[str, bool] = field(default_factory=dict)
    """rule id -> the last reading was at or above the threshold (not re-armed)."""
    deadline_fired: dict[str, float] = field(default_factory=dict)
    """rule id -> the field value it last fired for (once per value)."""
    inactivity_fired: dict[str, float] = field(default_factory=dict)
    """rule id -> the ``last_seen_at`` of the inactive spell it fired for (once per spell).
    Inactivity needs no stored timer: it is due at ``last_seen_at`` plus the rule's span."""
    followed: dict[str, float] = field(default_factory=dict)
    """rule id -> time of the latest ``then`` event of a ``not_followed`` rule: a ``first``
    read after a later ``then`` (from another topic, or sent late) is already followed."""
    timers: list[Timer] = field(default_factory=list)
    deferred: list[Deferred] = field(default_factory=list)
    """Matches waiting to be decided again, at most one per rule (section 14)."""
    touches: list[Touch] = field(default_factory=list)
    """Emitted and held-out decisions inside the attribution window, oldest first."""
    # duplicates and time
    seen: OrderedDict[int, float] = field(default_factory=OrderedDict)
    """key of event_id -> occurred_at, for 24 hours of event time, oldest first."""
    latest_at: float = 0.0
    """The latest occurred_at of this user's events (windows are pruned against it)."""
    ids_appended: int = field(default=0, compare=False)
    """Not stored: ids added at the end of ``seen`` since the state was made or read. A
    store that keeps the ids apart writes the newest this many minus its count before."""
    ids_retimed: int = field(default=0, compare=False)
    """Not stored: ids of ``seen`` given a new time in place since (the same id again
    more than a day later; rare). A store that keeps the ids apart writes them all again."""

    # --- what rules see ------------------------------------------------------------

    def owns(self, product: str) -> bool:
        """Bought and not cancelled, or the current plan."""
        return product in self.owned or product == self.plan

    @property
    def in_critical_workflow(self) -> bool:
        return bool(self.critical_workflows)

    def to_document(self, *, seen: bool = True) -> dict[str, Any]:
        """The fields that differ from a new user's, as JSON values (a store encodes
        them: the worker's, :mod:`triggerstream.worker.codec`). ``seen=False`` leaves
        the dedupe ids out (a store that keeps them apart); :meth:`from_document` reads
        both."""
        document: dict[str, Any] = {}
        for name, default in _DEFAULTS.items():
            value = getattr(self, name)
            if value == default or (name == "seen" and not seen):
                continue
            if name == "timers":
                value = [_timer_values(timer) for timer in value]
            elif name == "deferred":
                value = [_deferred_values(waiting) for waiting in value]
            elif name == "touches":
                value = [_touch_values(touch) for touch in value]
            elif name == "seen":
                value = list(value.items())  # (key, at) pairs: JSON arrays
            document[name] = value
        return document

    @classmethod
    def from_document(cls, document: dict[str, Any]) -> UserState:
        if document.get("last_activity") is not None:  # a JSON array; the field holds a tuple
            document["last_activity"] = tuple(document["last_activity"])
        state = cls(**{k: v for k, v in document.items() if k not in _LISTS_OF_RECORDS})
        state.timers = [Timer(*values) for values in document.get("timers", [])]
        state.deferred = [Deferred(*values) for values in document.get("deferred", [])]
        state.touches = [Touch(*values) for values in document.get("touches", [])]
        state.seen = OrderedDict((int(key), at) for key, at in document.get("seen", []))
        # JSON arrays become tuples, read from the document: a compiled core checks types.
        state.sent = [
            (entry[0], entry[1], entry[2] if len(entry) > 2 else _offer_of(entry, state.touches))
            for entry in document.get("sent", [])
        ]
        state.quotas = {
            resource: (used, limit)
            for resource, (used, limit) in document.get("quotas", {}).items()
        }
        state.windows = {
            rule: [(at, value) for at, value in entries]
            for rule, entries in document.get("windows", {}).items()
        }
        return state


def _offer_of(entry: list[Any], touches: list[Touch]) -> str | None:
    """The offer of a send stored before offer families ([time, channel]): the touch it
    left at the same time on the same channel, while that is kept; else unknown."""
    for touch in touches:
        if touch.at == entry[0] and touch.channel == entry[1]:
            return touch.offer_id
    return None


_TRANSIENT = frozenset({"ids_appended", "ids_retimed"})
_DEFAULTS: dict[str, Any] = {
    f.name: getattr(UserState(), f.name)
    for f in dataclasses.fields(UserState)
    if f.name not in _TRANSIENT
}
_LISTS_OF_RECORDS = ("timers", "deferred", "seen", "touches")
_deferred_values = operator.attrgetter(*(f.name for f in dataclasses.fields(Deferred)))
_timer_values = operator.attrgetter(*(f.name for f in dataclasses.fields(Timer)))
_touch_values = operator.attrgetter(*(f.name for f in dataclasses.fields(Touch)))

# --- what a rule's profile condition sees (its names: rules/state_names.py) ----------


def nps_category(score: int | None) -> str | None:
    if score is None:
        return None
    return "promoter" if score >= 9 else "passive" if score >= 7 else "detractor"


def state_value(state: UserState, name: str) -> Any:
    """The value a profile condition named ``name`` sees."""
    if name.startswith("attributes."):
        return state.attributes.get(name[11:])
    getter = _GETTERS.get(name)
    if getter is not None:
        return getter(state)
    return getattr(state, name)


_GETTERS: dict[str, Any] = {
    "nps_category": lambda s: nps_category(s.nps_score),
    "open_tickets": lambda s: len(s.open_tickets),
    "in_session": lambda s: s.session_open,
    "in_critical_workflow": lambda s: bool(s.critical_workflows),
    "owned": lambda s: [*s.owned, s.plan] if s.plan and s.plan not in s.owned else s.owned,
    "consent_in_app": lambda s: s.consent.get("in_app"),
    "consent_push": lambda s: s.consent.get("push"),
    "consent_email": lambda s: s.consent.get("email"),
}
