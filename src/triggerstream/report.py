"""``triggerstream report``: what the offers did, by rule, variant and channel.

Reads decision and attribution records (from replay files) and answers a marketer's
questions: how often did a rule match, how often was an offer sent or held back and
why, how many of those who got it bought, for how much, and how many more than in the
holdout, who got nothing, and what deferral won back: the matches that waited
(``deferred``), those sent when let through later (released) with their conversions and
revenue apart, and those that expired. A trigger (or a held-out decision) converts when
at least one purchase was attributed to it. A match is counted once, at its first
decision.

Lift is the treated conversion rate minus the holdout's, with a 95% interval (Newcombe's
method from Wilson intervals, sound for small counts and rates near 0). Below
``min_sample`` in either group it says "not enough data" rather than a number.
"""

from __future__ import annotations

import csv
import math
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson
from pydantic import ValidationError

from triggerstream.records import Attribution, Decision

Z95 = 1.959963984540054


def wilson(successes: int, total: int) -> tuple[float, float]:
    """95% Wilson score interval of a proportion."""
    if total == 0:
        return 0.0, 1.0
    p = successes / total
    centre = (p + Z95**2 / (2 * total)) / (1 + Z95**2 / total)
    half = Z95 * math.sqrt(p * (1 - p) / total + Z95**2 / (4 * total**2)) / (1 + Z95**2 / total)
    # Exact at the ends: rounding once made the low end of 0 of 17 a hair above 0, and
    # the plot's error bar below the rate negative (matplotlib refuses it).
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == total else min(1.0, centre + half)
    return low, high


def difference_interval(c1: int, n1: int, c0: int, n0: int) -> tuple[float, float, float]:
    """p1 - p0 and its 95% interval (Newcombe's hybrid score method)."""
    p1, p0 = c1 / n1, c0 / n0
    l1, u1 = wilson(c1, n1)
    l0, u0 = wilson(c0, n0)
    diff = p1 - p0
    return (
        diff,
        diff - math.sqrt((p1 - l1) ** 2 + (u0 - p0) ** 2),
        diff + math.sqrt((u1 - p1) ** 2 + (p0 - l0) ** 2),
    )


@dataclass
class Tally:
    """Counts for one rule and variant, or one rule, variant and channel."""

    matches: int = 0
    emitted: int = 0
    holdout: int = 0
    suppressed: Counter[str] = field(default_factory=Counter)
    converted: int = 0
    holdout_converted: int = 0
    revenue: dict[str, float] = field(default_factory=dict)
    deferred: int = 0
    """Matches that waited (a ``deferred`` decision) instead of being lost."""
    released: int = 0
    """Of those, the ones sent when they were let through: what deferral won back."""
    released_converted: int = 0
    released_revenue: dict[str, float] = field(default_factory=dict)
    expired: int = 0
    """Waited, and never let through before their ``up_to`` (or replaced)."""

    def add_revenue(self, amounts: dict[str, float], released: bool = False) -> None:
        for target in (self.revenue, self.released_revenue) if released else (self.revenue,):
            for currency, value in amounts.items():
                target[currency] = target.get(currency, 0.0) + value

    @property
    def conversion_rate(self) -> float | None:
        return self.converted / self.emitted if self.emitted else None

    def revenue_per_trigger(self) -> dict[str, float]:
        return {c: v / self.emitted for c, v in self.revenue.items()} if self.emitted else {}


@dataclass
class Lift:
    treated_rate: float
    holdout_rate: float
    difference: float
    low: float
    high: float
    relative: float | None


@dataclass
class Report:
    by_variant: dict[tuple[str, str], Tally]
    by_channel: dict[tuple[str, str, str], Tally]
    holdout: dict[str, Tally]
    """Per rule: the held-out decisions of every variant, the baseline for its lift."""
    lifts: dict[tuple[str, str], Lift | None]
    min_sample: int
    erased: int = 0

    def rows(self) -> list[dict[str, Any]]:
        """Flat rows for CSV and JSON: channel "all" carries the lift."""
        rows = []
        for (rule, variant), tally in sorted(self.by_variant.items()):
            rows.append(self._row(rule, variant, "all", tally, self.lifts.get((rule, variant))))
            for (r, v, channel), per_channel in sorted(self.by_channel.items()):
                if (r, v) == (rule, variant):
                    rows.append(self._row(rule, variant, channel, per_channel, None))
        return rows

    def _row(
        self, rule: str, variant: str, channel: str, tally: Tally, lift: Lift | None
    ) -> dict[str, Any]:
        holdout = self.holdout.get(rule, Tally())
        row: dict[str, Any] = {
            "rule": rule,
            "variant": variant,
            "channel": channel,
            "matches": tally.matches,
            "emitted": tally.emitted,
            "holdout": tally.holdout,
            "suppressed": sum(tally.suppressed.values()),
            "suppressed_by_reason": dict(tally.suppressed.most_common()),
            "conversions": tally.converted,
            "conversion_rate": tally.conversion_rate,
            "revenue": dict(tally.revenue),
            "revenue_per_trigger": tally.revenue_per_trigger(),
            "deferred": tally.deferred,
            "released": tally.released,
            "released_conversions": tally.released_converted,
            "released_revenue": dict(tally.released_revenue),
            "expired": tally.expired,
            "holdout_decisions": holdout.holdout if channel == "all" else None,
            "holdout_conversions": holdout.holdout_converted if channel == "all" else None,
        }
        if channel == "all":
            row["lift"] = None if lift is None else lift.difference
            row["lift_low"] = None if lift is None else lift.low
            row["lift_high"] = None if lift is None else lift.high
            row["relative_lift"] = None if lift is None else lift.relative
            row["lift_note"] = "" if lift is not None else self.lift_note(rule, variant)
        return row

    def lift_note(self, rule: str, variant: str) -> str:
        treated = self.by_variant[(rule, variant)].emitted
        held = self.holdout.get(rule, Tally()).holdout
        if held == 0:
            return "no holdout"
        return f"not enough data (need {self.min_sample} per group; {treated} vs {held})"


