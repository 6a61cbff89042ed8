"""Worker throughput: one worker with the demo's rules through a backlog of mixed events.

For each run: fresh topics, a backlog of a month of mixed traffic (``triggerstream.
traffic``: listeners skipping, teams filling quotas, shoppers, trials, tickets, NPS
answers, consent changes, offer feedback; default a million events over 100,000 users),
then one worker with examples/rules.yaml. Counts from the moment the worker is ready
until its /metrics show every event processed. Prints events/s, CPU seconds per 1,000
events and peak RSS (medians of ``--runs``); appends them to results.csv.

    .venv/bin/python benchmarks/worker_throughput.py [--broker tansu|apache]
        [--events 1000000] [--users 100000] [--runs 3]
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


def one_run(bootstrap: str, prefix: str, events: int, users: int) -> tuple[float, float, float]:
    """Events/s, CPU seconds per 1,000 events and peak RSS (MiB) of one worker."""
    settings = Settings(kafka_bootstrap=bootstrap, topic_prefix=prefix)
    topics(settings)
    began = time.perf_counter()
    expect = backlog(settings, events, users)
    print(f"  produced {expect:,} events in {time.perf_counter() - began:.0f}s", flush=True)
    with scratch() as folder:
        worker = Worker(settings, RULES, Path(folder)).start()
        try:
            worker.wait_ready(1)
            cpu = worker.cpu_seconds()
            seconds = worker.wait_processed(expect)
            cpu = worker.cpu_seconds() - cpu
            rss = worker.peak_rss_mib()
        finally:
            worker.stop()
    return expect / seconds, cpu / expect * 1000, rss


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--broker", default="tansu", choices=["tansu", "apache"])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    runs = []
    with broker(args.broker) as bootstrap:
        for run in range(args.runs):
            rate, cpu, rss = one_run(bootstrap, f"t{run}.", args.events, args.users)
            runs.append((rate, cpu, rss))
            print(
                f"run {run + 1}: {rate:,.0f} events/s, {cpu:.3f} CPU s/1000 events, "
                f"peak RSS {rss:.0f} MiB",
                flush=True,
            )
    rate = statistics.median(r[0] for r in runs)
    cpu = statistics.median(r[1] for r in runs)
    rss = statistics.median(r[2] for r in runs)
    print(
        f"median of {args.runs}: {rate:,.0f} events/s, {cpu:.3f} CPU s/1000 events, "
        f"peak RSS {rss:.0f} MiB"
    )
    setup = (
        f"{args.broker}, {args.events} mixed events, {args.users} users, demo rules, "
        f"8 partitions, median of {args.runs}"
    )
    record(
        "worker throughput",
        setup,
        [
            ("throughput", round(rate), "events/s"),
            ("cpu", round(cpu, 4), "s/1000 events"),
            ("peak rss", round(rss), "MiB"),
        ],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
