"""``triggerstream worker``: the engine on Kafka with faust-streaming and RocksDB."""

from __future__ import annotations

import asyncio
import gc
import logging
from pathlib import Path

import faust

from triggerstream.settings import Settings
from triggerstream.worker.app import WorkerRefused
from triggerstream.worker.preflight import check_topics
from triggerstream.worker.stream import TriggerWorker

log = logging.getLogger("triggerstream.worker")

__all__ = ["WorkerRefused", "run"]

GC_THRESHOLD = 50_000
"""Allocations between two young-generation collections (CPython's default: 700)."""


def run(settings: Settings, rules_path: Path) -> None:
    """Check the topics, then run a worker until SIGTERM or SIGINT (a clean stop: the
    event in flight finishes, offsets are committed, the producer is flushed)."""
    # faust runs on this loop after the check: one loop for the whole process.
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    layout = loop.run_until_complete(check_topics(settings))
    worker = TriggerWorker(settings, rules_path, layout)
    # Objects alive now (modules, faust's services, the rules) live as long as the
    # process: out of the collector's way. And collections less often: a batch makes
    # thousands of short-lived objects, and the states kept decoded between batches
    # are many long-lived ones a full collection walks every time (seen in py-spy: a
    # tenth of the worker's time went to collections with CPython's default 700).
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, 20, 20)
    worker.app.embedded_broker = layout.embedded
    worker.waiting_notes = loop.create_task(worker.say_what_it_waits_for())
    try:
        faust.Worker(
            worker.app,
            loop=loop,
            loglevel=settings.log_level,
            quiet=True,
        ).execute_from_commandline()
    except SystemExit:
        if worker.app.refusal is not None:
            raise WorkerRefused(worker.app.refusal) from None
        raise
