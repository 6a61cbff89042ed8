"""``triggerstream produce``: events from a file to the input topics."""

from __future__ import annotations

from typing import IO, Any

import click

from triggerstream import kafka
from triggerstream.cli.app import fail, main, run
from triggerstream.cli.options import build_settings, kafka_flags
from triggerstream.messages import read_messages


@main.command()
@kafka_flags
@click.argument("file", type=click.File("rb"))
@click.option(
    "--topic",
    default=None,
    help="Send every line to this topic (name without prefix) instead of each line's 'topic'.",
)
@click.option(
    "--no-validate",
    is_flag=True,
    help="Send lines as they are, even invalid ones (to exercise events.dlq).",
)
def produce(file: IO[bytes], topic: str | None, no_validate: bool, **flags: Any) -> None:
    """Publish events from a JSON Lines FILE ('-' for stdin), keyed by user_id.

    Each line is an event envelope; its "topic" field (as in replay files) picks the
    input topic unless --topic is given, and is not part of the published value. Every
    line is checked first: if any is invalid, each problem is listed with its line
    number and nothing is sent (exit status 1).
    """
    settings = build_settings(**flags)
    messages, problems = read_messages(file, topic, not no_validate, settings.max_future)
    if problems:
        for problem in problems[:20]:
            click.echo(problem, err=True)
        more = f" ({len(problems) - 20} more not shown)" if len(problems) > 20 else ""
        fail(f"{len(problems)} invalid line(s){more}; nothing was sent", status=1)
    messages = [(settings.topic(t), key, value) for t, key, value in messages]
    destinations = sorted({t for t, _, _ in messages})

    async def send() -> int:
        # Before the first message: nothing is sent if any topic does not exist.
        try:
            await kafka.require_topics(settings, destinations)
        except kafka.KafkaUnavailable as error:
            raise kafka.KafkaUnavailable(f"nothing was sent: {error}") from None
        return await kafka.produce(settings, messages)

    sent = run(send())
    click.echo(
        f"produced {sent} event(s) to {', '.join(destinations) or 'no topic'} "
        f"on {settings.kafka_bootstrap}",
        err=True,
    )
