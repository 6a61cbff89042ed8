"""The per-user engine: one event (or the clock) in, new state and decisions out.

    engine = Engine(rules)
    step = engine.process(user_id, state, event)     # an input event
    step = engine.fire_due(user_id, state, now)      # timers due at or before `now`

No I/O, no clock, no faust: the shells (replay, the worker) own files, topics, time and
storage, and both call exactly this, so they decide alike. The order inside ``process``:
drop a duplicate; update the user's facts; match every rule that listens to the event;
decide the matches of this moment in priority order.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from triggerstream.core import summaries
from triggerstream.core.conditions import compile_condition
from triggerstream.core.ids import bucket, decision_id, erasure_decision_id, event_key, trigger_id
from triggerstream.core.policy import Candidate, SuppressionPolicy, Verdict
from triggerstream.core.recommend import CoPurchaseCounts
from triggerstream.core.records import (
    Attribution,
    CausedBy,
    Decision,
    Offer,
    OfferItem,
    Personalization,
    Trigger,
    TriggerReason,
    utc,
)
from triggerstream.core.state import (
    MAX_LISTED,
    MAX_OWNED,
    MAX_TOUCHES,
    TIME_STATE_NAMES,
    Timer,
    Touch,
    UserState,
    nps_category,
    state_value,
)
from triggerstream.core.windows import add, total
from triggerstream.core.windows import count as window_count
from triggerstream.events import Event
from triggerstream.rules.model import Experiment, Rule, RulesFile

DAY = 86_400.0
DEDUPE_WINDOW = DAY
"""An event id seen for the same user within this much event time is a duplicate."""
CRITICAL_WORKFLOW_MAX_AGE = DAY
"""A critical workflow never completed stops holding offers back after this long."""

ACTIVITY = frozenset(
    {
        "usage.feature_used",
        "usage.locked_feature_clicked",
        "usage.workflow_started",
        "usage.workflow_completed",
        "usage.onboarding_step_completed",
        "usage.session_started",
        "usage.session_ended",
    }
)
"""Usage that shows the user is there: every usage event but quota_usage, which services
may send without the user (DESIGN section 6)."""

DEADLINE_FIELDS: dict[str, tuple[str, ...]] = {
    "trial_ends_at": ("purchase.trial_started",),
    "renews_at": ("purchase.subscription_started", "purchase.subscription_renewed"),
}
"""The event types that carry each deadline field."""


@dataclass(slots=True)
class Step:
    """What one call of the engine produced. ``state`` is None after an erasure."""

    state: UserState | None
    decisions: list[Decision] = field(default_factory=list)
    triggers: list[Trigger] = field(default_factory=list)
    attributions: list[Attribution] = field(default_factory=list)
    duplicate: bool = False


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


class Engine:
    """Decides offers for one user at a time from the rules file."""

    def __init__(self, rules: RulesFile, copurchases: CoPurchaseCounts | None = None) -> None:
        self.rules = rules
        self.copurchases = copurchases if copurchases is not None else CoPurchaseCounts()
        self.policy = SuppressionPolicy(rules.policy)
        self.compiled = [CompiledRule(rule, i, rules) for i, rule in enumerate(rules.rules)]
        self.by_id = {rule.id: rule for rule in self.compiled}
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
        self.attribution_window = rules.policy.attribution.window.total_seconds()
        self._facts: dict[str, Callable[[UserState, Any, float], None]] = {
            "usage.feature_used": _activity,
            "usage.quota_usage": _nothing,
            "usage.locked_feature_clicked": _activity,
            "usage.workflow_started": _workflow_started,
            "usage.workflow_completed": _workflow_completed,
            "usage.onboarding_step_completed": _onboarding_step,
            "usage.session_started": _session_started,
            "usage.session_ended": _session_ended,
            "purchase.order_completed": self._order_completed,
            "purchase.checkout_started": _nothing,
            "purchase.subscription_started": _subscription_started,
            "purchase.subscription_renewed": _subscription_renewed,
            "purchase.subscription_cancelled": _subscription_cancelled,
            "purchase.trial_started": _trial_started,
            "support.ticket_opened": _ticket_opened,
            "support.ticket_resolved": _ticket_resolved,
            "support.nps_submitted": _nps_submitted,
            "profile.profile_updated": _profile_updated,
            "profile.consent_updated": _consent_updated,
            "profile.preferences_updated": _preferences_updated,
            "feedback.offer_delivered": _nothing,
            "feedback.offer_shown": _nothing,
            "feedback.offer_clicked": _nothing,
            "feedback.offer_dismissed": _offer_dismissed,
            "feedback.offer_snoozed": _offer_snoozed,
            "feedback.unsubscribed": _unsubscribed,
        }

    # --- the entry points ------------------------------------------------------------

    def handle(self, user_id: str, state: UserState | None, event: Event) -> Step:
        """An event as both shells take it: the user's clock moves to the event's time,
        so timers due by then fire first; then the event; then any timer the event set
        that is already due. One step with everything, in that order."""
        at = event.at
        key = event_key(event.event_id)
        fired: Step | None = None
        if state is not None:
            if _seen(state, key, at):
                return Step(state, duplicate=True)  # a duplicate moves no clock
            if at > state.latest_at and self.has_due(state, at):
                fired = self.fire_due(user_id, state, at)
                state = fired.state
        step = self._process(user_id, state, event, at, key)
        if step.state is not None and self.has_due(step.state, step.state.latest_at):
            after = self.fire_due(user_id, step.state, step.state.latest_at)
            step.decisions += after.decisions
            step.triggers += after.triggers
        if fired is not None:
            step.decisions[:0] = fired.decisions
            step.triggers[:0] = fired.triggers
            step.attributions[:0] = fired.attributions
        return step

    def process(self, user_id: str, state: UserState | None, event: Event) -> Step:
        """Apply one input event of ``user_id`` and decide what it triggers."""
        at = event.at
        key = event_key(event.event_id)
        if state is not None and _seen(state, key, at):
            return Step(state, duplicate=True)
        return self._process(user_id, state, event, at, key)

    def _process(
        self, user_id: str, state: UserState | None, event: Event, at: float, key: int
    ) -> Step:
        """:meth:`process` of an event that is not a duplicate, at ``at`` (its time)."""
        state = state if state is not None else UserState()
        qualified = event.qualified_type
        if qualified == "profile.erasure_requested":
            return self._erase(user_id, event, at)
        state.seen[key] = at
        if at > state.latest_at:
            state.latest_at = at
            _forget_old_ids(state.seen, at - DEDUPE_WINDOW)
        props = event.properties
        step = Step(state)
        basket: tuple[str, ...] = ()
        if qualified == "purchase.order_completed":
            basket = tuple(item.sku for item in props.items)  # type: ignore[union-attr]
            step.attributions = self._attribute_order(user_id, state, props, at)
            self.copurchases.record_order(basket)
        elif qualified == "purchase.subscription_started":
            step.attributions = self._attribute_plan(user_id, state, props, at)
        self._facts[qualified](state, props, at)
        if state.last_seen_at == at and qualified in ACTIVITY:
            state.last_activity = (event.event_id, qualified)
        matches = self._match(user_id, state, event, qualified, at, basket)
        if matches:
            self._decide(user_id, state, matches, step)
        return step

    def fire_due(self, user_id: str, state: UserState, now: float) -> Step:
        """Fire every timer of the user due at or before ``now``, earliest first; timers
        due at one time are one moment, decided in priority order."""
        step = Step(state)
        while True:
            due = [timer for timer in self._timers(state) if timer.triggered_at() <= now]
            if not due:
                return step
            moment = min(timer.triggered_at() for timer in due)
            firing = [timer for timer in due if timer.triggered_at() == moment]
            state.timers = [timer for timer in state.timers if timer not in firing]
            matches = []
            for timer in firing:
                match = self._timer_match(state, timer)
                if match is not None:
                    matches.append(match)
            self._decide(user_id, state, matches, step)

    @staticmethod
    def is_duplicate(state: UserState, event: Event) -> bool:
        """Whether the user had an event with this id within 24 hours of its time."""
        return _seen(state, event_key(event.event_id), event.at)

    def has_due(self, state: UserState, now: float) -> bool:
        """Whether any timer of the user is due at or before ``now`` (cheap: on the
        path of every event)."""
        for timer in state.timers:
            if timer.triggered_at() <= now:
                return True
        seen = state.last_seen_at
        if seen is not None:
            for rule in self.inactivity_rules:
                if seen + rule.within <= now and state.inactivity_fired.get(rule.id) != seen:
                    return True
        return False

    def next_due(self, state: UserState) -> float | None:
        """When this user's earliest timer is due, for the shell's schedule."""
        return min((timer.triggered_at() for timer in self._timers(state)), default=None)

    def _timers(self, state: UserState) -> list[Timer]:
        """The stored timers, and an inactivity timer per rule for the current spell."""
        if not self.inactivity_rules or state.last_seen_at is None:
            return state.timers
        seen = state.last_seen_at
        cause_id, cause_type = state.last_activity or ("", "usage.unknown")
        timers = list(state.timers)
        for rule in self.inactivity_rules:
            if state.inactivity_fired.get(rule.id) == seen:
                continue
            span = rule.spec.for_.total_seconds()
            timers.append(
                Timer(
                    due=seen + span,
                    rule_id=rule.id,
                    kind="inactivity",
                    set_at=seen,
                    cause_id=cause_id,
                    cause_type=cause_type,
                    cause_at=seen,
                    facts={"last_seen_at": summaries.when(seen), "for": summaries.span(span)},
                )
            )
        return timers

    # --- matching --------------------------------------------------------------------

    def _match(
        self,
        user_id: str,
        state: UserState,
        event: Event,
        qualified: str,
        at: float,
        basket: tuple[str, ...],
    ) -> list[Match]:
        found: list[Match] = []
        props = event.properties
        # The user's clock: an event that arrives late is decided now, not in a past
        # the later events have already changed (sends, sessions, caps).
        now = state.latest_at
        for rule in self.on_type.get(qualified, ()):
            if not rule.where_holds(props):
                continue
            kind = rule.kind
            if kind == "event":
                if not rule.profile_holds(state):
                    continue
                facts: dict[str, Any] = {"type": qualified}
                summary = summaries.event_sentence(qualified, props)
            else:
                value = 1.0 if kind == "count" else float(getattr(props, rule.spec.field))
                entries = state.windows.get(rule.id)
                if entries is None:
                    entries = state.windows[rule.id] = []
                add(entries, at, value, rule.within)
                # The window ends at the user's clock: an event that arrives late counts
                # if it falls inside the last `within`, and one older than that changes
                # nothing now (no trigger for a moment long gone). Below the threshold,
                # or for a user the rule's profile excludes, nothing more is done.
                if kind == "count":
                    count = window_count(entries, now, rule.within)
                    if count < rule.at_least or not rule.profile_holds(state):
                        continue
                    facts = {"count": count, "within": rule.within_text}
                    summary = (
                        f"{count} {summaries.plural(rule.noun, count)} in the last "
                        f"{rule.within_text}"
                    )
                else:
                    count, summed = total(entries, now, rule.within)
                    if summed < rule.at_least or not rule.profile_holds(state):
                        continue
                    facts = {"sum": summed, "field": rule.spec.field, "events": count}
                    summary = (
                        f"{summaries.number(summed)} {rule.spec.field} over {count} "
                        f"{summaries.plural(rule.noun, count)} in the last "
                        f"{rule.within_text}"
                    )
            found.append(self._matched(rule, event, qualified, at, now, facts, summary, basket))
        if qualified == "usage.quota_usage":
            found += self._quota(state, event, at, now)
        elif qualified == "support.nps_submitted":
            score = props.score  # type: ignore[union-attr]
            for rule in self.nps_rules:
                low, high = rule.spec.at_least, rule.spec.at_most
                in_range = (low is None or score >= low) and (high is None or score <= high)
                if in_range and rule.profile_holds(state):
                    summary = f"NPS {score} ({nps_category(score)})"
                    found.append(
                        self._matched(
                            rule, event, qualified, at, now, {"score": score}, summary, ()
                        )
                    )
        self._set_deadlines(state, event, qualified, at, now)
        matches = []
        for match in found:
            if match.rule.delay > 0:
                self._set_timer(
                    state,
                    Timer(
                        due=now + match.rule.delay,
                        rule_id=match.rule.id,
                        kind="delay",
                        set_at=now,
                        cause_id=match.cause_id,
                        cause_type=match.cause_type,
                        cause_at=at,
                        facts={**match.facts, "summary": match.summary, "basket": list(basket)},
                    ),
                    replace=False,
                )
                continue
            matches.append(match)
        return matches

    def _matched(
        self,
        rule: CompiledRule,
        event: Event,
        qualified: str,
        at: float,
        now: float,
        facts: dict[str, Any],
        summary: str,
        basket: tuple[str, ...],
    ) -> Match:
        """A match of the event at ``at``, decided at the user's clock ``now``."""
        return Match(rule, now, event.event_id, qualified, at, None, facts, summary, basket)

    def _quota(self, state: UserState, event: Event, at: float, now: float) -> list[Match]:
        props: Any = event.properties
        if not _latest_word(state, f"quota.{props.resource}", at):
            return []  # an older reading, late: the newer one stands
        fraction = props.used / props.limit
        found = []
        for rule in self.quota_rules:
            if rule.spec.resource != props.resource:
                continue
            above = fraction >= rule.spec.at_least
            was_above = state.quota_above.get(rule.id, False)
            if above:
                state.quota_above[rule.id] = True
            else:
                state.quota_above.pop(rule.id, None)
            if above and not was_above and rule.profile_holds(state):
                facts = {
                    "resource": props.resource,
                    "used": props.used,
                    "limit": props.limit,
                    "fraction": round(fraction, 4),
                }
                summary = (
                    f"{props.resource} at {int(fraction * 100)}% of {summaries.number(props.limit)}"
                )
                found.append(
                    self._matched(rule, event, "usage.quota_usage", at, now, facts, summary, ())
                )
        return found

    def _set_deadlines(
        self, state: UserState, event: Event, qualified: str, at: float, now: float
    ) -> None:
        props: Any = event.properties
        for rule in self.deadline_rules.get(qualified, ()):
            field_name = rule.spec.field
            value = getattr(props, field_name)
            if value is None:
                continue
            end = value.timestamp()
            if state.deadline_fired.get(rule.id) == end:
                continue
            before = rule.spec.before.total_seconds()
            plan = getattr(props, "plan", None)
            self._set_timer(
                state,
                Timer(
                    due=end - before,
                    rule_id=rule.id,
                    kind="deadline",
                    set_at=now,
                    cause_id=event.event_id,
                    cause_type=qualified,
                    cause_at=at,
                    facts={
                        "field": field_name,
                        "value": summaries.when(end),
                        "plan": plan,
                        "before": summaries.span(before),
                    },
                ),
                replace=True,
            )

    @staticmethod
    def _set_timer(state: UserState, timer: Timer, replace: bool) -> None:
        if replace:
            state.timers = [
                t for t in state.timers if not (t.rule_id == timer.rule_id and t.kind == timer.kind)
            ]
        state.timers.append(timer)

    def _timer_match(self, state: UserState, timer: Timer) -> Match | None:
        rule = self.by_id.get(timer.rule_id)
        if rule is None:  # the rule left the rules file since the timer was set
            return None
        facts = dict(timer.facts)
        at = timer.triggered_at()
        basket: tuple[str, ...] = ()
        if timer.kind == "delay":
            summary = f"{facts.pop('summary')} ({summaries.span(timer.due - timer.set_at)} ago)"
            basket = tuple(facts.pop("basket", ()))
        else:
            # Once per spell and once per deadline value, whether the profile holds or not.
            if timer.kind == "inactivity":
                state.inactivity_fired[rule.id] = timer.set_at
            else:
                state.deadline_fired[rule.id] = dt.datetime.fromisoformat(
                    facts["value"]
                ).timestamp()
            if not rule.profile_holds(state):
                return None
            if timer.kind == "deadline":
                what = "trial" if facts["field"] == "trial_ends_at" else "subscription"
                plan = f" of {facts['plan']}" if facts.get("plan") else ""
                verb = "ends" if what == "trial" else "renews"
                left = dt.datetime.fromisoformat(facts["value"]).timestamp() - at
                summary = f"{what}{plan} {verb} {facts['value'][:10]} (in {summaries.span(left)})"
            else:
                summary = f"no activity for {facts['for']} (last seen {facts['last_seen_at']})"
        return Match(
            rule,
            at,
            timer.cause_id,
            timer.cause_type,
            timer.cause_at,
            timer.due,
            facts,
            summary,
            basket,
        )

    # --- deciding --------------------------------------------------------------------

    def _decide(self, user_id: str, state: UserState, matches: list[Match], step: Step) -> None:
        """Decide the matches of one moment in priority order (ties: file order)."""
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
            if verdict.outcome != "suppressed" and taken is not None:
                verdict = Verdict(
                    "suppressed",
                    "lower_priority",
                    f"rule {taken.id} (priority {taken.priority}) was chosen at this moment",
                )
            if verdict.outcome != "suppressed":
                taken = rule
                self.policy.record(state, rule.id, verdict, match.at)
            self._write(user_id, state, match, verdict, items, step)

    def _items(
        self, state: UserState, rule: CompiledRule, basket: tuple[str, ...]
    ) -> list[tuple[str, float]]:
        recommend = rule.offer.recommend
        if recommend is None:
            return []
        return self.copurchases.recommend(
            basket,
            self.rules.catalog.complements,
            exclude=set(state.owned),
            max_items=recommend.max_items,
        )

    def _write(
        self,
        user_id: str,
        state: UserState,
        match: Match,
        verdict: Verdict,
        items: list[tuple[str, float]],
        step: Step,
    ) -> None:
        rule = match.rule
        trigger = trigger_id(rule.id, user_id, match.cause_id, match.due)
        variant = rule.variant(user_id)
        experiment = rule.experiment.id if rule.experiment and variant else None
        at = utc(match.at)
        step.decisions.append(
            Decision(
                decision_id=decision_id(trigger),
                user_id=user_id,
                rule_id=rule.id,
                outcome=verdict.outcome,
                reason=verdict.reason,
                detail=f"{match.summary}: {verdict.detail}",
                trigger_id=trigger,
                at=at,
                channel=verdict.channel,
                experiment=experiment,
                variant=variant,
            )
        )
        if verdict.outcome in ("emitted", "holdout"):
            self._touch(
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
            )
        channel = verdict.channel
        if verdict.outcome != "emitted" or channel is None:  # emitted: always a channel
            return
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
        step.triggers.append(
            Trigger(
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
        )

    # --- attribution -----------------------------------------------------------------

    def _touch(self, state: UserState, touch: Touch) -> None:
        state.touches.append(touch)
        state.touches.sort(key=lambda t: t.at)
        horizon = state.touches[-1].at - self.attribution_window
        state.touches = [t for t in state.touches if t.at >= horizon][-MAX_TOUCHES:]

    def _credited(self, state: UserState, product: str, at: float) -> Touch | None:
        """The latest touch within the window before ``at`` whose offer covers
        ``product``: last-touch credit."""
        for touch in reversed(state.touches):
            inside = touch.at <= at and at - touch.at <= self.attribution_window
            if inside and product in touch.products:
                return touch
        return None

    def _attribute_order(
        self, user_id: str, state: UserState, props: Any, at: float
    ) -> list[Attribution]:
        credited = []
        for item in props.items:
            touch = self._credited(state, item.sku, at)
            if touch is not None:
                revenue = float(item.price) * item.quantity
                credited.append(
                    self._attribution(
                        user_id,
                        touch,
                        at,
                        revenue,
                        props.currency,
                        order_id=props.order_id,
                        sku=item.sku,
                    )
                )
        return credited

    def _attribute_plan(
        self, user_id: str, state: UserState, props: Any, at: float
    ) -> list[Attribution]:
        touch = self._credited(state, props.plan, at)
        if touch is None:
            return []
        revenue = float(props.price) if props.price is not None else 0.0
        return [self._attribution(user_id, touch, at, revenue, props.currency, plan=props.plan)]

    @staticmethod
    def _attribution(
        user_id: str,
        touch: Touch,
        at: float,
        revenue: float,
        currency: str | None,
        **purchase: str,
    ) -> Attribution:
        return Attribution(
            trigger_id=touch.trigger_id,
            user_id=user_id,
            rule_id=touch.rule_id,
            offer_id=touch.offer_id,
            channel=touch.channel,
            experiment=touch.experiment,
            variant=touch.variant,
            group=touch.group,
            revenue=round(revenue, 6),
            currency=currency,
            converted_at=utc(at),
            lag_seconds=round(at - touch.at, 6),
            **purchase,
        )

    def _erase(self, user_id: str, event: Event, at: float) -> Step:
        decision = Decision(
            decision_id=erasure_decision_id(user_id, event.event_id),
            user_id=user_id,
            rule_id=None,
            outcome="erased",
            reason=None,
            detail="erasure requested: every fact, window, timer, dedupe id and attribution "
            "candidate of the user was deleted",
            trigger_id=None,
            at=utc(at),
        )
        return Step(None, decisions=[decision])

    # --- facts that need the engine ------------------------------------------------

    def _order_completed(self, state: UserState, props: Any, at: float) -> None:
        skus = [item.sku for item in props.items]
        for sku in skus:
            _own(state, sku)
        state.orders_count += 1
        state.total_spent += float(props.total)


def _priority(match: Match) -> tuple[int, int]:
    return match.rule.sort_key()


def _seen(state: UserState, key: int, at: float) -> bool:
    """Whether the user had an event with this id key within 24 hours of ``at``."""
    seen_at = state.seen.get(key)
    return seen_at is not None and abs(at - seen_at) <= DEDUPE_WINDOW


def _forget_old_ids(seen: OrderedDict[int, float], horizon: float) -> None:
    """Drop ids older than the horizon from the front (oldest first, as they arrived):
    a few per event keeps the memory at 24 hours without rebuilding it."""
    for _ in range(4):
        if not seen or seen[next(iter(seen))] >= horizon:
            return
        seen.popitem(last=False)


# --- how each event type changes the user's facts ------------------------------------


def _nothing(state: UserState, props: Any, at: float) -> None:
    return


def _activity(state: UserState, props: Any, at: float) -> None:
    if state.last_seen_at is None or at > state.last_seen_at:
        state.last_seen_at = at


def _workflow_started(state: UserState, props: Any, at: float) -> None:
    _activity(state, props, at)
    if props.critical:
        _expire_workflows(state, at)
        state.critical_workflows[props.workflow] = at
        if len(state.critical_workflows) > MAX_LISTED:
            oldest = min(state.critical_workflows, key=state.critical_workflows.__getitem__)
            del state.critical_workflows[oldest]


def _workflow_completed(state: UserState, props: Any, at: float) -> None:
    _activity(state, props, at)
    state.critical_workflows.pop(props.workflow, None)
    _expire_workflows(state, at)


def _expire_workflows(state: UserState, at: float) -> None:
    for name, started in list(state.critical_workflows.items()):
        if at - started > CRITICAL_WORKFLOW_MAX_AGE:
            del state.critical_workflows[name]


def _onboarding_step(state: UserState, props: Any, at: float) -> None:
    _activity(state, props, at)
    if props.step not in state.onboarding_steps:
        state.onboarding_steps.append(props.step)
        del state.onboarding_steps[:-MAX_LISTED]


def _session_started(state: UserState, props: Any, at: float) -> None:
    _activity(state, props, at)
    state.session_open = True


def _session_ended(state: UserState, props: Any, at: float) -> None:
    _activity(state, props, at)
    state.session_open = False


def _own(state: UserState, product: str) -> None:
    if product in state.owned:
        state.owned.remove(product)
    state.owned.append(product)
    del state.owned[:-MAX_OWNED]


def _subscription_started(state: UserState, props: Any, at: float) -> None:
    _own(state, props.plan)
    state.plan = props.plan
    state.billing_period = props.billing_period
    state.trial_ends_at = None
    if props.renews_at is not None:
        state.renews_at = props.renews_at.timestamp()
    if props.price is not None:
        state.total_spent += float(props.price)


def _subscription_renewed(state: UserState, props: Any, at: float) -> None:
    _own(state, props.plan)
    state.plan = props.plan
    state.billing_period = props.billing_period
    if props.renews_at is not None:
        state.renews_at = props.renews_at.timestamp()


def _subscription_cancelled(state: UserState, props: Any, at: float) -> None:
    if props.plan in state.owned:
        state.owned.remove(props.plan)
    if state.plan == props.plan:
        state.plan = None
        state.renews_at = None
        state.billing_period = None


def _trial_started(state: UserState, props: Any, at: float) -> None:
    state.trial_ends_at = props.trial_ends_at.timestamp()


def _ticket_opened(state: UserState, props: Any, at: float) -> None:
    if props.ticket_id not in state.open_tickets:
        state.open_tickets.append(props.ticket_id)
        del state.open_tickets[:-MAX_LISTED]


def _ticket_resolved(state: UserState, props: Any, at: float) -> None:
    if props.ticket_id in state.open_tickets:
        state.open_tickets.remove(props.ticket_id)


def _nps_submitted(state: UserState, props: Any, at: float) -> None:
    if _latest_word(state, "nps", at):
        state.nps_score = props.score


def _profile_updated(state: UserState, props: Any, at: float) -> None:
    for name in ("first_name", "locale", "country", "timezone", "plan"):
        value = getattr(props, name)
        if value is not None:
            setattr(state, name, value)
    if props.attributes:
        state.attributes.update(props.attributes)


def _consent_updated(state: UserState, props: Any, at: float) -> None:
    if _latest_word(state, f"consent.{props.channel}", at):
        state.consent[props.channel] = props.granted


def _preferences_updated(state: UserState, props: Any, at: float) -> None:
    if props.offers_opt_out is not None and _latest_word(state, "offers_opt_out", at):
        state.offers_opt_out = props.offers_opt_out
    if props.snooze_all_until is not None and _latest_word(state, "snooze_all_until", at):
        state.snooze_all_until = props.snooze_all_until.timestamp()


def _offer_dismissed(state: UserState, props: Any, at: float) -> None:
    # An older dismissal delivered late does not shorten the dismiss cooldown.
    state.dismissed[props.offer_id] = max(at, state.dismissed.get(props.offer_id, at))


def _offer_snoozed(state: UserState, props: Any, at: float) -> None:
    state.snoozed[props.offer_id] = props.until.timestamp()


def _unsubscribed(state: UserState, props: Any, at: float) -> None:
    if _latest_word(state, f"consent.{props.channel}", at):
        state.consent[props.channel] = False


def _latest_word(state: UserState, fact: str, at: float) -> bool:
    """Whether a value of ``fact`` said at ``at`` is the user's latest word on it (not
    older than the one held; equal times: the later arrival). Out of order, a consent
    given before a withdrawal and delivered after it must not undo the withdrawal."""
    if state.said_at.get(fact, -math.inf) > at:
        return False
    state.said_at[fact] = at
    return True
