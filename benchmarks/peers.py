"""triggerstream against the Python stream processors a team would pick instead, on the
same broker in one run, doing the same job (issues 7 and 20).

The same backlog for everyone: ``--messages`` skip events (JSON, about 200 bytes each)
over ``--users`` users on a 4-partition topic, produced before the contenders start.
The job: per user, the skips in the last hour of event time; at 6 or more, one output
record. Each contender runs alone, in its own process, reads the whole backlog and does
that job; each prints how many outputs it made, and no ratio is reported when a
contender's outputs differ from Quix Streams' by more than 5%:

- ``aiokafka``: a raw aiokafka consumer (getmany) that parses each message, keeps the
  sliding count in a dict and produces each alert: the ceiling, with no state store;
- ``faust``: a faust-streaming agent doing the same in a dict, sending each alert;
- ``quix``: a Quix Streams pipeline: the same sliding count in Quix's RocksDB state
  (``apply(stateful=True)``), a threshold filter, ``to_topic`` (in its own virtual
  environment, .cache/bench/quix, made on first use: Quix pins other versions of
  pydantic than triggerstream);
- ``triggerstream``: the worker with one count rule (6 skips within 1h, no cooldown, no
  caps): every match a decision record on offer-decisions (no session, so each is
  suppressed ``no_channel``, as the job wants a record, not a send), with its state in
  RocksDB and changelogs, validation, dedupe and the whole policy;
- ``triggerstream-demo``: not the same job, and no ratio: the worker with the demo's
  rules (examples/rules.yaml) on the demo's mixed month (``triggerstream.traffic``,
  ``--messages`` events over ``--users * 2`` users), with its decisions and triggers
  per second.

Figures: events/s from the first message read to the last (startup excluded), CPU
seconds per 1,000 events, peak RSS, outputs. Medians of ``--runs``. Printed, and
appended to benchmarks/results.csv.

    .venv/bin/python benchmarks/peers.py --broker tansu --messages 200000 --runs 3
    .venv/bin/python benchmarks/peers.py --broker apache --messages 200000 --runs 3
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
ROOT = HERE.parents[1]
QUIX_VENV = ROOT / ".cache" / "bench" / "quix"
QUIX_VERSION = "3.28.1"
WINDOW = 3600.0
THRESHOLD = 6
PARTITIONS = 4


# --- the contenders (each runs in its own process) ---------------------------------


def skip_counter() -> Any:
    """The rule every contender computes: per user, skips in the last hour of event
    time; an alert when it reaches the threshold."""

    def count(times: list[float], at: float) -> list[float]:
        kept = [t for t in times if t > at - WINDOW]
        kept.append(at)
        return kept

    return count


def finish(first: float, last: float, count: int, cpu_before: float, outputs: int) -> None:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    figures = {
        "events": count,
        "outputs": outputs,
        "seconds": last - first,
        "cpu": usage.ru_utime + usage.ru_stime - cpu_before,
        "rss_mib": peak_rss_mib(),
    }
    # To the file descriptor: faust's worker turns print() into log lines.
    os.write(1, (json.dumps(figures) + "\n").encode())


def peak_rss_mib() -> float:
    """This process's peak resident memory (VmHWM: ru_maxrss would carry the parent's
    peak over the fork)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_now() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def contender_aiokafka(bootstrap: str, topic: str, expect: int) -> None:
    import asyncio

    import orjson
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    async def main() -> None:
        count = skip_counter()
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            group_id=f"peers-aiokafka-{time.time_ns()}",
            auto_offset_reset="earliest",
            enable_auto_commit=True,
        )
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=256 * 1024
        )
        await consumer.start()
        await producer.start()
        windows: dict[bytes, list[float]] = {}
        seen, first, cpu, outputs = 0, 0.0, 0.0, 0
        while seen < expect:
            batches = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            for records in batches.values():
                for record in records:
                    if seen == 0:
                        first, cpu = time.perf_counter(), cpu_now()
                    seen += 1
                    event = orjson.loads(record.value)
                    at = record.timestamp / 1000 if event is None else event["t"]
                    times = windows[record.key] = count(windows.get(record.key, []), at)
                    if len(times) >= THRESHOLD:
                        await producer.send(f"{topic}-out", record.value, key=record.key)
                        outputs += 1
        await producer.flush()
        finish(first, time.perf_counter(), seen, cpu, outputs)
        await consumer.stop()
        await producer.stop()

    asyncio.run(main())


