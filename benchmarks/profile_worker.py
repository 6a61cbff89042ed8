"""Where the worker's CPU goes: py-spy on a worker reading a backlog.

The backlog is peers.py's (skip events over 10,000 users on 4 partitions), read by the
worker with the demo's rules (or, with ``--like-for-like``, peers.py's job). py-spy
samples the worker's main thread once it has begun processing; the summary printed is
each function's inclusive share of the samples (a flame graph's widths), and the raw
collapsed stacks stay in ``--out`` for a flame graph (``py-spy`` or speedscope read them).

    .venv/bin/pip install py-spy   # not a dependency of triggerstream
    .venv/bin/python benchmarks/profile_worker.py --broker tansu --messages 200000

Prints; does not append to results.csv (a profile is not a figure).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import harness  # noqa: E402
import peers  # noqa: E402

from triggerstream.kafka import create_topics, produce  # noqa: E402
from triggerstream.settings import Settings  # noqa: E402
from triggerstream.topics import load_topics  # noqa: E402


def summarize(collapsed: Path, top: int) -> list[tuple[float, str]]:
    """Inclusive share of samples per function, from py-spy's collapsed stacks."""
    inclusive: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        count = int(count_text)
        total += count
        frames = {
            frame.split(" (")[0] + " (" + frame.split(" (")[-1].split(":")[0] + ")"
            for frame in stack.split(";")
        }
        for frame in frames:
            inclusive[frame] += count
    return [(100.0 * n / total, frame) for frame, n in inclusive.most_common(top)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker", choices=["tansu", "apache"], default="tansu")
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--top", type=int, default=45)
    parser.add_argument("--out", type=Path, default=Path("profile.collapsed"))
    parser.add_argument(
        "--like-for-like",
        action="store_true",
        help="peers.py's job (one count rule, every match a decision) instead of the demo's rules",
    )
    args = parser.parse_args()
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(py_spy).exists():
        raise SystemExit("py-spy is not installed: .venv/bin/pip install py-spy")
    rows = peers.backlog(args.messages, args.users)
    with harness.broker(args.broker) as bootstrap, harness.scratch() as folder:
        settings = Settings(kafka_bootstrap=bootstrap, topic_prefix="prof.", partitions=4)
        asyncio.run(create_topics(settings, load_topics()))
        asyncio.run(produce(settings, [("prof.usage-events", k, v) for k, v, _ in rows]))
        rules = harness.ROOT / "examples" / "rules.yaml"
        if args.like_for_like:
            rules = Path(folder) / "rules.yaml"
            rules.write_text(peers.LIKE_FOR_LIKE)
        worker = harness.Worker(settings, rules, Path(folder)).start()
        try:
            worker.wait_ready(1)
            worker.wait_processed(1)
            assert worker.process is not None
            began = time.perf_counter()
            subprocess.run(
                [
                    py_spy,
                    "record",
                    "--pid",
                    str(worker.process.pid),
                    "--rate",
                    "200",
                    "--duration",
                    str(args.seconds),
                    "--format",
                    "raw",
                    "--output",
                    str(args.out),
                    "--nonblocking",
                ],
                check=True,
                capture_output=True,
            )
            seconds = time.perf_counter() - began
            done = worker.metric("triggerstream_events_total")
        finally:
            worker.stop()
    print(f"{done:,.0f} events processed by the end of {seconds:.0f} s of sampling")
    print("inclusive share of samples, by function:")
    for share, frame in summarize(args.out, args.top):
        print(f"{share:6.1f}%  {frame}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
