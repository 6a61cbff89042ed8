"""``triggerstream demo``: everything on this machine, with a live view."""

from __future__ import annotations

import os
import time
from pathlib import Path

import click

from triggerstream import kafka
from triggerstream.cli.app import fail, main
from triggerstream.cli.options import unusable_rules, writable
from triggerstream.ports import free_port, port_is_free


@main.command()
@click.option(
    "--rules",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Rules file [default: the example rules, examples/rules.yaml].",
)
@click.option("--users", type=click.IntRange(1), default=5000, show_default=True)
@click.option(
    "--rate", type=click.FloatRange(min=1), default=100, show_default=True, help="Events/s."
)
@click.option(
    "--duration",
    type=click.FloatRange(min=1),
    default=None,
    help="Seconds of traffic, then a summary [default: until Ctrl-C].",
)
@click.option(
    "--port", type=click.IntRange(0, 65535), default=0, help="Broker port [default: a free one]."
)
@click.option(
    "--web-port",
    type=click.IntRange(1, 65535),
    default=6066,
    show_default=True,
    help="The worker's metrics and health port.",
)
@click.option(
    "--keep",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Keep the logs and RocksDB state in this directory [default: a temporary one, "
    "removed at the end but for the worker's log].",
)
@click.option(
    "--screenshot",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Save the final view as an SVG picture.",
)
def demo(
    rules: Path | None,
    users: int,
    rate: float,
    duration: float | None,
    port: int,
    web_port: int,
    keep: Path | None,
    screenshot: Path | None,
) -> None:
    """Run everything on this machine, with nothing else installed: an embedded broker,
    the topics, a worker, realistic users (listeners skipping tracks, teams filling
    their storage, shoppers, trials, tickets, NPS answers, and their answers to the
    offers they get), and a live view of triggers with their offers, suppressions and
    what each reason means, the last rules reload, and latency.

    Ctrl-C stops it all in order and prints a summary.
    """
    from rich.console import Console

    from triggerstream.broker import BrokerNotAvailable
    from triggerstream.demo import DemoError, DemoOptions
    from triggerstream.demo import run as run_demo
    from triggerstream.rules.load import RulesError, load_rules

    if rules is not None:
        try:
            load_rules(rules)
        except RulesError as error:
            fail(f"the demo needs a valid rules file: {unusable_rules(rules, error)}")
    # Where it writes is checked before anything starts: a picture that cannot be saved
    # must not cost the run and its summary.
    if screenshot is not None:
        writable(screenshot, "--screenshot")
    if keep is not None:
        try:
            keep.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            fail(f"--keep {keep}: cannot make the folder: {error.strerror}")
        if not os.access(keep, os.W_OK):
            fail(f"--keep {keep}: not writable")
    port = port or free_port()
    for wanted, flag in ((port, "--port"), (web_port, "--web-port")):
        if not port_is_free(wanted):
            fail(f"port {wanted} on 127.0.0.1 is in use; pick another with {flag}")
    began = time.monotonic()
    console = Console(stderr=False)
    try:
        options = DemoOptions(rules, users, rate, duration, port, web_port, keep, screenshot)
        tally = run_demo(options, console, began)
    except (DemoError, BrokerNotAvailable, kafka.KafkaUnavailable) as error:
        fail(str(error), status=1)
        return
    except KeyboardInterrupt:
        console.print("stopped before the traffic started")
        return
    console.print()
    console.print(tally.summary())
    if tally.worker_log is not None:
        console.print(f"the worker's log stays in {tally.worker_log}")
