"""The command group, and how a command ends when the user can fix what went wrong."""

from __future__ import annotations

import asyncio
import errno
import logging
import sys
from collections.abc import Coroutine
from typing import Any, TypeVar

import click

from triggerstream import compiled, kafka

T = TypeVar("T")


def fail(message: str, status: int = 2) -> None:
    """One line on stderr, then exit: for problems the user can fix."""
    click.echo(f"triggerstream: {message}", err=True)
    sys.exit(status)


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine; Kafka problems become one line and exit status 2."""
    try:
        return asyncio.run(coroutine)
    except kafka.KafkaUnavailable as error:
        fail(str(error))
        raise AssertionError("unreachable") from None


class Commands(click.Group):
    """The command group: a file or folder argument click refuses (missing, a folder
    where a file belongs, unwritable) is one line and exit status 2, like every other
    problem a user can fix, instead of click's usage block."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.BadParameter as error:
            param = error.param
            if param is None or not isinstance(param.type, click.Path | click.File):
                raise
            hint = param.get_error_hint(error.ctx or ctx).strip("'")
            if isinstance(error, click.MissingParameter):  # its message is empty
                command = (error.ctx or ctx).command_path
                fail(f"missing the argument {hint}: `{command} {hint}` (see --help)")
            fail(f"{hint}: {error.message}")
        except OSError as error:
            if error.errno == errno.EPIPE:
                raise  # the reader went away (| head): click ends quietly
            # The system refused a file while the command ran (a full disk, a file
            # removed meanwhile): one line, not a traceback.
            where = f"{error.filename}: " if error.filename else ""
            fail(f"{where}{error.strerror or error}", status=1)


@click.group(cls=Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(
    package_name="triggerstream",
    # Which build of the core runs: compiled (mypyc) or pure Python, and why.
    message=f"%(prog)s %(version)s, core: {compiled.BUILD}",
)
def main() -> None:
    """triggerstream: behavioral offer triggers from Kafka event streams.

    Product services publish usage, purchase, support and profile events; triggerstream
    keeps per-user state, evaluates rules, applies a suppression policy, picks a channel
    and publishes offer triggers for in-app, push and email services.
    """
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # aiokafka logs each failed connection attempt at ERROR; the commands report the
    # outcome themselves in one line with the fix, so its retries are only noise here.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
