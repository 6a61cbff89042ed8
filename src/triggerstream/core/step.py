"""What one call of the engine produced: the user's new state and the records to send."""

from __future__ import annotations

from dataclasses import dataclass, field

from triggerstream.core.records import Attribution, Decision, Trigger
from triggerstream.core.state import UserState


@dataclass(slots=True)
class Step:
    """What one call of the engine produced. ``state`` is None after an erasure."""

    state: UserState | None
    decisions: list[Decision] = field(default_factory=list)
    triggers: list[Trigger] = field(default_factory=list)
    attributions: list[Attribution] = field(default_factory=list)
    duplicate: bool = False
    rules_version: str | None = None
    """The version of the rules deciding, stamped on every decision recorded."""

    def record(self, decision: Decision, trigger: Trigger | None = None) -> None:
        """A decision is recorded here and nowhere else, whatever made it (a match of an
        event, a timer, an erasure), with the trigger it sends if it was emitted."""
        decision.rules_version = self.rules_version
        self.decisions.append(decision)
        if trigger is not None:
            self.triggers.append(trigger)
