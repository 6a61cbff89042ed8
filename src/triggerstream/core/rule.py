"""A rule compiled for the engine, and a match of it waiting for its decision.

Conditions are compiled to closures and durations turned to seconds once, when the rules
file is loaded, so that matching an event only calls and compares.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from triggerstream.core import summaries
from triggerstream.core.conditions import compile_condition
from triggerstream.core.ids import bucket
from triggerstream.core.policy import Candidate
from triggerstream.core.state import TIME_STATE_NAMES, Deferred, UserState, state_value
from triggerstream.rules.model import Experiment, Rule, RulesFile


@dataclass(slots=True)
class Match:
    """A rule match waiting for its decision."""

    rule: CompiledRule
    at: float
    cause_id: str
    cause_type: str
    cause_at: float
    due: float | None
    facts: dict[str, Any]
    summary: str
    basket: tuple[str, ...] = ()
    deferred: Deferred | None = None
    """The waiting match this decides again (deferral.py), None for a new match."""


class CompiledRule:
    """A rule with its conditions compiled and its durations in seconds."""

    def __init__(self, rule: Rule, order: int, rules: RulesFile) -> None:
        self.rule = rule
        self.id = rule.id
        self.order = order
        self.offer_id = rule.offer
        self.offer = rules.offers[rule.offer]
        self.kind = rule.trigger.kind
        self.spec: Any = rule.trigger.spec
        self.type: str | None = getattr(self.spec, "type", None)
        self.priority = rule.priority
        self.cooldown = rule.cooldown.total_seconds()
        self.delay = rule.delay.total_seconds()
        self.defer_up_to = rule.defer.up_to.total_seconds() if rule.defer else 0.0
        """How long a match held back by a block that ends by itself may wait (0: not)."""
        self.channels: list[str] = list(rule.channels)
        self.where: list[tuple[str, Callable[[Any], bool]]] = [
            (name, compile_condition(condition))
            for name, condition in getattr(self.spec, "where", {}).items()
        ]
        self.profile: list[tuple[str, Callable[[Any], bool]]] = [
            (name, compile_condition(condition, is_time=name in TIME_STATE_NAMES))
            for name, condition in rule.profile.items()
        ]
        self.within = (
            self.spec.within.total_seconds()
            if hasattr(self.spec, "within")
            else self.spec.for_.total_seconds()
            if self.kind == "inactivity"
            else 0.0
        )
        """The window of a count or sum, the span of an inactivity rule, in seconds."""
        self.within_text = summaries.span(self.within)
        self.at_least: float = getattr(self.spec, "at_least", None) or 0.0
        self.experiment: Experiment | None = next(
            (e for e in rules.experiments if e.rule == rule.id), None
        )
        self.noun = (
            summaries.noun_for(self.type, getattr(self.spec, "where", {})) if self.type else ""
        )
        self.candidate = Candidate(
            rule_id=self.id,
            offer_id=self.offer_id,
            product=self.offer.product,
            wants_items=False,
            items=(),
            cooldown=self.cooldown,
            channels=self.channels,
        )
        """What the policy judges of a match, for an offer without recommended items."""

    def sort_key(self) -> tuple[int, int]:
        return (-self.priority, self.order)

    @property
    def wants_items(self) -> bool:
        return self.offer.recommend is not None

    # Loops, not all() over a generator: these run for every event a rule listens to.
    def where_holds(self, properties: Any) -> bool:
        for name, check in self.where:  # noqa: SIM110
            if not check(getattr(properties, name, None)):
                return False
        return True

    def profile_holds(self, state: UserState) -> bool:
        for name, check in self.profile:  # noqa: SIM110
            if not check(state_value(state, name)):
                return False
        return True

    def variant(self, user_id: str) -> str | None:
        """The experiment variant of this user, by weight, deterministic per user."""
        if self.experiment is None:
            return None
        point = bucket(self.experiment.id, user_id, 100)
        cumulative = 0
        for name, variant in self.experiment.variants.items():
            cumulative += variant.weight
            if point < cumulative:
                return name
        return None
