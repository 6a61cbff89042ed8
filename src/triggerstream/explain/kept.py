"""The decisions a user's state keeps, for a view with no decision log (the worker's
inspector, docs/contract.md section 16).

The state keeps each emitted and held-out decision within the attribution window before
the latest of them (its touches, ``MAX_TOUCHES`` at most): a purchase may be credited to
it. Those are
rebuilt here as decision records of section 8, with the ids, rule, outcome, channel,
experiment, variant and time the decision had. What the state does not keep is said
rather than guessed: suppressed decisions, each decision's detail (the state keeps
its offer), and the version of the rules that made it (``rules_version`` is null).
"""

from __future__ import annotations

from typing import Any

import orjson

from triggerstream.core.ids import decision_id
from triggerstream.core.records import Decision, utc
from triggerstream.core.state import MAX_TOUCHES, UserState
from triggerstream.core.summaries import span


def kept_decisions(user_id: str, state: UserState) -> list[dict[str, Any]]:
    """The state's emitted and held-out decisions, oldest first, as decision records
    (with the ``offer_id`` they were for)."""
    kept = []
    for touch in state.touches:
        emitted = touch.group == "treated"
        record = orjson.loads(
            Decision(
                decision_id=decision_id(touch.trigger_id),
                user_id=user_id,
                rule_id=touch.rule_id,
                outcome="emitted" if emitted else "holdout",
                reason=None if emitted else "holdout",
                detail=f"offer {touch.offer_id} (the state keeps the offer, not the detail)",
                trigger_id=touch.trigger_id,
                at=utc(touch.at),
                channel=touch.channel,
                experiment=touch.experiment,
                variant=touch.variant,
            ).to_json()
        )
        record["offer_id"] = touch.offer_id
        kept.append(record)
    return kept


def what_is_kept(attribution_window: float) -> str:
    """The words that say which decisions :func:`kept_decisions` gives."""
    return (
        "the emitted and held-out decisions the user's state keeps for attribution: "
        f"those within {span(attribution_window)} (the attribution window) before the "
        f"latest of them, {MAX_TOUCHES} at most; suppressed decisions are not kept, "
        "and each decision's detail names only its offer"
    )
