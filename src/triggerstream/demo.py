"""``triggerstream demo``: the whole thing on one machine, nothing else installed.

It starts the embedded broker (Tansu, in memory), creates the topics, starts a worker
(a ``triggerstream worker`` process with its RocksDB in a temporary directory), lets a
population of realistic users loose on the input topics (:mod:`triggerstream.simulation`,
who also answer the offers they get), and shows what happens live: events per second,
triggers by rule and channel, suppressions by reason, the time from an event to its
trigger, the last triggers with their reasons, and where the worker's metrics are.
Ctrl-C (or ``--duration``) stops everything, in order, and prints a summary.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import io
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter, deque
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from triggerstream import kafka
from triggerstream.broker import EmbeddedBroker
from triggerstream.loadgen import Load, follow, reacting
from triggerstream.records import ATTRIBUTIONS_TOPIC, CHANNEL_TOPICS, DECISIONS_TOPIC
from triggerstream.settings import Settings
from triggerstream.simulation import Population
from triggerstream.topics import load_topics

READY_TIMEOUT = 120.0
"""Seconds the worker may take to join its group and recover its tables."""
FAULTS = 0.004
"""The demo's producers get one event in 250 wrong: a retry (dropped as a duplicate) or a
timestamp without an offset (a dead letter)."""
CHANNEL_OF_TOPIC = {topic: channel for channel, topic in CHANNEL_TOPICS.items()}


def packaged_rules() -> Path:
    """The example rules file (examples/rules.yaml), from the source tree or the wheel."""
    here = Path(__file__).resolve()
    checkout = here.parents[2] / "examples" / "rules.yaml"
    if checkout.is_file():
        return checkout
    return Path(str(files("triggerstream") / "examples" / "rules.yaml"))


class DemoError(RuntimeError):
    """The demo could not start; the message says why and what to do."""


@dataclass
class Tally:
    """What the demo has seen on the output topics."""

    began: float = field(default_factory=time.monotonic)
    """When the traffic started."""
    startup: float = 0.0
    """Seconds from the command's start to the traffic's: broker, topics, worker."""
    first_trigger_after: float | None = None
    """Seconds from the traffic's start to the first trigger seen."""
    triggers: Counter[tuple[str, str]] = field(default_factory=Counter)
    suppressions: Counter[str] = field(default_factory=Counter)
    conversions: int = 0
    revenue: Counter[str] = field(default_factory=Counter)
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=5000))
    last: deque[tuple[str, str, str, str, str]] = field(default_factory=lambda: deque(maxlen=6))

    def record(self, topic: str, value: dict[str, Any]) -> None:
        now = time.time()
        if topic in CHANNEL_OF_TOPIC:
            if self.first_trigger_after is None:
                self.first_trigger_after = time.monotonic() - self.began
            self.triggers[(value["rule_id"], value["channel"])] += 1
            triggered = dt.datetime.fromisoformat(value["triggered_at"]).timestamp()
            self.latencies.append(max(0.0, now - triggered))
            self.last.append(
                (
                    time.strftime("%H:%M:%S", time.localtime(now)),
                    value["user_id"],
                    value["rule_id"],
                    value["channel"],
                    value["reason"]["summary"],
                )
            )
        elif topic == DECISIONS_TOPIC:
            if value["outcome"] == "suppressed":
                self.suppressions[value["reason"]] += 1
        elif topic == ATTRIBUTIONS_TOPIC:
            self.conversions += 1
            self.revenue[value["currency"]] += value["revenue"]

    def latency(self, quantile: float) -> float | None:
        if len(self.latencies) < 2:
            return None
        return statistics.quantiles(self.latencies, n=1000)[int(quantile * 1000) - 1]

    def summary(self) -> str:
        """The line the demo ends with: how fast it was ready, and what it saw."""
        first = self.first_trigger_after
        return (
            f"ready in {self.startup:.1f} s (broker, topics, worker); first trigger "
            + (
                "never came"
                if first is None
                else f"{self.startup + first:.1f} s after start ({first:.1f} s into the traffic)"
            )
            + f"; {sum(self.triggers.values()):,} triggers, "
            + f"{sum(self.suppressions.values()):,} suppressed, {self.conversions:,} conversions"
        )


