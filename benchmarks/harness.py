"""What the worker benchmarks share: a broker, topics, a worker process, the results file.

Not a test helper: these run real brokers and real workers on this machine, print their
figures and append them to benchmarks/results.csv.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import datetime as dt
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import orjson
from prometheus_client.samples import Sample as MetricSample

from triggerstream.broker import EmbeddedBroker
from triggerstream.kafka import create_topics, produce
from triggerstream.settings import Settings
from triggerstream.testing.apache_kafka import ApacheKafkaBroker, free_ports
from triggerstream.topics import load_topics
from triggerstream.traffic import history

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results.csv"
TRIGGERSTREAM = str(Path(sys.executable).with_name("triggerstream"))


@contextlib.contextmanager
def broker(kind: str) -> Iterator[str]:
    """A fresh broker of ``kind`` (tansu or apache) on loopback; its bootstrap address."""
    if kind == "tansu":
        tansu = EmbeddedBroker(free_ports(1)[0])
        tansu.start()
        try:
            yield tansu.bootstrap
        finally:
            tansu.stop()
    elif kind == "apache":
        with ApacheKafkaBroker() as apache:  # started on entry
            yield apache.bootstrap
    else:
        raise SystemExit(f"--broker {kind}: use tansu or apache")


def topics(settings: Settings) -> None:
    asyncio.run(create_topics(settings, load_topics()))


def backlog(settings: Settings, events: int, users: int, days_ago: int = 45) -> int:
    """Produce a month of mixed traffic (``triggerstream.traffic``: usage, purchases,
    support and profile events) that began ``days_ago`` days ago; the number of events
    produced (at least a profile per user, so at least ``users``)."""
    start = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(days=days_ago)
    records = []
    for line in history(events, users, 11, start):
        fields = orjson.loads(line)
        topic = fields.pop("topic")
        records.append((settings.topic(topic), fields["user_id"].encode(), orjson.dumps(fields)))
    asyncio.run(produce(settings, records))
    return len(records)


class Worker:
    """`triggerstream worker` as a subprocess, logging to a file."""

    def __init__(self, settings: Settings, rules: Path, folder: Path) -> None:
        self.folder = folder
        self.log_path = folder / "worker.log"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("TRIGGERSTREAM_")},
            "TRIGGERSTREAM_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
            "TRIGGERSTREAM_TOPIC_PREFIX": settings.topic_prefix,
            "TRIGGERSTREAM_RULES": str(rules),
            "TRIGGERSTREAM_DATA_DIR": str(folder / "data"),
            "TRIGGERSTREAM_WEB_PORT": str(free_ports(1)[0]),
            "TRIGGERSTREAM_WEB_HOST": "127.0.0.1",
            "TRIGGERSTREAM_SESSION_TIMEOUT": "10",
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.started = 0.0

    def start(self) -> Worker:
        self.started = time.monotonic()
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [TRIGGERSTREAM, "worker"], env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        return self

    def ready_lines(self) -> list[str]:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return [line for line in text.splitlines() if "ready:" in line]

    def wait_ready(self, count: int, timeout: float = 600) -> float:
        """Seconds from start until the worker logged its ``count``-th ready line."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.ready_lines()) >= count:
                return time.monotonic() - self.started
            assert self.process is not None
            if self.process.poll() is not None:
                raise SystemExit(f"the worker exited; see {self.log_path}")
            time.sleep(0.05)
        raise SystemExit(f"the worker was not ready within {timeout}s; see {self.log_path}")

    def samples(self) -> list[MetricSample]:
        """Every sample on the worker's /metrics, read once."""
        from prometheus_client.parser import text_string_to_metric_families

        port = self.env["TRIGGERSTREAM_WEB_PORT"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as page:
            text = page.read().decode()
        return [
            sample for family in text_string_to_metric_families(text) for sample in family.samples
        ]

    def metric(self, name: str) -> float:
        """The sum of a metric's samples on the worker's /metrics (0 if absent)."""
        return sum(sample.value for sample in self.samples() if sample.name == name)

    def wait_processed(self, events: float, timeout: float = 3600) -> float:
        """Seconds until the worker has processed ``events`` valid input events."""
        began = time.monotonic()
        while time.monotonic() - began < timeout:
            if self.metric("triggerstream_events_total") >= events:
                return time.monotonic() - began
            assert self.process is not None
            if self.process.poll() is not None:
                raise SystemExit(f"the worker exited; see {self.log_path}")
            time.sleep(0.2)
        raise SystemExit(f"the worker did not process {events} events within {timeout}s")

    def cpu_seconds(self) -> float:
        """User and system CPU seconds the worker process has used so far."""
        assert self.process is not None
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def peak_rss_mib(self) -> float:
        """The worker's peak resident memory so far (VmHWM)."""
        return self._memory_mib("VmHWM")

    def rss_mib(self) -> float:
        """The worker's resident memory now (VmRSS)."""
        return self._memory_mib("VmRSS")

    def _memory_mib(self, field: str) -> float:
        assert self.process is not None
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(120)


def scratch() -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix="triggerstream-bench-")


def record(benchmark: str, setup: str, figures: list[tuple[str, float, str]]) -> None:
    """Append figures to benchmarks/results.csv with the machine, versions and date."""
    new = not RESULTS.exists()
    with RESULTS.open("a", newline="") as handle:
        writer = csv.writer(handle)
        if new:
            writer.writerow(
                [
                    "date",
                    "benchmark",
                    "figure",
                    "value",
                    "unit",
                    "setup",
                    "machine",
                    "python",
                    "versions",
                ]
            )
        machine = f"{platform.machine()} {os.cpu_count()} cores"
        versions = (
            f"triggerstream {version('triggerstream')} faust-streaming "
            f"{version('faust-streaming')} aiokafka {version('aiokafka')}"
        )
        for figure, value, unit in figures:
            writer.writerow(
                [
                    dt.date.today().isoformat(),
                    benchmark,
                    figure,
                    value,
                    unit,
                    setup,
                    machine,
                    platform.python_version(),
                    versions,
                ]
            )
