"""Replay engine throughput: what the pure core costs without Kafka.

Generates a realistic mixed stream (default: a million events over 100,000 users, 30
days, every trigger kind in examples/rules.yaml), replays it through the same path as
`triggerstream replay` (parse, validate, engine, encode triggers and decisions), and
prints events per second and peak memory. Each run appends its figures to
benchmarks/results.csv.

    .venv/bin/python benchmarks/replay_throughput.py [--events N] [--users N] [--runs 3]
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results.csv"
START = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)


def generate(path: Path, events: int, users: int, seed: int = 7) -> None:
    """A month of traffic: listeners skipping, teams filling quotas, shoppers, trials,
    tickets, NPS answers, consent changes and offer feedback."""
    rng = random.Random(seed)
    span = 30 * 86400
    zones = ["Europe/Berlin", "America/New_York", "Asia/Tokyo", "UTC", "Europe/London"]
    skus = [f"sku-{n}" for n in range(400)] + ["camera-x", "sd-card-64", "camera-bag", "tripod"]
    lines: list[tuple[float, bytes]] = []
    n = 0

    def emit(user: str, at: float, topic: str, type_: str, props: dict[str, object]) -> None:
        nonlocal n
        n += 1
        stamp = (START + dt.timedelta(seconds=at)).isoformat()
        lines.append(
            (
                at,
                orjson.dumps(
                    {
                        "topic": topic,
                        "event_id": f"e{n}",
                        "user_id": user,
                        "type": type_,
                        "occurred_at": stamp,
                        "properties": props,
                    }
                ),
            )
        )

    # Every user gets a profile and consent first; the rest is drawn by weight.
    for u in range(users):
        user = f"u{u}"
        at = rng.uniform(0, 3600)
        plan = rng.choice(["free", "free", "free", "team", "starter", "pro"])
        emit(
            user,
            at,
            "profile-events",
            "profile_updated",
            {"plan": plan, "timezone": rng.choice(zones), "first_name": f"User{u}"},
        )
        for channel in ("push", "email"):
            if rng.random() < 0.6:
                emit(
                    user,
                    at + 1,
                    "profile-events",
                    "consent_updated",
                    {"channel": channel, "granted": True},
                )
    kinds = [
        (0.40, "skip"),
        (0.12, "feature"),
        (0.10, "session"),
        (0.06, "quota"),
        (0.05, "locked"),
        (0.04, "workflow"),
        (0.05, "order"),
        (0.02, "subscription"),
        (0.02, "trial"),
        (0.03, "ticket"),
        (0.02, "nps"),
        (0.04, "feedback"),
        (0.05, "session_end"),
    ]
    weights = [w for w, _ in kinds]
    names = [k for _, k in kinds]
    while len(lines) < events:
        user = f"u{int(rng.paretovariate(1.2)) % users}"
        at = rng.uniform(0, span)
        kind = rng.choices(names, weights)[0]
        if kind == "skip":
            burst_at = at
            for _ in range(rng.randint(1, 8)):
                burst_at += rng.uniform(20, 600)
                emit(user, burst_at, "usage-events", "feature_used", {"feature": "skip"})
        elif kind == "feature":
            emit(
                user,
                at,
                "usage-events",
                "feature_used",
                {"feature": rng.choice(["export", "play", "share"]), "quantity": rng.randint(1, 5)},
            )
        elif kind == "session":
            emit(user, at, "usage-events", "session_started", {"platform": "ios"})
        elif kind == "session_end":
            emit(user, at, "usage-events", "session_ended", {})
        elif kind == "quota":
            emit(
                user,
                at,
                "usage-events",
                "quota_usage",
                {"resource": "storage_gb", "used": rng.randint(100, 1000), "limit": 1000},
            )
        elif kind == "locked":
            emit(
                user,
                at,
                "usage-events",
                "locked_feature_clicked",
                {"feature": "sso", "required_plan": "business"},
            )
        elif kind == "workflow":
            name = rng.choice(["first-report", "payroll"])
            emit(
                user,
                at,
                "usage-events",
                "workflow_started",
                {"workflow": name, "critical": name == "payroll"},
            )
            emit(
                user,
                at + rng.uniform(60, 1800),
                "usage-events",
                "workflow_completed",
                {"workflow": name},
            )
        elif kind == "order":
            items: list[dict[str, float | int | str]] = [
                {"sku": rng.choice(skus), "price": round(rng.uniform(5, 500), 2), "quantity": 1}
                for _ in range(rng.randint(1, 3))
            ]
            emit(
                user,
                at,
                "purchase-events",
                "order_completed",
                {
                    "order_id": f"o{len(lines)}",
                    "items": items,
                    "total": round(sum(float(i["price"]) for i in items), 2),
                    "currency": "EUR",
                },
            )
        elif kind == "subscription":
            emit(
                user,
                at,
                "purchase-events",
                "subscription_renewed",
                {"plan": "pro", "billing_period": rng.choice(["monthly", "annual"])},
            )
        elif kind == "trial":
            ends = START + dt.timedelta(seconds=at + rng.uniform(5, 30) * 86400)
            emit(
                user,
                at,
                "purchase-events",
                "trial_started",
                {"plan": "pro", "trial_ends_at": ends.isoformat()},
            )
        elif kind == "ticket":
            ticket = f"T-{len(lines)}"
            emit(
                user,
                at,
                "support-events",
                "ticket_opened",
                {"ticket_id": ticket, "category": "api-rate-limit"},
            )
            emit(
                user,
                at + rng.uniform(600, 86400),
                "support-events",
                "ticket_resolved",
                {"ticket_id": ticket, "category": "api-rate-limit"},
            )
        elif kind == "nps":
            emit(user, at, "support-events", "nps_submitted", {"score": rng.randint(0, 10)})
        else:
            emit(
                user,
                at,
                "offer-feedback",
                rng.choice(["offer_shown", "offer_clicked", "offer_dismissed"]),
                {"trigger_id": "trg-x", "offer_id": "premium", "channel": "in_app"},
            )
    lines.sort(key=lambda pair: pair[0])
    with path.open("wb") as handle:
        for _, line in lines[:events]:
            handle.write(line + b"\n")


def run_once(path: Path) -> dict[str, float]:
    """One replay in a fresh process, so peak memory is this run's alone."""
    code = (
        "import sys, time, os\n"
        "from pathlib import Path\n"
        "from triggerstream.core.engine import Engine\n"
        "from triggerstream.replay import Outputs, Replay, line_writer, read_lines\n"
        "from triggerstream.rules.load import load_rules\n"
        f"rules = load_rules(Path({str(ROOT / 'examples' / 'rules.yaml')!r}))\n"
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
        "sizes = sorted(len(s.to_bytes()) for s in replay.states.values())\n"
        "print(summary.events, seconds, peak, sum(summary.decisions.values()),"
        " sum(summary.triggers.values()), cpu, sizes[len(sizes) // 2],"
        " sizes[int(len(sizes) * 0.99)])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    events, seconds, peak_kib, decisions, triggers, cpu, median_state, p99_state = out
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
    runs = []
    for n in range(args.runs):
        result = run_once(path)
        runs.append(result)
        print(
            f"run {n + 1}: {result['events_per_second']:,.0f} events/s, "
            f"{result['seconds']:.1f}s, peak {result['peak_mib']:.0f} MiB, "
            f"{result['decisions']:,} decisions, {result['triggers']:,} triggers, "
            f"state per user {result['state_median_bytes']} B median, "
            f"{result['state_p99_bytes']} B p99"
        )
    median = statistics.median(r["events_per_second"] for r in runs)
    peak = statistics.median(r["peak_mib"] for r in runs)
    print(
        f"median of {len(runs)}: {median:,.0f} events/s on one core; peak memory {peak:.0f} MiB "
        f"({args.events:,} events, {args.users:,} users)"
    )
    record(median, peak, args)
    return 0


def record(median: float, peak: float, args: argparse.Namespace) -> None:
    new = not RESULTS.exists()
    with RESULTS.open("a", newline="") as handle:
        writer = csv.writer(handle)
        if new:
            writer.writerow(
                [
                    "date",
                    "benchmark",
                    "figure",
                    "value",
                    "unit",
                    "setup",
                    "machine",
                    "python",
                    "versions",
                ]
            )
        machine = f"{platform.machine()} {os.cpu_count()} cores"
        versions = f"triggerstream {version('triggerstream')} pydantic {version('pydantic')}"
        setup = f"{args.events} events, {args.users} users, median of {args.runs}"
        today = dt.date.today().isoformat()
        for figure, value, unit in (
            ("throughput", round(median), "events/s"),
            ("peak memory", round(peak), "MiB"),
        ):
            writer.writerow(
                [
                    today,
                    "replay",
                    figure,
                    value,
                    unit,
                    setup,
                    machine,
                    platform.python_version(),
                    versions,
                ]
            )


if __name__ == "__main__":
    sys.exit(main())
