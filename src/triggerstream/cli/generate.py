"""``triggerstream generate``: a month of realistic traffic as a replay file."""

from __future__ import annotations

import contextlib
import datetime as dt
import sys
import time
from pathlib import Path

import click

from triggerstream.cli.app import fail, main
from triggerstream.cli.options import OUTPUT, timestamp, writable


@main.command()
@click.option("--users", default="1000", show_default=True, help="How many users.")
@click.option("--days", default="30", show_default=True, help="How many days of traffic.")
@click.option("--seed", default="1", show_default=True, help="Same seed, same lines.")
@click.option(
    "--start",
    default="2026-11-01T00:00:00Z",
    show_default=True,
    metavar="TIMESTAMP",
    help="When the traffic begins (RFC 3339).",
)
@click.option("--events", default=None, help="How many events [default: 2 per user and day].")
@click.option("--out", type=OUTPUT, default="-", show_default="stdout")
def generate(users: str, days: str, seed: str, start: str, events: str | None, out: Path) -> None:
    """Write realistic traffic as JSON Lines in replay's format (each event with its
    "topic"), in time order: free listeners skipping tracks in bursts, teams filling
    their storage quota, shoppers, trials, tickets, NPS answers, consent and offer
    feedback, a few busy users and many quiet ones. The same arguments give the same
    lines, for `replay`, `compare`, `explain` and `produce`.
    """
    from triggerstream import traffic

    people = int(_number("--users", users, True, 1))
    span = _number("--days", days, False, 0, 3650)
    seeded = int(_number("--seed", seed, True, -(2**63), 2**63))
    began_at = dt.datetime.fromtimestamp(timestamp("--start", start), dt.UTC)
    if began_at.year > 9000:
        fail(f"--start {start!r} is too far ahead: the traffic must end before the year 9999")
    count = int(_number("--events", events, True, 1)) if events else None
    writable(out, "--out")
    count = count or traffic.events_for(people, span)
    began = time.perf_counter()

    def progress(drawn: int) -> None:
        click.echo(f"generate: {drawn:,} of {count:,} events drawn", err=True)

    lines = traffic.history(count, people, seeded, began_at, span, progress)
    with contextlib.ExitStack() as files:
        handle = sys.stdout.buffer if str(out) == "-" else files.enter_context(out.open("wb"))
        handle.writelines(line + b"\n" for line in lines)
        handle.flush()
    click.echo(
        f"generate: {len(lines):,} events from {people:,} users over {span:g} days "
        f"from {began_at:%Y-%m-%dT%H:%M:%SZ} (seed {seeded}) in {time.perf_counter() - began:.1f}s",
        err=True,
    )


def _number(flag: str, text: str, whole: bool, low: float, high: float | None = None) -> float:
    """A flag's number, more than ``low`` and at most ``high`` (a whole number at least
    ``low``), or one line saying what is wrong."""
    try:
        value = int(text) if whole else float(text)
    except ValueError:
        fail(f"{flag} {text!r} is not {'a whole number' if whole else 'a number'}")
        raise AssertionError("unreachable") from None
    too_low = value < low if whole else not value > low
    if too_low or (high is not None and not value <= high):
        least = f"at least {low:g}" if whole else f"more than {low:g}"
        most = "" if high is None else f" and at most {high:g}"
        fail(f"{flag} {text!r} must be {least}{most}")
    return value
