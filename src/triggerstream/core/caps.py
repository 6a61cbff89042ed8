"""Frequency caps: every cap of the policy is enforced here, and the sends they count kept.

A cap without a channel holds back any offer (reason ``frequency_cap``); a cap on a
channel takes only that channel out of the walk (channels.py), so another may be used.
Both count the same sends: ``UserState.sent``, (time, channel) of each emitted or
held-out decision, kept for the longest cap.
"""

from __future__ import annotations

from triggerstream.core.state import UserState
from triggerstream.core.summaries import span
from triggerstream.core.windows import count_in
from triggerstream.rules.model import FrequencyCap


class FrequencyCaps:
    def __init__(self, caps: list[FrequencyCap]) -> None:
        self.overall = [cap for cap in caps if cap.channel is None]
        self.on_channel = [cap for cap in caps if cap.channel is not None]
        self.longest = max((cap.per.total_seconds() for cap in caps), default=0.0)

    def reached(self, state: UserState, at: float, channel: str | None = None) -> str | None:
        """Why one more send at ``at`` would break a cap, or None if none: the caps on
        ``channel`` when one is given, else the caps on every offer."""
        if channel is None:
            for cap in self.overall:
                per = cap.per.total_seconds()
                sent = count_in(state.sent, at, per, None)
                if sent >= cap.max:
                    return (
                        f"{sent} offer(s) in the last {span(per)} (cap {cap.max} per {span(per)})"
                    )
            return None
        for cap in self.on_channel:
            if cap.channel == channel:
                per = cap.per.total_seconds()
                if count_in(state.sent, at, per, channel) >= cap.max:
                    return f"cap of {cap.max} per {span(per)} reached"
        return None

    def frees_at(self, state: UserState, at: float, channel: str | None = None) -> float | None:
        """When every cap that :meth:`reached` would name at ``at`` lets one more send
        through again (the caps on ``channel``, or on every offer), if no send comes
        meanwhile; None if none is reached. Read-only: for ``explain``."""
        caps = (
            self.overall
            if channel is None
            else [cap for cap in self.on_channel if cap.channel == channel]
        )
        free: float | None = None
        for cap in caps:
            per = cap.per.total_seconds()
            start = at - per
            inside = [
                when
                for when, sent_on in state.sent
                if start < when <= at and (channel is None or sent_on == channel)
            ]
            if len(inside) >= cap.max:
                # The window (t - per, t] holds fewer than max once the oldest sends
                # beyond max - 1 are at or before t - per.
                frees = sorted(inside)[len(inside) - cap.max] + per
                free = frees if free is None else max(free, frees)
        return free

    def count(self, state: UserState, at: float, channel: str | None) -> None:
        """A send at ``at`` (on ``channel``; None for a held-out decision) counts toward
        every cap; sends older than the longest cap are forgotten."""
        state.sent.append((at, channel))
        state.sent.sort()
        horizon = state.sent[-1][0] - self.longest
        if state.sent[0][0] <= horizon:
            state.sent = [entry for entry in state.sent if entry[0] > horizon]
