"""End-to-end latency: an event produced to its trigger consumed, at a steady load.

Starts a broker and one worker with a rule that offers something on every `ping` (push,
no cooldown, no caps), gives N users push consent, then produces a steady mix for a set
time: background usage (skips, features, sessions) and pings, all dated now. A consumer
of offer-triggers.push notes when each ping's trigger arrives. Prints p50/p99/p99.9 of
(trigger consumed - event produced) after a warm-up, with the CPU the worker used (in
cores) and how busy the whole machine was, and appends them to results.csv.

``--at 0.25 0.5 0.75`` runs at those fractions of the worker's maximum throughput, one
after the other on the same worker: ``--max`` events/s, by default the latest median of
``peers.py`` for the worker on the same broker in results.csv (the same kind of traffic).

    .venv/bin/python benchmarks/worker_latency.py [--broker tansu|apache] [--rate 200]
        [--at 0.25 0.5 0.75] [--max N] [--seconds 60] [--ping-share 0.1]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import datetime as dt
import random
import statistics
import sys
import time
from pathlib import Path
from typing import NamedTuple

import orjson
import yaml
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from harness import RESULTS, Worker, broker, record, scratch, topics

from triggerstream.kafka import Admin
from triggerstream.settings import Settings

RULES = {
    "offers": {"premium": {"kind": "upsell", "product": "premium", "title": "Go Premium"}},
    "rules": [
        {
            "id": "ping",
            "offer": "premium",
            "trigger": {"event": {"type": "usage.feature_used", "where": {"feature": "ping"}}},
            "channels": ["push"],
            "cooldown": "0s",
        }
    ],
    "policy": {"frequency_caps": []},
}
WARM_UP = 5.0


def envelope(user: str, type_: str, n: int, **properties: object) -> bytes:
    return orjson.dumps(
        {
            "event_id": f"lat-{n}",
            "user_id": user,
            "type": type_,
            "occurred_at": dt.datetime.now(dt.UTC).isoformat(),
            "properties": properties,
        }
    )


def machine_ticks() -> tuple[int, int]:
    """CPU ticks of the whole machine so far, busy and all (/proc/stat)."""
    fields = [int(field) for field in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle and iowait
    return sum(fields) - idle, sum(fields)


class Phase(NamedTuple):
    """One rate's outcome."""

    latencies: list[float]
    missing: int
    worker_cpu: float
    """The worker's CPU over the phase, in cores (1.0 is one core busy throughout)."""
    machine_busy: float
    """The share of the whole machine's CPU that was busy (every process)."""


async def measure(
    settings: Settings,
    worker: Worker,
    users: int,
    rates: list[float],
    seconds: float,
    share: float,
) -> list[Phase]:
    """Per rate: the latencies of the triggers that arrived, how many never did, and
    how busy the worker and the machine were meanwhile."""
    producer = AIOKafkaProducer(**settings.kafka_options(), linger_ms=2)
    await producer.start()
    # A short fetch wait: the measuring consumer must not add its own delay.
    consumer = AIOKafkaConsumer(**settings.kafka_options(), fetch_max_wait_ms=20)
    await consumer.start()
    push = settings.topic("offer-triggers.push")
    # From the cluster, not the consumer's metadata: a consumer that started before the
    # topic's metadata reached its broker would not see the topic for minutes
    # (consumer.topics() does not refresh partitions_for_topic), and the run stalled.
    async with Admin(settings) as admin:
        count = (await admin.topic_partitions())[push]
    assigned = [TopicPartition(push, p) for p in range(count)]
    consumer.assign(assigned)
    await consumer.seek_to_end(*assigned)
    usage = settings.topic("usage-events")
    names = [f"l{u}" for u in range(users)]
    n = 0
    for user in names:  # consent first
        n += 1
        await producer.send(
            settings.topic("profile-events"),
            envelope(user, "consent_updated", n, channel="push", granted=True),
            key=user.encode(),
        )
    await producer.flush()
    await asyncio.sleep(3)

    sent: dict[str, float] = {}
    latencies: list[float] = []
    done = asyncio.Event()

    async def collect() -> None:
        while not done.is_set():
            batches = await consumer.getmany(timeout_ms=200)
            arrived = time.monotonic()
            for records in batches.values():
                for message in records:
                    trigger = orjson.loads(message.value)
                    began = sent.pop(trigger["caused_by"]["event_id"], None)
                    if began is not None:
                        latencies.append(arrived - began)

    collector = asyncio.create_task(collect())
    rng = random.Random(3)
    results = []
    for rate in rates:
        start = time.monotonic()
        cpu_before, ticks_before = worker.cpu_seconds(), machine_ticks()
        step = 0.02
        owed = 0.0
        while (now := time.monotonic()) - start < seconds:
            owed += rate * step
            while owed >= 1:
                owed -= 1
                n += 1
                user = rng.choice(names)
                if rng.random() < share:
                    value = envelope(user, "feature_used", n, feature="ping")
                    if now - start >= WARM_UP:
                        sent[f"lat-{n}"] = time.monotonic()
                else:
                    value = envelope(user, "feature_used", n, feature=rng.choice(["skip", "play"]))
                await producer.send(usage, value, key=user.encode())
            await asyncio.sleep(max(0.0, start + (now - start) + step - time.monotonic()))
        worker_cpu = (worker.cpu_seconds() - cpu_before) / (time.monotonic() - start)
        busy_after, total_after = machine_ticks()
        busy, total = busy_after - ticks_before[0], total_after - ticks_before[1]
        await asyncio.sleep(5)  # the last triggers arrive
        results.append(Phase(list(latencies), len(sent), worker_cpu, busy / max(total, 1)))
        latencies.clear()
        sent.clear()
    done.set()
    await collector
    await producer.stop()
    await consumer.stop()
    return results


