"""Poison at scale: every kind of bad input, a few thousand times, amid real traffic.

Each bad message lands in events.dlq with its reason code, its original bytes, topic,
partition and offset; the good ones are decided as replay decides them (a repeated
event id is dropped as a duplicate, there and here); the worker never restarts.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
from collections import Counter
from pathlib import Path

from tests.integration.test_worker import POISON
from tests.reliability.respect import read_events
from tests.reliability.streams import respectful_traffic
from tests.scenarios import RULES
from tests.worker_support import (
    WorkerProcess,
    assert_same_decisions,
    create_topics,
    produce,
    replayed,
    send_raw,
    wait_for_records,
    write_lines,
)
from triggerstream.records import DEAD_LETTER_TOPIC, DECISIONS_TOPIC
from triggerstream.settings import Settings

EVENTS = 20_000
USERS = 2_000
BAD = 2_000
SEED = 8


def event_json(user: str, fields: dict[str, object]) -> bytes:
    line: dict[str, object] = {
        "event_id": f"bad-{user}",
        "user_id": user,
        "type": "feature_used",
        "occurred_at": "2026-10-20T10:00:00Z",
        "properties": {"feature": "skip"},
    }
    line.update(fields)
    return json.dumps(line).encode()  # orjson refuses integers beyond 64 bits


def bad_kinds(user: str) -> list[tuple[str, bytes, str]]:
    """(topic, bytes, reason code) of every kind of bad input, for one user's key."""
    return [
        *POISON,  # not UTF-8, not JSON, not an object, missing fields, unknown type,
        # naive timestamp, out of range, wrong type, nested too deep, over 64 KiB
        ("usage-events", event_json(user, {"occurred_at": "2150-01-01T00:00:00Z"}), "out_of_range"),
        ("usage-events", event_json(user, {"occurred_at": "1990-01-01T00:00:00Z"}), "out_of_range"),
        ("usage-events", event_json(user, {"occurred_at": 1_767_225_600}), "wrong_type"),
        (
            "usage-events",
            event_json(user, {"properties": {"feature": "skip", "quantity": 10**30}}),
            "out_of_range",
        ),
        ("usage-events", event_json(user, {"event_id": "x" * 200}), "invalid_value"),
        (
            "usage-events",
            event_json(user, {"properties": {"feature": "x" * 60_000}}),
            "invalid_value",
        ),
        (
            "purchase-events",
            event_json(user, {"type": "order_completed", "properties": {"items": "sku-1"}}),
            "missing_field",
        ),
        ("profile-events", event_json(user, {"type": "feature_used"}), "unknown_type"),
        ("support-events", b"", "not_json"),
    ]


def test_every_kind_of_bad_input_amid_traffic_goes_to_the_dead_letter_topic(
    settings: Settings, cli_env: dict[str, str], tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    rng = random.Random(SEED)
    good = read_events(respectful_traffic(tmp_path / "good.jsonl", EVENTS, USERS))
    # Repeats of real events right after them (a producer's retry): not invalid.
    repeats = set(rng.sample(range(len(good)), 500))
    events = write_lines(
        tmp_path / "events.jsonl",
        [copy for i, line in enumerate(good) for copy in [line] * (2 if i in repeats else 1)],
    )
    users = sorted({line["user_id"] for line in good})
    bad = []
    for _ in range(BAD):
        user = rng.choice(users)
        bad.append((user, *rng.choice(bad_kinds(user))))
    create_topics(cli_env)
    expected = replayed(events, tmp_path, cli_env)

    # A backlog: produced live, a user's events on two topics may arrive swapped and
    # are then decided in arrival order (docs/contract.md), where replay has them in time order.
    halves = len(bad) // 2
    asyncio.run(send_raw(settings, [(t, u.encode(), v) for u, t, v, _ in bad[:halves]]))
    produce(cli_env, events)
    asyncio.run(send_raw(settings, [(t, u.encode(), v) for u, t, v, _ in bad[halves:]]))
    worker = WorkerProcess(cli_env, RULES, tmp_path).start()
    workers.append(worker)
    worker.wait_ready()

    dead = wait_for_records(settings, DEAD_LETTER_TOPIC, len(bad), timeout=300)
    assert Counter((d["topic"], d["reason_code"]) for d in dead) == Counter(
        (topic, code) for _, topic, _, code in bad
    )
    # A dead letter holds a value whole up to 64 KiB, and the first 64 KiB of a larger one.
    sent = Counter(value[: 64 * 1024] for _, _, value, _ in bad)
    assert Counter(base64.b64decode(d["value_base64"]) for d in dead) == sent
    assert Counter(d["value_size"] for d in dead) == Counter(len(v) for _, _, v, _ in bad)
    assert all(d["reason"] and d["offset"] >= 0 and d["partition"] >= 0 for d in dead)

    got = wait_for_records(
        settings, DECISIONS_TOPIC, len(expected["decisions"]), timeout=300, must=False
    )
    write_lines(tmp_path / "worker-decisions.jsonl", got)  # kept for a failure's reader
    assert_same_decisions(got, expected["decisions"])  # names what is missing, by rule
    assert worker.metric("triggerstream_events_invalid_total") == len(bad)
    assert worker.metric("triggerstream_events_duplicate_total") >= len(repeats)
    assert len(worker.ready_lines()) == 1, "the worker restarted or rebalanced"
    assert "Traceback" not in worker.log()
    print(f"{len(bad)} bad messages of {len(bad_kinds('u'))} kinds amid {len(good)} events")
    assert worker.stop() == 0, worker.log()[-3000:]
