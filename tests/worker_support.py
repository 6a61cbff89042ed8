"""Running `triggerstream worker` as a user does, and reading what it wrote."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import re
import signal
import subprocess
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import orjson
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import TRIGGERSTREAM, free_port, run_cli
from tests.hosts import Host
from tests.scenarios import RULES
from triggerstream import kafka
from triggerstream.records import CHANNEL_TOPICS, DECISIONS_TOPIC
from triggerstream.settings import Settings
from triggerstream.simulation import Population
from triggerstream.traffic import history

READY = "ready:"
"""What a worker logs once its partitions are assigned and its tables recovered."""


class WorkerProcess:
    """One `triggerstream worker` subprocess with its own data directory and port."""

    def __init__(
        self,
        env: dict[str, str],
        rules: Path | None,
        folder: Path,
        name: str = "w1",
        host: Host | None = None,
    ) -> None:
        """``rules`` None: the rules come from the rules topic (``--rules-from-topic``).
        ``host``: run in that network namespace (tests/hosts.py), serving /metrics on
        its address."""
        self.host = host
        self.web_host = host.address if host else "127.0.0.1"
        self.folder = folder / name
        self.folder.mkdir(parents=True, exist_ok=True)
        self.log_path = self.folder / "worker.log"
        self.web_port = free_port()
        self.env = {
            **env,
            **({"TRIGGERSTREAM_RULES": str(rules)} if rules else {}),
            **({} if rules else {"TRIGGERSTREAM_RULES_FROM_TOPIC": "true"}),
            "TRIGGERSTREAM_DATA_DIR": str(self.folder / "data"),
            "TRIGGERSTREAM_WEB_PORT": str(self.web_port),
            "TRIGGERSTREAM_WEB_HOST": self.web_host,
            "TRIGGERSTREAM_SESSION_TIMEOUT": "6",
            "TRIGGERSTREAM_LOG_LEVEL": "info",
        }
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        log = self.log_path.open("ab")
        command = [TRIGGERSTREAM, "worker"]
        self.process = subprocess.Popen(
            self.host.command(command) if self.host else command,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def ready_lines(self) -> list[str]:
        return [line for line in self.log().splitlines() if READY in line]

    def wait_ready(self, count: int = 1, timeout: float = 120) -> None:
        """Wait until the worker has logged ``count`` rebalances completed."""
        self._wait_alive(lambda: len(self.ready_lines()) >= count, timeout, 0.2, "not ready")

    def _wait_alive(
        self, done: Callable[[], bool], timeout: float, interval: float, failure: str
    ) -> None:
        """Poll ``done`` until it holds; fail at once if the worker exits meanwhile, or
        with ``failure`` and the log's end after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if done():
                return
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"worker exited {self.process.returncode}:\n{self.log()}")
            time.sleep(interval)
        raise AssertionError(f"worker {failure} within {timeout}s:\n{self.log()[-5000:]}")

    def processed(self) -> float:
        """Input events the worker has processed, as its /metrics says."""
        return self.metric("triggerstream_events_total")

    def metrics_text(self) -> str:
        """The worker's /metrics page."""
        url = f"http://{self.web_host}:{self.web_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as page:
            return str(page.read().decode())

    def metric(self, name: str) -> float:
        """The sum of a metric's samples (every label) on the worker's /metrics."""
        text = self.metrics_text()
        return sum(
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == name
        )

    def rules_version(self) -> str | None:
        """The rules version the worker's triggerstream_rules_version_info says it runs."""
        running = [
            sample.labels["version"]
            for family in text_string_to_metric_families(self.metrics_text())
            for sample in family.samples
            if sample.name == "triggerstream_rules_version_info" and sample.value == 1
        ]
        assert len(running) <= 1, f"more than one version shown: {running}"
        return running[0] if running else None

    def wait_processed(self, events: float = 1, timeout: float = 120) -> float:
        """Wait until the worker has processed at least ``events``; how many it has."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done = self.processed()
            if done >= events:
                return done
            time.sleep(0.05)
        done = self.processed()
        raise AssertionError(f"{done:.0f} events after {timeout}s:\n{self.log()[-5000:]}")

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 60) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signum)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"worker ignored signal {signum}:\n{self.log()[-5000:]}") from None

    def pause(self) -> None:
        """SIGSTOP: frozen, as by a long GC pause or a stalled VM; the broker sees
        nothing until the session times out."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGCONT)

    def wait_answering(self, timeout: float = 120) -> None:
        """Wait until the worker's web server answers /healthz (it is about to join)."""

        def answers() -> bool:
            with contextlib.suppress(OSError):
                url = f"http://{self.web_host}:{self.web_port}/healthz"
                with urllib.request.urlopen(url, timeout=2):
                    return True
            return False

        self._wait_alive(answers, timeout, 0.05, "did not answer")

    def kill(self) -> None:
        """SIGKILL: no goodbye, no commit, no flush."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def ensure_stopped(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.kill()


def create_topics(env: dict[str, str], expect_failure: bool = False) -> None:
    result = run_cli("topics", "create", env=env)
    assert (result.returncode != 0) == expect_failure, result.stderr


def produce(env: dict[str, str], path: Path) -> None:
    result = run_cli("produce", str(path), env=env, timeout=300)
    assert result.returncode == 0, result.stderr


def write_lines(path: Path, lines: Iterable[dict[str, Any]]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))
    return path


def read_topic(settings: Settings, name: str, idle: float = 1.5) -> list[dict[str, Any]]:
    """Every record of a topic (by its name without the prefix), from the beginning."""

    async def read() -> list[dict[str, Any]]:
        return [
            orjson.loads(value)
            async for value in kafka.tail(settings, settings.topic(name), True, idle, None)
            if value is not None
        ]

    return asyncio.run(read())


def wait_for_first_record(settings: Settings, name: str, timeout: float = 90) -> None:
    """Return as soon as the topic has a record (however busy it is)."""

    async def first() -> int:
        return len([v async for v in kafka.tail(settings, settings.topic(name), True, timeout, 1)])

    assert asyncio.run(first()) == 1, f"{name}: no record within {timeout}s"


def wait_for_records(
    settings: Settings,
    name: str,
    count: int,
    timeout: float = 90,
    idle: float = 1.5,
    must: bool = True,
    distinct: str | None = None,
) -> list[dict[str, Any]]:
    """The records of a topic once there are at least ``count`` (and none arrived for
    ``idle`` seconds); after ``timeout``, what there is (or an error if ``must``). With
    ``distinct``, records with the same value of that key count once: a record sent
    again after a crash must not end the wait before the last new ones arrive."""
    deadline = time.monotonic() + timeout
    records: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        records = read_topic(settings, name, idle)
        seen = len({r[distinct] for r in records}) if distinct else len(records)
        if seen >= count:
            return records
        time.sleep(0.5)
    if must:
        raise AssertionError(f"{name}: {len(records)} records after {timeout}s, expected {count}")
    return records


def triggers(settings: Settings) -> list[dict[str, Any]]:
    return [t for name in CHANNEL_TOPICS.values() for t in read_topic(settings, name)]


def decisions(settings: Settings) -> list[dict[str, Any]]:
    return read_topic(settings, DECISIONS_TOPIC)


def decision_keys(records: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return sorted(
        (d["decision_id"], d["user_id"], d["rule_id"], d["outcome"], d["reason"], d["trigger_id"])
        for d in records
    )


def assert_same_decisions(got: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    """The same set of decisions, or by rule what is missing and what is extra."""
    got_keys, expected_keys = set(decision_keys(got)), set(decision_keys(expected))
    missing = Counter(f"{k[2]} {k[3]} {k[4]}" for k in expected_keys - got_keys)
    extra = Counter(f"{k[2]} {k[3]} {k[4]}" for k in got_keys - expected_keys)
    assert (missing, extra) == (Counter(), Counter()), (
        f"decisions by rule, outcome and reason: missing {dict(missing)}, extra {dict(extra)}"
    )


_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d(\.\d+)?)?(Z|[+-]\d\d:\d\d)$")


def shifted(value: Any, delta: dt.timedelta) -> Any:
    """A copy of an event (or any JSON value) with every timestamp moved by ``delta``."""
    if isinstance(value, dict):
        return {key: shifted(item, delta) for key, item in value.items()}
    if isinstance(value, list):
        return [shifted(item, delta) for item in value]
    if isinstance(value, str) and _TIMESTAMP.match(value):
        return (dt.datetime.fromisoformat(value) + delta).isoformat()
    if isinstance(value, dt.datetime):
        return (value + delta).isoformat()
    return value


def replayed(
    events: Path, folder: Path, env: dict[str, str], rules: Path = RULES
) -> dict[str, list[dict[str, Any]]]:
    """What ``triggerstream replay`` makes of the events with the rules (by default the
    scenarios'), up to now: its triggers, decisions and attributions."""
    decisions_path = folder / "replay-decisions.jsonl"
    attributions_path = folder / "replay-attributions.jsonl"
    result = run_cli(
        "replay",
        "--rules",
        str(rules),
        str(events),
        "--decisions",
        str(decisions_path),
        "--attributions",
        str(attributions_path),
        "--until",
        dt.datetime.now(dt.UTC).isoformat(),
        env=env,
    )
    assert result.returncode == 0, result.stderr
    return {
        "triggers": [orjson.loads(line) for line in result.stdout.splitlines()],
        "decisions": [orjson.loads(line) for line in decisions_path.read_bytes().splitlines()],
        "attributions": [
            orjson.loads(line) for line in attributions_path.read_bytes().splitlines()
        ],
    }


def assert_the_policy_beyond_the_anchors_is_at_work(decided: list[dict[str, Any]]) -> None:
    """What makes a parity run with examples/rules.yaml cover families, deferral and
    ``not_followed`` (docs/contract.md sections 13 to 15): each happens in it."""
    waited = {d["trigger_id"] for d in decided if d["outcome"] == "deferred"}
    released = [d for d in decided if d["trigger_id"] in waited and d["outcome"] == "emitted"]
    family = [d for d in decided if "family upgrade:" in (d["detail"] or "")]
    carts = [d for d in decided if d["rule_id"] == "cart-abandoned" and d["outcome"] == "emitted"]
    assert (bool(released), bool(family), bool(carts)) == (True, True, True), (
        f"released {len(released)}, family caps {len(family)}, carts {len(carts)}"
    )


def month_start() -> dt.datetime:
    """Where the tests' month of traffic begins: midnight (UTC) 45 days ago, so that it
    ended two weeks ago (every timer due by now) and is the same month whatever the hour
    a test runs. Begun at the hour of the run, the demo's month decided differently by
    the hour: run at 16:17, none of its deferred offers was released."""
    return (dt.datetime.now(dt.UTC) - dt.timedelta(days=45)).replace(
        hour=0, minute=0, second=0, microsecond=0
    )


def traffic(path: Path, events: int, users: int) -> Path:
    """A month of realistic traffic that ended two weeks ago (every timer due by now)."""
    start = month_start()
    path.write_bytes(b"".join(line + b"\n" for line in history(events, users, 11, start)))
    return path


async def send_raw(settings: Settings, messages: list[tuple[str, bytes, bytes]]) -> None:
    await kafka.produce(
        settings, [(settings.topic(topic), key, value) for topic, key, value in messages]
    )


def population_traffic(path: Path, events: int, users: int) -> Path:
    """The demo's population (profiles, skips, quotas, orders, trials, tickets, NPS,
    workflows, purchases of their own accord) living a few hours 45 days ago."""
    start = time.time() - 45 * 86400
    lines = Population(users, seed=11).history(events, start)
    path.write_bytes(b"".join(orjson.dumps({"topic": t, **e}) + b"\n" for t, e in lines))
    return path
