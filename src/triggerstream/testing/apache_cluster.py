"""A throwaway three-node Apache Kafka cluster on loopback, for tests of broker loss.

Each node is one JVM in KRaft *combined* mode: broker and controller in one process,
the three controllers a static quorum (``controller.quorum.voters``). Combined, not a
separate controller quorum, because:

- three JVMs instead of six: the tests run on a 2-core CI machine next to workers;
- killing a node then takes a broker *and* a voter, as losing a machine of a small
  cluster does, and killing the active controller's node tests a broker loss and a
  controller election at once (Kafka's docs keep combined mode for small or test
  clusters; production clusters of any size run controllers of their own).

Replication as a production cluster has it: internal topics and topics created with
the broker's default get 3 replicas, ``min.insync.replicas=2``, unclean leader election
off, so that one node may die at any moment without an acknowledged write being lost,
and a second loss stops writes instead of losing them.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Final, Self

from triggerstream.testing.apache_kafka import (
    _LIVE_BROKERS,
    ApacheKafkaBroker,
    _format_or_fail,
    _new_cluster_id,
    _properties_text,
    free_ports,
    kafka_classpath,
)

__all__ = ["ApacheKafkaCluster", "ClusterNode"]

NODES: Final = 3


class ClusterNode(ApacheKafkaBroker):
    """One node (broker and controller) of an :class:`ApacheKafkaCluster`."""

    def __init__(
        self,
        node_id: int,
        voters: str,
        cluster_id: str,
        port: int,
        controller_port: int,
        host: str = "127.0.0.1",
    ) -> None:
        super().__init__(port=port, controller_port=controller_port, host=host)
        self.node_id = node_id
        self._voters = voters
        self._cluster_id = cluster_id

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<ClusterNode {self.node_id} {self.bootstrap} {state}>"

    @property
    def properties(self) -> dict[str, str]:
        """The node's server.properties: a voter of the static three-node quorum."""
        plaintext = f"PLAINTEXT://{self.host}:{self.port}"
        controller = f"CONTROLLER://127.0.0.1:{self.controller_port}"
        return {
            "process.roles": "broker,controller",
            "node.id": str(self.node_id),
            "controller.quorum.voters": self._voters,
            "listeners": f"{plaintext},{controller}",
            "advertised.listeners": plaintext,
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.data_dir),
            "num.partitions": "1",
            "default.replication.factor": str(NODES),
            "min.insync.replicas": "2",
            "unclean.leader.election.enable": "false",
            "offsets.topic.replication.factor": str(NODES),
            "transaction.state.log.replication.factor": str(NODES),
            "transaction.state.log.min.isr": "2",
            "share.coordinator.state.topic.replication.factor": str(NODES),
            "share.coordinator.state.topic.min.isr": "2",
            "group.initial.rebalance.delay.ms": "0",
            # As for the single node: a killed node's broker session expires in 3 s, so
            # its partitions' leadership moves (and it may register again) quickly.
            "broker.heartbeat.interval.ms": "500",
            "broker.session.timeout.ms": "3000",
            # Quorum timeouts (Kafka's defaults are 2 s fetch, 1 s election): kept.
        }

    @property
    def process_id(self) -> int | None:
        """The JVM's pid while it runs."""
        return self._process.pid if self._process is not None and self.running else None

    def leader_seen(self) -> tuple[int, int] | None:
        """(epoch, leader id) of the controller quorum as this node last recorded it in
        its ``quorum-state`` file, or None if it knows no leader."""
        path = self.data_dir / "__cluster_metadata-0" / "quorum-state"
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        leader = int(state.get("leaderId", -1))
        return (int(state.get("leaderEpoch", -1)), leader) if leader >= 0 else None

    def launch(self) -> None:
        """Write the config, format the storage the first time, spawn the JVM; do not
        wait (the quorum needs two voters before any node answers)."""
        if self.running:
            raise RuntimeError(f"{self!r} is already running")
        libs = kafka_classpath()
        if self._work_dir is None:
            self._work_dir = Path(tempfile.mkdtemp(prefix=f"triggerstream-kafka{self.node_id}-"))
        config = self.work_dir / "server.properties"
        config.write_text(_properties_text(self.properties), encoding="utf-8")
        if not (self.data_dir / "meta.properties").exists():
            self._format_storage(libs, config)
        self._spawn(libs, config)
        _LIVE_BROKERS.add(self)

    def wait_ready(self, deadline: float) -> None:
        """Wait until the node answers a metadata request (see ApacheKafkaBroker)."""
        self._wait_until_ready(deadline)

    def kill(self) -> None:
        """SIGKILL: no controlled shutdown, its data kept for :meth:`start`."""
        self._terminate(kill=True)

    def _format_storage(self, libs: Path, config: Path) -> None:
        # Static quorum: every node formatted with the cluster's id, no --standalone.
        command = [
            *self._java_command(libs, ["-Xmx256m"]),
            "kafka.tools.StorageTool",
            "format",
            "--config",
            str(config),
            "--cluster-id",
            self._cluster_id,
        ]
        _format_or_fail(command, command, self.log_path, f"Kafka storage of node {self.node_id}")


