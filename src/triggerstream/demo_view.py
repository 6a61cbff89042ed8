"""The demo's live view: what it tallies on the output topics and how it draws it.

A person new to triggerstream reads it: each trigger with its offer's title, what every
suppression reason means in words, the last change of the rules, and where to look
further (the inspector, the metrics, the worker's log)."""

from __future__ import annotations

import datetime as dt
import statistics
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from rich.console import Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from triggerstream.loadgen import Load
from triggerstream.records import (
    ATTRIBUTIONS_TOPIC,
    CHANNEL_TOPICS,
    DECISIONS_TOPIC,
    REASON_WORDS,
    SuppressionReason,
)

CHANNEL_OF_TOPIC = {topic: channel for channel, topic in CHANNEL_TOPICS.items()}


class Seen(NamedTuple):
    """One trigger, as the view lists it."""

    at: str
    user: str
    rule: str
    channel: str
    offer: str
    """The offer's title as the user got it (after any experiment variant)."""
    why: str


@dataclass
class Tally:
    """What the demo has seen on the output topics."""

    began: float = field(default_factory=time.monotonic)
    """When the traffic started."""
    startup: float = 0.0
    """Seconds from the command's start to the traffic's: broker, topics, worker."""
    first_trigger_after: float | None = None
    """Seconds from the traffic's start to the first trigger seen."""
    triggers: Counter[tuple[str, str]] = field(default_factory=Counter)
    suppressions: Counter[SuppressionReason] = field(default_factory=Counter)
    conversions: int = 0
    revenue: Counter[str] = field(default_factory=Counter)
    deferred: int = 0
    """Matches that waited instead of being lost (docs/contract.md section 14)."""
    released: int = 0
    """Of those, the ones sent once the user could take them."""
    expired: int = 0
    waiting: set[str] = field(default_factory=set)
    """Trigger ids of the deferred matches not yet ended."""
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=5000))
    last: deque[Seen] = field(default_factory=lambda: deque(maxlen=6))
    worker_log: Path | None = None
    """Where the worker's log stays after the demo."""

    def record(self, topic: str, value: dict[str, Any]) -> None:
        now = time.time()
        if topic in CHANNEL_OF_TOPIC:
            if self.first_trigger_after is None:
                self.first_trigger_after = time.monotonic() - self.began
            self.triggers[(value["rule_id"], value["channel"])] += 1
            triggered = dt.datetime.fromisoformat(value["triggered_at"]).timestamp()
            self.latencies.append(max(0.0, now - triggered))
            self.last.append(
                Seen(
                    time.strftime("%H:%M:%S", time.localtime(now)),
                    value["user_id"],
                    value["rule_id"],
                    value["channel"],
                    value["offer"]["title"],
                    value["reason"]["summary"],
                )
            )
        elif topic == DECISIONS_TOPIC:
            outcome = value["outcome"]
            if outcome == "suppressed":
                self.suppressions[value["reason"]] += 1
            if outcome == "deferred":
                self.deferred += 1
                self.waiting.add(value.get("trigger_id") or "")
            elif value.get("trigger_id") in self.waiting:
                self.waiting.discard(value["trigger_id"])
                if outcome in ("emitted", "holdout"):
                    self.released += 1
                elif outcome == "expired":
                    self.expired += 1
        elif topic == ATTRIBUTIONS_TOPIC:
            self.conversions += 1
            self.revenue[value["currency"]] += value["revenue"]

    def latency(self, quantile: float) -> float | None:
        if len(self.latencies) < 2:
            return None
        return statistics.quantiles(self.latencies, n=1000)[int(quantile * 1000) - 1]

    def summary(self) -> str:
        """The line the demo ends with: how fast it was ready, and what it saw."""
        first = self.first_trigger_after
        return (
            f"ready in {self.startup:.1f} s (broker, topics, worker); first trigger "
            + (
                "never came"
                if first is None
                else f"{self.startup + first:.1f} s after start ({first:.1f} s into the traffic)"
            )
            + f"; {sum(self.triggers.values()):,} triggers, "
            + f"{sum(self.suppressions.values()):,} suppressed, {self.conversions:,} conversions; "
            + f"{self.deferred:,} deferred: {self.released:,} released, {self.expired:,} expired"
        )


