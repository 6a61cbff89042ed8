"""``triggerstream rules``: checking a rules file."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from triggerstream.cli.app import main


@main.group()
def rules() -> None:
    """Work with rules files."""


@rules.command("check")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def rules_check(file: Path) -> None:
    """Validate a rules FILE: every problem with its line, column and the value (exit 1)."""
    from triggerstream.rules.load import RulesError, load_rules

    try:
        loaded = load_rules(file)
    except RulesError as error:
        for problem in error.problems:
            click.echo(problem.render(str(file)))
        click.echo(f"{len(error.problems)} problem(s) in {file}", err=True)
        sys.exit(1)
    click.echo(
        f"{file}: OK: {len(loaded.rules)} rule(s), {len(loaded.offers)} offer(s), "
        f"{len(loaded.experiments)} experiment(s)"
    )
