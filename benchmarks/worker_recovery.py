"""Worker restart: how long until a worker is ready again with 100,000 users' state.

Produces realistic traffic that gives every one of N users state (default 100,000; a
profile and consent each, then a month of usage), lets one worker consume it all, stops
it (SIGTERM), and times restarts until the worker logs that its partitions are ready
(tables recovered, timer schedule rebuilt):
- with its RocksDB kept (a restart in place),
- with its RocksDB deleted (a new machine: everything from the changelog topics).
Apache Kafka only: Tansu's ListOffsets makes faust refuse kept RocksDB (STYLE.md).

    .venv/bin/python benchmarks/worker_recovery.py [--users 100000] [--events 300000] [--runs 3]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

from harness import (
    ROOT,
    TRIGGERSTREAM,
    Worker,
    broker,
    record,
    scratch,
    topics,
    wait_caught_up,
)

from triggerstream.settings import Settings
from triggerstream.traffic import generate
from triggerstream.worker.app import app_id


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with scratch() as folder_name, broker("apache") as bootstrap:
        folder = Path(folder_name)
        settings = Settings(kafka_bootstrap=bootstrap, topic_prefix="bench.")
        topics(settings)
        events = folder / "events.jsonl"
        generate(events, args.events, args.users)
        produce = subprocess.run(
            [
                TRIGGERSTREAM,
                "produce",
                str(events),
                "--bootstrap",
                bootstrap,
                "--topic-prefix",
                settings.topic_prefix,
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        print(produce.stderr.strip() or f"produced {args.events} events", flush=True)
        worker = Worker(settings, ROOT / "examples" / "rules.yaml", folder).start()
        worker.wait_ready(1)
        took = wait_caught_up(settings, app_id(settings))
        print(f"consumed {args.events} events in about {took:.0f}s", flush=True)
        worker.stop()
        print(worker.ready_lines()[-1].split("] ")[-1], flush=True)

        kept, fresh = [], []
        for _ in range(args.runs):
            worker.start()
            kept.append(worker.wait_ready(len(worker.ready_lines()) + 1))
            worker.stop()
            print(f"restart with RocksDB kept: ready in {kept[-1]:.2f}s", flush=True)
        for _ in range(args.runs):
            shutil.rmtree(folder / "data")
            worker.start()
            fresh.append(worker.wait_ready(len(worker.ready_lines()) + 1))
            worker.stop()
            print(f"restart from the changelogs: ready in {fresh[-1]:.2f}s", flush=True)
            print("  " + worker.ready_lines()[-1].split("] ")[-1], flush=True)
    setup = f"{args.users} users, {args.events} events, Apache Kafka, median of {args.runs}"
    figures = [
        ("restart ready, RocksDB kept", round(statistics.median(kept), 2), "s"),
        ("restart ready, from changelogs", round(statistics.median(fresh), 2), "s"),
    ]
    for figure, value, unit in figures:
        print(f"{figure}: {value} {unit} (median)")
    record("worker recovery", setup, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