def render(
    tally: Tally, load: Load, where: dict[str, str], rules: str, final: bool = False
) -> Group:
    """The live view (and, with ``final``, the summary); ``rules`` is the line about the
    last rules reload."""
    elapsed = time.monotonic() - tally.began
    header = Text.assemble(
        ("triggerstream demo", "bold"),
        f"  ·  {elapsed:,.0f} s  ·  broker {where['broker']}",
        "" if final else "  ·  Ctrl-C stops",
        "\ninspector ",
        (where["inspector"], "underline"),
        "  ·  metrics ",
        (where["metrics"], "underline"),
        f"\nworker log {where['log']}\n",
        rules,
    )
    tables = Table.grid(expand=True, padding=(0, 2))
    tables.add_column(ratio=3)
    tables.add_column(ratio=2)
    tables.add_row(_triggers(tally), _suppressed(tally))
    return Group(Panel(header), _figures(tally, load), tables, _legend(tally), _last(tally))


def _figures(tally: Tally, load: Load) -> Table:
    first = tally.first_trigger_after
    p50, p99 = tally.latency(0.5), tally.latency(0.99)
    figures = Table.grid(padding=(0, 3))
    for _ in range(5):
        figures.add_column(justify="right")
    figures.add_row(
        Text.assemble((f"{load.events_per_second():,.0f}", "bold"), " events/s"),
        Text.assemble((f"{load.sent:,}", "bold"), " events sent"),
        Text.assemble((f"{sum(tally.triggers.values()):,}", "bold green"), " triggers"),
        Text.assemble((f"{tally.conversions:,}", "bold"), " conversions"),
        Text.assemble((f"{tally.deferred:,}", "bold"), " deferred"),
    )
    figures.add_row(
        "first trigger " + ("-" if first is None else f"{tally.startup + first:.1f} s after start"),
        "event→trigger p50 " + ("-" if p50 is None else f"{p50 * 1000:,.0f} ms"),
        "p99 " + ("-" if p99 is None else f"{p99 * 1000:,.0f} ms"),
        "revenue " + (", ".join(f"{v:,.2f} {c}" for c, v in tally.revenue.items()) or "-"),
        f"released {tally.released:,} · waiting {len(tally.waiting):,} · expired {tally.expired:,}",
    )
    return figures


def _triggers(tally: Tally) -> Table:
    triggers = Table(title="triggers by rule and channel", expand=True, title_justify="left")
    triggers.add_column("rule")
    channels = sorted(CHANNEL_TOPICS)
    for channel in channels:
        triggers.add_column(channel, justify="right")
    for rule in sorted({rule for rule, _ in tally.triggers}):
        counts = [tally.triggers[(rule, channel)] for channel in channels]
        triggers.add_row(rule, *(f"{n:,}" if n else "" for n in counts))
    return triggers


def _suppressed(tally: Tally) -> Table:
    suppressed = Table(title="suppressed, by reason", expand=True, title_justify="left")
    suppressed.add_column("reason", no_wrap=True)
    suppressed.add_column("count", justify="right")
    for reason, count in tally.suppressions.most_common():
        suppressed.add_row(reason, f"{count:,}")
    return suppressed


def _legend(tally: Tally) -> Table:
    """The reasons in the table above, each in words."""
    legend = Table.grid(padding=(0, 2))
    if tally.suppressions:
        legend.title, legend.title_justify = "what the reasons mean", "left"
    legend.add_column(style="bold", no_wrap=True)
    legend.add_column(style="dim")
    for reason, _ in tally.suppressions.most_common():
        legend.add_row(reason, REASON_WORDS.get(reason, ""))
    return legend


def _last(tally: Tally) -> Table:
    last = Table(title="last triggers", expand=True, title_justify="left")
    for name in ("at", "user", "rule", "channel"):
        last.add_column(name, no_wrap=True)
    last.add_column("offer", ratio=1)
    last.add_column("why", ratio=1)
    for seen in reversed(tally.last):
        last.add_row(*seen)
    return last
