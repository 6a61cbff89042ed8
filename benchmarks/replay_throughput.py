"""Replay engine throughput: what the pure core costs without Kafka.

Generates a realistic mixed stream (default: a million events over 100,000 users, 30
days, every trigger kind in examples/rules.yaml), replays it through the same path as
`triggerstream replay` (parse, validate, engine, encode triggers and decisions), and
prints events per second and peak memory. The compiled core and the pure one
(``TRIGGERSTREAM_PURE=1``) run side by side, interleaved, in fresh processes; both must
make the same decisions and triggers. Medians are appended to benchmarks/results.csv.

    .venv/bin/python benchmarks/replay_throughput.py [--events N] [--users N] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness import record

from triggerstream.traffic import generate

ROOT = Path(__file__).resolve().parents[1]


def run_once(path: Path, pure: bool) -> dict[str, float]:
    """One replay in a fresh process, so peak memory is this run's alone."""
    code = (
        "import sys, time, os, orjson\n"
        "from pathlib import Path\n"
        "from triggerstream.core.engine import Engine\n"
        "from triggerstream.replay import Outputs, Replay, line_writer, read_lines\n"
        "from triggerstream.rules.load import load_rules\n"
        f"rules = load_rules(Path({str(ROOT / 'examples' / 'rules.yaml')!r}))\n"
        "from triggerstream import collector\n"
        "collector.for_many_objects()  # as `triggerstream replay` does\n"
        "sink = open(os.devnull, 'wb')\n"
        "outputs = Outputs(triggers=line_writer(sink), decisions=line_writer(sink))\n"
        "began = time.perf_counter()\n"
        "replay = Replay(Engine(rules), outputs)\n"
        f"replay.feed(read_lines([Path({str(path)!r})]))\n"
        "summary = replay.finish()\n"
        "seconds = time.perf_counter() - began\n"
        # VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec from the parent, which
        # holds the generated stream.
        "peak = next(int(line.split()[1]) for line in open('/proc/self/status')"
        " if line.startswith('VmHWM'))\n"
        "cpu = time.process_time()\n"
        "sizes = sorted(len(orjson.dumps(s.to_document())) for s in replay.states.values())\n"
        "print(summary.events, seconds, peak, sum(summary.decisions.values()),"
        " sum(summary.triggers.values()), cpu, sizes[len(sizes) // 2],"
        " sizes[int(len(sizes) * 0.99)])\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TRIGGERSTREAM_PURE"}
    if pure:
        env["TRIGGERSTREAM_PURE"] = "1"
    code += "from triggerstream import compiled\nprint(compiled.COMPILED)\n"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    ).stdout.split()
    events, seconds, peak_kib, decisions, triggers, cpu, median_state, p99_state, built = out
    if (built == "True") == pure:
        raise SystemExit(f"asked for the {'pure' if pure else 'compiled'} core; it did not run")
    return {
        "events": int(events),
        "seconds": float(seconds),
        "events_per_second": int(events) / float(seconds),
        "peak_mib": int(peak_kib) / 1024,
        "decisions": int(decisions),
        "triggers": int(triggers),
        "cpu_seconds": float(cpu),
        "state_median_bytes": int(median_state),
        "state_p99_bytes": int(p99_state),
    }


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
        print(
            f"generated {path} ({path.stat().st_size / 1e6:.0f} MB) "
            f"in {time.perf_counter() - began:.1f}s",
            file=sys.stderr,
        )
    runs: dict[str, list[dict[str, float]]] = {"compiled": [], "pure": []}
    for n in range(args.runs):
        for core in runs:
            result = run_once(path, pure=core == "pure")
            runs[core].append(result)
            print(
                f"run {n + 1} {core:8}: {result['events_per_second']:,.0f} events/s, "
                f"{result['cpu_seconds']:.1f} CPU s, peak {result['peak_mib']:.0f} MiB, "
                f"{result['decisions']:,} decisions, {result['triggers']:,} triggers, "
                f"state per user {result['state_median_bytes']} B median, "
                f"{result['state_p99_bytes']} B p99",
                flush=True,
            )
    outputs = {(r["decisions"], r["triggers"]) for results in runs.values() for r in results}
    if len(outputs) != 1:
        raise SystemExit(f"the runs made different outputs: {sorted(outputs)}")
    for core, results in runs.items():
        median = statistics.median(r["events_per_second"] for r in results)
        cpu_rate = statistics.median(r["events"] / r["cpu_seconds"] for r in results)
        peak = statistics.median(r["peak_mib"] for r in results)
        print(
            f"{core} core, median of {len(results)}: {median:,.0f} events/s "
            f"({cpu_rate:,.0f} per CPU second) on one core; peak memory {peak:.0f} MiB "
            f"({args.events:,} events, {args.users:,} users)"
        )
        record_figures(core, median, cpu_rate, peak, args)
    return 0


def record_figures(
    core: str, median: float, cpu_rate: float, peak: float, args: argparse.Namespace
) -> None:
    setup = f"{args.events} events, {args.users} users, {core} core, median of {args.runs}"
    record(
        "replay",
        setup,
        [
            ("throughput", round(median), "events/s"),
            ("throughput per CPU second", round(cpu_rate), "events/s"),
            ("peak memory", round(peak), "MiB"),
        ],
    )


if __name__ == "__main__":
    sys.exit(main())
