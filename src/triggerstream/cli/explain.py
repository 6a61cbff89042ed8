"""``triggerstream explain``: one user from files of events, and why each rule would or
would not fire for them now."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from triggerstream import collector
from triggerstream.cli.app import fail, main
from triggerstream.cli.options import (
    EVENTS_ARGUMENT,
    RULES_OPTION,
    build_settings,
    progress_bar,
    replay_inputs,
    timestamp,
)


@main.command()
@click.argument("user_id")
@RULES_OPTION
@EVENTS_ARGUMENT
@click.option(
    "--until",
    default=None,
    metavar="TIMESTAMP",
    help="Show the user as of this RFC 3339 time: later events are not read "
    "[default: the latest event's time].",
)
@click.option(
    "--format",
    "form",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="text for people, json (docs/contract.md section 16) for tools.",
)
def explain(
    user_id: str, rules_file: Path | None, events: tuple[Path, ...], until: str | None, form: str
) -> None:
    """Show USER_ID as of the end of EVENTS (JSON Lines, as replay reads them): their
    state, why each rule would or would not fire now, what is pending, and their
    decisions, exactly as replay makes them.

    Every line is read once; only this user's state and decisions are kept.
    """
    import orjson

    from triggerstream.core.engine import Engine
    from triggerstream.explain import explain_user, read_user
    from triggerstream.explain.text import render
    from triggerstream.topics import input_partitions

    settings = build_settings()
    path = rules_file or settings.rules
    loaded = replay_inputs("explain", path, events)
    until_at = timestamp("--until", until) if until else None
    partitions = settings.partitions or input_partitions()
    engine = Engine(loaded)
    collector.for_many_objects()  # an id memory per user, alive to the end
    with progress_bar(events) as advance:
        history = read_user(
            engine,
            user_id,
            list(events),
            until_at,
            partitions,
            max_future=settings.max_future,
            progress=advance,
        )
    if history.events == 0:
        up_to = f" up to {until}" if until else ""
        fail(f"no events of user {user_id} in the input{up_to}", status=1)
    now_is = "--until" if until_at is not None else "the latest event in the input"
    view = explain_user(
        engine, user_id, history.state, history.now, history.decisions, now_is=now_is
    )
    if form == "json":
        sys.stdout.buffer.write(orjson.dumps(view, option=orjson.OPT_INDENT_2) + b"\n")
    else:
        render(view, sys.stdout)
    invalid = sum(history.invalid.values())
    rate = history.lines / history.seconds if history.seconds > 0 else 0.0
    click.echo(
        f"read {history.lines} line(s) in {history.seconds:.2f}s ({rate:,.0f}/s): "
        f"{invalid} invalid, {history.duplicates} duplicate(s); "
        f"{history.events} event(s) of {user_id}",
        err=True,
    )