def latest_maximum(broker_kind: str) -> float:
    """The latest median throughput of the worker in peers.py on this broker."""
    found = None
    with RESULTS.open(newline="") as handle:
        for row in csv.DictReader(handle):
            if (
                row["benchmark"] == "peers triggerstream"
                and row["figure"] == "throughput"
                and row["setup"].startswith(f"{broker_kind},")
            ):
                found = float(row["value"])
    if found is None:
        raise SystemExit(
            f"no peers.py figure for {broker_kind} in {RESULTS}: run "
            f"benchmarks/peers.py --broker {broker_kind} first, or give --max"
        )
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--broker", default="tansu", choices=["tansu", "apache"])
    parser.add_argument("--rate", type=float, default=200, help="events per second")
    parser.add_argument(
        "--at", type=float, nargs="+", help="fractions of --max to run at, instead of --rate"
    )
    parser.add_argument("--max", type=float, help="the worker's maximum events/s (for --at)")
    parser.add_argument("--seconds", type=float, default=60, help="per rate")
    parser.add_argument("--ping-share", type=float, default=0.1)
    parser.add_argument("--users", type=int, default=1000)
    args = parser.parse_args()
    if args.at:
        maximum = args.max or latest_maximum(args.broker)
        rates = [round(maximum * fraction) for fraction in args.at]
        labels = [f" ({fraction:.0%} of {maximum:,.0f})" for fraction in args.at]
    else:
        rates, labels = [args.rate], [""]
    with scratch() as folder_name, broker(args.broker) as bootstrap:
        folder = Path(folder_name)
        settings = Settings(kafka_bootstrap=bootstrap, topic_prefix="bench.")
        topics(settings)
        rules = folder / "rules.yaml"
        rules.write_text(yaml.safe_dump(RULES))
        worker = Worker(settings, rules, folder).start()
        worker.wait_ready(1)
        results = asyncio.run(
            measure(settings, worker, args.users, rates, args.seconds, args.ping_share)
        )
        worker.stop()
    status = 0
    for rate, label, (latencies, missing, worker_cpu, busy) in zip(
        rates, labels, results, strict=True
    ):
        if not latencies:
            print(f"{rate:g} events/s: no trigger arrived")
            status = 1
            continue
        cuts = statistics.quantiles(latencies, n=1000)
        p50, p99, p999 = statistics.median(latencies), cuts[989], cuts[998]
        print(
            f"{len(latencies)} triggers ({missing} missing) at {rate:g} events/s{label} on "
            f"{args.broker}: p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, "
            f"p99.9 {p999 * 1000:.1f} ms; the worker used {worker_cpu:.0%} of a core, "
            f"the machine was {busy:.0%} busy"
        )
        setup = (
            f"{rate:g} events/s{label} for {args.seconds:g}s, {args.ping_share:.0%} trigger, "
            f"{args.users} users, {args.broker}"
        )
        record(
            "worker latency",
            setup,
            [
                ("p50", round(p50 * 1000, 1), "ms"),
                ("p99", round(p99 * 1000, 1), "ms"),
                ("p99.9", round(p999 * 1000, 1), "ms"),
                ("worker CPU", round(worker_cpu * 100), "% of a core"),
                ("machine busy", round(busy * 100), "% of all cores"),
            ],
        )
        if missing:
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
