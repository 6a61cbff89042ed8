"""Helpers for engine tests: write events like a product service would, replay them."""

from __future__ import annotations

import datetime as dt
import functools
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson
import yaml

from triggerstream.core.engine import Engine
from triggerstream.records import Attribution, Decision, Record, Trigger
from triggerstream.replay import Outputs, Replay, ReplaySummary
from triggerstream.rules.load import parse_rules
from triggerstream.rules.model import RulesFile

T0 = dt.datetime(2026, 11, 2, 9, 0, tzinfo=dt.UTC)
"""A Monday, 09:00 UTC (10:00 in Berlin)."""

TOPICS = {
    "usage": "usage-events",
    "purchase": "purchase-events",
    "support": "support-events",
    "profile": "profile-events",
    "feedback": "offer-feedback",
}
_ids = itertools.count(1)


def at(days: float = 0, hours: float = 0, minutes: float = 0, seconds: float = 0) -> dt.datetime:
    return T0 + dt.timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)


def event(
    qualified: str,
    user: str,
    when: dt.datetime,
    event_id: str | None = None,
    **properties: Any,
) -> dict[str, Any]:
    """One replay line: ``event("usage.feature_used", "maya", at(minutes=5), feature="skip")``."""
    short, name = qualified.split(".", 1)
    return {
        "topic": TOPICS[short],
        "event_id": event_id or f"e{next(_ids)}",
        "user_id": user,
        "type": name,
        "occurred_at": when.isoformat(),
        "properties": {k: _json(v) for k, v in properties.items()},
    }


def _json(value: Any) -> Any:
    return value.isoformat() if isinstance(value, dt.datetime) else value


def rules_file(
    rules: list[dict[str, Any]],
    offers: dict[str, Any] | None = None,
    policy: dict[str, Any] | None = None,
    **sections: Any,
) -> str:
    """A rules file with a default `premium` upsell offer and a policy that holds
    nothing back unless the test says so."""
    document: dict[str, Any] = {
        "offers": offers
        or {"premium": {"kind": "upsell", "product": "premium", "title": "Go Premium"}},
        "rules": rules,
        "policy": {"frequency_caps": [], **(policy or {})},
        **sections,
    }
    return yaml.safe_dump(document, sort_keys=False)


def rule(
    rule_id: str = "r", trigger: dict[str, Any] | None = None, **fields: Any
) -> dict[str, Any]:
    return {
        "id": rule_id,
        "offer": fields.pop("offer", "premium"),
        "trigger": trigger or {"event": {"type": "usage.feature_used"}},
        "channels": fields.pop("channels", ["in_app", "push", "email"]),
        **fields,
    }


@dataclass
class Result:
    triggers: list[Trigger] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)
    summary: ReplaySummary | None = None
    attributions: list[Attribution] = field(default_factory=list)
    trigger_lines: list[bytes] = field(default_factory=list)
    decision_lines: list[bytes] = field(default_factory=list)
    attribution_lines: list[bytes] = field(default_factory=list)

    def outcomes(self) -> list[tuple[str | None, str, str | None]]:
        """(rule, outcome, reason) of every decision, in order."""
        return [(d.rule_id, d.outcome, d.reason) for d in self.decisions]

    def reasons(self) -> list[str | None]:
        return [d.reason for d in self.decisions]


def replay(
    rules_text: str, lines: Sequence[dict[str, Any] | bytes], until: dt.datetime | None = None
) -> Result:
    """Run lines through the engine as `triggerstream replay` does."""
    result = Result()
    replaying = Replay(
        Engine(parsed(rules_text)),
        Outputs(
            triggers=result.trigger_lines.append,
            decisions=result.decision_lines.append,
            attributions=result.attribution_lines.append,
        ),
        # Read long after T0: these tests are about the engine, not about the wall clock.
        now=(T0 + dt.timedelta(days=3650)).timestamp(),
    )
    encoded = [line if isinstance(line, bytes) else orjson.dumps(line) for line in lines]
    replaying.feed(("test", n, line) for n, line in enumerate(encoded, start=1))
    result.summary = replaying.finish(until.timestamp() if until else None)
    result.triggers = [_read(Trigger, line) for line in result.trigger_lines]
    result.decisions = [_read(Decision, line) for line in result.decision_lines]
    result.attributions = [_read(Attribution, line) for line in result.attribution_lines]
    return result


RecordT = TypeVar("RecordT", bound=Record)


def _read(model: type[RecordT], line: bytes) -> RecordT:
    """A record line as its model, which must write the very same bytes again: the
    engine encodes records itself (triggerstream.core.records), the model is the
    contract."""
    record = model.model_validate_json(line)
    assert record.model_dump_json().encode() == line, line
    return record


@functools.lru_cache(maxsize=64)
def parsed(rules_text: str) -> RulesFile:
    """A rules file's text parsed once (0.02 s for the example's): the engines share it."""
    return parse_rules(rules_text)


def in_session(user: str, when: dt.datetime, **profile: Any) -> list[dict[str, Any]]:
    """A user with a profile, consent on every channel, and an open session."""
    return [
        event("profile.profile_updated", user, when, **profile),
        event("profile.consent_updated", user, when, channel="push", granted=True),
        event("profile.consent_updated", user, when, channel="email", granted=True),
        event("usage.session_started", user, when),
    ]
