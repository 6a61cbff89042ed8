"""A real, throwaway Apache Kafka broker for tests.

The broker jars come from Maven Central (through ``mvn``, see ``apache-kafka-pom.xml``)
into a cache folder outside the repository; :class:`ApacheKafkaBroker` then runs a
single-node KRaft cluster (one JVM that is both broker and controller) on free
loopback ports. Needs ``java`` (17+) and, for the first download, ``mvn``.
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import contextlib
import fcntl
import functools
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self, TypeVar

from aiokafka.admin import AIOKafkaAdminClient

__all__ = [
    "CACHE_ENV_VAR",
    "KAFKA_VERSION",
    "ApacheKafkaBroker",
    "BrokerStartError",
    "default_cache_dir",
    "free_ports",
    "kafka_classpath",
]

KAFKA_VERSION: Final = "4.4.0"
"""Apache Kafka release fetched by :func:`kafka_classpath` (kafka_2.13 on Maven Central)."""

CACHE_ENV_VAR: Final = "TRIGGERSTREAM_KAFKA_CACHE"
"""Overrides the cache folder of :func:`default_cache_dir`."""

_HERE: Final = Path(__file__).resolve().parent
_POM: Final = _HERE / "apache-kafka-pom.xml"
_LOG4J_CONFIG: Final = _HERE / "log4j2.properties"
_COMPLETE_MARKER: Final = "COMPLETE"
_MAVEN_TIMEOUT_SECONDS: Final = 30 * 60
_FORMAT_TIMEOUT_SECONDS: Final = 120
_STOP_GRACE_SECONDS: Final = 20
_LOG_TAIL_LINES: Final = 40
_NODE_ID: Final = 1

_T = TypeVar("_T")


class BrokerStartError(RuntimeError):
    """The broker process died or did not answer a metadata request in time."""


def default_cache_dir() -> Path:
    """``$TRIGGERSTREAM_KAFKA_CACHE``, else ``~/.cache/triggerstream/apache-kafka-<version>``."""
    override = os.environ.get(CACHE_ENV_VAR)
    if override:
        return Path(override).expanduser()
    return Path.home() / ".cache" / "triggerstream" / f"apache-kafka-{KAFKA_VERSION}"


def kafka_classpath(cache_dir: Path | None = None) -> Path:
    """Return the folder holding the Kafka broker's jars, downloading them first if needed."""
    root = cache_dir if cache_dir is not None else default_cache_dir()
    libs = root / "libs"
    if _download_complete(root, libs):
        return libs
    root.mkdir(parents=True, exist_ok=True)
    # Parallel test workers may all arrive here on a cold cache; one downloads, the
    # others wait and then find the marker.
    with _exclusive_lock(root / ".lock"):
        if _download_complete(root, libs):
            return libs
        _download(root, libs)
    return libs


def _download_complete(root: Path, libs: Path) -> bool:
    marker = root / _COMPLETE_MARKER
    # The marker is written only after the jars are in place, so a download that was
    # interrupted (or one of another Kafka version in a reused folder) is redone.
    return (
        marker.is_file()
        and marker.read_text(encoding="utf-8").strip() == KAFKA_VERSION
        and libs.is_dir()
    )


@contextlib.contextmanager
def _exclusive_lock(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _download(root: Path, libs: Path) -> None:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise RuntimeError(
            f"Maven (mvn) is needed to fetch Apache Kafka {KAFKA_VERSION} into {libs}, "
            "but it is not on PATH"
        )
    (root / _COMPLETE_MARKER).unlink(missing_ok=True)
    print(
        f"fetching Apache Kafka {KAFKA_VERSION} from Maven Central into {libs} ...",
        file=sys.stderr,
        flush=True,
    )
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="download-", dir=root) as tmp:
        staging = Path(tmp) / "libs"
        # Maven runs on a copy of the pom so that nothing it writes lands in the source tree.
        pom = Path(tmp) / "pom.xml"
        shutil.copyfile(_POM, pom)
        command = [
            mvn,
            "--batch-mode",
            "--no-transfer-progress",
            "-Dstyle.color=never",
            "-f",
            str(pom),
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={staging}",
            f"-Dkafka.version={KAFKA_VERSION}",
        ]
        try:
            result = subprocess.run(
                command,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=_MAVEN_TIMEOUT_SECONDS,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError(
                f"Maven did not fetch Apache Kafka {KAFKA_VERSION} within "
                f"{_MAVEN_TIMEOUT_SECONDS}s\ncommand: {shlex.join(command)}"
            ) from exc
        jars = sorted(staging.glob("*.jar"))
        if result.returncode != 0 or not any(j.name.startswith("kafka_2.13-") for j in jars):
            # Maven prints its errors on stdout, so both streams are shown.
            output = (result.stdout + result.stderr).splitlines()
            tail = "\n".join(output[-_LOG_TAIL_LINES:])
            raise RuntimeError(
                f"Maven could not fetch Apache Kafka {KAFKA_VERSION} "
                f"(exit code {result.returncode})\ncommand: {shlex.join(command)}\n{tail}"
            )
        if libs.exists():
            shutil.rmtree(libs)  # left over from an interrupted or older download
        staging.rename(libs)
    (root / _COMPLETE_MARKER).write_text(KAFKA_VERSION + "\n", encoding="utf-8")
    megabytes = sum(j.stat().st_size for j in libs.glob("*.jar")) / 1e6
    print(
        f"fetched Apache Kafka {KAFKA_VERSION}: {len(jars)} jars, {megabytes:.1f} MB, "
        f"in {time.monotonic() - started:.1f}s",
        file=sys.stderr,
        flush=True,
    )


def free_ports(count: int) -> list[int]:
    """Return ``count`` distinct TCP ports that are free on 127.0.0.1 right now."""
    with contextlib.ExitStack() as stack:
        # All sockets stay bound until every port is picked, so no port comes twice.
        sockets = [
            stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            for _ in range(count)
        ]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]