def contender_faust(bootstrap: str, topic: str, expect: int) -> None:
    import faust
    import orjson

    app = faust.App(
        f"peers-faust-{time.time_ns()}",
        broker=f"kafka://{bootstrap}",
        value_serializer="raw",
        web_enabled=False,
        store="memory://",
        consumer_auto_offset_reset="earliest",
        topic_partitions=PARTITIONS,
        datadir=f"/tmp/peers-faust-{os.getpid()}",
    )
    source = app.topic(topic, value_serializer="raw", key_serializer="raw")
    sink = app.topic(f"{topic}-out", value_serializer="raw", key_serializer="raw")
    count = skip_counter()
    windows: dict[bytes, list[float]] = {}
    state = {"seen": 0, "first": 0.0, "cpu": 0.0, "outputs": 0}

    @app.agent(source)
    async def counting(stream: Any) -> None:
        async for event in stream.events():
            if state["seen"] == 0:
                state["first"], state["cpu"] = time.perf_counter(), cpu_now()
            state["seen"] += 1
            key, value = event.key, event.value
            times = windows[key] = count(windows.get(key, []), orjson.loads(value)["t"])
            if len(times) >= THRESHOLD:
                await sink.send(key=key, value=value)
                state["outputs"] += 1
            if state["seen"] >= expect:
                await app.producer.flush()
                finish(
                    state["first"],
                    time.perf_counter(),
                    int(state["seen"]),
                    state["cpu"],
                    int(state["outputs"]),
                )
                os._exit(0)

    sys.argv = [sys.argv[0], "worker", "--loglevel", "warn"]
    app.main()


def contender_quix(bootstrap: str, topic: str, expect: int) -> None:
    import orjson
    from quixstreams import Application, State

    app = Application(
        broker_address=bootstrap,
        consumer_group=f"peers-quix-{time.time_ns()}",
        auto_offset_reset="earliest",
        state_dir=f"/tmp/peers-quix-{os.getpid()}",
        loglevel="WARNING",
    )
    source = app.topic(topic, value_deserializer="bytes", key_deserializer="bytes")
    sink = app.topic(f"{topic}-out", value_serializer="bytes", key_serializer="bytes")
    count = skip_counter()
    progress = {"seen": 0, "first": 0.0, "cpu": 0.0, "outputs": 0}

    def sliding(value: bytes, state: State) -> bytes | None:
        if progress["seen"] == 0:
            progress["first"], progress["cpu"] = time.perf_counter(), cpu_now()
        progress["seen"] += 1
        event = orjson.loads(value)
        times = count(state.get("skips", []), event["t"])
        state.set("skips", times)
        alert = len(times) >= THRESHOLD
        progress["outputs"] += alert
        if progress["seen"] >= expect:
            finish(
                progress["first"],
                time.perf_counter(),
                int(progress["seen"]),
                progress["cpu"],
                int(progress["outputs"]),
            )
            app.stop()
        return value if alert else None

    frame = app.dataframe(source)
    frame = frame.apply(sliding, stateful=True)
    frame = frame.filter(lambda value: value is not None)
    frame.to_topic(sink)
    app.run()


CONTENDERS = {
    "aiokafka": contender_aiokafka,
    "faust": contender_faust,
    "quix": contender_quix,
}


# --- the orchestra -------------------------------------------------------------------


def quix_python() -> Path:
    python = QUIX_VENV / "bin" / "python"
    if not python.exists():
        print(f"making {QUIX_VENV} with quixstreams {QUIX_VERSION}", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(QUIX_VENV)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", f"quixstreams=={QUIX_VERSION}"], check=True
        )
    return python


def backlog(messages: int, users: int, seed: int = 3) -> list[tuple[bytes, bytes, str]]:
    """Skip events over an hour per thousand users: (key, value, occurred_at)."""
    import datetime as dt
    import random

    import orjson

    rng = random.Random(seed)
    start = dt.datetime(2026, 11, 1, tzinfo=dt.UTC).timestamp()
    span = messages / users * 600.0
    rows = []
    for n in range(messages):
        user = f"u{rng.randrange(users)}"
        at = start + rng.uniform(0, span)
        stamp = dt.datetime.fromtimestamp(at, dt.UTC).isoformat()
        value = orjson.dumps(
            {
                "event_id": f"e{n:09d}",
                "user_id": user,
                "type": "feature_used",
                "occurred_at": stamp,
                "properties": {"feature": "skip", "screen": "now-playing", "track": n % 9973},
                "t": at,
            }
        )
        rows.append((user.encode(), value, stamp))
    rows.sort(key=lambda row: row[2])
    return rows


