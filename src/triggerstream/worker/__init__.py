"""``triggerstream worker``: the engine on Kafka with faust-streaming and RocksDB."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import faust

from triggerstream import collector
from triggerstream.rules_topic import RulesFollower, latest
from triggerstream.settings import Settings
from triggerstream.worker import fence, metrics
from triggerstream.worker.app import WorkerRefused
from triggerstream.worker.preflight import check_topics
from triggerstream.worker.stream import TriggerWorker

log = logging.getLogger("triggerstream.worker")

__all__ = ["WorkerRefused", "run"]


def run(settings: Settings, rules_path: Path | None) -> None:
    """Check the topics, then run a worker until SIGTERM or SIGINT (a clean stop: the
    event in flight finishes, offsets are committed, the producer is flushed). Without
    ``rules_path``, the rules come from the rules topic: the latest version at start."""
    try:
        fence.check()  # before anything: faust's and aiokafka's private names
    except fence.FrameworkMismatch as mismatch:
        raise WorkerRefused(str(mismatch)) from None
    # faust runs on this loop after the check: one loop for the whole process.
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    layout = loop.run_until_complete(check_topics(settings))
    rules = rules_path or loop.run_until_complete(follow_rules(settings))
    worker = TriggerWorker(settings, rules, layout)
    collector.for_many_objects()
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


async def follow_rules(settings: Settings) -> RulesFollower:
    """The rules topic followed from its latest valid version (waited for up to
    TRIGGERSTREAM_RULES_WAIT); the invalid ones after it are refused and counted."""
    follower = RulesFollower(settings)
    await follower.start()
    try:
        published, rules, refused = await latest(follower, settings.rules_wait)
    except BaseException:
        await follower.stop()
        raise
    for error in refused:
        metrics.RULES_RELOADS.labels("refused").inc()
        log.error("rules published after the latest valid version refused:\n%s", error)
    log.info(
        "rules taken from %s: version %s, published by %s at %s: %d rule(s)",
        follower.topic,
        rules.version,
        published.published_by,
        published.published_at.isoformat(),
        len(rules.rules),
    )
    return follower
