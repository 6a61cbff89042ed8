"""``triggerstream topics``: provisioning the topics."""

from __future__ import annotations

from typing import Any

import click

from triggerstream import kafka
from triggerstream.cli.app import fail, main, run
from triggerstream.cli.options import build_settings, kafka_flags
from triggerstream.topics import load_topics

_NOTES = {
    "created": "created",
    "exists": "exists, unchanged",
    "exists-with-other-partitions": "EXISTS WITH OTHER PARTITION COUNT, unchanged",
}


@main.group()
def topics() -> None:
    """Provision the topics of topics/topics.yaml."""


@topics.command("create")
@kafka_flags
@click.option(
    "--partitions",
    type=click.IntRange(1, 10_000),
    default=None,
    help="Partitions of every topic but the rules topic (always 1) [env "
    "TRIGGERSTREAM_PARTITIONS, default from topics.yaml].",
)
def topics_create(**flags: Any) -> None:
    """Create every topic that does not exist yet (idempotent).

    Existing topics are left as they are; a partition count that differs from the
    declared one is reported, and unequal input topics fail the command (the worker
    needs them equal).
    """
    settings = build_settings(**flags)
    outcomes = run(kafka.create_topics(settings, load_topics()))
    for outcome in outcomes:
        note = _NOTES[outcome.action]
        click.echo(f"{outcome.name:<40} {outcome.partitions:>5} partitions  {note}")
    created = sum(o.action == "created" for o in outcomes)
    click.echo(
        f"{created} created, {len(outcomes) - created} already there, on "
        f"{settings.kafka_bootstrap}",
        err=True,
    )
    if created:
        warning = run(kafka.thin_replication_warning(settings))
        if warning:
            click.echo(warning, err=True)
    unequal = kafka.unequal_co_partitioned(settings, outcomes)
    if unequal:
        fail(
            "input topics have different partition counts "
            f"({', '.join(map(str, unequal))}); the worker needs them equal: "
            "add partitions with kafka-topics.sh --alter so they match (the embedded "
            "broker cannot: restart it, it starts empty, then run topics create first)",
            status=1,
        )
