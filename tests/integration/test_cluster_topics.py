"""`topics create` on a three-broker cluster: the replication of the settings, and a
warning for a single copy."""

from __future__ import annotations

import pytest

from tests.cluster_support import cluster_env, kafka_cluster, replication, settings_of
from tests.conftest import run_cli
from triggerstream.testing.apache_cluster import ApacheKafkaCluster
from triggerstream.topics import load_topics

__all__ = ["kafka_cluster"]


@pytest.mark.apache_only
def test_topics_get_three_replicas_and_a_min_isr_of_two_and_one_copy_is_warned_about(
    kafka_cluster: ApacheKafkaCluster,
) -> None:
    assert len(kafka_cluster.running_ids()) == 3
    assert kafka_cluster.controller() in (1, 2, 3)
    declared = {spec.name for spec in load_topics()}

    env = cluster_env(kafka_cluster, replication_factor="3", min_insync_replicas="2")
    created = run_cli("topics", "create", env=env)
    assert created.returncode == 0, created.stderr
    assert "warning" not in created.stderr
    settings = settings_of(env)
    got = replication(settings, declared)
    assert set(got.values()) == {(3, "2")}, got

    single = cluster_env(kafka_cluster, replication_factor="1")
    created = run_cli("topics", "create", env=single)
    assert created.returncode == 0, created.stderr
    warnings = [line for line in created.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == [
        "warning: topics created with replication factor 1 on a cluster of 3 brokers: a "
        "broker lost takes its partitions with it; set TRIGGERSTREAM_REPLICATION_FACTOR=3 "
        "and TRIGGERSTREAM_MIN_INSYNC_REPLICAS=2"
    ], created.stderr
    # One copy, and the broker's min ISR (2 on this cluster).
    assert set(replication(settings_of(single), declared).values()) == {(1, "2")}

    # The broker's default (3 on this cluster, as on any production one): no warning.
    default = cluster_env(kafka_cluster)
    created = run_cli("topics", "create", env=default)
    assert created.returncode == 0, created.stderr
    assert "warning" not in created.stderr
    assert {rf for rf, _ in replication(settings_of(default), declared).values()} == {3}
