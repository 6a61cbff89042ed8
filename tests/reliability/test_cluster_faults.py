"""Broker faults on a three-broker cluster, under a steady producer.

The topics and the worker's changelogs have 3 replicas and ``min.insync.replicas=2``,
and every producer waits for acks from all in-sync replicas: one broker lost must lose
no acknowledged write and stop nothing for longer than it takes the cluster to move
the partitions it led. Each test checks, against replay of the same events, that the
decisions are replay's (none lost, none doubled), the triggers too, repeats are
identical and respect holds; and prints what a user would measure: how long decisions
stalled after the fault, and how long after the last event was sent every decision was
out.

- (a) one broker SIGKILLed and started again a minute later;
- (b) the active controller's node killed (combined mode: a broker too);
- (c) two workers while a broker is down, one of them killed.

The rules are the demo's without its timers, as in test_rebalance.py: the stream is last
month's traffic sent now, and a timer fires on the wall clock.
"""

from __future__ import annotations

import itertools
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.cluster_support import cluster_env, kafka_cluster, replication, settings_of
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

__all__ = ["kafka_cluster"]

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


@pytest.mark.apache_only
def test_a_broker_killed_under_a_steady_stream_and_back_a_minute_later(
    kafka_cluster: ApacheKafkaCluster, tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    env, settings, stream, rules, expected = prepared(kafka_cluster, tmp_path, 60_000)
    worker = WorkerProcess(env, rules, tmp_path).start()
    workers.append(worker)
    worker.wait_ready()
    progress = Progress([worker])
    progress.start()
    flow = SteadyProducer(settings, stream, RATE)
    flow.start()

    while flow.sent < 12_000:
        time.sleep(0.1)
    victim = a_broker_not_leading_the_quorum(kafka_cluster)
    processed_before = worker.processed()
    killed = time.monotonic()
    kafka_cluster.kill(victim)
    time.sleep(60)
    processed_while_down = worker.processed() - processed_before
    up = kafka_cluster.restart(victim)
    restarted = time.monotonic()
    result = finish(flow, settings, expected, stream, rules, tmp_path, [worker])
    progress.done.set()
    stall = progress.longest_stall(killed, killed + 30)
    stall_back = progress.longest_stall(restarted - up, restarted + 30)
    print(
        f"(a) node {victim} killed at {processed_before:,.0f} events; decisions stalled "
        f"{stall:.1f}s at most in the 30s after; {processed_while_down:,.0f} events "
        f"processed in the 60s it was down; it answered {up:.1f}s after its restart, "
        f"decisions stalled {stall_back:.1f}s at most around it; {result}"
    )
    # Two of three replicas in sync: the cluster went on without the lost broker.
    assert processed_while_down > RATE * 60 * 0.8, processed_while_down
    assert set(replication(settings, CHANGELOGS).values()) == {(3, "2")}
    assert worker.stop() == 0, worker.log()[-3000:]
    assert "Traceback" not in worker.log(), worker.log()[-5000:]


@pytest.mark.apache_only
def test_the_active_controller_killed_under_a_steady_stream(
    kafka_cluster: ApacheKafkaCluster, tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    env, settings, stream, rules, expected = prepared(kafka_cluster, tmp_path, 30_000)
    worker = WorkerProcess(env, rules, tmp_path).start()
    workers.append(worker)
    worker.wait_ready()
    progress = Progress([worker])
    progress.start()
    flow = SteadyProducer(settings, stream, RATE)
    flow.start()

    while flow.sent < 9_000:
        time.sleep(0.1)
    leader = kafka_cluster.controller()
    killed = time.monotonic()
    kafka_cluster.kill(leader)
    successor = kafka_cluster.controller()
    elected = time.monotonic() - killed
    assert successor != leader
    time.sleep(10)
    up = kafka_cluster.restart(leader)
    result = finish(flow, settings, expected, stream, rules, tmp_path, [worker])
    progress.done.set()
    stall = progress.longest_stall(killed, killed + 10)
    print(
        f"(b) controller node {leader} killed; node {successor} led the quorum "
        f"{elected:.1f}s later; decisions stalled {stall:.1f}s at most in the 10s after; "
        f"the node answered {up:.1f}s after its restart; {result}"
    )
    assert worker.stop() == 0, worker.log()[-3000:]
    assert "Traceback" not in worker.log(), worker.log()[-5000:]


@pytest.mark.apache_only
def test_two_workers_while_a_broker_is_down_and_one_worker_killed(
    kafka_cluster: ApacheKafkaCluster, tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    env, settings, stream, rules, expected = prepared(kafka_cluster, tmp_path, 40_000)
    first = WorkerProcess(env, rules, tmp_path, "w1").start()
    workers.append(first)
    first.wait_ready()
    second = WorkerProcess(env, rules, tmp_path, "w2").start()
    workers.append(second)
    second.wait_ready()
    first.wait_ready(2)  # the partitions are shared out
    progress = Progress([first, second])
    progress.start()
    flow = SteadyProducer(settings, stream, RATE)
    flow.start()

    while flow.sent < 8_000:
        time.sleep(0.1)
    victim = a_broker_not_leading_the_quorum(kafka_cluster)
    kafka_cluster.kill(victim)
    time.sleep(5)
    rebalanced = len(first.ready_lines()) + 1
    second.kill()
    worker_killed = time.monotonic()
    first.wait_ready(rebalanced)
    took_over = time.monotonic() - worker_killed
    time.sleep(max(0.0, worker_killed + 20 - time.monotonic()))
    up = kafka_cluster.restart(victim)
    result = finish(flow, settings, expected, stream, rules, tmp_path, [first])
    progress.done.set()
    stall = progress.longest_stall(worker_killed, worker_killed + 30)
    print(
        f"(c) node {victim} down, then worker w2 killed: w1 had every partition "
        f"{took_over:.1f}s later, decisions stalled {stall:.1f}s at most; the node "
        f"answered {up:.1f}s after its restart; {result}"
    )
    assert first.stop() == 0, first.log()[-3000:]
    assert "Traceback" not in first.log(), first.log()[-5000:]