def render(tally: Tally, load: Load, where: dict[str, str], final: bool = False) -> Group:
    """The live view (and, with ``final``, the summary)."""
    elapsed = time.monotonic() - tally.began
    header = Text.assemble(
        ("triggerstream demo", "bold"),
        f"  ·  {elapsed:,.0f} s  ·  broker {where['broker']}  ·  metrics ",
        (where["metrics"], "underline"),
        "\n",
        f"worker log {where['log']}",
        "" if final else "  ·  Ctrl-C stops",
    )
    first = tally.first_trigger_after
    p50, p99 = tally.latency(0.5), tally.latency(0.99)
    figures = Table.grid(padding=(0, 3))
    for _ in range(4):
        figures.add_column(justify="right")
    figures.add_row(
        Text.assemble((f"{load.events_per_second():,.0f}", "bold"), " events/s"),
        Text.assemble((f"{load.sent:,}", "bold"), " events sent"),
        Text.assemble((f"{sum(tally.triggers.values()):,}", "bold green"), " triggers"),
        Text.assemble((f"{tally.conversions:,}", "bold"), " conversions"),
    )
    figures.add_row(
        "first trigger " + ("-" if first is None else f"{tally.startup + first:.1f} s after start"),
        "event→trigger p50 " + ("-" if p50 is None else f"{p50 * 1000:,.0f} ms"),
        "p99 " + ("-" if p99 is None else f"{p99 * 1000:,.0f} ms"),
        "revenue " + (", ".join(f"{v:,.2f} {c}" for c, v in tally.revenue.items()) or "-"),
    )

    triggers = Table(title="triggers by rule and channel", expand=True, title_justify="left")
    triggers.add_column("rule")
    channels = sorted(CHANNEL_TOPICS)
    for channel in channels:
        triggers.add_column(channel, justify="right")
    for rule in sorted({rule for rule, _ in tally.triggers}):
        counts = [tally.triggers[(rule, channel)] for channel in channels]
        triggers.add_row(rule, *(f"{n:,}" if n else "" for n in counts))

    suppressed = Table(title="suppressed, by reason", expand=True, title_justify="left")
    suppressed.add_column("reason")
    suppressed.add_column("decisions", justify="right")
    for reason, count in tally.suppressions.most_common():
        suppressed.add_row(reason, f"{count:,}")

    tables = Table.grid(expand=True, padding=(0, 2))
    tables.add_column(ratio=3)
    tables.add_column(ratio=2)
    tables.add_row(triggers, suppressed)

    last = Table(title="last triggers", expand=True, title_justify="left")
    for name in ("at", "user", "rule", "channel"):
        last.add_column(name, no_wrap=True)
    last.add_column("why", ratio=1)
    for row in reversed(tally.last):
        last.add_row(*row)

    return Group(Panel(header), figures, tables, last)


@dataclass(frozen=True)
class DemoOptions:
    """What ``triggerstream demo`` was asked for."""

    rules: Path | None
    users: int
    rate: float
    duration: float | None
    port: int
    web_port: int
    keep: Path | None
    """Where the logs and RocksDB state go and stay (None: a temporary directory)."""
    screenshot: Path | None


