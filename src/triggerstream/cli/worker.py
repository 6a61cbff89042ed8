"""``triggerstream worker``: a stream worker in the foreground."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import click

from triggerstream import compiled, kafka
from triggerstream.cli.app import fail, main
from triggerstream.cli.options import build_settings, kafka_flags, unusable_rules


@main.command()
@kafka_flags
@click.option(
    "--rules",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The rules file, reloaded when it changes [env TRIGGERSTREAM_RULES].",
)
@click.option(
    "--rules-from-topic",
    is_flag=True,
    default=None,
    help="Take the rules from the topic <prefix>rules instead of a file: the latest "
    "version at start, then each one `rules publish` sends [env "
    "TRIGGERSTREAM_RULES_FROM_TOPIC].",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="RocksDB state [env TRIGGERSTREAM_DATA_DIR, default ./triggerstream-data].",
)
@click.option(
    "--web-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Metrics, health and inspector port (personal data: keep it private) "
    "[env TRIGGERSTREAM_WEB_PORT, default 6066].",
)
def worker(**flags: Any) -> None:
    """Run a stream worker: read the input topics, write triggers, decisions,
    attributions and dead letters, until SIGTERM or Ctrl-C.

    Workers with the same TRIGGERSTREAM_TOPIC_PREFIX form one consumer group and share
    the input partitions. Every other setting comes from the TRIGGERSTREAM_ environment
    (see the README).
    """
    from triggerstream import worker as stream_worker
    from triggerstream.rules.load import RulesError, load_rules

    settings = build_settings(**flags)
    if settings.rules_from_topic:
        if settings.rules is not None:
            fail(
                f"rules from both a file ({settings.rules}) and the rules topic: drop "
                "--rules (and TRIGGERSTREAM_RULES) or --rules-from-topic "
                "(TRIGGERSTREAM_RULES_FROM_TOPIC)"
            )
    elif settings.rules is None:
        fail(
            "no rules file: pass --rules FILE or set TRIGGERSTREAM_RULES (or take them "
            "from the rules topic with --rules-from-topic)"
        )
        return
    else:
        try:
            load_rules(settings.rules)
        except RulesError as error:
            fail(f"the worker needs a valid rules file: {unusable_rules(settings.rules, error)}")
            return
        except OSError as error:
            fail(f"cannot read the rules file {settings.rules}: {error.strerror}")
            return
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        fail(f"data dir {settings.data_dir}: cannot make the folder: {error.strerror}")
    if not os.access(settings.data_dir, os.W_OK):
        fail(f"data dir {settings.data_dir}: not writable")
    logging.getLogger("triggerstream").setLevel(settings.log_level.upper())
    shown = ", ".join(f"{k}={v}" for k, v in settings.describe().items() if v is not None)
    click.echo(f"triggerstream worker: {shown}, core: {compiled.BUILD}", err=True)
    try:
        stream_worker.run(settings, None if settings.rules_from_topic else settings.rules)
    except (kafka.KafkaUnavailable, stream_worker.WorkerRefused) as error:
        fail(str(error))
