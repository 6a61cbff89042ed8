"""``triggerstream replay``: the rules over files of events, no broker."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import click

from triggerstream import collector
from triggerstream.cli.app import main
from triggerstream.cli.options import (
    EVENTS_ARGUMENT,
    OUTPUT,
    RULES_OPTION,
    build_settings,
    progress_bar,
    replay_inputs,
    timestamp,
    writable,
)


@main.command()
@RULES_OPTION
@EVENTS_ARGUMENT
@click.option("--triggers", type=OUTPUT, default="-", show_default="stdout")
@click.option("--decisions", type=OUTPUT, default=None, help="Write decision records.")
@click.option("--attributions", type=OUTPUT, default=None, help="Write attribution records.")
@click.option("--dlq", type=OUTPUT, default=None, help="Write invalid lines, with why.")
@click.option(
    "--until",
    default=None,
    metavar="TIMESTAMP",
    help="Fire timers due up to this RFC 3339 time at the end (default: the last event's).",
)
@click.option(
    "--now",
    default=None,
    metavar="TIMESTAMP",
    help="When the events are read (RFC 3339): one dated more than TRIGGERSTREAM_MAX_FUTURE "
    "(1h) after it is refused from_future, as the worker refuses it on its clock "
    "[default: the wall clock].",
)
@click.option(
    "--partitions",
    type=click.IntRange(min=1),
    default=None,
    help="Input partitions whose orders teach cross-sell apart, as the worker's do "
    "[env TRIGGERSTREAM_PARTITIONS, default topics/topics.yaml's 8].",
)
def replay(
    rules_file: Path | None,
    events: tuple[Path, ...],
    triggers: Path,
    decisions: Path | None,
    attributions: Path | None,
    dlq: Path | None,
    until: str | None,
    now: str | None,
    partitions: int | None,
) -> None:
    """Run the rules over EVENTS (JSON Lines, each an event with its "topic"; '-' reads
    stdin), no broker.

    Writes trigger records as JSON Lines (stdout by default) and a summary to stderr:
    lines read, invalid ones by reason, duplicates, decisions by outcome. Invalid lines
    are counted and skipped. Timers run on event time: what was due by the last event
    (or --until) fires. The same events give the same trigger ids as the worker.
    Co-purchase counts for cross-sell are learned per input partition (a user's
    partition as Kafka's default partitioner picks it), as a worker learns them.
    """
    from triggerstream import replay as replaying
    from triggerstream.core.engine import Engine
    from triggerstream.topics import input_partitions

    settings = build_settings()
    path = rules_file or settings.rules
    partitions = partitions or settings.partitions or input_partitions()
    loaded = replay_inputs("replay", path, events)
    until_at = timestamp("--until", until) if until else None
    now_at = timestamp("--now", now) if now else None
    named = {"--triggers": triggers, "--decisions": decisions, "--attributions": attributions}
    named["--dlq"] = dlq
    for flag, output in named.items():
        if output is not None:
            writable(output, flag)
    # Opened only now: an unusable rules file or argument leaves every file as it was.
    with contextlib.ExitStack() as files:
        outputs = replaying.Outputs(
            triggers=replaying.file_writer(triggers, files),
            decisions=replaying.file_writer(decisions, files),
            attributions=replaying.file_writer(attributions, files),
            dead_letters=replaying.file_writer(dlq, files),
        )
        collector.for_many_objects()  # a state per user, alive to the end
        with progress_bar(events) as advance:
            summary = replaying.run(
                Engine(loaded),
                list(events),
                outputs,
                until_at,
                advance,
                partitions,
                now=now_at,
                max_future=settings.max_future,
            )
    sys.stdout.buffer.flush()
    click.echo(summary.render(), err=True)
