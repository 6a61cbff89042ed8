"""Frequency caps: every cap of the policy is enforced here, and the sends they count kept.

A cap without a channel holds back any offer (reason ``frequency_cap``); a cap on a
channel takes only that channel out of the walk (channels.py), so another may be used.
A cap on a family (docs/contract.md section 13) does the same, for the offers of that
family only, counting only their sends. Every cap counts ``UserState.sent``: (time,
channel, offer) of each emitted or held-out decision, kept for the longest cap. The
offer, not its family, is kept: a rules change that regroups offers applies to the
sends already made.
"""

from __future__ import annotations

from triggerstream.core.state import UserState
from triggerstream.core.summaries import span
from triggerstream.core.windows import count_in
from triggerstream.rules.model import FrequencyCap

Sent = tuple[float, str | None, str | None]


class FrequencyCaps:
    def __init__(self, caps: list[FrequencyCap], families: dict[str, str] | None = None) -> None:
        """``families``: offer id -> its family (``RulesFile.families``)."""
        families = families or {}
        self.overall = [cap for cap in caps if cap.channel is None and cap.family is None]
        self.on_channel = [cap for cap in caps if cap.channel is not None and cap.family is None]
        self.members: dict[str, frozenset[str]] = {
            family: frozenset(offer for offer, its in families.items() if its == family)
            for family in {cap.family for cap in caps if cap.family is not None}
        }
        self.of_offer: dict[str, list[FrequencyCap]] = {}
        """offer id -> the family caps that hold it back (none for most offers)."""
        for cap in caps:
            if cap.family is not None:
                for offer in self.members[cap.family]:
                    self.of_offer.setdefault(offer, []).append(cap)
        self.longest = max((cap.per.total_seconds() for cap in caps), default=0.0)

    def reached(
        self,
        state: UserState,
        at: float,
        channel: str | None = None,
        offer: str | None = None,
    ) -> str | None:
        """Why one more send of ``offer`` at ``at`` would break a cap, or None if none:
        the caps on ``channel`` when one is given, else the caps on every offer; and
        those of the offer's family."""
        if channel is None:
            for cap in self.overall:
                per = cap.per.total_seconds()
                sent = count_in(state.sent, at, per, None)
                if sent >= cap.max:
                    return (
                        f"{sent} offer(s) in the last {span(per)} (cap {cap.max} per {span(per)})"
                    )
        else:
            for cap in self.on_channel:
                if cap.channel == channel:
                    per = cap.per.total_seconds()
                    if count_in(state.sent, at, per, channel) >= cap.max:
                        return f"cap of {cap.max} per {span(per)} reached"
        if offer is not None and offer in self.of_offer:
            for cap in self.of_offer[offer]:
                if cap.channel == channel and len(self._inside(state, at, cap)) >= cap.max:
                    per = cap.per.total_seconds()
                    return f"family {cap.family}: {cap.max} per {span(per)} reached"
        return None

    def frees_at(
        self,
        state: UserState,
        at: float,
        channel: str | None = None,
        offer: str | None = None,
    ) -> float | None:
        """When every cap that :meth:`reached` would name at ``at`` lets one more send
        through again (the caps on ``channel``, or on every offer, and those of the
        offer's family), if no send comes meanwhile; None if none is reached."""
        caps = [
            cap
            for cap in (self.overall if channel is None else self.on_channel)
            if cap.channel == channel
        ]
        caps += [cap for cap in self.of_offer.get(offer or "", []) if cap.channel == channel]
        free: float | None = None
        for cap in caps:
            inside = self._inside(state, at, cap)
            if len(inside) >= cap.max:
                # The window (t - per, t] holds fewer than max once the oldest sends
                # beyond max - 1 are at or before t - per.
                frees = sorted(inside)[len(inside) - cap.max] + cap.per.total_seconds()
                free = frees if free is None else max(free, frees)
        return free

    def _inside(self, state: UserState, at: float, cap: FrequencyCap) -> list[float]:
        """The times of the sends that ``cap`` counts in its window ending at ``at``."""
        start = at - cap.per.total_seconds()
        offers = self.members.get(cap.family) if cap.family is not None else None
        return [
            when
            for when, sent_on, offer in state.sent
            if start < when <= at
            and (cap.channel is None or sent_on == cap.channel)
            and (offers is None or (offer is not None and offer in offers))
        ]

    def count(self, state: UserState, at: float, channel: str | None, offer: str) -> None:
        """A send of ``offer`` at ``at`` (on ``channel``; None for a held-out decision)
        counts toward every cap; sends older than the longest cap are forgotten."""
        state.sent.append((at, channel, offer))
        # By time alone: two sends at one time may have a channel and None.
        state.sent.sort(key=_time)
        horizon = state.sent[-1][0] - self.longest
        if state.sent[0][0] <= horizon:
            state.sent = [entry for entry in state.sent if entry[0] > horizon]


def _time(entry: Sent) -> float:
    return entry[0]
