"""One validation path: the same bad line gets the same code and the same words from
`produce`, from `replay` (its dead letters) and from a worker (events.dlq), because all
three decode the same bytes with `triggerstream.events.decode_event` (issue 19). And a
UTF-8 byte order mark at the start of a file (or of a message) is not an error."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import re
from pathlib import Path

import orjson

from tests.conftest import run_cli
from tests.engine_support import rule, rules_file
from tests.worker_support import (
    WorkerProcess,
    create_topics,
    read_topic,
    send_raw,
    wait_for_records,
)
from triggerstream.events import BOM
from triggerstream.records import DEAD_LETTER_TOPIC
from triggerstream.settings import Settings

WHEN = "2026-10-20T10:00:00Z"


def line(topic: str, kind: str, properties: str, user: str) -> bytes:
    """A replay/produce line written by hand, so that it can hold what JSON encoders
    refuse to write (NaN, Infinity, integers beyond 64 bits)."""
    return (
        f'{{"topic": "{topic}", "event_id": "bad-{user}", "user_id": "{user}", '
        f'"type": "{kind}", "occurred_at": "{WHEN}", "properties": {properties}}}'
    ).encode()


BIG = "1" + "0" * 30
# (topic, type, properties as written, the code every path must give the line)
WRITTEN: list[tuple[str, str, str, str]] = [
    ("usage-events", "feature_used", '{"feature": "skip", "quantity": NaN}', "not_json"),
    ("usage-events", "quota_usage", '{"resource": "s", "used": Infinity, "limit": 1}', "not_json"),
    ("usage-events", "quota_usage", '{"resource": "s", "used": -Infinity, "limit": 1}', "not_json"),
    ("usage-events", "feature_used", '{"feature": "skip", "quantity": 1e30}', "wrong_type"),
    ("usage-events", "feature_used", f'{{"feature": "skip", "quantity": {BIG}}}', "out_of_range"),
    ("usage-events", "quota_usage", '{"resource": "s", "used": 1e400, "limit": 1}', "out_of_range"),
    ("profile-events", "profile_updated", '{"attributes": {"seats": 1e400}}', "out_of_range"),
    ("profile-events", "profile_updated", '{"attributes": {"seats": NaN}}', "not_json"),
    ("support-events", "nps_submitted", '{"score": 9.0}', "wrong_type"),
    ("support-events", "nps_submitted", '{"score": 11}', "out_of_range"),
    ("usage-events", "teleported", "{}", "unknown_type"),
    ("usage-events", "feature_used", "{}", "missing_field"),
    ("usage-events", "feature_used", '{"feature": "skip"', "not_json"),
]
BAD: list[tuple[bytes, str]] = [
    (line(topic, kind, properties, f"u{n}"), code)
    for n, (topic, kind, properties, code) in enumerate(WRITTEN)
] + [
    (b'{"topic": "purchase-events", "event_id": "bad-n1", "user_id": "n1", "type": '
     b'"checkout_started", "occurred_at": "2026-10-20T10:00:00", "properties": {"cart": []}}',
     "naive_timestamp"),
    (b'{"topic": "usage-events", "event_id": "bad-n2", "user_id": "n2", "type": '
     b'"session_ended", "occurred_at": "2150-01-01T00:00:00Z"}', "out_of_range"),
    (b'{"topic": "usage-events", "event_id": "bad-n3", "user_id": 16, "type": '
     b'"session_ended", "occurred_at": "2026-10-20T10:00:00Z"}', "wrong_type"),
    (b'{"topic": "usage-events", "event_id": "bad-n4", "user_id": "n4", "type": '
     b'"session_started", "occurred_at": "2096-01-01T00:00:00Z"}', "from_future"),
]  # fmt: skip


def by_line(problems: str) -> dict[int, tuple[str, str]]:
    """`produce`'s problems: line number -> (code, reason)."""
    found = {}
    for text in problems.splitlines():
        matched = re.match(r"line (\d+): ([a-z_]+): (.*)$", text)
        if matched:
            found[int(matched.group(1))] = (matched.group(2), matched.group(3))
    return found


