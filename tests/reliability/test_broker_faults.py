"""Broker faults mid-stream: the broker frozen (every output unavailable), stopped and
started again, and killed and started again, while one worker works through a backlog.

The worker is never restarted by the test: it must ride out each fault by itself,
waiting for its acknowledgements and reconnecting, and at the end decide what replay
decides for the same events (nothing lost while the broker was away, nothing counted
twice when it came back). Its memory is sampled while the broker is frozen: a worker
that kept reading while it could not write would grow.

Apache Kafka, on a broker of this test's own (the shared one serves the other tests);
its data survives a restart, as a deployment's does.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.reliability.parity import assert_decided_as_replay
from tests.reliability.streams import respectful_traffic
from tests.scenarios import RULES
from tests.worker_support import WorkerProcess, create_topics, produce, replayed
from triggerstream.settings import Settings
from triggerstream.testing.apache_kafka import ApacheKafkaBroker

EVENTS = 120_000
USERS = 10_000
PAUSE = 25.0
"""Seconds the broker is frozen: longer than the worker's session timeout (6 s)."""
DOWN = 10.0
"""Seconds the broker is away between a stop and the start."""
RECOVERED = 2_000
"""Events processed after a fault that count as the worker being back at work."""
GROWTH_MIB = 150
"""How much the worker's memory may grow while the broker is frozen."""


@pytest.fixture
def broker() -> Iterator[ApacheKafkaBroker]:
    own = ApacheKafkaBroker().start(timeout=120)
    try:
        yield own
    finally:
        own.stop()


def rss_mib(pid: int) -> float:
    """A process's resident memory now."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for process {pid}")


class MemoryWatch(threading.Thread):
    """Samples a process's resident memory every 0.2 s until stopped."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak = 0.0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.2):
            self.peak = max(self.peak, rss_mib(self.pid))


def back_at_work(worker: WorkerProcess, since: float) -> float:
    """Seconds from ``since`` until the worker has processed RECOVERED more events than
    it had then."""
    worker.wait_processed(worker.processed() + RECOVERED, timeout=180)
    return time.monotonic() - since


@pytest.mark.apache_only
def test_a_worker_rides_out_a_frozen_broker_and_two_restarts(
    broker: ApacheKafkaBroker, tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIGGERSTREAM_")}
    env |= {
        "TRIGGERSTREAM_KAFKA_BOOTSTRAP": broker.bootstrap,
        "TRIGGERSTREAM_TOPIC_PREFIX": f"b{uuid.uuid4().hex[:8]}.",
    }
    settings = Settings(
        kafka_bootstrap=broker.bootstrap, topic_prefix=env["TRIGGERSTREAM_TOPIC_PREFIX"]
    )
    events = respectful_traffic(tmp_path / "events.jsonl", EVENTS, USERS)
    create_topics(env)
    produce(env, events)
    expected = replayed(events, tmp_path, env)

    worker = WorkerProcess(env, RULES, tmp_path).start()
    workers.append(worker)
    worker.wait_ready()
    assert worker.process is not None
    pid = worker.process.pid
    figures = []

    # Frozen: nothing can be written (or read) for longer than a session lasts.
    at = worker.wait_processed(EVENTS * 0.1, timeout=300)
    before = rss_mib(pid)
    watch = MemoryWatch(pid)
    watch.start()
    broker.pause()
    time.sleep(PAUSE)
    watch.done.set()
    watch.join()
    broker.resume()
    back = back_at_work(worker, time.monotonic())
    figures.append(f"frozen {PAUSE:.0f}s at {at:,.0f} events: back in {back:.1f}s")
    print(f"memory {before:.0f} MiB before the freeze, at most {watch.peak:.0f} MiB during it")
    assert watch.peak - before < GROWTH_MIB, (before, watch.peak)

    # Stopped cleanly, away for a while, started again on the same data.
    for kill in (False, True):
        at = worker.wait_processed(worker.processed() + EVENTS * 0.15, timeout=300)
        broker.restart(timeout=120, kill=kill, down_for=DOWN)
        back = back_at_work(worker, time.monotonic())
        how = "killed" if kill else "stopped"
        figures.append(
            f"{how} at {at:,.0f} events, down {DOWN:.0f}s, "
            f"up in {broker.start_seconds:.1f}s: back at work in {back:.1f}s"
        )
    print("; ".join(figures))

    summary = assert_decided_as_replay(settings, expected, events, RULES, tmp_path)
    print(summary)
    assert worker.process.poll() is None, "the worker died of a broker fault"
    assert "Traceback" not in worker.log(), worker.log()[-5000:]
    assert worker.stop() == 0, worker.log()[-3000:]
