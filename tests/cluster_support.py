"""A three-broker Apache Kafka cluster of a test's own (triggerstream.testing.apache_cluster),
and what tests read from it: the replication its topics got."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from tests.conftest import LOG_DIR
from triggerstream.settings import Settings
from triggerstream.testing.apache_cluster import ApacheKafkaCluster


@pytest.fixture
def kafka_cluster(request: pytest.FixtureRequest) -> Iterator[ApacheKafkaCluster]:
    """Three KRaft nodes of this test's own (its faults must not reach other tests)."""
    with running_cluster(request, ApacheKafkaCluster()) as cluster:
        yield cluster


@contextmanager
def running_cluster(
    request: pytest.FixtureRequest, cluster: ApacheKafkaCluster
) -> Iterator[ApacheKafkaCluster]:
    """The cluster started, then stopped; its nodes' logs go to .test-logs/ if the
    test failed."""
    cluster.start(timeout=180)
    print(f"cluster {cluster.bootstrap} answered in {cluster.start_seconds:.1f}s")
    failed_before = request.session.testsfailed
    try:
        yield cluster
    finally:
        keep = request.session.testsfailed > failed_before
        if keep:
            LOG_DIR.mkdir(exist_ok=True)
            for node_id, log in cluster.logs().items():
                name = f"{request.node.name}-node{node_id}.log"
                shutil.copy(log, LOG_DIR / name)
                print(f"\nbroker log kept: {LOG_DIR / name}")
        cluster.stop()


def cluster_env(cluster: ApacheKafkaCluster, **settings: str) -> dict[str, str]:
    """A `triggerstream` environment for the cluster, topics of its own prefix, and
    the given TRIGGERSTREAM_ settings (by their name without the prefix)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("TRIGGERSTREAM_") or k == "TRIGGERSTREAM_PURE"
    }
    env["TRIGGERSTREAM_KAFKA_BOOTSTRAP"] = cluster.bootstrap
    env["TRIGGERSTREAM_TOPIC_PREFIX"] = f"c{uuid.uuid4().hex[:8]}."
    env |= {f"TRIGGERSTREAM_{name.upper()}": value for name, value in settings.items()}
    return env


def settings_of(env: dict[str, str]) -> Settings:
    return Settings(
        kafka_bootstrap=env["TRIGGERSTREAM_KAFKA_BOOTSTRAP"],
        topic_prefix=env["TRIGGERSTREAM_TOPIC_PREFIX"],
        request_timeout=20,
    )


def replication(settings: Settings, names: Iterable[str]) -> dict[str, tuple[int, str]]:
    """Each of these topics (names without the prefix): its partitions' replica count
    (the smallest) and its min.insync.replicas, as the cluster describes them. Waits
    up to 30 s for a broker's metadata to show every one (a topic just created may not
    be on the broker that answers yet)."""
    wanted = sorted(settings.topic(name) for name in names)

    async def describe() -> dict[str, tuple[int, str]]:
        admin = AIOKafkaAdminClient(**settings.kafka_options())
        await admin.start()
        deadline = time.monotonic() + 30
        try:
            while True:
                replicas = {
                    t["topic"]: min(len(p["replicas"]) for p in t["partitions"])
                    for t in await admin.describe_topics(wanted)
                    if t["error_code"] == 0 and t["partitions"]
                }
                resources = [
                    ConfigResource(ConfigResourceType.TOPIC, name, {"min.insync.replicas": None})
                    for name in wanted
                ]
                min_isr = {
                    resource[3]: entry[1]
                    for response in await admin.describe_configs(resources)
                    for resource in response.resources
                    if resource[0] == 0
                    for entry in resource[4]
                }
                if set(wanted) <= set(replicas) & set(min_isr):
                    return {name: (replicas[name], min_isr[name]) for name in wanted}
                assert time.monotonic() < deadline, f"not all of {wanted} described"
                await asyncio.sleep(0.5)
        finally:
            await admin.close()

    return asyncio.run(describe())