def test_a_bad_line_gets_the_same_code_and_reason_from_produce_replay_and_the_worker(
    settings: Settings, cli_env: dict[str, str], tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    events = tmp_path / "bad.jsonl"
    events.write_bytes(b"".join(bad + b"\n" for bad, _ in BAD))
    expected = {number: code for number, (_, code) in enumerate(BAD, start=1)}
    create_topics(cli_env)

    # produce: every line refused with its code and reason, nothing sent.
    produced = run_cli("produce", str(events), env=cli_env)
    assert produced.returncode == 1, produced.stderr
    assert "Traceback" not in produced.stderr
    assert f"{len(BAD)} invalid line(s); nothing was sent" in produced.stderr
    from_produce = by_line(produced.stderr)
    assert {n: code for n, (code, _) in from_produce.items()} == expected

    # replay: every line a dead letter with its code and reason.
    dlq = tmp_path / "replay-dlq.jsonl"
    rules = tmp_path / "rules.yaml"
    rules.write_text(rules_file([rule("any", channels=["in_app"])]))
    replayed = run_cli("replay", "--rules", str(rules), str(events), "--dlq", str(dlq), env=cli_env)
    assert replayed.returncode == 0, replayed.stderr
    assert f"0 event(s), {len(BAD)} invalid" in replayed.stderr
    from_replay = {
        d["line"]: (d["reason_code"], d["reason"])
        for d in map(orjson.loads, dlq.read_bytes().splitlines())
    }
    assert from_replay == from_produce

    # The worker: the same bytes as messages (their "topic" field is unknown to the
    # event, so ignored), each a dead letter with its code and reason.
    worker = WorkerProcess(cli_env, rules, tmp_path).start()
    workers.append(worker)
    worker.wait_ready()
    messages = []
    for bad, _ in BAD:
        topic = re.search(rb'"topic": "([a-z-]+)"', bad)
        assert topic is not None
        messages.append((topic.group(1).decode(), b"key", bad))
    asyncio.run(send_raw(settings, messages))
    dead = wait_for_records(settings, DEAD_LETTER_TOPIC, len(BAD))
    assert len(dead) == len(BAD), dead
    from_worker = {
        number: (d["reason_code"], d["reason"])
        for d in dead
        for number, (bad, _) in enumerate(BAD, start=1)
        if base64.b64decode(d["value_base64"]) == bad
    }
    assert from_worker == from_produce
    assert worker.metric("triggerstream_events_total") == 0
    assert "Traceback" not in worker.log()


def test_a_byte_order_mark_at_the_start_is_read_as_nothing_by_produce_replay_and_the_worker(
    settings: Settings, cli_env: dict[str, str], tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    events = [
        {"topic": "usage-events", "event_id": f"bom-{n}", "user_id": "u-win", "type": kind,
         "occurred_at": (now + dt.timedelta(seconds=n)).isoformat()}
        for n, kind in enumerate(["session_started", "session_ended"])
    ]  # fmt: skip
    # As Notepad and Excel save UTF-8: a byte order mark before the first line.
    windows = tmp_path / "windows.jsonl"
    windows.write_bytes(BOM + b"\r\n".join(json.dumps(e).encode() for e in events) + b"\r\n")
    create_topics(cli_env)

    produced = run_cli("produce", str(windows), env=cli_env)
    assert produced.returncode == 0, produced.stderr
    assert "produced 2 event(s)" in produced.stderr
    sent = read_topic(settings, "usage-events")
    assert sorted(e["event_id"] for e in sent) == ["bom-0", "bom-1"]
    assert all("topic" not in e for e in sent)

    rules = tmp_path / "rules.yaml"
    rules.write_text(rules_file([rule("any", channels=["in_app"])]))
    replayed = run_cli("replay", "--rules", str(rules), str(windows), env=cli_env)
    assert replayed.returncode == 0, replayed.stderr
    assert "2 event(s), 0 invalid" in replayed.stderr

    # A message whose value starts with one (a producer that wrote a file's bytes).
    worker = WorkerProcess(cli_env, rules, tmp_path).start()
    workers.append(worker)
    worker.wait_ready()
    value = BOM + json.dumps({**events[0], "event_id": "bom-2"}).encode()
    asyncio.run(send_raw(settings, [("usage-events", b"u-win", value)]))
    worker.wait_processed(3)
    assert worker.metric("triggerstream_events_invalid_total") == 0
    assert read_topic(settings, DEAD_LETTER_TOPIC) == []
