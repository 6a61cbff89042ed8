"""Deciding the matches of one moment: the policy judges each in priority order, and
what it decides is recorded with everything it leaves behind.

At one moment (an event, or timers due at one time) at most one offer goes out: the
first match, by priority then file order, that the policy lets through; every other
match is suppressed as ``lower_priority``. Every match gets a decision record.
"""

from __future__ import annotations

import datetime as dt

from triggerstream.core import attribution, deferral
from triggerstream.core.ids import decision_id, erasure_decision_id, trigger_id
from triggerstream.core.policy import Candidate, SuppressionPolicy, Verdict
from triggerstream.core.recommend import CoPurchaseCounts
from triggerstream.core.records import (
    CausedBy,
    Decision,
    Offer,
    OfferItem,
    Personalization,
    Trigger,
    TriggerReason,
    utc,
)
from triggerstream.core.rule import CompiledRule, Match
from triggerstream.core.state import Touch, UserState
from triggerstream.core.step import Step
from triggerstream.rules.model import RulesFile


class Decider:
    """The policy applied to matches, and their decisions recorded."""

    def __init__(
        self, rules: RulesFile, policy: SuppressionPolicy, copurchases: CoPurchaseCounts
    ) -> None:
        self.rules = rules
        self.policy = policy
        self.copurchases = copurchases
        self.attribution_window = rules.policy.attribution.window.total_seconds()
        self.rules_by_id: dict[str, CompiledRule] = {}
        """The compiled rules by id (the engine's), for the deferred matches' rules."""

    def decide(
        self, user_id: str, state: UserState, matches: list[Match], step: Step, now: float
    ) -> None:
        """Decide the matches of the moment ``now`` in priority order (ties: file order),
        with the deferred matches waiting then (deferral.py)."""
        if state.deferred:
            again, ended = deferral.take_ended(user_id, state, self.rules_by_id, matches, now)
            for decision in ended:
                step.record(decision)
            matches = matches + again
        taken: CompiledRule | None = None
        if len(matches) > 1:
            matches = sorted(matches, key=_priority)
        for match in matches:
            rule = match.rule
            items = self._items(state, rule, match.basket)
            candidate = (
                Candidate(
                    rule_id=rule.id,
                    offer_id=rule.offer_id,
                    product=rule.offer.product,
                    wants_items=True,
                    items=tuple(sku for sku, _ in items),
                    cooldown=rule.cooldown,
                    channels=rule.channels,
                )
                if rule.wants_items
                else rule.candidate
            )
            verdict = self.policy.judge(user_id, state, candidate, match.at)
            served = False
            if verdict.outcome != "suppressed" and taken is not None:
                served = taken.offer_id == rule.offer_id
                verdict = Verdict(
                    "suppressed",
                    "lower_priority",
                    f"rule {taken.id} (priority {taken.priority}) was chosen at this moment"
                    + (", with the same offer" if served else ""),
                )
            if verdict.outcome != "suppressed":
                taken = rule
            if (match.deferred is not None or rule.defer_up_to) and self._waits(
                user_id, state, match, verdict, candidate, step, served
            ):
                continue
            self._conclude(user_id, state, match, verdict, items, step)

    def _waits(
        self,
        user_id: str,
        state: UserState,
        match: Match,
        verdict: Verdict,
        candidate: Candidate,
        step: Step,
        served: bool,
    ) -> bool:
        """Deferral (deferral.py): whether the match waits, or ended expired. A new match
        held back for a reason that ends by itself starts to wait; a waiting one held back
        so again waits on, or expires at its ``until``. Else the verdict is concluded. A
        match that lost its moment to its own offer (``served``) has nothing to wait for."""
        waiting = match.deferred
        reason = verdict.reason or ""
        if served:
            if waiting is not None:
                state.deferred.remove(waiting)
            return False
        if waiting is None:
            if not deferral.defers(match.rule, verdict):
                return False
            ends = self.policy.ends(reason, state, candidate, match.at)
            step.record(deferral.wait(user_id, state, match, verdict, ends))
            return True
        if deferral.still_waits(waiting, verdict, match.at):
            ends = self.policy.ends(reason, state, candidate, match.at)
            deferral.look_again(waiting, verdict, ends, match.at)
            return True
        state.deferred.remove(waiting)
        if reason not in deferral.DEFERRABLE:
            return False  # released, or suppressed for good: concluded with its trigger id
        waiting.reason = reason  # held back at its ``until``
        step.record(
            deferral.expired(user_id, waiting, match.at, f"still held back: {verdict.detail}")
        )
        return True

    def _items(
        self, state: UserState, rule: CompiledRule, basket: tuple[str, ...]
    ) -> list[tuple[str, float]]:
        """The recommended items of a cross-sell offer (none for any other)."""
        recommend = rule.offer.recommend
        if recommend is None:
            return []
        return self.copurchases.recommend(
            basket,
            self.rules.catalog.complements,
            exclude=set(state.owned),
            max_items=recommend.max_items,
        )

    def _conclude(
        self,
        user_id: str,
        state: UserState,
        match: Match,
        verdict: Verdict,
        items: list[tuple[str, float]],
        step: Step,
    ) -> None:
        """What a verdict leaves behind. Emitted or held out, it counts toward the rule's
        cooldown and the caps and is a touch a later purchase may be credited to; every
        verdict is recorded as a decision, an emitted one with the trigger it sends."""
        rule = match.rule
        trigger = trigger_id(rule.id, user_id, match.cause_id, match.due)
        variant = rule.variant(user_id)
        experiment = rule.experiment.id if rule.experiment and variant else None
        if verdict.outcome != "suppressed":
            self.policy.count(state, rule.id, verdict, match.at, rule.offer_id)
            attribution.remember(
                state,
                Touch(
                    at=match.at,
                    trigger_id=trigger,
                    rule_id=rule.id,
                    offer_id=rule.offer_id,
                    channel=verdict.channel,
                    experiment=experiment,
                    variant=variant,
                    group="treated" if verdict.outcome == "emitted" else "holdout",
                    products=[p for p in (rule.offer.product, *(sku for sku, _ in items)) if p],
                ),
                self.attribution_window,
            )
        at = utc(match.at)
        decision = Decision(
            decision_id=decision_id(trigger),
            user_id=user_id,
            rule_id=rule.id,
            outcome=verdict.outcome,
            reason=verdict.reason,
            detail=f"{match.summary}: {verdict.detail}"
            + (deferral.since(match.deferred) if match.deferred is not None else ""),
            trigger_id=trigger,
            at=at,
            channel=verdict.channel,
            experiment=experiment,
            variant=variant,
        )
        channel = verdict.channel
        if verdict.outcome != "emitted" or channel is None:  # emitted: always a channel
            step.record(decision)
            return
        step.record(
            decision,
            _trigger(user_id, state, match, channel, trigger, items, experiment, variant, at),
        )


