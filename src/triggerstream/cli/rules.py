"""``triggerstream rules``: checking a rules file, publishing it to the rules topic and
listing the versions published (docs/contract.md sections 6 and 17)."""

from __future__ import annotations

import datetime as dt
import getpass
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from triggerstream.cli.app import fail, main, run
from triggerstream.cli.options import build_settings, kafka_flags

if TYPE_CHECKING:
    from triggerstream.rules.model import RulesFile

HISTORY_WAIT = 30.0
"""Seconds `rules history` reads the topic at most (it stops at the end it found)."""


@main.group()
def rules() -> None:
    """Work with rules files and the rules topic."""


def checked(file: Path) -> RulesFile:
    """The rules of a valid FILE; otherwise every problem on stdout, exit status 1."""
    from triggerstream.rules.load import RulesError, load_rules

    try:
        return load_rules(file)
    except RulesError as error:
        for problem in error.problems:
            click.echo(problem.render(str(file)))
        click.echo(f"{len(error.problems)} problem(s) in {file}", err=True)
        sys.exit(1)


@rules.command("check")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def rules_check(file: Path) -> None:
    """Validate a rules FILE: every problem with its line, column and the value (exit 1)."""
    loaded = checked(file)
    click.echo(
        f"{file}: OK: {len(loaded.rules)} rule(s), {len(loaded.offers)} offer(s), "
        f"{len(loaded.experiments)} experiment(s)"
    )
    click.echo(f"{file}: version {loaded.version} (the rules_version of its decisions)")


@rules.command("publish")
@kafka_flags
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def rules_publish(file: Path, **flags: Any) -> None:
    """Validate a rules FILE as `rules check` does (its problems: exit 1, nothing sent),
    then publish it on the topic <prefix>rules, where workers started with
    --rules-from-topic take it within seconds. Its version is the first 12 hex digits
    of the sha256 of its text; the publisher is TRIGGERSTREAM_USER, else the OS user."""
    from triggerstream.rules_topic import PublishedRules, publish

    settings = build_settings(**flags)
    loaded = checked(file)
    text = file.read_text(encoding="utf-8")  # read as UTF-8 by the check just made
    by = settings.user or _os_user()
    published = PublishedRules.of(text, by, dt.datetime.now(dt.UTC))
    if published.version != loaded.version:  # the file changed between two reads
        fail(f"{file} changed while it was published; run the command again")
    topic = run(publish(settings, published))
    click.echo(
        f"published {file} as version {published.version} ({len(loaded.rules)} rule(s)) "
        f"on {topic} at {published.published_at.isoformat()} by {by}"
    )


@rules.command("history")
@kafka_flags
def rules_history(**flags: Any) -> None:
    """List the versions published on the topic <prefix>rules, oldest first: version,
    time (UTC), publisher and rule count.

    The topic is compacted: the broker keeps the latest version for good but may have
    removed older ones, so the list can be shorter than what was published."""
    from triggerstream.rules.load import RulesError, parse_rules
    from triggerstream.rules_topic import history

    settings = build_settings(**flags)
    listed = run(history(settings, HISTORY_WAIT))
    for offset, published in listed:
        if isinstance(published, str):
            click.echo(f"offset {offset}: {published}")
            continue
        try:
            count = f"{len(parse_rules(published.text).rules)} rule(s)"
        except RulesError as error:
            count = f"INVALID ({len(error.problems)} problem(s)): workers refuse it"
        click.echo(
            f"{published.version}  {published.published_at.isoformat()}  "
            f"{published.published_by}  {count}"
        )
    click.echo(
        f"{len(listed)} version(s) on {settings.topic('rules')}, oldest first (compacted: "
        "older versions may be gone; the latest stays)",
        err=True,
    )


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name and no password entry (some containers)
        return "unknown"
