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

import time
from pathlib import Path

import pytest

from tests.cluster_support import kafka_cluster, replication
from tests.reliability.cluster_flow import (
    CHANGELOGS,
    RATE,
    a_broker_not_leading_the_quorum,
    finish,
    flowing,
    prepared,
)
from tests.worker_support import WorkerProcess
from triggerstream.testing.apache_cluster import ApacheKafkaCluster

__all__ = ["kafka_cluster"]


@pytest.mark.apache_only
def test_a_broker_killed_under_a_steady_stream_and_back_a_minute_later(
    kafka_cluster: ApacheKafkaCluster, tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    env, settings, stream, rules, expected = prepared(kafka_cluster, tmp_path, 60_000)
    worker = WorkerProcess(env, rules, tmp_path).start()
    workers.append(worker)
    worker.wait_ready()
    progress, flow = flowing(settings, stream, [worker])

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
    progress, flow = flowing(settings, stream, [worker])

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
    progress, flow = flowing(settings, stream, [first, second])

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
