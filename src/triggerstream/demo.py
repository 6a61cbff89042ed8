"""``triggerstream demo``: the whole thing on one machine, nothing else installed.

It starts the embedded broker (Tansu, in memory), creates the topics, starts a worker
(a ``triggerstream worker`` process with its RocksDB in a temporary directory), lets a
population of realistic users loose on the input topics (:mod:`triggerstream.simulation`,
who also answer the offers they get), and shows what happens live
(:mod:`triggerstream.demo_view`). Ctrl-C (or ``--duration``) stops everything, in
order, and prints a summary and where the worker's log stays.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.live import Live

from triggerstream import kafka
from triggerstream.broker import EmbeddedBroker
from triggerstream.demo_view import Tally, render
from triggerstream.loadgen import Load, follow, reacting
from triggerstream.records import ATTRIBUTIONS_TOPIC, CHANNEL_TOPICS, DECISIONS_TOPIC
from triggerstream.reloads import RulesReloads
from triggerstream.settings import Settings
from triggerstream.simulation import Population
from triggerstream.topics import load_topics

READY_TIMEOUT = 120.0
"""Seconds the worker may take to join its group and recover its tables."""
FAULTS = 0.004
"""The demo's producers get one event in 250 wrong: a retry (dropped as a duplicate) or a
timestamp without an offset (a dead letter)."""


def packaged_rules() -> Path:
    """The example rules file (examples/rules.yaml), from the source tree or the wheel."""
    here = Path(__file__).resolve()
    checkout = here.parents[2] / "examples" / "rules.yaml"
    if checkout.is_file():
        return checkout
    return Path(str(files("triggerstream") / "examples" / "rules.yaml"))


class DemoError(RuntimeError):
    """The demo could not start; the message says why and what to do."""


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
    """Where the logs and RocksDB state go and stay (None: a temporary directory, and
    the worker's log next to it, kept)."""
    screenshot: Path | None


class Demo:
    """The broker, topics, worker and traffic of one demo run."""

    def __init__(
        self, options: DemoOptions, folder: Path, log_path: Path, console: Console, began: float
    ) -> None:
        self.options = options
        self.rules = options.rules or packaged_rules()
        self.began = began
        self.folder = folder
        self.console = console
        self.broker = EmbeddedBroker(options.port, folder / "broker.log")
        self.settings = Settings(kafka_bootstrap=self.broker.bootstrap, web_port=options.web_port)
        self.worker: subprocess.Popen[bytes] | None = None
        self.log_path = log_path
        self.log_start = 0
        """Where this run's worker began writing in the log (kept folders append)."""
        self.where = {
            "broker": self.broker.bootstrap,
            "inspector": f"http://127.0.0.1:{options.web_port}/",
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
            console.print(
                f"worker ready; inspector on {self.where['inspector']}, "
                f"metrics on {self.where['metrics']}"
            )
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
        tally = Tally(worker_log=self.log_path)
        tally.startup = tally.began - self.began
        reloads = RulesReloads(self.log_path, self.log_start, self.rules)
        react = reacting(population)

        def on_record(topic: str, value: dict[str, Any]) -> None:
            tally.record(topic, value)
            react(topic, value)

        outputs = [*CHANNEL_TOPICS.values(), DECISIONS_TOPIC, ATTRIBUTIONS_TOPIC]
        following = asyncio.create_task(follow(self.settings, outputs, on_record, stop))
        await asyncio.sleep(0.5)  # the follower is at the end of its topics before traffic
        producing = asyncio.create_task(load.run(stop, self.options.duration))

        def view(final: bool = False) -> Group:
            reloads.poll()
            return render(tally, load, self.where, reloads.describe(), final)

        with Live(view(), console=self.console, refresh_per_second=4) as live:
            while not producing.done():
                if self.worker is not None and self.worker.poll() is not None:
                    stop.set()
                    await asyncio.gather(producing, following, return_exceptions=True)
                    raise self._worker_failed("the worker stopped")
                live.update(view())
                await asyncio.sleep(0.25)
            await producing  # raises what stopped it, if anything
            await asyncio.sleep(2)  # the last triggers arrive
            stop.set()
            await following
            final = view(final=True)
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
    """Run a demo; its files (logs, RocksDB) go to ``options.keep``, or else to a
    temporary directory removed at the end, with the worker's log next to it and kept:
    the view, a failure's message and the summary point to it.

    The embedded broker starts empty every time, so a kept folder's RocksDB state from an
    earlier demo can only be ahead of its changelogs (the worker would refuse it): it is
    replaced, and the logs are kept and appended to."""
    folder = options.keep or Path(tempfile.mkdtemp(prefix="triggerstream-demo-"))
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / "worker.log" if options.keep else folder.with_name(f"{folder.name}-worker.log")
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
    try:
        return Demo(options, folder, log, console, began).run()
    finally:
        if options.keep is None:
            with contextlib.suppress(OSError):
                shutil.rmtree(folder)