class Demo:
    """The broker, topics, worker and traffic of one demo run."""

    def __init__(self, options: DemoOptions, folder: Path, console: Console, began: float) -> None:
        self.options = options
        self.rules = options.rules or packaged_rules()
        self.began = began
        self.folder = folder
        self.console = console
        self.broker = EmbeddedBroker(options.port, folder / "broker.log")
        self.settings = Settings(kafka_bootstrap=self.broker.bootstrap, web_port=options.web_port)
        self.worker: subprocess.Popen[bytes] | None = None
        self.log_path = folder / "worker.log"
        self.log_start = 0
        """Where this run's worker began writing in the log (kept folders append)."""
        self.where = {
            "broker": self.broker.bootstrap,
            "metrics": f"http://127.0.0.1:{options.web_port}/metrics",
            "log": str(self.log_path),
        }

    def run(self) -> Tally:
        console = self.console
        try:
            with console.status("starting the embedded broker"):
                self.broker.start()
            console.print(f"broker up at {self.broker.bootstrap}")
            with console.status("creating the topics"):
                asyncio.run(kafka.create_topics(self.settings, load_topics()))
            console.print("topics created")
            with console.status("starting a worker (joining its group, recovering tables)"):
                self._start_worker()
            console.print(f"worker ready; metrics on {self.where['metrics']}")
            return asyncio.run(self._live())
        finally:
            self.stop()

    def _start_worker(self) -> None:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("TRIGGERSTREAM_") or k == "TRIGGERSTREAM_PURE"  # the core's build
        }
        env.update(
            TRIGGERSTREAM_KAFKA_BOOTSTRAP=self.broker.bootstrap,
            TRIGGERSTREAM_RULES=str(self.rules),
            TRIGGERSTREAM_DATA_DIR=str(self.folder / "data"),
            TRIGGERSTREAM_WEB_PORT=str(self.options.web_port),
            TRIGGERSTREAM_WEB_HOST="127.0.0.1",
            TRIGGERSTREAM_SESSION_TIMEOUT="10",
            # Tansu answers a fetch only when its wait is over: keep it short.
            TRIGGERSTREAM_FETCH_MAX_WAIT="0.05",
        )
        self.log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            self.worker = subprocess.Popen(
                [sys.executable, "-m", "triggerstream", "worker"],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches the demo, which stops it in order
            )
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.worker.poll() is not None:
                raise self._worker_failed("the worker exited")
            if _ready(self.options.web_port):
                return
            time.sleep(0.2)
        raise self._worker_failed(f"the worker was not ready within {READY_TIMEOUT:.0f} s")

    def _worker_failed(self, what: str) -> DemoError:
        """One line: what happened to the worker, the cause, and where its whole log is
        (a screenful of log lines hid the cause)."""
        status = None if self.worker is None else self.worker.returncode
        if status is not None and status < 0:
            # Killed from outside (the OOM killer, kill -9): its log cannot say why.
            cause = f"killed by {signal.Signals(-status).name}"
        else:
            what = what if status is None else f"{what} with status {status}"
            cause = _cause(self.log_path, self.log_start)
        return DemoError(f"{what}: {cause}; full log: {self.log_path}")

    async def _live(self) -> Tally:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        population = Population(self.options.users, seed=int(time.time()), faults=FAULTS)
        load = Load(self.settings, population, self.options.rate)
        tally = Tally()
        tally.startup = tally.began - self.began
        react = reacting(population)

        def on_record(topic: str, value: dict[str, Any]) -> None:
            tally.record(topic, value)
            react(topic, value)

        outputs = [*CHANNEL_TOPICS.values(), DECISIONS_TOPIC, ATTRIBUTIONS_TOPIC]
        following = asyncio.create_task(follow(self.settings, outputs, on_record, stop))
        await asyncio.sleep(0.5)  # the follower is at the end of its topics before traffic
        producing = asyncio.create_task(load.run(stop, self.options.duration))
        with Live(
            render(tally, load, self.where), console=self.console, refresh_per_second=4
        ) as live:
            while not producing.done():
                if self.worker is not None and self.worker.poll() is not None:
                    stop.set()
                    await asyncio.gather(producing, following, return_exceptions=True)
                    raise self._worker_failed("the worker stopped")
                live.update(render(tally, load, self.where))
                await asyncio.sleep(0.25)
            await producing  # raises what stopped it, if anything
            await asyncio.sleep(2)  # the last triggers arrive
            stop.set()
            await following
            final = render(tally, load, self.where, final=True)
            live.update(final)
        if self.options.screenshot is not None:
            recorder = Console(record=True, width=110, file=io.StringIO())
            recorder.print(final)
            recorder.save_svg(str(self.options.screenshot), title="triggerstream demo")
        return tally

    def stop(self) -> None:
        """Stop the worker (SIGTERM: it commits and flushes), then the broker."""
        worker, self.worker = self.worker, None
        if worker is not None and worker.poll() is None:
            with self.console.status("stopping the worker"):
                worker.send_signal(signal.SIGTERM)
                try:
                    worker.wait(60)
                except subprocess.TimeoutExpired:
                    worker.kill()
                    worker.wait()
        with self.console.status("stopping the broker"):
            self.broker.stop()


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _cause(path: Path, start: int = 0) -> str:
    """The line of a worker's log (from ``start``) that says why it stopped: its own
    one-line refusal, faust's crash reason, the exception a traceback ends with, or the
    last error; else its last line."""
    try:
        with path.open("rb") as log:
            log.seek(start)
            lines = log.read().decode(errors="replace").splitlines()
    except OSError:
        return "it wrote no log"
    lines = [line.rstrip() for line in lines if line.strip()]
    for line in reversed(lines):
        if line.startswith("triggerstream: "):
            return line.removeprefix("triggerstream: ")
    for line in reversed(lines):
        if "Crashed reason=" in line:
            return " ".join(line.split("Crashed reason=", 1)[1].replace("\\n", " ").split())
    for index in range(len(lines) - 1, -1, -1):
        if lines[index].startswith("Traceback (most recent call last)"):
            after = [line for line in lines[index + 1 :] if not line.startswith((" ", "\t"))]
            if after:
                return after[0]
    for line in reversed(lines):
        if "[ERROR]" in line or "[CRITICAL]" in line:
            return line.split("]: ", 1)[-1].strip()
    return lines[-1] if lines else "it wrote nothing to its log"


def run(options: DemoOptions, console: Console, began: float) -> Tally:
    """Run a demo; its files (logs, RocksDB) go to ``options.keep`` or a temporary
    directory, removed at the end unless the demo failed (its message points into it).

    The embedded broker starts empty every time, so a kept folder's RocksDB state from an
    earlier demo can only be ahead of its changelogs (the worker would refuse it): it is
    replaced, and the logs are kept and appended to."""
    folder = options.keep or Path(tempfile.mkdtemp(prefix="triggerstream-demo-"))
    folder.mkdir(parents=True, exist_ok=True)
    earlier = folder / "data"
    if earlier.exists():
        try:
            if earlier.is_dir():
                shutil.rmtree(earlier)
            else:
                earlier.unlink()
        except OSError as error:
            raise DemoError(f"cannot replace {earlier}: {error.strerror}") from None
        console.print(
            f"replaced the RocksDB state of an earlier demo in {earlier} "
            "(the embedded broker starts empty, so it matched nothing)"
        )
    keep = options.keep is not None
    try:
        return Demo(options, folder, console, began).run()
    except DemoError:
        keep = True  # its message says where the worker's log is
        raise
    finally:
        if not keep:
            with contextlib.suppress(OSError):
                shutil.rmtree(folder)
