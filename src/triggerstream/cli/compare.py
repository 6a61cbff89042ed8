"""``triggerstream compare``: what a rules change would have done to history."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import orjson

from triggerstream import collector
from triggerstream.cli.app import fail, main
from triggerstream.cli.options import (
    EVENTS_ARGUMENT,
    build_settings,
    progress_bar,
    timestamp,
    unusable_rules,
)

if TYPE_CHECKING:
    from triggerstream.compare import Comparison
    from triggerstream.rules.model import RulesFile

RULES_FILE = click.Path(dir_okay=False, path_type=Path)


@main.command()
@click.argument("old", type=RULES_FILE)
@click.argument("new", type=RULES_FILE)
@EVENTS_ARGUMENT
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
)
@click.option("--until", default=None, metavar="TIMESTAMP", help="As for replay.")
@click.option("--now", default=None, metavar="TIMESTAMP", help="As for replay.")
@click.option("--partitions", type=click.IntRange(min=1), default=None, help="As for replay.")
def compare(
    old: Path,
    new: Path,
    events: tuple[Path, ...],
    output_format: str,
    until: str | None,
    now: str | None,
    partitions: int | None,
) -> None:
    """Run the OLD and the NEW rules file over the same EVENTS (JSON Lines, as for
    replay; '-' reads stdin) in one pass, for a backtest of a change.

    Shows per rule the decisions by outcome and suppression reason and the triggers by
    channel under each file, with the differences (a rule in one file only has one
    side), and the users who gain or lose a trigger, with a few examples and their
    decisions. Each side's figures are what `replay` of that file gives. A summary of
    what was read goes to stderr.
    """
    from triggerstream import compare as comparing
    from triggerstream.topics import input_partitions

    settings = build_settings()
    old_rules = _rules("old", old)
    new_rules = _rules("new", new)
    if sum(str(path) == "-" for path in events) > 1:
        fail("stdin ('-') can be read once; name it once among EVENTS")
    until_at = timestamp("--until", until) if until else None
    now_at = timestamp("--now", now) if now else None
    collector.for_many_objects()  # two states per user, alive to the end
    with progress_bar(events) as advance:
        comparison = comparing.run(
            old_rules,
            new_rules,
            list(events),
            until_at,
            advance,
            partitions or settings.partitions or input_partitions(),
            now=now_at,
            max_future=settings.max_future,
        )
    if output_format == "json":
        sys.stdout.buffer.write(
            orjson.dumps(comparison.to_json(), option=orjson.OPT_INDENT_2) + b"\n"
        )
        sys.stdout.buffer.flush()
    else:
        _print_text(comparison, old, new)
    click.echo(comparison.summary.render().split("\n", 1)[0], err=True)


def _rules(side: str, path: Path) -> RulesFile:
    """The rules file of one side, or one line naming the side and its problem."""
    from triggerstream.rules.load import RulesError, load_rules

    try:
        return load_rules(path)
    except RulesError as error:
        fail(f"compare needs a valid {side} rules file: {unusable_rules(path, error)}")
        raise AssertionError("unreachable") from None


def _print_text(comparison: Comparison, old: Path, new: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(100, Console().width))
    console.print(f"old: {old}\nnew: {new}", highlight=False)
    table = Table(title="Decisions and triggers per rule")
    table.add_column("rule", no_wrap=True)
    table.add_column("what", no_wrap=True)
    for column in ("old", "new", "change"):
        table.add_column(column, justify="right", no_wrap=True)
    for rule in comparison.rules:
        for index, (what, before, after) in enumerate(_rows(rule["old"], rule["new"])):
            table.add_row(
                rule["rule_id"] if index == 0 else "",
                what,
                "-" if before is None else str(before),
                "-" if after is None else str(after),
                _change(before, after),
            )
        table.add_section()
    console.print(table)
    for verb, users in (("gain", comparison.users_gained), ("lose", comparison.users_lost)):
        console.print(f"users who {verb} a trigger: {users['count']}")
        for example in users["examples"]:
            console.print(f"  {example['user_id']}", highlight=False)
            for side in ("old", "new"):
                kept = example[side]
                console.print(f"    {side}: {kept['triggers']} trigger(s)", highlight=False)
                for decision in kept["decisions"]:
                    console.print(
                        f"      {_decision(decision)}",
                        highlight=False,
                        markup=False,
                        soft_wrap=True,
                    )


def _rows(
    old: dict[str, Any] | None, new: dict[str, Any] | None
) -> list[tuple[str, int | None, int | None]]:
    """One row per figure either side has: emitted, holdout, deferred and expired (when
    there are any), each suppression reason, triggers on each channel; a side without
    the rule has None."""

    def figure(side: dict[str, Any] | None, group: str | None, name: str) -> int | None:
        if side is None:
            return None
        return int(side[name] if group is None else side[group].get(name, 0))

    sides = [side for side in (old, new) if side is not None]
    rows = [("emitted", figure(old, None, "emitted"), figure(new, None, "emitted"))]
    for name in ("holdout", "deferred", "expired"):  # when either side has any
        if any(side.get(name) for side in sides):
            rows.append((name, figure(old, None, name), figure(new, None, name)))
    for group in ("suppressed", "triggers"):
        names = sorted({name for side in sides for name in side[group]})
        rows += [(f"{group}: {n}", figure(old, group, n), figure(new, group, n)) for n in names]
    return rows


def _change(before: int | None, after: int | None) -> str:
    if before is None:
        return "added"
    if after is None:
        return "removed"
    delta = after - before
    if delta == 0:
        return ""
    percent = f" ({delta / before:+.0%})" if before else ""
    return f"{delta:+d}{percent}"


def _decision(record: dict[str, Any]) -> str:
    """A decision on one line: when, rule, outcome and reason or channel, detail."""
    how = record["channel"] if record["outcome"] == "emitted" else record["reason"]
    outcome = f"{record['outcome']} ({how})" if how else record["outcome"]
    return f"{record['at']} {record['rule_id']}: {outcome}: {record['detail']}"
