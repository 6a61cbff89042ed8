"""Workers on hosts of their own: one host cut off from the cluster, then back.

Two workers, each in a network namespace of its own (tests/hosts.py), reach a
three-broker cluster over their own addresses, and take their rules from the rules
topic. Under a steady producer, one host's link goes down for longer than the session
timeout. The group gives its partitions to the other worker; the cut-off worker, once
its session is over, stops emitting and says so. Its link restored, the group tells it
it is out: it says it lost its partitions, joins again, and the partitions move back.
Checked against replay of the same events: no decision lost or doubled, the triggers
too, repeats identical, respect holds.

If network namespaces cannot be made here, the test fails saying why: it never skips.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.cluster_support import running_cluster
from tests.conftest import run_cli
from tests.hosts import Hosts, HostsUnavailable, make_hosts
from tests.integration.test_rules_topic import owned, version_of
from tests.reliability.cluster_flow import finish, flowing, prepared
from tests.worker_support import WorkerProcess
from triggerstream.testing.apache_cluster import ApacheKafkaCluster
from triggerstream.topics import input_partitions

CUT_FOR = 30.0
"""Seconds the host stays cut off: five times the workers' session timeout (6 s)."""
CUT_OFF = "cut off from the group"
"""What a worker logs once its heartbeats went unanswered for a session timeout."""
LOST = "lost its partitions"
"""What it logs once the group, answering again, no longer counts it a member."""


@pytest.fixture
def hosts() -> Iterator[Hosts]:
    try:
        with make_hosts(2) as made:
            yield made
    except HostsUnavailable as error:
        pytest.fail(
            f"this test needs network namespaces and cannot make them here: {error}",
            pytrace=False,
        )


@pytest.fixture
def bridged_cluster(request: pytest.FixtureRequest, hosts: Hosts) -> Iterator[ApacheKafkaCluster]:
    """Three nodes listening on the hosts' bridge."""
    with running_cluster(request, ApacheKafkaCluster(host=hosts.address)) as cluster:
        yield cluster


def decisions_seen_inside(worker: WorkerProcess) -> float:
    """The worker's triggerstream_decisions_total, asked from inside its host (which
    reaches its own address while its link is down)."""
    assert worker.host is not None
    url = f"http://{worker.web_host}:{worker.web_port}/metrics"
    script = f"import urllib.request as u; print(u.urlopen({url!r}, timeout=10).read().decode())"
    page = subprocess.run(
        worker.host.command([sys.executable, "-c", script]),
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    return sum(
        sample.value
        for family in text_string_to_metric_families(page)
        for sample in family.samples
        if sample.name == "triggerstream_decisions_total"
    )


def wait_for(what: str, done: object, timeout: float, workers: list[WorkerProcess]) -> float:
    """Seconds until ``done()`` held; fails with the workers' logs after ``timeout``."""
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        if done():  # type: ignore[operator]
            return time.monotonic() - began
        time.sleep(0.2)
    logs = "\n".join(f"--- {w.folder.name}\n{w.log()[-4000:]}" for w in workers)
    raise AssertionError(f"not {what} within {timeout:.0f}s:\n{logs}")


@pytest.mark.apache_only
def test_a_host_cut_off_longer_than_the_session_timeout_and_back(
    hosts: Hosts,
    bridged_cluster: ApacheKafkaCluster,
    tmp_path: Path,
    workers: list[WorkerProcess],
) -> None:
    env, settings, stream, rules, expected = prepared(bridged_cluster, tmp_path, 40_000)
    published = run_cli("rules", "publish", str(rules), env=env)
    assert published.returncode == 0, published.stderr
    near, far = hosts.hosts
    pair = [
        WorkerProcess(env, None, tmp_path, "w1", near),
        WorkerProcess(env, None, tmp_path, "w2", far),
    ]
    workers += pair
    first, second = pair
    every = set(range(input_partitions()))
    first.start().wait_ready()
    second.start().wait_ready()

    def shared() -> bool:
        return owned(first) | owned(second) == every and bool(owned(first) and owned(second))

    wait_for("sharing the partitions", shared, 60, pair)
    assert [w.rules_version() for w in pair] == [version_of(rules)] * 2
    progress, flow = flowing(settings, stream, pair)
    while flow.sent < 8_000:
        time.sleep(0.1)

    readies = [len(w.ready_lines()) for w in pair]
    far.cut()
    cut = time.monotonic()
    said = wait_for(f"w2 saying it is {CUT_OFF}", lambda: CUT_OFF in second.log(), 60, pair)
    took_over = said + wait_for(
        "w1 given every partition",
        lambda: len(first.ready_lines()) > readies[0] and owned(first) == every,
        60,
        pair,
    )
    emitted = decisions_seen_inside(second)
    time.sleep(max(0.0, cut + CUT_FOR - time.monotonic()))
    assert decisions_seen_inside(second) == emitted, "the cut-off worker went on emitting"
    readies = [len(w.ready_lines()) for w in pair]
    far.restore()

    def shared_again() -> bool:
        rebalanced = all(len(w.ready_lines()) > n for w, n in zip(pair, readies, strict=True))
        return rebalanced and shared()

    told = wait_for(f"w2 saying it {LOST}", lambda: LOST in second.log(), 120, pair)
    back = told + wait_for("the partitions shared again", shared_again, 120, pair)
    result = finish(flow, settings, expected, stream, rules, tmp_path, pair)
    progress.done.set()
    stall = progress.longest_stall(cut, cut + took_over + 10)
    print(
        f"host of w2 cut off for {CUT_FOR:.0f}s: w2 said it was {CUT_OFF} {said:.1f}s "
        f"after the cut and emitted nothing more; w1 had every partition {took_over:.1f}s "
        f"after it, decisions stalled {stall:.1f}s at most; after the link came back w2 "
        f"said it {LOST} in {told:.1f}s, and the partitions were shared again in "
        f"{back:.1f}s; {result}"
    )
    for worker in pair:
        assert worker.stop() == 0, worker.log()[-3000:]
        assert "Traceback" not in worker.log(), worker.log()[-5000:]
