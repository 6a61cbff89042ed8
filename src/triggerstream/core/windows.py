"""Sliding windows over event time: counts, sums and frequency caps.

A window of length ``within`` at time ``t`` is the half-open interval (t - within, t].
Entries are kept sorted by time, so an event that arrives late lands in its place; what
is older than ``within`` before the newest entry is dropped, as no later decision needs it.
"""

from __future__ import annotations

from bisect import bisect_right, insort


def add(entries: list[tuple[float, float]], at: float, value: float, within: float) -> None:
    """Record ``value`` at time ``at`` and forget what no window ending later needs."""
    if not entries or at >= entries[-1][0]:
        entries.append((at, value))
    else:
        insort(entries, (at, value))
    horizon = entries[-1][0] - within
    if entries[0][0] <= horizon:
        del entries[: bisect_right(entries, (horizon, float("inf")))]


def count(entries: list[tuple[float, float]], at: float, within: float) -> int:
    """The number of entries in (at - within, at]."""
    if entries and entries[-1][0] == at and entries[0][0] > at - within:
        # The usual case: `at` is the newest entry and `add` dropped what is older than
        # the window, so every entry counts.
        return len(entries)
    start = at - within
    return sum(1 for when, _ in entries if start < when <= at)


def total(entries: list[tuple[float, float]], at: float, within: float) -> tuple[int, float]:
    """The number of entries and the sum of their values in (at - within, at]."""
    start = at - within
    inside = [value for when, value in entries if start < when <= at]
    return len(inside), sum(inside)


def count_in(
    times: list[tuple[float, str | None, str | None]],
    at: float,
    per: float,
    channel: str | None,
) -> int:
    """Sends in (at - per, at], on ``channel`` only when one is given."""
    start = at - per
    return sum(
        1
        for when, sent_on, _ in times
        if start < when <= at and (channel is None or sent_on == channel)
    )
