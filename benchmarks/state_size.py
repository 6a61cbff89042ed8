"""State size: the stored state of users who send 500 events a day, with the demo's rules.

Each user sends ``--per-day`` usage events a day (features, skips, locked features,
sessions, quota readings) for two days, through the engine as the worker runs it. Over
the second day (the day's ids fully kept), after every event, the state is encoded two
ways: as the worker stored it before the id store (``to_bytes()``, the 24 hours of event
ids inside) and as it stores it now (``to_bytes(seen=False)``, the ids in the id store,
written once each). Prints the median and p99 bytes of each, and the time to encode;
appends them to results.csv.

    .venv/bin/python benchmarks/state_size.py [--users 200] [--per-day 500]
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import orjson
from harness import ROOT, record

from triggerstream.core.engine import Engine
from triggerstream.core.state import UserState
from triggerstream.events import decode_event
from triggerstream.rules.load import load_rules
from triggerstream.worker import codec

RULES = ROOT / "examples" / "rules.yaml"
START = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
KINDS: list[tuple[str, Callable[[random.Random], dict[str, Any]]]] = [
    ("feature_used", lambda rng: {"feature": rng.choice(["skip", "search", "playlist"])}),
    ("feature_used", lambda rng: {"feature": "skip"}),
    ("locked_feature_clicked", lambda rng: {"feature": "offline", "required_plan": "premium"}),
    ("session_started", lambda rng: {"platform": "ios"}),
    ("session_ended", lambda rng: {}),
    ("quota_usage", lambda rng: {"resource": "storage", "used": rng.randint(0, 100), "limit": 100}),
]


def percentile(values: list[int], share: float) -> int:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--per-day", type=int, default=500)
    args = parser.parse_args()

    engine = Engine(load_rules(RULES))
    rng = random.Random(20)
    with_ids: list[int] = []
    without_ids: list[int] = []
    encode_with = encode_without = 0.0
    for n in range(args.users):
        user = f"u{n}"
        state: UserState | None = None
        times = sorted(rng.uniform(0, 2 * 86_400) for _ in range(2 * args.per_day))
        for number, at in enumerate(times):
            kind, properties = rng.choice(KINDS)
            document = {
                "event_id": f"{user}-{number}",
                "user_id": user,
                "type": kind,
                "occurred_at": (START + dt.timedelta(seconds=at)).isoformat(),
                "properties": properties(rng),
            }
            event = decode_event("usage-events", orjson.dumps(document))
            step = engine.handle(user, state, event)
            if step.state is not None:
                state = step.state
            if state is None or at < 86_400:
                continue
            began = time.perf_counter()
            before = orjson.dumps(state.to_document())
            middle = time.perf_counter()
            after = codec.encode(state, {})
            encode_with += middle - began
            encode_without += time.perf_counter() - middle
            with_ids.append(len(before))
            without_ids.append(len(after))
    figures: list[tuple[str, float, str]] = [
        ("state with the day's ids, median", statistics.median(with_ids), "bytes"),
        ("state with the day's ids, p99", percentile(with_ids, 0.99), "bytes"),
        ("state without the ids (id store), median", statistics.median(without_ids), "bytes"),
        ("state without the ids (id store), p99", percentile(without_ids, 0.99), "bytes"),
        ("encode with the ids", encode_with / len(with_ids) * 1e6, "us"),
        ("encode without the ids", encode_without / len(without_ids) * 1e6, "us"),
    ]
    for figure, value, unit in figures:
        print(f"{figure}: {value:,.1f} {unit}")
    record(
        "state size",
        f"{args.users} users, {args.per_day} usage events a day each, the second day, "
        "examples/rules.yaml",
        [(figure, round(value, 1), unit) for figure, value, unit in figures],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
