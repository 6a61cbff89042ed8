"""Channel routing (docs/contract.md section 7): the first of a rule's channels that may be used.

``in_app`` needs an open session with recent activity and in-app consent not withdrawn;
``push`` and ``email`` need consent granted explicitly and no quiet hours. A frequency
cap on a channel takes that channel out of the walk (for its family's offers only, when
it names a family).
"""

from __future__ import annotations

import datetime as dt
from functools import cache
from zoneinfo import ZoneInfo

from triggerstream.core.caps import FrequencyCaps
from triggerstream.core.state import UserState
from triggerstream.core.summaries import span
from triggerstream.rules.model import QuietHours


class ChannelRouter:
    def __init__(
        self,
        session_timeout: float,
        quiet_hours: QuietHours | None,
        caps: FrequencyCaps,
    ) -> None:
        self.session_timeout = session_timeout
        self.quiet = quiet_hours.minutes if quiet_hours else None
        self.caps = caps

    def choose(
        self, channels: list[str], state: UserState, at: float, offer: str | None = None
    ) -> tuple[str | None, list[str]]:
        """The channel to send ``offer`` on (None if none is left) and why earlier ones
        were skipped, as ``"channel: reason"``."""
        skipped: list[str] = []
        for channel in channels:
            reason = self.unavailable(channel, state, at, offer)
            if reason is None:
                return channel, skipped
            skipped.append(f"{channel}: {reason}")
        return None, skipped

    def unavailable(
        self, channel: str, state: UserState, at: float, offer: str | None = None
    ) -> str | None:
        """Why ``channel`` cannot be used for ``offer`` at ``at``, or None if it can."""
        if channel == "in_app":
            if state.consent.get("in_app") is False:
                return "in-app consent withdrawn"
            if not state.session_open:
                return "no active session"
            idle = at - state.last_seen_at if state.last_seen_at is not None else None
            if idle is None or idle > self.session_timeout or idle < 0:
                return (
                    f"session idle for {span(idle)} (timeout {span(self.session_timeout)})"
                    if idle is not None and idle > 0
                    else "no activity in the session"
                )
        else:
            consent = state.consent.get(channel)
            if consent is None:
                return "no consent given"
            if consent is False:
                return "consent withdrawn"
            if self.quiet is not None:
                local = self.local_time(state, at)
                if _within(local.hour * 60 + local.minute, *self.quiet):
                    zone = state.timezone or "UTC"
                    return f"quiet hours ({local:%H:%M} {zone})"
        return self.caps.reached(state, at, channel, offer)

    def frees_at(
        self, channel: str, state: UserState, at: float, offer: str | None = None
    ) -> float | None:
        """When ``channel``, unavailable for ``offer`` at ``at``, becomes free by itself:
        quiet hours ending, a channel cap's window moving on. None if it is free, or
        waits for the user (a session, consent)."""
        reason = self.unavailable(channel, state, at, offer)
        if reason is None:
            return None
        if reason.startswith("quiet hours"):
            return self.quiet_until(state, at)
        if reason == self.caps.reached(state, at, channel, offer):
            return self.caps.frees_at(state, at, channel, offer)
        return None

    def quiet_until(self, state: UserState, at: float) -> float | None:
        """When the quiet hours the user is in at ``at`` end (their ``to`` on the user's
        wall clock), or None if it is not quiet hours for them."""
        if self.quiet is None:
            return None
        local = self.local_time(state, at)
        start, end = self.quiet
        if not _within(local.hour * 60 + local.minute, start, end):
            return None
        ends = local.replace(hour=end // 60, minute=end % 60, second=0, microsecond=0)
        if ends <= local:
            ends += dt.timedelta(days=1)  # wall-clock arithmetic: right across DST changes
        return ends.timestamp()

    @staticmethod
    def local_time(state: UserState, at: float) -> dt.datetime:
        return dt.datetime.fromtimestamp(at, _zone(state.timezone or "UTC"))


@cache
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def _within(minute: int, start: int, end: int) -> bool:
    """Whether a minute of the day is in quiet hours [start, end), across midnight too."""
    if start < end:
        return start <= minute < end
    return minute >= start or minute < end