def _java_executable() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return str(Path(java_home) / "bin" / "java")
    java = shutil.which("java")
    if java is None:
        raise RuntimeError("Java 17+ is needed to run the Kafka broker, but java is not on PATH")
    return java


def _new_cluster_id() -> str:
    # Kafka's Uuid.toString(): URL-safe base64 of 16 random bytes, unpadded. Like
    # Uuid.randomUuid(), avoid a leading "-", which a command line would take for an option.
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode("ascii").rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def _properties_text(properties: Mapping[str, str]) -> str:
    return "".join(f"{key}={_escape_property_value(value)}\n" for key, value in properties.items())


def _escape_property_value(value: str) -> str:
    # java.util.Properties reads a backslash as an escape and ends a value at a line
    # break; escape both so that every value arrives literally.
    return value.replace("\\", "\\\\").replace("\n", "\\n")


def _log_tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        return f"(no broker log: {exc})"
    return "\n".join(text.splitlines()[-lines:])


def _format_or_fail(command: list[str], shown: list[str], log_path: Path, what: str) -> None:
    """Run kafka-storage's ``format`` (``command``, written to the log as ``shown``),
    or :class:`BrokerStartError` with the log's end."""
    with log_path.open("ab") as log:
        log.write(f"--- triggerstream: {shlex.join(shown)}\n".encode())
        log.flush()
        result = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            timeout=_FORMAT_TIMEOUT_SECONDS,
            check=False,
        )
    if result.returncode != 0:
        raise BrokerStartError(
            f"formatting {what} failed (exit code {result.returncode})\n"
            f"command: {shlex.join(shown)}\n{_log_tail(log_path)}"
        )


def _accepts_connections(host: str, port: int) -> bool:
    # A bare TCP connect first, so that aiokafka does not log a connection error for
    # every poll while the JVM is still booting.
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


async def _describe_cluster(bootstrap: str, seconds: float) -> None:
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap,
        client_id="triggerstream-broker-probe",
        request_timeout_ms=max(1, int(seconds * 1000)),
    )
    try:
        async with asyncio.timeout(seconds):
            await admin.start()
            cluster: dict[str, Any] = await admin.describe_cluster()
    finally:
        with contextlib.suppress(Exception):
            await admin.close()
    if not cluster.get("brokers"):
        raise RuntimeError(f"metadata response lists no brokers: {cluster!r}")


