"""The suppression policy (docs/contract.md section 7): every check, in order, at one time.

The first check that fails names the reason: ``opted_out``, ``already_owned``,
``nothing_to_recommend``, ``detractor``, ``open_tickets``, ``critical_workflow``,
``snoozed``, ``dismissed``, ``cooldown``, ``frequency_cap``, ``holdout``, ``no_channel``.
``lower_priority`` is the engine's, for a match at a moment where another was sent.
"""

from __future__ import annotations

from dataclasses import dataclass

from triggerstream.core.caps import FrequencyCaps
from triggerstream.core.channels import ChannelRouter
from triggerstream.core.ids import bucket
from triggerstream.core.state import UserState
from triggerstream.core.summaries import span, when
from triggerstream.rules.model import Policy


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the policy says of one match: outcome, reason code, detail, channel."""

    outcome: str  # emitted | suppressed | holdout
    reason: str | None
    detail: str
    channel: str | None = None


@dataclass(frozen=True, slots=True)
class Candidate:
    """What the policy needs to know of a match besides the user's state."""

    rule_id: str
    offer_id: str
    product: str | None
    wants_items: bool
    items: tuple[str, ...]
    cooldown: float
    channels: list[str]


class SuppressionPolicy:
    def __init__(self, policy: Policy, families: dict[str, str] | None = None) -> None:
        """``families``: offer id -> its family, for the family caps."""
        self.policy = policy
        self.suppress = policy.suppress
        self.caps = FrequencyCaps(policy.frequency_caps, families)
        self.router = ChannelRouter(
            policy.in_app_session_timeout.total_seconds(), policy.quiet_hours, self.caps
        )
        self.dismiss_for = (
            policy.dismiss_cooldown.total_seconds() if policy.dismiss_cooldown else None
        )
        self.holdout_buckets = round(policy.holdout.percent * 100)

    def in_holdout(self, user_id: str) -> bool:
        """Deterministic per (salt, user): the same users every time, in every shell."""
        return (
            self.holdout_buckets > 0
            and bucket(self.policy.holdout.salt, user_id) < self.holdout_buckets
        )

    def judge(self, user_id: str, state: UserState, match: Candidate, at: float) -> Verdict:
        """Run every check in order at time ``at``; the first that fails names the reason."""
        suppress = self.suppress
        if state.offers_opt_out:
            return _suppressed("opted_out", "the user opted out of offers")
        if suppress.already_owned and match.product and state.owns(match.product):
            return _suppressed("already_owned", f"already owns {match.product}")
        if match.wants_items and not match.items:
            return _suppressed(
                "nothing_to_recommend",
                "no co-purchased or complementary item left that is not owned or in the order",
            )
        if (
            suppress.nps_at_most is not None
            and state.nps_score is not None
            and state.nps_score <= suppress.nps_at_most
        ):
            return _suppressed(
                "detractor",
                f"NPS {state.nps_score} (scores up to {suppress.nps_at_most} are held back)",
            )
        if (
            suppress.open_tickets_at_least is not None
            and len(state.open_tickets) >= suppress.open_tickets_at_least
        ):
            return _suppressed(
                "open_tickets",
                f"{len(state.open_tickets)} open ticket(s): {', '.join(state.open_tickets[:3])}",
            )
        if suppress.during_critical_workflow and state.critical_workflows:
            return _suppressed(
                "critical_workflow",
                "in critical workflow " + ", ".join(sorted(state.critical_workflows)),
            )
        if state.snooze_all_until is not None and at < state.snooze_all_until:
            return _suppressed(
                "snoozed", f"all offers snoozed until {when(state.snooze_all_until)}"
            )
        snoozed_until = state.snoozed.get(match.offer_id)
        if snoozed_until is not None and at < snoozed_until:
            return _suppressed(
                "snoozed", f"offer {match.offer_id} snoozed until {when(snoozed_until)}"
            )
        dismissed_at = state.dismissed.get(match.offer_id)
        if (
            dismissed_at is not None
            and self.dismiss_for is not None
            and dismissed_at <= at < dismissed_at + self.dismiss_for
        ):
            return _suppressed(
                "dismissed",
                f"offer {match.offer_id} dismissed {when(dismissed_at)}; held back "
                f"{span(self.dismiss_for)}",
            )
        last = state.last_trigger.get(match.rule_id)
        if last is not None and abs(at - last) < match.cooldown:
            return _suppressed(
                "cooldown",
                f"rule last triggered {when(last)}; cooldown {span(match.cooldown)}",
            )
        capped = self.caps.reached(state, at, None, match.offer_id)
        if capped is not None:
            return _suppressed("frequency_cap", capped)
        if self.in_holdout(user_id):
            return Verdict(
                "holdout",
                "holdout",
                f"in the {self.policy.holdout.percent:g}% global holdout: nothing sent",
            )
        channel, skipped = self.router.choose(match.channels, state, at, match.offer_id)
        if channel is None:
            return _suppressed("no_channel", "; ".join(skipped))
        detail = f"sent on {channel}" + (f" (skipped {'; '.join(skipped)})" if skipped else "")
        return Verdict("emitted", None, detail, channel)

    def ends(self, reason: str, state: UserState, match: Candidate, at: float) -> float | None:
        """When the block named ``reason`` ends by itself if nothing else happens: a
        snooze's, a cooldown's or a dismissal's end, a cap's window moving on, quiet
        hours ending. None when it waits for an event of the user (a ticket resolved, a
        session, consent) or never ends. Deferral's next look (deferral.py), explain's
        "until"."""
        if reason == "snoozed":
            ends = [
                until
                for until in (state.snooze_all_until, state.snoozed.get(match.offer_id))
                if until is not None and until > at
            ]
            return max(ends) if ends else None  # both snoozes must be over
        if reason == "cooldown":
            last = state.last_trigger.get(match.rule_id)
            return last + match.cooldown if last is not None else None
        if reason == "dismissed":
            dismissed_at = state.dismissed.get(match.offer_id)
            if dismissed_at is None or self.dismiss_for is None:
                return None
            return dismissed_at + self.dismiss_for
        if reason == "frequency_cap":
            return self.caps.frees_at(state, at, None, match.offer_id)
        if reason == "no_channel":
            ends = [
                until
                for channel in match.channels
                if (until := self.router.frees_at(channel, state, at, match.offer_id)) is not None
            ]
            return min(ends) if ends else None  # the first channel to free up
        return None

    def count(
        self, state: UserState, rule_id: str, verdict: Verdict, at: float, offer_id: str
    ) -> None:
        """An emitted or held-out decision counts toward the rule's cooldown and the caps."""
        state.last_trigger[rule_id] = max(at, state.last_trigger.get(rule_id, at))
        self.caps.count(state, at, verdict.channel, offer_id)


def _suppressed(reason: str, detail: str) -> Verdict:
    return Verdict("suppressed", reason, detail)