class NotRecords(ValueError):
    """A file given as decisions or attributions holds something else; the message
    names the file, the line, what was expected and what the line looks like."""


# What tells each kind of JSON Lines file triggerstream reads or writes apart, checked
# in this order (decisions and attributions carry a trigger_id too).
KINDS = (
    ("decision_id", "a decision record (as replay --decisions writes)"),
    ("converted_at", "an attribution record (as replay --attributions writes)"),
    ("reason_code", "a dead letter (as replay --dlq writes)"),
    ("trigger_id", "a trigger record (replay's output, or an offer-triggers topic)"),
    ("event_id", "an input event (a line for replay or produce)"),
)
KIND_OF = {Decision: KINDS[0][1], Attribution: KINDS[1][1]}


def read_records(paths: Iterable[Path], model: type[Decision] | type[Attribution]) -> list[Any]:
    """Every record of the files; :class:`NotRecords` at the first line that is not one."""
    records = []
    for path in paths:
        with path.open("rb") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    records.append(model.model_validate_json(line))
                except ValidationError as error:
                    raise NotRecords(
                        f"{path}:{number}: expected {KIND_OF[model]}, "
                        f"but {_looks_like(line, model, error)}"
                    ) from None
    return records


def _looks_like(
    line: bytes, model: type[Decision] | type[Attribution], error: ValidationError
) -> str:
    """What a line that is not a ``model`` record is: another kind, or which field is wrong."""
    try:
        document = orjson.loads(line)
    except orjson.JSONDecodeError:
        return "the line is not JSON"
    if not isinstance(document, dict):
        return "the line is not a JSON object"
    kind = next((kind for name, kind in KINDS if name in document), None)
    if kind is None:
        fields = ", ".join(list(document)[:6]) or "none"
        return f"the line has none of its fields (it has: {fields})"
    if kind != KIND_OF[model]:
        return f"the line looks like {kind}"
    first = error.errors(include_url=False)[0]
    where = ".".join(str(part) for part in first["loc"]) or "the record"
    message = str(first["msg"])
    return f"{where}: {message[0].lower()}{message[1:]}"


def build(
    decisions: Iterable[Decision], attributions: Iterable[Attribution], min_sample: int = 30
) -> Report:
    """Tally decisions and attributions into a report."""
    converted: dict[str, dict[str, float]] = defaultdict(dict)
    for attribution in attributions:
        by_currency = converted[attribution.trigger_id]
        currency = attribution.currency or "?"
        by_currency[currency] = by_currency.get(currency, 0.0) + attribution.revenue
    by_variant: dict[tuple[str, str], Tally] = defaultdict(Tally)
    by_channel: dict[tuple[str, str, str], Tally] = defaultdict(Tally)
    holdout: dict[str, Tally] = defaultdict(Tally)
    erased = 0
    waited: set[str] = set()
    """Trigger ids of deferred matches: their final decision is not a new match."""
    for decision in decisions:
        if decision.outcome == "erased" or decision.rule_id is None:
            erased += 1
            continue
        key = (decision.rule_id, decision.variant or "-")
        tally = by_variant[key]
        trigger = decision.trigger_id or ""
        released = trigger in waited
        if not released:
            tally.matches += 1
        revenue = converted.get(trigger)
        if decision.outcome == "deferred":
            tally.deferred += 1
            waited.add(trigger)
        elif decision.outcome == "expired":
            tally.expired += 1
        elif decision.outcome == "suppressed":
            tally.suppressed[decision.reason or "?"] += 1
        elif decision.outcome == "holdout":
            tally.holdout += 1
            pool = holdout[decision.rule_id]
            pool.holdout += 1
            if revenue is not None:
                pool.holdout_converted += 1
        elif decision.outcome == "emitted":
            per_channel = by_channel[(*key, decision.channel or "?")]
            per_channel.matches += 1
            for target in (tally, per_channel):
                target.emitted += 1
                target.released += released
                if revenue is not None:
                    target.converted += 1
                    target.released_converted += released
                    target.add_revenue(revenue, released)
    lifts: dict[tuple[str, str], Lift | None] = {}
    for (rule, variant), tally in by_variant.items():
        baseline = holdout.get(rule)
        if baseline is None or tally.emitted < min_sample or baseline.holdout < min_sample:
            lifts[(rule, variant)] = None
            continue
        diff, low, high = difference_interval(
            tally.converted, tally.emitted, baseline.holdout_converted, baseline.holdout
        )
        base = baseline.holdout_converted / baseline.holdout
        treated = tally.converted / tally.emitted
        lifts[(rule, variant)] = Lift(
            treated, base, diff, low, high, (treated / base - 1) if base > 0 else None
        )
    return Report(dict(by_variant), dict(by_channel), dict(holdout), lifts, min_sample, erased)


