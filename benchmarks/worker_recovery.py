"""Worker state and restart: bytes per user, memory, and the time to be ready again.

Produces realistic traffic that gives every one of N users state (default 1,000,000: a
profile and consent each, then a month of usage), lets one worker consume it all and
notes its peak RSS, stops it (SIGTERM) and measures the users table in RocksDB (bytes
per user: the stored key and state, and the table's files on disk). Then times restarts
until the worker logs that its partitions are ready (tables recovered, timer schedule
rebuilt):
- with its RocksDB kept (a restart in place),
- with its RocksDB deleted (a new machine: everything from the changelog topics),
and notes the RSS once ready. Each restart must come back with every user the table
held (its "ready" line counts them), or the run stops: a fast recovery that lost users
is no figure. On Tansu only the restart from the changelogs is timed: its ListOffsets
answers make faust refuse a kept RocksDB (STYLE.md).

    .venv/bin/python benchmarks/worker_recovery.py [--broker apache|tansu]
        [--users 1000000] [--events 2500000] [--runs 3]
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from faust.stores.rocksdb import Store
from harness import (
    ROOT,
    TRIGGERSTREAM,
    Worker,
    broker,
    record,
    scratch,
    topics,
)
from rocksdict import AccessType, Options, Rdict

from triggerstream.settings import Settings
from triggerstream.traffic import generate


def users_table(data: Path) -> tuple[int, int, int]:
    """Users, bytes of their keys and states, and bytes of files in the users table's
    RocksDB databases (one per partition) under a stopped worker's data directory."""
    users = stored = on_disk = 0
    databases = sorted(data.glob("**/users-*.db"))
    if not databases:
        raise SystemExit(f"no users table under {data}")
    for path in databases:
        on_disk += sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
        database = Rdict(str(path), Options(raw_mode=True), access_type=AccessType.read_only())
        try:
            for key, value in database.items():
                assert isinstance(key, bytes)
                assert isinstance(value, bytes)
                if key == Store.offset_key:  # faust's changelog offset, not a user
                    continue
                users += 1
                stored += len(key) + len(value)
        finally:
            database.close()
    return users, stored, on_disk


def ready(worker: Worker, users: int, timeout: float) -> float:
    """Seconds until the restarted worker is ready, having checked it came back with
    all ``users``."""
    took = worker.wait_ready(len(worker.ready_lines()) + 1, timeout=timeout)
    line = worker.ready_lines()[-1]
    print("  " + line.split("] ")[-1], flush=True)
    found = re.search(r"ready: (\d+) users", line)
    if found is None or int(found.group(1)) != users:
        raise SystemExit(f"the worker came back with other than {users:,} users: {line}")
    return took


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--broker", default="apache", choices=["apache", "tansu"])
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=2_500_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with scratch() as folder_name, broker(args.broker) as bootstrap:
        folder = Path(folder_name)
        settings = Settings(kafka_bootstrap=bootstrap, topic_prefix="bench.")
        topics(settings)
        events = folder / "events.jsonl"
        began = time.perf_counter()
        generate(events, args.events, args.users)
        produced = sum(1 for _ in events.open("rb"))
        subprocess.run(
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
        print(
            f"produced {produced:,} events in {time.perf_counter() - began:.0f}s",
            flush=True,
        )
        worker = Worker(settings, ROOT / "examples" / "rules.yaml", folder).start()
        worker.wait_ready(1)
        # From the worker's /metrics: aiokafka's admin client cannot read Tansu's
        # committed offsets (OffsetFetch), which the group's lag would need.
        took = worker.wait_processed(produced)
        consumed_rss = worker.peak_rss_mib()
        print(
            f"consumed {produced:,} events in about {took:.0f}s, peak RSS {consumed_rss:.0f} MiB",
            flush=True,
        )
        worker.stop()
        users, stored, on_disk = users_table(folder / "data")
        print(
            f"users table: {users:,} users, {stored / users:.0f} bytes of key and state "
            f"per user, {on_disk / users:.0f} bytes per user on disk",
            flush=True,
        )

        kept, fresh, ready_rss = [], [], []
        if args.broker == "tansu":
            print("restart with RocksDB kept: not on Tansu (faust refuses it; STYLE.md)")
        else:
            for _ in range(args.runs):
                worker.start()
                kept.append(ready(worker, users, timeout=600))
                worker.stop()
                print(f"restart with RocksDB kept: ready in {kept[-1]:.2f}s", flush=True)
        for _ in range(args.runs):
            shutil.rmtree(folder / "data")
            worker.start()
            fresh.append(ready(worker, users, timeout=1200))
            ready_rss.append(worker.peak_rss_mib())
            worker.stop()
            print(
                f"restart from the changelogs: ready in {fresh[-1]:.2f}s, "
                f"peak RSS {ready_rss[-1]:.0f} MiB",
                flush=True,
            )
    broker_name = {"apache": "Apache Kafka", "tansu": "Tansu"}[args.broker]
    setup = f"{users} users, {produced} events, {broker_name}, restarts median of {args.runs}"
    figures: list[tuple[str, float, str]] = [
        ("state per user, key and value", round(stored / users), "bytes"),
        ("state per user, on disk", round(on_disk / users), "bytes"),
        ("peak rss, consuming", round(consumed_rss), "MiB"),
        ("peak rss, recovered", round(statistics.median(ready_rss)), "MiB"),
    ]
    if kept:
        figures.append(("restart ready, RocksDB kept", round(statistics.median(kept), 2), "s"))
    figures.append(("restart ready, from changelogs", round(statistics.median(fresh), 2), "s"))
    for figure, value, unit in figures:
        print(f"{figure}: {value} {unit} (median)")
    record("worker recovery", setup, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