def _trigger(
    user_id: str,
    state: UserState,
    match: Match,
    channel: str,
    trigger: str,
    items: list[tuple[str, float]],
    experiment: str | None,
    variant: str | None,
    at: dt.datetime,
) -> Trigger:
    """The trigger an emitted decision sends: the rule's offer, with the overrides of
    the user's experiment variant, the facts that matched and the user's personalization."""
    rule = match.rule
    offer = rule.offer
    title, benefits = offer.title, offer.benefits
    discount, expires_after = offer.discount_percent, offer.expires_after
    if rule.experiment and variant:
        chosen = rule.experiment.variants[variant]
        title = chosen.title if chosen.title is not None else title
        benefits = chosen.benefits if chosen.benefits is not None else benefits
        if chosen.discount_percent is not None:
            discount = chosen.discount_percent
        if chosen.expires_after is not None:
            expires_after = chosen.expires_after
    return Trigger(
        trigger_id=trigger,
        user_id=user_id,
        rule_id=rule.id,
        offer=Offer(
            id=rule.offer_id,
            kind=offer.kind,
            product=offer.product,
            title=title,
            benefits=list(benefits),
            discount_percent=float(discount),
            expires_at=at + expires_after,
            items=[OfferItem(sku=sku, score=float(score)) for sku, score in items],
        ),
        channel=channel,
        experiment=experiment,
        variant=variant,
        reason=TriggerReason(summary=match.summary, facts=match.facts),
        personalization=Personalization(
            first_name=state.first_name,
            locale=state.locale,
            country=state.country,
            plan=state.plan,
        ),
        caused_by=CausedBy(
            event_id=match.cause_id,
            type=match.cause_type,
            occurred_at=utc(match.cause_at),
        ),
        triggered_at=at,
        emitted_at=at,
    )


def erasure(user_id: str, event_id: str, at: float) -> Decision:
    """The decision an erasure request leaves: the only record of the user after it."""
    return Decision(
        decision_id=erasure_decision_id(user_id, event_id),
        user_id=user_id,
        rule_id=None,
        outcome="erased",
        reason=None,
        detail="erasure requested: every fact, window, timer, dedupe id and attribution "
        "candidate of the user was deleted",
        trigger_id=None,
        at=utc(at),
    )


def _priority(match: Match) -> tuple[int, int]:
    return match.rule.sort_key()
