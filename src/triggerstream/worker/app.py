"""The faust app of a worker, configured from the settings (docs/contract.md section 10)."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import faust

from triggerstream.settings import Settings
from triggerstream.worker.fence.app import FencedApp, FencedTableManager

TABLES = ("users", "copurchases", "dedupe")
"""The worker's tables: each user's state, the co-purchase counts of each partition, and
each user's event ids of the last 24 hours (apart from the state: written once each)."""

MIB = 1024 * 1024
WRITE_BUFFERS = 2


def app_id(settings: Settings) -> str:
    """The consumer group and the prefix of the changelog topics."""
    return settings.topic("triggerstream")


def rocksdb_options(settings: Settings, partitions: int) -> dict[str, int]:
    """RocksDB sizes per database (one per table and partition) from the worker's
    budget: half for the block cache, half for write buffers. faust's defaults (2 GiB
    of cache and 3 x 64 MiB of buffers per database) would reserve far more than a
    2-core, 24 GiB machine has to give."""
    databases = partitions * len(TABLES)
    budget = settings.rocksdb_memory * MIB // databases
    return {
        "block_cache_size": max(MIB, budget // 2),
        "write_buffer_size": max(MIB, budget // 2 // WRITE_BUFFERS),
        "max_write_buffer_number": WRITE_BUFFERS,
    }


def credentials(settings: Settings) -> faust.types.auth.CredentialsT | None:
    """SASL and TLS from the settings, as faust takes them."""
    protocol = settings.security_protocol
    if protocol.startswith("SASL"):
        assert settings.sasl_password is not None  # checked when the settings were read
        return faust.SASLCredentials(
            username=settings.sasl_username,
            password=settings.sasl_password.get_secret_value(),
            mechanism=settings.sasl_mechanism,
            ssl_context=settings.ssl_context() if protocol == "SASL_SSL" else None,
        )
    if protocol == "SSL":
        return faust.SSLCredentials(settings.ssl_context())
    return None


class WorkerRefused(RuntimeError):
    """The worker stopped before processing anything, for a reason the user must fix;
    the message says what happened and the fix, in one line."""


def state_ahead(
    data_dir: Path, embedded: bool, topic: str, partition: int, stored: int, end: int
) -> str:
    """What to tell a user whose kept state is ahead of its changelog, and the fix."""
    where = (
        f"the state kept in {data_dir} has read {topic} partition {partition} up to "
        f"offset {stored}, but the broker says that log "
        + ("is empty" if end < 0 else f"ends at offset {end}")
    )
    if embedded:
        return (
            f"{where}: the embedded broker (Tansu) answers where a log ends inexactly, so a "
            f"worker cannot restart on kept state there. Remove {data_dir} and start again "
            "(the state is rebuilt from the changelogs, which this broker may do "
            "incompletely), or use Apache Kafka for state that survives restarts"
        )
    return (
        f"{where}: the changelog lost records since (its topics deleted and created again, "
        f"or another cluster). Remove {data_dir} to rebuild the state from the changelogs"
    )


class WorkerApp(FencedApp):
    """A faust app that lets the worker give back what it has read but not processed
    before faust waits for every message in hand to be acknowledged (on a rebalance and
    on stopping). Given back means unacknowledged: the offset is not committed, and the
    messages are read again by whoever owns the partition next."""

    def __init__(self, *args: Any, data_dir: Path, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.data_dir = data_dir
        self.embedded_broker = False
        """Whether the broker is the embedded one (set from the preflight's layout)."""
        self.refusal: str | None = None
        """Why the worker stopped itself (:class:`WorkerRefused`), once it has."""

    def refuse_state_ahead(self, topic: str, partition: int, stored: int, end: int) -> None:
        """Stop the worker cleanly, with our message, where faust's own check would
        crash it with ``ConsistencyError``, a traceback and a hint ("you have removed
        data") that is wrong on the embedded broker: there every restart on kept state
        meets it, because Tansu answers the end of a log as the first offset of its
        last batch + 1."""
        self.refusal = state_ahead(
            self.data_dir, self.embedded_broker, topic, partition, stored, end
        )
        os.kill(os.getpid(), signal.SIGTERM)  # the clean stop of a Ctrl-C


def build_app(settings: Settings, partitions: int, replicas: int) -> WorkerApp:
    """A faust app for ``partitions`` input partitions whose changelogs get ``replicas``
    replicas each."""
    options: dict[str, Any] = {
        "broker": [f"kafka://{host.strip()}" for host in settings.kafka_bootstrap.split(",")],
        "broker_credentials": credentials(settings),
        "broker_client_id": settings.client_id,
        "broker_request_timeout": max(settings.request_timeout, settings.session_timeout + 5),
        "broker_session_timeout": settings.session_timeout,
        "broker_heartbeat_interval": max(0.5, settings.session_timeout / 10),
        "consumer_auto_offset_reset": "earliest",
        "processing_guarantee": settings.processing_guarantee,
        "store": "rocksdb://",
        "TableManager": FencedTableManager,
        "datadir": str(settings.data_dir),
        "topic_partitions": partitions,
        "topic_allow_declare": True,
        "web_port": settings.web_port,
        "web_bind": settings.web_host,
        "web_enabled": True,
        # faust's /table endpoints read any key of any table over HTTP (a user's whole
        # state, unchecked and outside the batches) and /router names the other
        # workers: the inspector (worker/inspector.py) is the one way to read a user.
        "web_tables_enabled": False,
        "web_router_enabled": False,
        "producer_acks": -1,
        # Kafka's batch.size. A batch writes every changed user's state to the changelog
        # at once; with faust's 16 KiB, a batch of 700 users' states left in 16 KiB
        # requests, one at a time per broker, and storing took 60% of the worker's time
        # (docs/performance.md). Under the broker's 1 MiB message.max.bytes.
        "producer_max_batch_size": 512 * 1024,
        "autodiscover": False,
        "topic_replication_factor": replicas,
    }
    return WorkerApp(
        app_id(settings),
        fetch_max_wait=settings.fetch_max_wait,
        data_dir=settings.data_dir,
        **options,
    )