# --- rendering -----------------------------------------------------------------------


def percent(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def money(amounts: dict[str, float]) -> str:
    if not amounts:
        return "-"
    return ", ".join(f"{value:,.2f} {currency}" for currency, value in sorted(amounts.items()))


def lift_text(row: dict[str, Any]) -> str:
    if row.get("lift") is None:
        return str(row.get("lift_note", ""))
    points = row["lift"] * 100
    low, high = row["lift_low"] * 100, row["lift_high"] * 100
    verdict = "better" if low > 0 else "worse" if high < 0 else "no clear difference"
    return f"{points:+.1f} pts [{low:+.1f}, {high:+.1f}] ({verdict})"


def write(report: Report, output_format: str, output: IO[str]) -> None:
    """The report as a table (for people), CSV or JSON (for tools) to ``output``."""
    if output_format == "json":
        output.write(orjson.dumps(report.rows(), option=orjson.OPT_INDENT_2).decode() + "\n")
    elif output_format == "csv":
        rows = report.rows()
        writer = csv.DictWriter(output, fieldnames=list(rows[0]) if rows else ["rule"])
        writer.writeheader()
        for row in rows:
            writer.writerow(
                {k: orjson.dumps(v).decode() if isinstance(v, dict) else v for k, v in row.items()}
            )
    else:
        from rich.console import Console

        # Wide enough for every column on one line; a terminal narrower than that
        # scrolls rather than folds the numbers.
        console = Console(file=output, width=max(240, Console().width))
        console.print(render_table(report))
        if report.erased:
            console.print(f"{report.erased} erasure(s) recorded")


def render_table(report: Report) -> Any:
    """A rich table, one row per rule and variant and one per channel under it."""
    from rich.table import Table

    table = Table(
        title="Offers: what was sent, what converted, and the lift over the holdout",
        caption=(
            "conversion = triggers with an attributed purchase / triggers sent; holdout rate = "
            "the same among all held-out matches of the rule; lift = the difference, 95% interval; "
            "released = sent after waiting (deferred), with their conversions and revenue"
        ),
    )
    for column, justify in (
        ("rule", "left"),
        ("variant", "left"),
        ("channel", "left"),
        ("matches", "right"),
        ("sent", "right"),
        ("held out", "right"),
        ("suppressed (top reasons)", "left"),
        ("deferred: released, expired", "left"),
        ("conversions", "right"),
        ("conv. rate", "right"),
        ("holdout rate", "right"),
        ("revenue", "right"),
        ("per trigger", "right"),
        ("lift vs holdout", "left"),
    ):
        table.add_column(
            column,
            justify=justify,  # type: ignore[arg-type]
            no_wrap=not column.startswith(("suppressed", "deferred")),
        )
    for row in report.rows():
        overall = row["channel"] == "all"
        reasons = ", ".join(f"{r} {n}" for r, n in list(row["suppressed_by_reason"].items())[:3])
        holdout_rate = (
            row["holdout_conversions"] / row["holdout_decisions"]
            if overall and row["holdout_decisions"]
            else None
        )
        table.add_row(
            row["rule"] if overall else "",
            row["variant"] if overall else "",
            row["channel"],
            str(row["matches"]),
            str(row["emitted"]),
            str(row["holdout"]) if overall else "",
            reasons if overall else "",
            _deferral(row),
            str(row["conversions"]),
            percent(row["conversion_rate"]),
            percent(holdout_rate) if overall else "",
            money(row["revenue"]),
            money(row["revenue_per_trigger"]),
            lift_text(row) if overall else "",
            style=None if overall else "dim",
        )
    return table


def _deferral(row: dict[str, Any]) -> str:
    """What deferral did: matches that waited, those sent later and what they brought."""
    if row["channel"] != "all":
        return f"{row['released']} released" if row["released"] else ""
    if not row["deferred"]:
        return ""
    text = f"{row['deferred']}: {row['released']} released, {row['expired']} expired"
    if row["released_conversions"]:
        text += f" ({row['released_conversions']} converted, {money(row['released_revenue'])})"
    return text
