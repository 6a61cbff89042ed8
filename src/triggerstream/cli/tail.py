"""``triggerstream tail``: the records of a topic, one JSON object a line."""

from __future__ import annotations

import base64
import sys
from typing import Any

import click
import orjson

from triggerstream import kafka
from triggerstream.cli.app import main, run
from triggerstream.cli.options import build_settings, kafka_flags


@main.command()
@kafka_flags
@click.argument("topic")
@click.option("--from-beginning", is_flag=True, help="Start at the oldest record, not the end.")
@click.option("--max-records", type=click.IntRange(min=1), default=None, help="Stop after N.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Stop after this many seconds without a new record [default: never].",
)
def tail(
    topic: str,
    from_beginning: bool,
    max_records: int | None,
    timeout: float | None,
    **flags: Any,
) -> None:
    """Print the values of TOPIC (name without prefix), one JSON object a line.

    Reads every partition without joining a consumer group, so it never takes records
    from a worker. A value that is not JSON is printed as {"value_base64": ...}.
    """
    settings = build_settings(**flags)

    async def follow() -> int:
        count = 0
        values = kafka.tail(settings, settings.topic(topic), from_beginning, timeout, max_records)
        async for value in values:
            sys.stdout.buffer.write(_printable(value) + b"\n")
            sys.stdout.buffer.flush()
            count += 1
        return count

    try:
        count = run(follow())
    except KeyboardInterrupt:
        return
    click.echo(f"{count} record(s) from {settings.topic(topic)}", err=True)


def _printable(value: bytes | None) -> bytes:
    """The value as one line of JSON: itself when it is JSON, else its bytes in base64."""
    if value is None:
        return b"null"
    try:
        return orjson.dumps(orjson.loads(value))
    except orjson.JSONDecodeError:
        return orjson.dumps({"value_base64": base64.b64encode(value).decode()})