def _run_in_private_loop(make: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
    # start() is also called from async tests and fixtures, where this thread already
    # runs an event loop and asyncio.run() is refused; a fresh thread has none.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="kafka-probe") as pool:
        return pool.submit(lambda: asyncio.run(make())).result()


class ApacheKafkaBroker:
    """One Apache Kafka KRaft node (broker and controller) for tests: its PLAINTEXT listener
    on ``host`` (127.0.0.1 unless told), its controller on 127.0.0.1.

    ``extra_properties`` are merged over the generated server.properties (for
    example to add SASL or TLS listeners; ``port``/``controller_port`` may be fixed
    up front for that, see :func:`free_ports`). The work dir (config, data, log) is a
    fresh temp dir, removed by :meth:`stop` unless ``keep_dir`` is set.
    """

    def __init__(
        self,
        *,
        extra_properties: Mapping[str, str] | None = None,
        keep_dir: bool = False,
        cache_dir: Path | None = None,
        port: int | None = None,
        controller_port: int | None = None,
        jvm_options: Sequence[str] = (),
        scram_users: Mapping[str, str] | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        picked = free_ports(2)
        self.host = host
        """The address clients reach the PLAINTEXT listener on (a local address)."""
        self.port = port if port is not None else picked[0]
        self.controller_port = controller_port if controller_port is not None else picked[1]
        self.keep_dir = keep_dir
        self.start_seconds: float | None = None
        """Seconds from the last JVM spawn to the first successful metadata request."""
        self._extra_properties = dict(extra_properties or {})
        self._cache_dir = cache_dir
        self._jvm_options = list(jvm_options)
        self._scram_users = dict(scram_users or {})
        """name -> password, stored as SCRAM-SHA-256 and SCRAM-SHA-512 credentials when
        the storage is formatted (for SASL listeners in ``extra_properties``)."""
        self._work_dir: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._spawned_at = 0.0

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<ApacheKafkaBroker {KAFKA_VERSION} {self.bootstrap} {state}>"

    @property
    def bootstrap(self) -> str:
        """``host:port`` of the PLAINTEXT listener, for ``bootstrap_servers``."""
        return f"{self.host}:{self.port}"

    @property
    def work_dir(self) -> Path:
        """The temp dir holding server.properties, data/ and kafka.log."""
        if self._work_dir is None:
            raise RuntimeError("the broker has no work dir: not started, or stopped and removed")
        return self._work_dir

    @property
    def log_path(self) -> Path:
        """The broker's stdout/stderr (log4j logs to stdout), appended to on every start."""
        return self.work_dir / "kafka.log"

    @property
    def data_dir(self) -> Path:
        """``log.dirs``, which also holds the KRaft metadata log."""
        return self.work_dir / "data"

    @property
    def properties(self) -> dict[str, str]:
        """The server.properties the broker runs with (known once it was started)."""
        plaintext = f"PLAINTEXT://{self.host}:{self.port}"
        controller = f"CONTROLLER://127.0.0.1:{self.controller_port}"
        # One node as a KIP-853 dynamic quorum (the Kafka 4 default, formatted with
        # --standalone); replication factors of 1 because there is a single broker.
        generated = {
            "process.roles": "broker,controller",
            "node.id": str(_NODE_ID),
            "controller.quorum.bootstrap.servers": f"127.0.0.1:{self.controller_port}",
            "listeners": f"{plaintext},{controller}",
            "advertised.listeners": f"{plaintext},{controller}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.data_dir),
            "num.partitions": "1",
            "offsets.topic.replication.factor": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            # After a SIGKILL the restarted broker cannot register until the controller
            # expires its previous session (9s by default); faster heartbeats and a
            # shorter session keep crash-restart tests quick.
            "broker.heartbeat.interval.ms": "500",
            "broker.session.timeout.ms": "3000",
        }
        return generated | self._extra_properties

    @property
    def running(self) -> bool:
        """Whether the broker JVM is alive."""
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 60) -> Self:
        """Start the broker and wait until it answers a metadata request.

        The Kafka download (first use only) does not count against ``timeout``.
        After ``stop(keep_logs=True)`` this starts again on the same data.
        """
        if self.running:
            raise RuntimeError(f"{self!r} is already running")
        libs = kafka_classpath(self._cache_dir)
        deadline = time.monotonic() + timeout
        try:
            if self._work_dir is None:
                self._work_dir = Path(tempfile.mkdtemp(prefix="triggerstream-kafka-"))
            config = self.work_dir / "server.properties"
            config.write_text(_properties_text(self.properties), encoding="utf-8")
            if not (self.data_dir / "meta.properties").exists():
                self._format_storage(libs, config)
            self._spawn(libs, config)
            self._wait_until_ready(deadline)
        except BaseException:
            self._terminate(kill=True)
            self._remove_work_dir(keep=self.keep_dir)
            raise
        _LIVE_BROKERS.add(self)
        return self

    def stop(self, keep_logs: bool = False) -> None:
        """Stop the broker (SIGTERM, then SIGKILL after 20s) and remove its work dir.

        The work dir is kept if ``keep_logs`` or the constructor's ``keep_dir`` is set.
        """
        self._terminate(kill=False)
        self._remove_work_dir(keep=keep_logs or self.keep_dir)

    def restart(self, timeout: float = 60, *, kill: bool = False, down_for: float = 0) -> Self:
        """Stop and start the broker on the same ports and data; ``kill`` uses SIGKILL.

        A SIGKILL skips the controlled shutdown, like a crash would. ``down_for``
        seconds pass between the stop and the start.
        """
        if self._work_dir is None:
            raise RuntimeError(f"{self!r} has no data to restart on (never started, or removed)")
        self._terminate(kill=kill)
        time.sleep(down_for)
        return self.start(timeout)

    def pause(self) -> None:
        """SIGSTOP: the broker keeps its connections and answers nothing (a stalled
        disk or VM), until :meth:`resume`."""
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after :meth:`pause`."""
        self._signal(signal.SIGCONT)

    def _signal(self, signum: int) -> None:
        if self._process is None or self._process.poll() is not None:
            raise RuntimeError(f"{self!r} is not running")
        self._process.send_signal(signum)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _java_command(self, libs: Path, heap: Sequence[str]) -> list[str]:
        return [
            _java_executable(),
            *heap,
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={_LOG4J_CONFIG}",
            # The JVM would otherwise leave an hsperfdata file per broker in /tmp.
            "-XX:-UsePerfData",
            *self._jvm_options,
            "-cp",
            str(libs / "*"),  # expanded by java itself
        ]

    def _format_storage(self, libs: Path, config: Path) -> None:
        command = [
            *self._java_command(libs, ["-Xmx256m"]),
            "kafka.tools.StorageTool",
            "format",
            "--config",
            str(config),
            "--cluster-id",
            _new_cluster_id(),
            "--standalone",
        ]
        for name, password in self._scram_users.items():
            for mechanism in ("SCRAM-SHA-256", "SCRAM-SHA-512"):
                command += ["--add-scram", f"{mechanism}=[name={name},password={password}]"]
        shown = [re.sub(r"password=[^\]]*", "password=***", part) for part in command]
        _format_or_fail(command, shown, self.log_path, "Kafka storage")

    def _spawn(self, libs: Path, config: Path) -> None:
        command = [*self._java_command(libs, ["-Xms256m", "-Xmx512m"]), "kafka.Kafka", str(config)]
        with self.log_path.open("ab") as log:
            log.write(f"--- triggerstream: {shlex.join(command)}\n".encode())
            log.flush()
            # The child keeps its own copy of the log's file descriptor.
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.work_dir,
            )
        self._spawned_at = time.monotonic()

    def _wait_until_ready(self, deadline: float) -> None:
        process = self._process
        assert process is not None
        last_error = "the broker port never accepted a connection"
        while True:
            exit_code = process.poll()
            if exit_code is not None:
                raise BrokerStartError(
                    f"the Kafka broker exited with code {exit_code} while starting; "
                    f"last lines of {self.log_path}:\n{_log_tail(self.log_path)}"
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BrokerStartError(
                    f"the Kafka broker did not answer a metadata request in time "
                    f"({last_error}); last lines of {self.log_path}:\n{_log_tail(self.log_path)}"
                )
            if _accepts_connections(self.host, self.port):
                try:
                    _run_in_private_loop(
                        functools.partial(_describe_cluster, self.bootstrap, min(remaining, 10.0))
                    )
                except Exception as exc:
                    last_error = f"last metadata request: {exc!r}"
                else:
                    self.start_seconds = time.monotonic() - self._spawned_at
                    return
            time.sleep(0.1)

    def _terminate(self, *, kill: bool) -> None:
        _LIVE_BROKERS.discard(self)
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        process.send_signal(signal.SIGCONT)  # a paused broker would not see the SIGTERM
        try:
            process.wait(_STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def _remove_work_dir(self, *, keep: bool) -> None:
        if self._work_dir is not None and not keep:
            shutil.rmtree(self._work_dir, ignore_errors=True)
            self._work_dir = None


_LIVE_BROKERS: set[ApacheKafkaBroker] = set()


@atexit.register
def _stop_live_brokers() -> None:
    # A test run that ends without stop() (an error, Ctrl-C) must not leave JVMs behind.
    for broker in list(_LIVE_BROKERS):
        broker.stop()


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m triggerstream.testing.apache_kafka fetch|run``: download, or run one."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args == ["fetch"]:
        libs = kafka_classpath()
        print(f"Apache Kafka {KAFKA_VERSION}: {len(list(libs.glob('*.jar')))} jars in {libs}")
        return 0
    if args == ["run"]:
        with ApacheKafkaBroker() as broker:
            print(f"Apache Kafka {KAFKA_VERSION} on {broker.bootstrap}; Ctrl-C stops it")
            with contextlib.suppress(KeyboardInterrupt):
                signal.pause()
        return 0
    print("usage: python -m triggerstream.testing.apache_kafka fetch|run", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