def run_contender(name: str, bootstrap: str, topic: str, expect: int) -> dict[str, float]:
    python = str(quix_python()) if name == "quix" else sys.executable
    result = subprocess.run(
        [python, str(HERE), "contender", name, bootstrap, topic, str(expect)],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise SystemExit(f"{name} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    figures: dict[str, float] = json.loads(lines[-1])
    return figures


LIKE_FOR_LIKE = """\
offers:
  premium: {kind: upsell, product: premium, title: "Unlimited skips with Premium"}
rules:
  - id: skip-limit
    offer: premium
    trigger: {count: {type: usage.feature_used, where: {feature: skip}, at_least: 6, within: 1h}}
    channels: [in_app]
    cooldown: 0s
policy:
  frequency_caps: []
"""
"""The peers' job as a rules file: every match is a decision record."""
SAME_OUTPUTS = 0.05
"""Outputs may differ by this much from Quix Streams' before no ratio is reported."""


def expected_alerts(rows: list[tuple[bytes, bytes, str]]) -> int:
    """The outputs the job makes of the backlog, computed here: what every contender
    should report."""
    import orjson

    count = skip_counter()
    windows: dict[bytes, list[float]] = {}
    alerts = 0
    for key, value, _ in rows:
        times = windows[key] = count(windows.get(key, []), orjson.loads(value)["t"])
        alerts += len(times) >= THRESHOLD
    return alerts


def run_triggerstream(bootstrap: str, prefix: str, expect: int, rules: Path) -> dict[str, float]:
    """The worker from start to caught up; events/s from its first event processed;
    its decisions and triggers (from its /metrics) as outputs."""
    sys.path.insert(0, str(HERE.parent))
    import harness

    from triggerstream.settings import Settings

    settings = Settings(kafka_bootstrap=bootstrap, topic_prefix=prefix)
    with harness.scratch() as folder:
        worker = harness.Worker(settings, rules, Path(folder)).start()
        try:
            worker.wait_ready(1)
            began = time.perf_counter()
            cpu_before = worker.cpu_seconds()
            worker.wait_processed(expect)
            seconds = time.perf_counter() - began
            cpu = worker.cpu_seconds() - cpu_before
            rss = worker.peak_rss_mib()
            decisions = worker.metric("triggerstream_decisions_total")
            triggers = worker.metric("triggerstream_triggers_total")
        finally:
            worker.stop()
    return {
        "events": expect,
        "seconds": seconds,
        "cpu": cpu,
        "rss_mib": rss,
        "outputs": decisions,
        "triggers": triggers,
    }


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "contender":
        _, _, name, bootstrap, topic, expect = sys.argv
        CONTENDERS[name](bootstrap, topic, int(expect))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker", choices=["tansu", "apache"], default="tansu")
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--only",
        nargs="*",
        default=["aiokafka", "quix", "faust", "triggerstream", "triggerstream-demo"],
    )
    args = parser.parse_args()

    sys.path.insert(0, str(HERE.parent))
    import asyncio

    import harness

    from triggerstream.kafka import create_topics, produce
    from triggerstream.settings import Settings
    from triggerstream.topics import load_topics

    rows = backlog(args.messages, args.users)
    alerts = expected_alerts(rows)
    print(f"the job makes {alerts:,} outputs of {len(rows):,} events", flush=True)
    results: dict[str, list[dict[str, float]]] = {name: [] for name in args.only}
    with harness.broker(args.broker) as bootstrap, harness.scratch() as folder:
        rules = Path(folder) / "like-for-like.yaml"
        rules.write_text(LIKE_FOR_LIKE)
        for run in range(args.runs):
            topic = f"peers-{run}"
            prefix = f"ts{run}."
            settings = Settings(kafka_bootstrap=bootstrap, partitions=PARTITIONS)
            plain = Settings(kafka_bootstrap=bootstrap)
            ts = Settings(kafka_bootstrap=bootstrap, topic_prefix=prefix, partitions=PARTITIONS)
            asyncio.run(create_topics(ts, load_topics()))
            asyncio.run(_plain_topics(plain, [topic, f"{topic}-out"]))
            began = time.perf_counter()
            asyncio.run(produce(settings, [(topic, key, value) for key, value, _ in rows]))
            produced = time.perf_counter() - began
            events = [(f"{prefix}usage-events", key, value) for key, value, _ in rows]
            asyncio.run(produce(settings, events))
            print(f"run {run + 1}: produced {len(rows):,} twice ({len(rows) / produced:,.0f}/s)")
            for name in args.only:
                if name == "triggerstream":
                    figures = run_triggerstream(bootstrap, prefix, len(rows), rules)
                elif name == "triggerstream-demo":
                    demo = Settings(kafka_bootstrap=bootstrap, topic_prefix=f"demo{run}.")
                    harness.topics(demo)
                    mixed = harness.backlog(demo, args.messages, args.users * 2)
                    demo_rules = ROOT / "examples" / "rules.yaml"
                    figures = run_triggerstream(bootstrap, f"demo{run}.", mixed, demo_rules)
                else:
                    figures = run_contender(name, bootstrap, topic, len(rows))
                results[name].append(figures)
                print(f"  {name:18} {line(figures)}", flush=True)
    setup = (
        f"{args.broker}, {args.messages} events, {args.users} users, "
        f"{PARTITIONS} partitions, median of {args.runs}"
    )
    print(f"\nmedians ({setup}; the job makes {alerts:,} outputs):")
    medians = {name: median(runs) for name, runs in results.items()}
    for name, figures in medians.items():
        print(f"  {name:18} {line(figures)}")
        recorded = [
            ("throughput", figures["rate"], "events/s"),
            ("cpu", figures["cpu_ms"], "s/1000 events"),
            ("rss", figures["rss_mib"], "MiB"),
            ("outputs", figures["outputs"], "records"),
        ]
        if name == "triggerstream-demo":
            recorded += [
                ("decisions", figures["outputs_rate"], "decisions/s"),
                ("triggers", figures["triggers_rate"], "triggers/s"),
            ]
        harness.record(f"peers {name}", setup, recorded)
    quix = medians.get("quix")
    ours = medians.get("triggerstream")
    if quix and ours:
        apart = abs(ours["outputs"] - quix["outputs"]) / max(quix["outputs"], 1)
        if apart > SAME_OUTPUTS:
            print(
                f"\nno ratio: triggerstream made {ours['outputs']:,.0f} outputs and Quix "
                f"Streams {quix['outputs']:,.0f} ({apart:.1%} apart): not the same job"
            )
            return 1
        speed = ours["rate"] / quix["rate"]
        cpu = ours["cpu_ms"] / quix["cpu_ms"]
        print(
            f"\ntriggerstream / Quix Streams, same job (outputs {apart:.2%} apart): "
            f"{speed:.2f}x the throughput, {cpu:.2f}x the CPU per event"
        )
        harness.record(
            "peers ratio",
            setup,
            [("throughput ratio", speed, "x quix"), ("cpu ratio", cpu, "x quix")],
        )
    return 0


def median(runs: list[dict[str, float]]) -> dict[str, float]:
    """Medians of a contender's runs: rate, CPU ms per event, RSS and outputs."""
    return {
        "rate": statistics.median(r["events"] / r["seconds"] for r in runs),
        "cpu_ms": statistics.median(r["cpu"] / r["events"] * 1000 for r in runs),
        "rss_mib": statistics.median(r["rss_mib"] for r in runs),
        "outputs": statistics.median(r["outputs"] for r in runs),
        "outputs_rate": statistics.median(r["outputs"] / r["seconds"] for r in runs),
        "triggers_rate": statistics.median(r.get("triggers", 0) / r["seconds"] for r in runs),
    }


def line(figures: dict[str, float]) -> str:
    """One contender's figures on a line (one run's or the medians)."""
    if "rate" not in figures:
        figures = median([figures])
    text = (
        f"{figures['rate']:>9,.0f} events/s  {figures['cpu_ms']:6.3f} CPU s/1000  "
        f"{figures['rss_mib']:6.0f} MiB  {figures['outputs']:>9,.0f} outputs"
    )
    if figures["triggers_rate"]:
        text += (
            f"  ({figures['outputs_rate']:,.0f} decisions/s, "
            f"{figures['triggers_rate']:,.0f} triggers/s)"
        )
    return text


async def _plain_topics(settings: Any, names: list[str]) -> None:
    from triggerstream.kafka import Admin, _new_topic

    async with Admin(settings) as admin:
        # Quix reads retention.ms from the broker; Tansu reports only what was set.
        configs = {"retention.ms": "604800000", "cleanup.policy": "delete"}
        await admin.create([_new_topic(name, PARTITIONS, 1, configs) for name in names])


if __name__ == "__main__":
    sys.exit(main())
