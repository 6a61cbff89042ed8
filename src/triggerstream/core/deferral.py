"""Deferral (docs/contract.md section 14): the right offer a little later instead of never.

A match of a rule with ``defer: {up_to}`` that the policy holds back for a reason that
ends by itself (:data:`DEFERRABLE`) waits in ``UserState.deferred``, one per rule, and is
decided again with the whole policy at every later moment of the user: each event, each
timer, and its own next look (``wake``: when its block ends by itself, or ``until``). It
ends with exactly one final decision:

- released: emitted or held out, with the trigger id it had at the match, dated the
  moment it goes;
- suppressed, when a block that does not end by itself holds it (bought meanwhile, opted
  out, dismissed, detractor);
- expired: still held back at ``until`` (the match plus ``up_to``), or replaced by a
  later match of its rule, or its rule gone from the rules file.

decide.py runs each moment (new and waiting matches together, in priority order); this
module says what waits, when it looks again, and the decisions of waiting and ending.
"""

from __future__ import annotations

from triggerstream.core.ids import decision_id, trigger_id
from triggerstream.core.policy import Verdict
from triggerstream.core.records import Decision, utc
from triggerstream.core.rule import CompiledRule, Match
from triggerstream.core.state import Deferred, UserState
from triggerstream.core.summaries import span, when

DEFERRABLE = frozenset(
    {
        "open_tickets",
        "critical_workflow",
        "snoozed",
        "frequency_cap",
        "no_channel",
        "lower_priority",
    }
)
"""The reasons that end by themselves, or with the user's next moments: a match held
back for one of these waits, if its rule defers."""


def defers(rule: CompiledRule, verdict: Verdict) -> bool:
    """Whether a new match of ``rule`` with this verdict waits instead of being lost."""
    return rule.defer_up_to > 0 and verdict.reason in DEFERRABLE and verdict.outcome == "suppressed"


def still_waits(waiting: Deferred, verdict: Verdict, at: float) -> bool:
    """Whether a waiting match decided again at ``at`` with this verdict waits on: held
    back for a reason that ends by itself, before its ``until``."""
    return verdict.outcome == "suppressed" and verdict.reason in DEFERRABLE and at < waiting.until


def next_look(ends: float | None, at: float, until: float) -> float:
    """When a match held back at ``at`` is decided again if no event of the user comes
    first: when its block ends by itself, else at ``until``. Always after ``at``."""
    return min(ends, until) if ends is not None and ends > at else until


def wait(
    user_id: str, state: UserState, match: Match, verdict: Verdict, ends: float | None
) -> Decision:
    """Keep a new match to decide again, and the ``deferred`` decision that says so."""
    rule = match.rule
    until = match.at + rule.defer_up_to
    reason = verdict.reason or "lower_priority"
    state.deferred.append(
        Deferred(
            rule_id=rule.id,
            matched_at=match.at,
            until=until,
            wake=next_look(ends, match.at, until),
            reason=reason,
            cause_id=match.cause_id,
            cause_type=match.cause_type,
            cause_at=match.cause_at,
            due=match.due,
            summary=match.summary,
            facts=dict(match.facts),
            basket=list(match.basket),
        )
    )
    trigger = trigger_id(rule.id, user_id, match.cause_id, match.due)
    ending = f"; the block ends {when(ends)}" if ends is not None and ends > match.at else ""
    return Decision(
        decision_id=decision_id(trigger, "deferred"),
        user_id=user_id,
        rule_id=rule.id,
        outcome="deferred",
        reason=reason,
        detail=f"{match.summary}: {verdict.detail}; deferred: decided again at the user's "
        f"next moments, at most {span(rule.defer_up_to)} (until {when(until)}){ending}",
        trigger_id=trigger,
        at=utc(match.at),
    )


def look_again(waiting: Deferred, verdict: Verdict, ends: float | None, at: float) -> None:
    """A waiting match held back again at ``at``: its latest reason, its next look."""
    waiting.reason = verdict.reason or waiting.reason
    waiting.wake = next_look(ends, at, waiting.until)


def again(rule: CompiledRule, waiting: Deferred, at: float) -> Match:
    """A waiting match, to decide again at ``at`` with the other matches of that moment."""
    return Match(
        rule,
        at,
        waiting.cause_id,
        waiting.cause_type,
        waiting.cause_at,
        waiting.due,
        dict(waiting.facts),
        waiting.summary,
        tuple(waiting.basket),
        waiting,
    )


def since(waiting: Deferred) -> str:
    """What a final decision of a waiting match adds to its detail."""
    return f" (deferred {when(waiting.matched_at)}, last held back: {waiting.reason})"


def expired(user_id: str, waiting: Deferred, at: float, why: str) -> Decision:
    """The final decision of a waiting match that was never let through."""
    trigger = trigger_id(waiting.rule_id, user_id, waiting.cause_id, waiting.due)
    return Decision(
        decision_id=decision_id(trigger),
        user_id=user_id,
        rule_id=waiting.rule_id,
        outcome="expired",
        reason=waiting.reason,
        detail=f"{waiting.summary}: {why}{since(waiting)}",
        trigger_id=trigger,
        at=utc(at),
    )


def take_ended(
    user_id: str,
    state: UserState,
    rules: dict[str, CompiledRule],
    new: list[Match],
    now: float,
) -> tuple[list[Match], list[Decision]]:
    """The waiting matches to decide again at ``now``, and the decisions of those that
    end without the policy: replaced by a new match of their rule at this moment, their
    rule gone from the rules file, or (never, when the shell fires every look) past
    their ``until``. Those leave the state."""
    replaced = {match.rule.id: match.at for match in new}
    waiting_now: list[Match] = []
    ended: list[Decision] = []
    kept: list[Deferred] = []
    for waiting in state.deferred:
        rule = rules.get(waiting.rule_id)
        if waiting.rule_id in replaced:
            at = replaced[waiting.rule_id]
            ended.append(expired(user_id, waiting, at, "replaced by a later match"))
        elif rule is None:
            ended.append(expired(user_id, waiting, now, "its rule left the rules file"))
        elif now > waiting.until:
            ended.append(
                expired(user_id, waiting, waiting.until, f"still held back after {waiting.reason}")
            )
        else:
            kept.append(waiting)
            waiting_now.append(again(rule, waiting, now))
    state.deferred = kept
    return waiting_now, ended
