"""Settings (docs/contract.md section 10): read once from the environment at the edge.

Every setting is ``TRIGGERSTREAM_<NAME>`` in the environment, and commands that need one
also take it as a flag (a flag wins). Secrets are ``SecretStr``: their ``repr`` and
``str`` print asterisks, and :meth:`Settings.describe` leaves them out.
"""

from __future__ import annotations

import datetime as dt
import ssl
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from triggerstream.durations import Duration


class Settings(BaseSettings):
    """Everything a triggerstream process is configured with; frozen once built."""

    model_config = SettingsConfigDict(env_prefix="TRIGGERSTREAM_", frozen=True, extra="ignore")

    kafka_bootstrap: str = Field(
        "localhost:9092", description="Kafka bootstrap servers, comma separated host:port."
    )
    rules: Path | None = Field(None, description="The rules file (YAML).")
    rules_from_topic: bool = Field(
        False,
        description="The worker takes its rules from the topic <prefix>rules (`rules "
        "publish`) instead of a file: the latest version at start, then each new one.",
    )
    rules_wait: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="Seconds a worker with rules from the topic waits at start for a "
        "published version before it gives up (exit 2).",
    )
    user: str | None = Field(
        None,
        min_length=1,
        description="Who publishes rules, as `rules history` shows it (default: the OS user).",
    )
    data_dir: Path = Field(
        Path("triggerstream-data"), description="Where the worker keeps RocksDB state."
    )
    topic_prefix: str = Field("", description="Prepended to every topic name, e.g. 'prod.'.")
    partitions: int | None = Field(
        None,
        ge=1,
        le=10_000,
        description="Partitions for `topics create`, overriding topics/topics.yaml (8).",
    )
    replication_factor: int = Field(
        -1,
        description="Replicas for `topics create` and the worker's changelogs; -1: the "
        "broker's default.replication.factor (for changelogs: 3, or fewer brokers).",
    )
    min_insync_replicas: int | None = Field(
        None,
        ge=1,
        description="min.insync.replicas of the topics `topics create` and the worker "
        "create: how many replicas must have a write before it is acknowledged (the "
        "producers use acks=all); unset: the broker's min.insync.replicas.",
    )
    web_port: int = Field(
        6066,
        ge=0,
        le=65535,
        description="Metrics, health and inspector port (the inspector shows personal data).",
    )
    web_host: str = Field(
        "0.0.0.0",
        description="Address the metrics, health and inspector server binds (all by default).",
    )
    processing_guarantee: Literal["at_least_once", "exactly_once"] = "at_least_once"
    client_id: str = Field("triggerstream", min_length=1)
    request_timeout: float = Field(
        15.0, gt=0, description="Seconds to wait for a Kafka answer before giving up."
    )
    session_timeout: float = Field(
        10.0,
        ge=3,
        le=300,
        description="Seconds a worker may go silent before the group gives its partitions "
        "to the others (Kafka consumer session timeout; heartbeats go every tenth of it, "
        "at least every 0.5 s). 10 s: a worker is ready in under 10 s (the embedded broker "
        "holds a first join for half of it) and a dead one's partitions move after 10 s; "
        "heartbeats run on the consumer's own thread, so a long batch does not miss them, "
        "but a process frozen longer (a stalled VM, a long swap) loses its partitions.",
    )
    fetch_max_wait: float = Field(
        0.05,
        ge=0.01,
        le=10,
        description="Seconds the broker may hold a worker's fetch when it has nothing new "
        "(Kafka's fetch.max.wait.ms). Short: under load, aiokafka fetches the partitions "
        "with nothing waiting while the others' records are still being processed, and "
        "that fetch, held this long, delays the next one of the busy partitions.",
    )
    max_future: Duration = Field(
        dt.timedelta(hours=1),
        description="An event dated more than this after the time it is read is refused "
        "(from_future): one producer with a wrong clock must not move a user's clock "
        "ahead and silence them. <number><s|m|h|d>.",
    )
    max_idle: float = Field(
        0.0,
        ge=0,
        le=600,
        description="Seconds a read event may wait for another input topic of its "
        "partition that has nothing buffered (as Kafka Streams' max.task.idle.ms): an "
        "event of a slower producer that arrives within this time is still processed in "
        "event-time order. Every event can wait this much longer; 0 waits only for "
        "inputs known to hold unread messages.",
    )
    rocksdb_memory: int = Field(
        512,
        ge=16,
        description="MiB of RocksDB block cache and write buffers for the whole worker, "
        "shared out over its tables and partitions.",
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = Field(None, description="CA bundle that signed the brokers.")
    ssl_certfile: Path | None = Field(None, description="Client certificate (mutual TLS).")
    ssl_keyfile: Path | None = Field(None, description="Client private key (mutual TLS).")
    ssl_key_password: SecretStr | None = None
    ssl_check_hostname: bool = True

    @model_validator(mode="after")
    def _replication_is_possible(self) -> Settings:
        replicas = self.replication_factor
        if replicas == 0 or replicas < -1:
            raise ValueError(
                f"TRIGGERSTREAM_REPLICATION_FACTOR={replicas}: use 1 or more, or -1 for the "
                "broker's default"
            )
        if self.min_insync_replicas is not None and self.min_insync_replicas > replicas > 0:
            raise ValueError(
                f"TRIGGERSTREAM_MIN_INSYNC_REPLICAS={self.min_insync_replicas} is more than "
                f"TRIGGERSTREAM_REPLICATION_FACTOR={replicas}: no write could be acknowledged; "
                "lower it (2 of 3 replicas is usual)"
            )
        return self

    @model_validator(mode="after")
    def _security_is_complete(self) -> Settings:
        uses_sasl = self.security_protocol.startswith("SASL")
        if uses_sasl and not (self.sasl_mechanism and self.sasl_username and self.sasl_password):
            raise ValueError(
                f"TRIGGERSTREAM_SECURITY_PROTOCOL={self.security_protocol} needs "
                "TRIGGERSTREAM_SASL_MECHANISM, TRIGGERSTREAM_SASL_USERNAME and "
                "TRIGGERSTREAM_SASL_PASSWORD"
            )
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ValueError("TRIGGERSTREAM_SSL_CERTFILE and TRIGGERSTREAM_SSL_KEYFILE go together")
        if self.security_protocol.endswith("SSL"):
            self._tls_files_are_usable()
        return self

    def _tls_files_are_usable(self) -> None:
        """Read the TLS files now, so that a missing or wrong one is a settings problem
        naming its variable, not an error of the first Kafka client."""
        for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            path = getattr(self, name)
            if path is not None and not path.is_file():
                why = "is a folder, not a file" if path.is_dir() else "no such file"
                raise ValueError(f"TRIGGERSTREAM_{name.upper()}={path}: {why}")
        try:
            self.ssl_context()
        except (ssl.SSLError, OSError) as error:
            raise ValueError(
                "the TLS files (TRIGGERSTREAM_SSL_CAFILE, TRIGGERSTREAM_SSL_CERTFILE, "
                f"TRIGGERSTREAM_SSL_KEYFILE, TRIGGERSTREAM_SSL_KEY_PASSWORD) cannot be used: "
                f"{getattr(error, 'reason', None) or error}"
            ) from None

    def topic(self, name: str) -> str:
        """The broker-side name of a topic: the prefix, then its name without the prefix."""
        return f"{self.topic_prefix}{name}"

    def kafka_options(self) -> dict[str, Any]:
        """Connection keyword arguments for aiokafka clients (producer, consumer, admin)."""
        options: dict[str, Any] = {
            "bootstrap_servers": self.kafka_bootstrap,
            "client_id": self.client_id,
            "security_protocol": self.security_protocol,
            "request_timeout_ms": int(self.request_timeout * 1000),
        }
        if self.security_protocol.startswith("SASL"):
            assert self.sasl_password is not None  # checked by _security_is_complete
            options["sasl_mechanism"] = self.sasl_mechanism
            options["sasl_plain_username"] = self.sasl_username
            options["sasl_plain_password"] = self.sasl_password.get_secret_value()
        if self.security_protocol.endswith("SSL"):
            options["ssl_context"] = self.ssl_context()
        return options

    def ssl_context(self) -> ssl.SSLContext:
        """A TLS context from the CA, certificate and key files."""
        context = ssl.create_default_context(
            cafile=str(self.ssl_cafile) if self.ssl_cafile else None
        )
        context.check_hostname = self.ssl_check_hostname
        if self.ssl_certfile and self.ssl_keyfile:
            password = self.ssl_key_password.get_secret_value() if self.ssl_key_password else None
            context.load_cert_chain(str(self.ssl_certfile), str(self.ssl_keyfile), password)
        return context

    def describe(self) -> dict[str, Any]:
        """The settings for logs and start-up banners, secrets left out."""
        shown = self.model_dump(exclude={"sasl_password", "ssl_key_password"})
        for secret in ("sasl_password", "ssl_key_password"):
            shown[secret] = "(set)" if getattr(self, secret) is not None else None
        return shown
