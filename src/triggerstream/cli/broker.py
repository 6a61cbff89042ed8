"""``triggerstream broker``: the embedded broker in the foreground."""

from __future__ import annotations

import signal
import sys

import click

from triggerstream.cli.app import fail, main
from triggerstream.ports import port_is_free


@main.command()
@click.option("--port", default=9092, show_default=True, help="Port on 127.0.0.1 to listen on.")
def broker(port: int) -> None:
    """Run an embedded Kafka-protocol broker (Tansu) for development and tests.

    It listens on 127.0.0.1 only and keeps every record IN MEMORY ONLY: everything is
    lost when it stops. Retention and cleanup policies are ignored. Runs in the
    foreground until Ctrl-C. For anything that must survive a restart, use Apache Kafka.
    """
    from triggerstream.broker import BrokerNotAvailable, EmbeddedBroker

    if not port_is_free(port):
        fail(f"port {port} on 127.0.0.1 is in use; pick another with --port")
    embedded = EmbeddedBroker(port)
    try:
        embedded.start()
    except BrokerNotAvailable as error:
        fail(str(error))
    # SIGTERM stops it like Ctrl-C; SIGINT is set explicitly because a shell starts
    # background jobs with it ignored.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    click.echo(
        f"embedded broker (Tansu, in memory only) ready on {embedded.bootstrap} "
        f"in {embedded.start_seconds:.2f}s; log: {embedded.log_path}; Ctrl-C stops it",
        err=True,
    )
    try:
        status = embedded.wait()
    except KeyboardInterrupt:
        embedded.stop()
        status = 0
    click.echo("embedded broker stopped; its data is gone", err=True)
    sys.exit(status if status > 0 else 0)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
