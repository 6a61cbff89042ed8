"""Scaling: one worker against two on the same backlog, on this machine's 2 cores.

For each run: fresh topics, a backlog of mixed traffic (``triggerstream.traffic``: a
month of usage, purchases, support and profile events over the users), then 1 or 2
workers started together with the demo's rules. Throughput counts from the moment every
worker is ready until the workers' processed events (their /metrics) add up to the
backlog. Prints events/s for each and the ratio; appends them to results.csv.

    .venv/bin/python benchmarks/scaling.py [--broker tansu|apache] [--events 60000]
        [--users 5000] [--runs 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from harness import ROOT, Worker, backlog, broker, record, scratch, topics

from triggerstream.settings import Settings

RULES = ROOT / "examples" / "rules.yaml"


def one_run(bootstrap: str, prefix: str, workers: int, events: int, users: int) -> float:
    """Events per second of ``workers`` workers through a fresh backlog."""
    settings = Settings(kafka_bootstrap=bootstrap, topic_prefix=prefix)
    topics(settings)
    expect = backlog(settings, events, users)
    with scratch() as folder:
        running = []
        for n in range(workers):
            (Path(folder) / f"w{n}").mkdir()
            running.append(Worker(settings, RULES, Path(folder) / f"w{n}").start())
        try:
            for worker in running:
                worker.wait_ready(1)
            began = time.perf_counter()
            deadline = began + 3600
            while sum(w.metric("triggerstream_events_total") for w in running) < expect:
                if time.perf_counter() > deadline:
                    raise SystemExit(f"{workers} worker(s) did not finish within an hour")
                time.sleep(0.2)
            seconds = time.perf_counter() - began
        finally:
            for worker in running:
                worker.stop()
    return expect / seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--broker", default="tansu", choices=["tansu", "apache"])
    parser.add_argument("--events", type=int, default=60_000)
    parser.add_argument("--users", type=int, default=5_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    rates: dict[int, list[float]] = {1: [], 2: []}
    with broker(args.broker) as bootstrap:
        for run in range(args.runs):
            for workers in (1, 2):
                rate = one_run(bootstrap, f"s{run}w{workers}.", workers, args.events, args.users)
                rates[workers].append(rate)
                print(f"run {run + 1}: {workers} worker(s) {rate:,.0f} events/s", flush=True)
    one, two = statistics.median(rates[1]), statistics.median(rates[2])
    print(f"median of {args.runs}: 1 worker {one:,.0f} events/s, 2 workers {two:,.0f} events/s")
    print(f"2 workers / 1 worker: {two / one:.2f}x")
    setup = (
        f"{args.broker}, {args.events} mixed events, {args.users} users, 8 partitions, "
        f"median of {args.runs}"
    )
    record(
        "scaling",
        setup,
        [
            ("throughput 1 worker", one, "events/s"),
            ("throughput 2 workers", two, "events/s"),
            ("ratio 2/1", two / one, "x"),
        ],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
