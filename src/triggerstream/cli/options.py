"""What several commands share: their settings, the Kafka flags, and checks made before
anything runs (a file that cannot be written, a rules file that cannot be used)."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
from pydantic import ValidationError

from triggerstream.cli.app import fail
from triggerstream.settings import Settings

if TYPE_CHECKING:
    from triggerstream.rules.load import RulesError
    from triggerstream.rules.model import RulesFile

F = TypeVar("F", bound=Callable[..., Any])
OUTPUT = click.Path(dir_okay=False, allow_dash=True, path_type=Path)
RULES_OPTION = click.option(
    "--rules",
    "rules_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The rules file [env TRIGGERSTREAM_RULES].",
)
"""``--rules FILE`` of the commands that replay files."""
EVENTS_ARGUMENT = click.argument(
    "events",
    nargs=-1,
    required=True,
    type=click.Path(exists=True, dir_okay=False, allow_dash=True, path_type=Path),
)
"""The event files (``-``: stdin) of the commands that replay files."""
"""A file a command writes ('-': stdout), checked with :func:`writable` before use."""


def build_settings(**flags: Any) -> Settings:
    """Settings from the environment, with the flags that were given on top."""
    overrides = {name: value for name, value in flags.items() if value is not None}
    try:
        return Settings(**overrides)
    except ValidationError as error:
        problems = "; ".join(
            f"TRIGGERSTREAM_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}"
            if e["loc"]
            else e["msg"].removeprefix("Value error, ")
            for e in error.errors(include_url=False)
        )
        fail(f"invalid settings: {problems}")
        raise AssertionError("unreachable") from None


def kafka_flags(command: F) -> F:
    """The flags every command that talks to Kafka takes."""
    command = click.option(
        "--topic-prefix",
        default=None,
        help="Prepended to every topic name [env TRIGGERSTREAM_TOPIC_PREFIX].",
    )(command)
    return click.option(
        "--bootstrap",
        "kafka_bootstrap",
        default=None,
        metavar="HOST:PORT",
        help="Kafka bootstrap servers [env TRIGGERSTREAM_KAFKA_BOOTSTRAP, default localhost:9092].",
    )(command)


def writable(path: Path, flag: str) -> None:
    """Fail now, before anything runs or is written, when ``path`` cannot be written
    as a file: a folder, or in a folder that does not exist or is not writable."""
    if str(path) == "-":
        return
    if path.is_dir():
        fail(f"{flag} {path}: is a folder; give a file name")
    folder = path.parent
    if not folder.is_dir():
        missing = "is not a folder" if folder.exists() else "does not exist"
        fail(f"{flag} {path}: the folder {folder} {missing}")
    if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        fail(f"{flag} {path}: not writable")


def unusable_rules(path: Path, error: RulesError) -> str:
    """One line for a rules file that cannot be used: the first problem, and how to
    see them all."""
    return (
        f"{path} has {len(error.problems)} problem(s), first: "
        f"{error.problems[0].render(str(path))}; "
        f"see all with `triggerstream rules check {path}`"
    )


def timestamp(flag: str, text: str) -> float:
    """POSIX seconds of a flag's RFC 3339 time, or one line saying what is wrong."""
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        fail(f"{flag} {text!r} is not an RFC 3339 timestamp, e.g. 2026-12-01T00:00:00Z")
        raise AssertionError("unreachable") from None
    if parsed.tzinfo is None:
        fail(f"{flag} {text!r} needs an offset, e.g. 2026-12-01T00:00:00Z")
    return parsed.timestamp()


@contextlib.contextmanager
def progress_bar(paths: tuple[Path, ...]) -> Iterator[Callable[[int], None] | None]:
    """A progress bar on a terminal for inputs over 10 MB; nothing otherwise."""
    size = sum(path.stat().st_size for path in paths if str(path) != "-")
    if not sys.stderr.isatty() or size < 10_000_000:
        yield None
        return
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
        transient=True,
    ) as bar:
        task = bar.add_task("replaying", total=size)
        done = 0

        def advance(count: int) -> None:
            nonlocal done
            done += count
            if done >= 1_000_000:
                bar.advance(task, done)
                done = 0

        yield advance


def replay_inputs(command: str, path: Path | None, events: tuple[Path, ...]) -> RulesFile:
    """The rules file and event files of a command that replays files (replay,
    explain), checked: each problem is one line and exit status 2."""
    from triggerstream.rules.load import RulesError, load_rules

    if path is None:
        fail("no rules file: pass --rules FILE or set TRIGGERSTREAM_RULES")
        raise AssertionError("fail exits")
    try:
        loaded = load_rules(path)
    except RulesError as error:
        fail(f"{command} needs a valid rules file: {unusable_rules(path, error)}")
        raise AssertionError("fail exits") from None
    if sum(str(event) == "-" for event in events) > 1:
        fail("stdin ('-') can be read once; name it once among EVENTS")
    return loaded
