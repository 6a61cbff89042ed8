"""`triggerstream explain` against `triggerstream replay` on the same generated month.

Explain reads every line, as replay does, but runs only one user's events through the
engine and keeps only that user's decisions; of everyone else it keeps 24 hours of event
ids and counts orders of the user's partition. Runs, interleaved in fresh processes:
replay of the whole file (triggers and decisions to /dev/null), explain of a typical
user (the median number of events) and of the busiest user. Prints events per second and
peak memory of each; medians are appended to benchmarks/results.csv.

    .venv/bin/python benchmarks/explain_throughput.py [--events N] [--users N] [--runs 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import orjson
from harness import record

from triggerstream import compiled
from triggerstream.traffic import generate

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "examples" / "rules.yaml"

SETUP = (
    "import time, os\n"
    "from pathlib import Path\n"
    "from triggerstream import collector\n"
    "from triggerstream.core.engine import Engine\n"
    "from triggerstream.rules.load import load_rules\n"
    "from triggerstream.topics import input_partitions\n"
    f"rules = load_rules(Path({str(RULES)!r}))\n"
    "collector.for_many_objects()  # as the commands do\n"
)
REPLAY = (
    "from triggerstream.replay import Outputs, line_writer, run\n"
    "sink = open(os.devnull, 'wb')\n"
    "began = time.perf_counter()\n"
    "run(Engine(rules), [Path({path!r})], Outputs(line_writer(sink), line_writer(sink)),"
    " partitions=input_partitions())\n"
)
EXPLAIN = (
    "from triggerstream.explain import explain_user, read_user\n"
    "began = time.perf_counter()\n"
    "engine = Engine(rules)\n"
    "seen = read_user(engine, {user!r}, [Path({path!r})], partitions=input_partitions())\n"
    "explain_user(engine, {user!r}, seen.state, seen.now, seen.decisions)\n"
)
REPORT = (
    "seconds = time.perf_counter() - began\n"
    "peak = next(int(line.split()[1]) for line in open('/proc/self/status')"
    " if line.startswith('VmHWM'))\n"
    "print(seconds, time.process_time(), peak)\n"
)


def run_once(code: str, lines: int) -> dict[str, float]:
    """One run in a fresh process, so peak memory is this run's alone."""
    out = subprocess.run(
        [sys.executable, "-c", SETUP + code + REPORT], capture_output=True, text=True, check=True
    ).stdout.split()
    seconds, cpu, peak_kib = float(out[0]), float(out[1]), int(out[2])
    return {"events_per_second": lines / seconds, "cpu": cpu, "peak_mib": peak_kib / 1024}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="reuse/keep the generated stream here")
    args = parser.parse_args()

    path = args.keep or Path(tempfile.gettempdir()) / f"ts-bench-{args.events}-{args.users}.jsonl"
    if not path.exists():
        began = time.perf_counter()
        generate(path, args.events, args.users)
        print(f"generated {path} in {time.perf_counter() - began:.1f}s", file=sys.stderr)
    per_user = Counter(orjson.loads(line)["user_id"] for line in path.open("rb"))
    ranked = per_user.most_common()
    typical, busiest = ranked[len(ranked) // 2][0], ranked[0][0]
    lines = sum(per_user.values())
    runs: dict[str, tuple[str, list[dict[str, float]]]] = {
        "replay": (REPLAY.format(path=str(path)), []),
        f"a typical user ({typical}, {per_user[typical]} events)": (
            EXPLAIN.format(path=str(path), user=typical),
            [],
        ),
        f"the busiest user ({busiest}, {per_user[busiest]} events)": (
            EXPLAIN.format(path=str(path), user=busiest),
            [],
        ),
    }
    for n in range(args.runs):
        for name, (code, results) in runs.items():
            result = run_once(code, lines)
            results.append(result)
            print(
                f"run {n + 1}, {'replay' if name == 'replay' else 'explain ' + name}: "
                f"{result['events_per_second']:,.0f} events/s, "
                f"peak {result['peak_mib']:.0f} MiB",
                flush=True,
            )
    setup = (
        f"{args.events} events, {args.users} users, {compiled.BUILD}, median of {args.runs}, "
        "explain_throughput.py"
    )
    for name, (_code, results) in runs.items():
        rate = statistics.median(r["events_per_second"] for r in results)
        peak = statistics.median(r["peak_mib"] for r in results)
        print(f"{name}: {rate:,.0f} events/s, peak {peak:.0f} MiB (median of {args.runs})")
        figures: list[tuple[str, float, str]]
        if name == "replay":
            figures = [("throughput", round(rate), "events/s"), ("peak memory", round(peak), "MiB")]
            record("replay", setup, figures)
        else:
            figures = [
                (f"throughput, {name}", round(rate), "events/s"),
                (f"peak memory, {name}", round(peak), "MiB"),
            ]
            record("explain", setup, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