class ApacheKafkaCluster:
    """Three Apache Kafka KRaft nodes (combined broker and controller) on this machine.

    Each node has its own work dir (config, data, log), listener port and controller
    port. Clients reach the listeners on ``host``: 127.0.0.1 unless told, or an address
    of this machine that other network namespaces reach (tests/hosts.py); the quorum
    talks on 127.0.0.1. :meth:`kill` and :meth:`restart` act on one node by its id (1, 2, 3);
    :meth:`controller` says which node leads the controller quorum.
    """

    def __init__(self, nodes: int = NODES, host: str = "127.0.0.1") -> None:
        ports = free_ports(2 * nodes)
        cluster_id = _new_cluster_id()
        voters = ",".join(f"{i + 1}@127.0.0.1:{ports[nodes + i]}" for i in range(nodes))
        self.nodes: dict[int, ClusterNode] = {
            i + 1: ClusterNode(i + 1, voters, cluster_id, ports[i], ports[nodes + i], host)
            for i in range(nodes)
        }
        self.cluster_id = cluster_id
        self.start_seconds: float | None = None
        """Seconds from the first spawn until every node answered metadata."""

    def __repr__(self) -> str:
        return f"<ApacheKafkaCluster {self.bootstrap} up {self.running_ids()}>"

    @property
    def bootstrap(self) -> str:
        """Every node's ``host:port``, comma separated, for ``bootstrap_servers``."""
        return ",".join(node.bootstrap for node in self.nodes.values())

    def running_ids(self) -> list[int]:
        return [i for i, node in self.nodes.items() if node.running]

    def start(self, timeout: float = 180) -> Self:
        """Start every node and wait until each answers a metadata request."""
        kafka_classpath()  # the download, if any, does not count against the timeout
        began = time.monotonic()
        deadline = began + timeout
        try:
            for node in self.nodes.values():
                node.launch()
            for node in self.nodes.values():
                node.wait_ready(deadline)
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - began
        _LIVE_CLUSTERS.add(self)
        return self

    def stop(self, keep_logs: bool = False) -> None:
        """Kill every node and remove the work dirs unless ``keep_logs``. A throwaway
        cluster's data goes with it, and a controlled shutdown of the last nodes waits
        for a quorum that is leaving too (20 s each)."""
        _LIVE_CLUSTERS.discard(self)
        for node in self.nodes.values():
            node.kill()
        for node in self.nodes.values():
            node.stop(keep_logs=keep_logs)

    def kill(self, node_id: int) -> None:
        """SIGKILL one node, as a machine lost at once; its data stays for restart."""
        self.nodes[node_id].kill()

    def restart(
        self, node_id: int, timeout: float = 120, *, kill: bool = False, down_for: float = 0
    ) -> float:
        """Start a node again on its data (stopping it first if it runs; ``kill``:
        SIGKILL); ``down_for`` seconds between. Returns seconds until it answered."""
        node = self.nodes[node_id]
        if node.running:
            node._terminate(kill=kill)
        time.sleep(down_for)
        node.start(timeout)
        assert node.start_seconds is not None
        return node.start_seconds

    def controller(self, timeout: float = 30) -> int:
        """The node id of the active controller (the quorum's leader): the leader of the
        highest epoch that a majority of the running nodes have recorded."""
        deadline = time.monotonic() + timeout
        while True:
            seen = [self.nodes[i].leader_seen() for i in self.running_ids()]
            known = [s for s in seen if s is not None]
            if known:
                epoch, leader = max(known)
                agreeing = sum(s == (epoch, leader) for s in known)
                if agreeing * 2 > len(self.nodes) and leader in self.running_ids():
                    return leader
            if time.monotonic() > deadline:
                raise RuntimeError(f"no controller leader agreed within {timeout}s: {seen}")
            time.sleep(0.2)

    def logs(self) -> dict[int, Path]:
        """Each node's log file (while its work dir exists)."""
        return {i: node.log_path for i, node in self.nodes.items() if node._work_dir}

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


_LIVE_CLUSTERS: set[ApacheKafkaCluster] = set()


@atexit.register
def _stop_live_clusters() -> None:
    for cluster in list(_LIVE_CLUSTERS):
        cluster.stop()


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m triggerstream.testing.apache_cluster``: run a cluster until Ctrl-C."""
    import signal

    with ApacheKafkaCluster() as cluster:
        print(f"Apache Kafka cluster on {cluster.bootstrap} in {cluster.start_seconds:.1f}s")
        print(f"controller: node {cluster.controller()}; Ctrl-C stops it", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
