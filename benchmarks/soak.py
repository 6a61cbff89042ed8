"""Soak: `triggerstream loadgen` at a steady rate for ten minutes against one worker with
the demo's rules; memory, lag and latency must stay flat.

Starts a broker and a worker (examples/rules.yaml), runs `triggerstream loadgen --react`
(users answer their offers: feedback and purchases come back in), and every
``--every`` seconds samples the worker: events processed, resident memory, the
consumer lag its /metrics reports, and the p50/p99 of the trigger latency histogram
over the interval (event time to emit). Prints a line per sample, then whether the
last third of the run is flat against the first third, and appends the figures to
results.csv. Not part of CI: it takes as long as it is told to.

    .venv/bin/python benchmarks/soak.py [--broker apache|tansu] [--rate 500]
        [--minutes 10] [--users 10000] [--every 30]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from harness import TRIGGERSTREAM, Worker, broker, record, scratch, topics

from triggerstream.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "examples" / "rules.yaml"
RSS_GROWTH_MIB = 50
"""How much more memory the last third may hold than the first and still be flat."""


@dataclass
class Sample:
    at: float
    events: float
    rss_mib: float
    lag: float
    buckets: dict[float, float]
    """Trigger latency histogram: upper bound -> cumulative count."""


def sample(worker: Worker, began: float) -> Sample:
    events = lag = 0.0
    buckets: dict[float, float] = {}
    for s in worker.samples():
        if s.name == "triggerstream_events_total":
            events += s.value
        elif s.name == "triggerstream_consumer_lag":
            lag += s.value
        elif s.name == "triggerstream_trigger_latency_seconds_bucket":
            bound = float(s.labels["le"])
            buckets[bound] = buckets.get(bound, 0.0) + s.value
    return Sample(time.monotonic() - began, events, worker.rss_mib(), lag, buckets)


def quantile(before: Sample, after: Sample, q: float) -> float | None:
    """The upper bound of the histogram bucket holding the ``q`` quantile of the
    triggers emitted between two samples (None if there were none)."""
    bounds = sorted(after.buckets)
    counts = [after.buckets[b] - before.buckets.get(b, 0.0) for b in bounds]
    total = counts[-1] if counts else 0.0
    if total <= 0:
        return None
    for bound, count in zip(bounds, counts, strict=True):
        if count >= q * total:
            return bound
    return bounds[-1]


def shown(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return "over 300 s" if seconds == float("inf") else f"<= {seconds * 1000:g} ms"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--broker", default="apache", choices=["tansu", "apache"])
    parser.add_argument("--rate", type=float, default=500, help="events per second")
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--every", type=float, default=30, help="seconds between samples")
    parser.add_argument(
        "--rocksdb-memory",
        type=int,
        help="MiB for RocksDB (TRIGGERSTREAM_ROCKSDB_MEMORY, default 512); memory fills "
        "up to it as the write buffers and block cache fill, so a small budget shows a "
        "leak sooner",
    )
    args = parser.parse_args()
    seconds = args.minutes * 60
    with scratch() as folder_name, broker(args.broker) as bootstrap:
        folder = Path(folder_name)
        settings = Settings(kafka_bootstrap=bootstrap, topic_prefix="soak.")
        topics(settings)
        worker = Worker(settings, RULES, folder)
        if args.rocksdb_memory:
            worker.env["TRIGGERSTREAM_ROCKSDB_MEMORY"] = str(args.rocksdb_memory)
        worker.start()
        worker.wait_ready(1)
        loadgen_log = (folder / "loadgen.log").open("wb")
        loadgen = subprocess.Popen(
            [TRIGGERSTREAM, "loadgen", "--rate", f"{args.rate:g}", "--users", str(args.users)]
            + ["--duration", f"{seconds:g}", "--seed", "7", "--react"],
            env=worker.env,
            stdout=loadgen_log,
            stderr=subprocess.STDOUT,
        )
        began = time.monotonic()
        samples = [sample(worker, began)]
        print(f"{args.rate:g} events/s for {args.minutes:g} min on {args.broker}")
        print("   time  events/s   RSS MiB      lag  trigger p50     trigger p99")
        while True:
            try:
                loadgen.wait(args.every)
                break  # the run is over: no sample of a quiet interval
            except subprocess.TimeoutExpired:
                samples.append(sample(worker, began))
            before, now = samples[-2], samples[-1]
            rate = (now.events - before.events) / (now.at - before.at)
            p50, p99 = quantile(before, now, 0.5), quantile(before, now, 0.99)
            print(
                f"{now.at:6.0f}s {rate:9,.0f} {now.rss_mib:9.0f} {now.lag:8,.0f}  "
                f"{shown(p50):>11}  {shown(p99):>14}",
                flush=True,
            )
        loadgen_log.close()
        worker.stop()
        if loadgen.returncode != 0:
            print((folder / "loadgen.log").read_text()[-3000:])
            return 1

    third = max(1, (len(samples) - 1) // 3)
    first, last = samples[1 : 1 + third], samples[-third:]
    rss_growth = statistics.median(s.rss_mib for s in last) - statistics.median(
        s.rss_mib for s in first
    )
    p99_first = quantile(samples[0], samples[third], 0.99)
    p99_last = quantile(samples[-third - 1], samples[-1], 0.99)
    max_lag = max(s.lag for s in samples)
    end_lag = statistics.median(s.lag for s in last)
    processed = (samples[-1].events - samples[0].events) / (samples[-1].at - samples[0].at)
    flat = {
        "memory": rss_growth < RSS_GROWTH_MIB,
        "lag": end_lag <= args.rate * args.every,  # less than one interval behind
        "latency": p99_last is not None and (p99_first is None or p99_last <= 2 * p99_first),
    }
    print(
        f"processed {processed:,.0f} events/s; memory {rss_growth:+.0f} MiB from the first "
        f"third to the last; lag at most {max_lag:,.0f}, {end_lag:,.0f} at the end; trigger "
        f"p99 {shown(p99_first)} in the first third, {shown(p99_last)} in the last"
    )
    print("flat: " + ", ".join(f"{name} {'yes' if ok else 'NO'}" for name, ok in flat.items()))
    record(
        "soak",
        f"loadgen --react {args.rate:g} events/s, {args.users} users, {args.minutes:g} min, "
        f"examples/rules.yaml, rocksdb {args.rocksdb_memory or 512} MiB, {args.broker}",
        [
            ("processed", round(processed), "events/s"),
            ("rss first third", round(statistics.median(s.rss_mib for s in first)), "MiB"),
            ("rss last third", round(statistics.median(s.rss_mib for s in last)), "MiB"),
            ("max lag", round(max_lag), "events"),
            ("end lag", round(end_lag), "events"),
            ("trigger p99 first third", (p99_first or 0) * 1000, "ms (bucket bound)"),
            ("trigger p99 last third", (p99_last or 0) * 1000, "ms (bucket bound)"),
        ],
    )
    return 0 if all(flat.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
