"""Compare throughput: `triggerstream compare` against `triggerstream replay` of each file.

Generates a month (`triggerstream generate`, default 200,000 events over 20,000 users),
then runs `replay` with examples/rules.yaml, `replay` with examples/rules-next.yaml and
`compare` of the two on it, interleaved, in fresh processes, and takes each one's rate
from the summary it prints (lines read per second, start-up left out). Compare runs two
engines over each line it reads once: it must reach at least half of replay's rate with
either file (issue 22). Each side of compare must count what replay of its file decided.
Medians are appended to benchmarks/results.csv.

    .venv/bin/python benchmarks/compare_throughput.py [--events N] [--users N] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
from harness import record

ROOT = Path(__file__).resolve().parents[1]
OLD = ROOT / "examples" / "rules.yaml"
NEW = ROOT / "examples" / "rules-next.yaml"
RATE = re.compile(r"read (\d+) line\(s\) in [\d.]+s \(([\d,]+)/s\)")


def triggerstream(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIGGERSTREAM_")}
    if "TRIGGERSTREAM_PURE" in os.environ:
        env["TRIGGERSTREAM_PURE"] = os.environ["TRIGGERSTREAM_PURE"]
    return subprocess.run(
        [sys.executable, "-m", "triggerstream", *args],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )


def rate(stderr: str) -> float:
    found = RATE.search(stderr)
    if found is None:
        raise SystemExit(f"no summary line in: {stderr}")
    return float(found.group(2).replace(",", ""))


def replay(rules: Path, events: Path, folder: Path) -> tuple[float, dict[str, Any]]:
    """Replay's rate and its records counted as compare counts them."""
    decisions, triggers = folder / f"d-{rules.stem}.jsonl", folder / f"t-{rules.stem}.jsonl"
    ran = triggerstream(
        "replay", "--rules", str(rules), str(events), "--decisions", str(decisions),
        "--triggers", str(triggers),
    )  # fmt: skip
    counts: dict[str, dict[str, Any]] = {}
    for line in decisions.read_bytes().splitlines():
        d = orjson.loads(line)
        if d["rule_id"] is None:
            continue
        side = counts.setdefault(
            d["rule_id"],
            {"emitted": 0, "holdout": 0, "suppressed": Counter(), "triggers": Counter()},
        )
        if d["outcome"] in ("emitted", "holdout"):
            side[d["outcome"]] += 1
        elif d["outcome"] == "suppressed":
            side["suppressed"][d["reason"]] += 1
    for line in triggers.read_bytes().splitlines():
        t = orjson.loads(line)
        counts[t["rule_id"]]["triggers"][t["channel"]] += 1
    return rate(ran.stderr), counts


def compare(events: Path) -> tuple[float, dict[str, dict[str, Any]]]:
    ran = triggerstream("compare", str(OLD), str(NEW), str(events), "--format", "json")
    rules = orjson.loads(ran.stdout)["rules"]
    return rate(ran.stderr), {
        side: {r["rule_id"]: r[side] for r in rules if r[side] is not None}
        for side in ("old", "new")
    }


def same(replayed: dict[str, Any], side: dict[str, Any]) -> bool:
    """Compare's figures for one side against replay's records of that file."""
    empty = {"emitted": 0, "holdout": 0, "suppressed": {}, "triggers": {}}
    for rule_id, figures in side.items():
        counted = replayed.get(rule_id, empty)
        if (figures["emitted"], figures["holdout"]) != (counted["emitted"], counted["holdout"]):
            return False
        if figures["suppressed"] != dict(counted["suppressed"]):
            return False
        if figures["triggers"] != dict(counted["triggers"]):
            return False
    return set(replayed) <= set(side)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        events = folder / "events.jsonl"
        triggerstream(
            "generate", "--users", str(args.users), "--events", str(args.events),
            "--out", str(events),
        )  # fmt: skip
        rates: dict[str, list[float]] = {"replay old": [], "replay new": [], "compare": []}
        for n in range(args.runs):
            old_rate, old_counts = replay(OLD, events, folder)
            new_rate, new_counts = replay(NEW, events, folder)
            compare_rate, sides = compare(events)
            if not (same(old_counts, sides["old"]) and same(new_counts, sides["new"])):
                raise SystemExit("compare did not count what replay of each file decided")
            for name, value in zip(rates, (old_rate, new_rate, compare_rate), strict=True):
                rates[name].append(value)
            print(
                f"run {n + 1}: replay old {old_rate:,.0f}/s, replay new {new_rate:,.0f}/s, "
                f"compare {compare_rate:,.0f}/s; counted the same",
                flush=True,
            )
    medians = {name: statistics.median(values) for name, values in rates.items()}
    ratio = medians["compare"] / max(medians["replay old"], medians["replay new"])
    print(
        f"median of {args.runs} ({args.events:,} events, {args.users:,} users): "
        + ", ".join(f"{name} {value:,.0f} events/s" for name, value in medians.items())
        + f"; compare / replay = {ratio:.2f} (at least 0.50 asked)"
    )
    record(
        "compare",
        f"{args.events} events, {args.users} users, median of {args.runs}",
        [
            ("replay throughput, examples/rules.yaml", round(medians["replay old"]), "events/s"),
            ("replay throughput, rules-next.yaml", round(medians["replay new"]), "events/s"),
            ("compare throughput", round(medians["compare"]), "events/s"),
            ("compare / replay", round(ratio, 2), "ratio"),
        ],
    )
    return 0 if ratio >= 0.5 else 1


if __name__ == "__main__":
    sys.exit(main())
