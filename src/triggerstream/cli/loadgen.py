"""``triggerstream loadgen``: the demo's traffic at a steady rate, to any broker."""

from __future__ import annotations

import time
from functools import partial
from typing import Any

import click

from triggerstream.cli.app import main, run
from triggerstream.cli.options import build_settings, kafka_flags


@main.command()
@kafka_flags
@click.option(
    "--rate", type=click.FloatRange(min=1), default=200, show_default=True, help="Events/s."
)
@click.option("--users", type=click.IntRange(1), default=10_000, show_default=True)
@click.option(
    "--duration",
    type=click.FloatRange(min=1),
    default=None,
    help="Seconds to run [default: until Ctrl-C].",
)
@click.option("--seed", type=int, default=None, help="Same seed, same users [default: the clock].")
@click.option(
    "--react/--no-react",
    default=False,
    show_default=True,
    help="Users answer the offers they get (reads the trigger topics): feedback, purchases.",
)
def loadgen(
    rate: float, users: int, duration: float | None, seed: int | None, react: bool, **flags: Any
) -> None:
    """Produce the demo's realistic traffic at a steady rate to any broker, for
    benchmarks and soak tests. Prints the rate reached every 10 seconds on stderr.
    """
    from triggerstream import loadgen as generating
    from triggerstream.simulation import Population

    settings = build_settings(**flags)
    population = Population(users, seed=int(time.time()) if seed is None else seed)
    load = generating.Load(settings, population, rate)
    click.echo(
        f"loadgen: {rate:,.0f} events/s from {users:,} users to {settings.kafka_bootstrap}"
        + (f" for {duration:,.0f} s" if duration else "; Ctrl-C stops"),
        err=True,
    )
    run(generating.run(load, duration, react, partial(click.echo, err=True)))
