"""``triggerstream compare``: a backtest of a rules change on history.

The events are read and validated once and handed to two replays, one per rules file,
each with its own engines and states, so each side decides exactly as ``replay`` of its
file would. Neither writes records: a side counts its decisions per rule (by outcome and
reason) and its triggers per rule and channel, and keeps per user only what the users
who gain or lose a trigger are shown with: how many triggers they got, their first
emitted decision and their last one that was not emitted.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from triggerstream.core.engine import Engine, Step
from triggerstream.core.records import Decision
from triggerstream.events import InvalidEvent, decode_line, refuse_future
from triggerstream.replay import Outputs, Replay, ReplaySummary, read_lines
from triggerstream.rules.model import RulesFile

EXAMPLES = 3
"""Users shown with their decisions, of those who gain and of those who lose a trigger."""


@dataclass
class RuleCounts:
    """One rule's decisions and triggers under one rules file."""

    emitted: int = 0
    holdout: int = 0
    deferred: int = 0
    expired: int = 0
    suppressed: Counter[str] = field(default_factory=Counter)
    triggers: Counter[str] = field(default_factory=Counter)

    def to_json(self) -> dict[str, Any]:
        return {
            "emitted": self.emitted,
            "holdout": self.holdout,
            "deferred": self.deferred,
            "expired": self.expired,
            "suppressed": dict(self.suppressed.most_common()),
            "triggers": dict(self.triggers.most_common()),
        }


class Side(Replay):
    """The replay of one rules file, counting per rule instead of writing records."""

    def __init__(
        self,
        rules: RulesFile,
        partitions: int,
        now: float | None,
        max_future: dt.timedelta,
    ) -> None:
        super().__init__(Engine(rules), Outputs(triggers=None), partitions, now, max_future)
        self.rules = {rule.id: RuleCounts() for rule in rules.rules}
        self.triggered: Counter[str] = Counter()
        """Triggers per user, for the users who got one."""
        self.first_emitted: dict[str, Decision] = {}
        self.last_not_emitted: dict[str, Decision] = {}
        self.erased = 0

    def _take(self, user: str, step: Step) -> None:
        if step.state is None:
            self.states.pop(user, None)
        else:
            self.states[user] = step.state
        for decision in step.decisions:
            self._count_decision(user, decision)
        for trigger in step.triggers:
            self.rules[trigger.rule_id].triggers[trigger.channel] += 1
            self.triggered[user] += 1

    def _count_decision(self, user: str, decision: Decision) -> None:
        rule_id = decision.rule_id
        if rule_id is None:  # an erasure: no rule's
            self.erased += 1
            return
        counts = self.rules.setdefault(rule_id, RuleCounts())  # a rule gone: only expiries
        outcome = decision.outcome
        if outcome == "emitted":
            counts.emitted += 1
            self.first_emitted.setdefault(user, decision)
            return
        if outcome == "deferred":  # its final decision follows
            counts.deferred += 1
            return
        if outcome == "holdout":
            counts.holdout += 1
        elif outcome == "expired":
            counts.expired += 1
        elif outcome == "suppressed":
            counts.suppressed[decision.reason or "unknown"] += 1
        self.last_not_emitted[user] = decision

    def decisions_of(self, user: str) -> list[dict[str, Any]]:
        """What this side keeps of a user's decisions, as records, in time order."""
        kept = [
            decision
            for decision in (self.first_emitted.get(user), self.last_not_emitted.get(user))
            if decision is not None
        ]
        kept.sort(key=lambda decision: decision.at)
        return [orjson.loads(decision.to_json()) for decision in kept]


@dataclass
class Comparison:
    """What ``compare`` shows: per rule, both sides; the users who gain or lose a
    trigger; and what was read."""

    rules: list[dict[str, Any]]
    users_gained: dict[str, Any]
    users_lost: dict[str, Any]
    summary: ReplaySummary

    def to_json(self) -> dict[str, Any]:
        return {
            "rules": self.rules,
            "users_gained": self.users_gained,
            "users_lost": self.users_lost,
        }


class Compare:
    """Two sides fed the same events, each line read and validated once."""

    def __init__(
        self,
        old: RulesFile,
        new: RulesFile,
        partitions: int = 1,
        now: float | None = None,
        max_future: dt.timedelta = dt.timedelta(hours=1),
    ) -> None:
        self.old = Side(old, partitions, now, max_future)
        self.new = Side(new, partitions, now, max_future)
        self.order = list(self.old.rules) + [r for r in self.new.rules if r not in self.old.rules]

    def feed(self, lines: Iterable[tuple[str, int, bytes]]) -> None:
        """Process ``(file, line number, line)`` in order; the old side's summary
        counts what was read."""
        old, new = self.old, self.new
        summary = old.summary
        now, max_future = old.now, old.max_future
        for _source, _number, line in lines:
            summary.lines += 1
            try:
                event = refuse_future(decode_line(line)[1], now, max_future)
            except InvalidEvent as error:
                summary.invalid[error.code] += 1
                continue
            old.handle(event)
            new.handle(event)

    def finish(self, until: float | None = None) -> Comparison:
        """Fire what is due on both sides, and the comparison."""
        summary = self.old.finish(until)
        self.new.finish(until)
        rules = [
            {
                "rule_id": rule_id,
                "old": _side_json(self.old, rule_id),
                "new": _side_json(self.new, rule_id),
            }
            for rule_id in self.order
        ]
        gained = set(self.new.triggered) - set(self.old.triggered)
        lost = set(self.old.triggered) - set(self.new.triggered)
        return Comparison(rules, self._users(gained), self._users(lost), summary)

    def _users(self, users: set[str]) -> dict[str, Any]:
        """A count, and the first users by id with what each side kept of them."""
        return {
            "count": len(users),
            "examples": [
                {
                    "user_id": user,
                    "old": {
                        "triggers": self.old.triggered[user],
                        "decisions": self.old.decisions_of(user),
                    },
                    "new": {
                        "triggers": self.new.triggered[user],
                        "decisions": self.new.decisions_of(user),
                    },
                }
                for user in sorted(users)[:EXAMPLES]
            ],
        }


def _side_json(side: Side, rule_id: str) -> dict[str, Any] | None:
    counts = side.rules.get(rule_id)
    return None if counts is None else counts.to_json()


def run(
    old: RulesFile,
    new: RulesFile,
    paths: list[Path],
    until: float | None = None,
    progress: Callable[[int], None] | None = None,
    partitions: int = 1,
    now: float | None = None,
    max_future: dt.timedelta = dt.timedelta(hours=1),
) -> Comparison:
    """Compare two rules files over the same files of events."""
    began = time.perf_counter()
    compare = Compare(old, new, partitions, now, max_future)
    compare.feed(read_lines(paths, progress))
    comparison = compare.finish(until)
    comparison.summary.seconds = time.perf_counter() - began
    return comparison
