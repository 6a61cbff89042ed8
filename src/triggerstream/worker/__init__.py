"""``triggerstream worker``: the engine on Kafka with faust-streaming and RocksDB."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import faust

from triggerstream.settings import Settings
from triggerstream.worker.preflight import check_topics
from triggerstream.worker.stream import TriggerWorker

log = logging.getLogger("triggerstream.worker")


def run(settings: Settings, rules_path: Path) -> None:
    """Check the topics, then run a worker until SIGTERM or SIGINT (a clean stop: the
    event in flight finishes, offsets are committed, the producer is flushed)."""
    # faust runs on this loop after the check: one loop for the whole process.
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    layout = loop.run_until_complete(check_topics(settings))
    worker = TriggerWorker(settings, rules_path, layout)
    faust.Worker(
        worker.app,
        loop=loop,
        loglevel=settings.log_level,
        quiet=True,
    ).execute_from_commandline()
