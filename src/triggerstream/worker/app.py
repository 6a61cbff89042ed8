"""The faust app of a worker, configured from the settings (DESIGN.md section 10)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka

from triggerstream.settings import Settings

TABLES = ("users", "copurchases")
"""The worker's tables: each user's state, and the co-purchase counts of each partition."""

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


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """faust's consumer with the fetch wait of the settings: faust hard-codes 1.5 s,
    and a broker that answers a fetch only when the wait is over (Tansu does) would add
    up to that much to every trigger's latency."""

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = int(cast(WorkerApp, self.app).fetch_max_wait * 1000)
        return consumer


class _Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> _ConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class WorkerApp(faust.App):
    """A faust app that lets the worker give back what it has read but not processed
    before faust waits for every message in hand to be acknowledged (on a rebalance and
    on stopping). Given back means unacknowledged: the offset is not committed, and the
    messages are read again by whoever owns the partition next."""

    def __init__(self, *args: Any, fetch_max_wait: float = 0.5, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.give_back: Callable[[], None] = lambda: None
        self.fetch_max_wait = fetch_max_wait

    def _new_transport(self) -> Any:
        transport = super()._new_transport()
        transport.Consumer = _Consumer  # type: ignore[misc]
        return transport

    async def _consumer_wait_empty(self, consumer: Any, logger: Any) -> None:
        self.give_back()
        await super()._consumer_wait_empty(consumer, logger)


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
        "datadir": str(settings.data_dir),
        "topic_partitions": partitions,
        "topic_allow_declare": True,
        "web_port": settings.web_port,
        "web_bind": settings.web_host,
        "web_enabled": True,
        "producer_acks": -1,
        "autodiscover": False,
        "topic_replication_factor": replicas,
    }
    return WorkerApp(app_id(settings), fetch_max_wait=settings.fetch_max_wait, **options)
