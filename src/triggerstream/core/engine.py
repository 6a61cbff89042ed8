"""The per-user engine: one event (or the clock) in, new state and decisions out.

    engine = Engine(rules)
    step = engine.handle(user_id, state, event)      # an input event, timers it passes
    step = engine.process(user_id, state, event)     # an input event alone
    step = engine.fire_due(user_id, state, now)      # timers due at or before `now`

No I/O, no clock, no faust: the shells (replay, the worker) own files, topics, time and
storage, and both call exactly this, so they decide alike. The order inside ``process``:
drop a duplicate (duplicates.py); update the user's facts (facts.py); credit a purchase
to an earlier offer (attribution.py); match every rule that listens to the event
(triggers.py; timers.py holds the delayed and sets deadlines; not_followed.py starts
and ends waits); decide the matches of this moment in priority order, with the deferred
matches waiting then (decide.py, with the policy in policy.py and deferral.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from triggerstream.core import not_followed
from triggerstream.core.attribution import attribute_order, attribute_plan
from triggerstream.core.decide import Decider, erasure
from triggerstream.core.duplicates import DEDUPE_WINDOW, forget_old_ids, remember_id, seen
from triggerstream.core.facts import ACTIVITY, FACTS
from triggerstream.core.ids import event_key
from triggerstream.core.policy import SuppressionPolicy
from triggerstream.core.recommend import CoPurchaseCounts
from triggerstream.core.rule import CompiledRule, Match
from triggerstream.core.state import UserState
from triggerstream.core.step import Step
from triggerstream.core.timers import (
    DEADLINE_FIELDS,
    fire_at,
    has_due,
    hold_delayed,
    next_due,
    set_deadlines,
)
from triggerstream.core.triggers import match_listeners, match_nps, match_quota
from triggerstream.events import Event
from triggerstream.rules.model import RulesFile

__all__ = ["Engine", "Step"]


class Engine:
    """Decides offers for one user at a time from the rules file."""

    def __init__(self, rules: RulesFile, copurchases: CoPurchaseCounts | None = None) -> None:
        self.rules = rules
        self.version = rules.version or None
        """The rules' version (the hash of their text), on every decision made."""
        self.copurchases = copurchases if copurchases is not None else CoPurchaseCounts()
        self.policy = SuppressionPolicy(rules.policy, rules.families())
        self.decider = Decider(rules, self.policy, self.copurchases)
        self.compiled = [CompiledRule(rule, i, rules) for i, rule in enumerate(rules.rules)]
        self.by_id = {rule.id: rule for rule in self.compiled}
        self.decider.rules_by_id = self.by_id
        self.on_type: dict[str, list[CompiledRule]] = {}
        for rule in self.compiled:
            if rule.type is not None:
                self.on_type.setdefault(rule.type, []).append(rule)
        self.quota_rules = [r for r in self.compiled if r.kind == "quota"]
        self.nps_rules = [r for r in self.compiled if r.kind == "nps"]
        self.deadline_rules: dict[str, list[CompiledRule]] = {}
        for rule in self.compiled:
            if rule.kind == "deadline":
                for qualified in DEADLINE_FIELDS[rule.spec.field]:
                    self.deadline_rules.setdefault(qualified, []).append(rule)
        self.inactivity_rules = [r for r in self.compiled if r.kind == "inactivity"]
        self.not_followed = not_followed.listeners(self.compiled)
        self.attribution_window = rules.policy.attribution.window.total_seconds()
        self._facts: dict[str, Callable[[UserState, Any, float], None]] = FACTS

    # --- the entry points ------------------------------------------------------------

    def handle(self, user_id: str, state: UserState | None, event: Event) -> Step:
        """An event as both shells take it: the user's clock moves to the event's time,
        so timers due by then fire first; then the event; then any timer the event set
        that is already due. One step with everything, in that order."""
        at = event.at
        key = event_key(event.event_id)
        step = Step(state, rules_version=self.version)
        if state is not None:
            if seen(state, key, at):
                step.duplicate = True  # a duplicate moves no clock
                return step
            if at > state.latest_at and has_due(state, self.inactivity_rules, at):
                self._fire_due(user_id, state, at, step)
        self._process(user_id, state, event, at, key, step)
        after = step.state
        if after is not None and has_due(after, self.inactivity_rules, after.latest_at):
            self._fire_due(user_id, after, after.latest_at, step)
        return step

    def process(self, user_id: str, state: UserState | None, event: Event) -> Step:
        """Apply one input event of ``user_id`` and decide what it triggers."""
        at = event.at
        key = event_key(event.event_id)
        step = Step(state, rules_version=self.version)
        if state is not None and seen(state, key, at):
            step.duplicate = True
            return step
        self._process(user_id, state, event, at, key, step)
        return step

    def fire_due(self, user_id: str, state: UserState, now: float) -> Step:
        """Fire every timer of the user due at or before ``now``, earliest first; timers
        due at one time are one moment, decided in priority order."""
        step = Step(state, rules_version=self.version)
        self._fire_due(user_id, state, now, step)
        return step

    @staticmethod
    def is_duplicate(state: UserState, event: Event) -> bool:
        """Whether the user had an event with this id within 24 hours of its time."""
        return seen(state, event_key(event.event_id), event.at)

    def has_due(self, state: UserState, now: float) -> bool:
        """Whether any timer of the user is due at or before ``now``."""
        return has_due(state, self.inactivity_rules, now)

    def next_due(self, state: UserState) -> float | None:
        """When this user's earliest timer is due, for the shell's schedule."""
        return next_due(state, self.inactivity_rules)

    # --- one event, one moment of timers ---------------------------------------------

    def _process(
        self,
        user_id: str,
        state: UserState | None,
        event: Event,
        at: float,
        key: int,
        step: Step,
    ) -> None:
        """:meth:`process` of an event that is not a duplicate, at ``at`` (its time),
        into ``step``."""
        state = state if state is not None else UserState()
        qualified = event.qualified_type
        if qualified == "profile.erasure_requested":
            step.state = None
            step.record(erasure(user_id, event.event_id, at))
            return
        step.state = state
        remember_id(state, key, at)
        if at > state.latest_at:
            state.latest_at = at
            forget_old_ids(state.seen, at - DEDUPE_WINDOW)
        props = event.properties
        basket: tuple[str, ...] = ()
        if qualified == "purchase.order_completed":
            basket = tuple(item.sku for item in props.items)  # type: ignore[union-attr]
            step.attributions += attribute_order(user_id, state, props, at, self.attribution_window)
            self.copurchases.record_order(basket)
        elif qualified == "purchase.subscription_started":
            step.attributions += attribute_plan(user_id, state, props, at, self.attribution_window)
        self._facts[qualified](state, props, at)
        if state.last_seen_at == at and qualified in ACTIVITY:
            state.last_activity = (event.event_id, qualified)
        matches = self._match(state, event, qualified, at, basket)
        if matches or state.deferred:  # deferred matches are decided again at each event
            self.decider.decide(user_id, state, matches, step, state.latest_at)

    def _match(
        self, state: UserState, event: Event, qualified: str, at: float, basket: tuple[str, ...]
    ) -> list[Match]:
        """The matches to decide now of every rule the event concerns."""
        now = state.latest_at  # the user's clock (triggers.py)
        listeners = self.on_type.get(qualified)
        found = (
            match_listeners(listeners, state, event, qualified, at, now, basket)
            if listeners is not None
            else []
        )
        if qualified == "usage.quota_usage":
            found += match_quota(self.quota_rules, state, event, at, now)
        elif qualified == "support.nps_submitted":
            found += match_nps(self.nps_rules, state, event, at, now)
        deadlines = self.deadline_rules.get(qualified)
        if deadlines is not None:
            set_deadlines(deadlines, state, event, qualified, at, now)
        sides = self.not_followed.get(qualified)
        if sides is not None:
            not_followed.on_event(sides, state, event, qualified, now)
        return hold_delayed(state, found, at, now, basket) if found else found

    def _fire_due(self, user_id: str, state: UserState, now: float, step: Step) -> None:
        """:meth:`fire_due` into ``step``: moment by moment, earliest first (a timer's
        due time, or a deferred match's next look)."""
        while True:
            moment = next_due(state, self.inactivity_rules)
            if moment is None or moment > now:
                return
            matches = fire_at(state, self.inactivity_rules, self.by_id, moment)
            self.decider.decide(user_id, state, matches, step, moment)
