"""What the cluster fault tests share (test_cluster_faults.py, test_hosts.py): topics with
3 replicas and a min ISR of 2, a steady stream and replay's decisions for it, when the
workers' decisions went up, and the check at the end against replay."""

from __future__ import annotations

import itertools
import threading
import time
from pathlib import Path
from typing import Any

from tests.cluster_support import cluster_env, settings_of
from tests.reliability.parity import assert_decided_as_replay
from tests.reliability.streams import SteadyProducer, respectful_traffic, without_timers
from tests.scenarios import RULES
from tests.worker_support import (
    WorkerProcess,
    assert_same_decisions,
    create_topics,
    replayed,
    wait_for_records,
    write_lines,
)
from triggerstream.records import DECISIONS_TOPIC
from triggerstream.settings import Settings
from triggerstream.testing.apache_cluster import ApacheKafkaCluster

RATE = 600
"""Events per second the producer sends: a modest stream, so the tests take minutes."""
USERS = 6_000
MAX_IDLE = 10
"""Seconds a worker's event may wait for another input topic of its partition with
nothing buffered (TRIGGERSTREAM_MAX_IDLE): a user's next event on another topic is sent
only once the previous one is acknowledged, but while a partition's leadership moves
the worker may read the later one first (Kafka orders a partition, not two topics)."""
CHANGELOGS = [f"triggerstream-{table}-changelog" for table in ("users", "copurchases", "dedupe")]


class Progress(threading.Thread):
    """When the workers' decisions went up: every 0.2 s, each worker's
    ``triggerstream_decisions_total`` (a worker that does not answer is skipped)."""

    def __init__(self, workers: list[WorkerProcess]) -> None:
        super().__init__(daemon=True)
        self.workers = workers
        self.moments: list[float] = []
        self.done = threading.Event()

    def run(self) -> None:
        last: dict[int, float] = {}
        while not self.done.wait(0.2):
            now = time.monotonic()
            for index, worker in enumerate(self.workers):
                try:
                    value = worker.metric("triggerstream_decisions_total")
                except OSError:
                    continue
                if value > last.get(index, 0):
                    self.moments.append(now)
                last[index] = value

    def longest_stall(self, since: float, until: float) -> float:
        """The longest time between ``since`` and ``until`` without a new decision."""
        inside = [since, *(m for m in self.moments if since < m < until), until]
        return max(b - a for a, b in itertools.pairwise(inside))


def flowing(
    settings: Settings, stream: Path, workers: list[WorkerProcess]
) -> tuple[Progress, SteadyProducer]:
    """Watch the workers' decisions, and start sending the stream at RATE."""
    progress = Progress(workers)
    progress.start()
    flow = SteadyProducer(settings, stream, RATE)
    flow.start()
    return progress, flow


def prepared(
    cluster: ApacheKafkaCluster, tmp_path: Path, events: int
) -> tuple[dict[str, str], Settings, Path, Path, dict[str, list[dict[str, Any]]]]:
    """Topics with 3 replicas and a min ISR of 2, the stream, the rules and replay's
    decisions for them."""
    env = cluster_env(
        cluster, replication_factor="3", min_insync_replicas="2", max_idle=str(MAX_IDLE)
    )
    stream = respectful_traffic(tmp_path / "events.jsonl", events, USERS)
    rules = without_timers(RULES, tmp_path / "rules.yaml")
    create_topics(env)
    return env, settings_of(env), stream, rules, replayed(stream, tmp_path, env, rules)


def a_broker_not_leading_the_quorum(cluster: ApacheKafkaCluster) -> int:
    return min(set(cluster.running_ids()) - {cluster.controller()})


def finish(
    flow: SteadyProducer,
    settings: Settings,
    expected: dict[str, list[dict[str, Any]]],
    stream: Path,
    rules: Path,
    tmp_path: Path,
    live: list[WorkerProcess],
) -> str:
    """Wait for the producer, then for every decision; check them as replay's. The
    seconds from the last event sent until every decision was on the topic (to the
    1.5 s of silence that ends a read), and the repeats."""
    flow.join(timeout=600)
    assert flow.error is None, flow.error
    assert flow.sent == len(flow.lines), "the producer stopped early"
    sent_all = time.monotonic()
    got = wait_for_records(
        settings,
        DECISIONS_TOPIC,
        len(expected["decisions"]),
        timeout=180,
        must=False,
        distinct="decision_id",
    )
    out = time.monotonic() - sent_all
    processed = sum(w.processed() for w in live)
    write_lines(tmp_path / "worker-decisions.jsonl", got)
    print(f"live workers processed {processed:,.0f} of {len(flow.lines):,} events sent")
    assert_same_decisions(got, expected["decisions"])  # by rule: what is missing, what extra
    summary = assert_decided_as_replay(settings, expected, stream, rules, tmp_path)
    return f"every decision out {out:.1f}s after the last event was sent; {summary}"
