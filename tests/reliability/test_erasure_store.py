"""Erasure reaches the state store: once a user's erasure is processed, nothing of them
is left in the worker's RocksDB, neither as a key or value nor in its files' bytes
(within ERASURE_COMPACTION_INTERVAL, or at the next rebalance or stop)."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import pytest
from rocksdict import AccessType, Options, Rdict

from tests.engine_support import event
from tests.scenarios import RULES
from tests.worker_support import (
    WorkerProcess,
    create_topics,
    produce,
    wait_for_records,
    write_lines,
)
from triggerstream.records import DECISIONS_TOPIC
from triggerstream.settings import Settings

ERASED = "erase-me-7f3a91"
KEPT = "keep-me-52c0d8"
MARKER = "Zephyrine-Quillfeather"
"""A first name only the erased user has."""


def life(user: str, start: dt.datetime, name: str) -> list[dict[str, object]]:
    """A user's profile, consent, skips, an order and a ticket."""
    at = start
    lines = [
        event("profile.profile_updated", user, at, plan="free", first_name=name, timezone="UTC"),
        event("profile.consent_updated", user, at, channel="email", granted=True),
        event("usage.session_started", user, at),
    ]
    for minute in range(1, 8):
        lines.append(
            event("usage.feature_used", user, at + dt.timedelta(minutes=minute), feature="skip")
        )
    lines.append(
        event(
            "purchase.order_completed",
            user,
            at + dt.timedelta(minutes=9),
            order_id=f"o-{user}",
            currency="EUR",
            total=20,
            items=[{"sku": "camera-x", "price": 10}, {"sku": "lens-cap", "price": 10}],
        )
    )
    lines.append(
        event(
            "support.ticket_opened",
            user,
            at + dt.timedelta(minutes=10),
            ticket_id=f"T-{user}",
            category="billing",
        )
    )
    return lines


def store_contents(data: Path) -> tuple[list[bytes], list[Path]]:
    """Every key and value of every RocksDB database under ``data``, and its files."""
    records: list[bytes] = []
    databases = sorted({path.parent for path in data.rglob("CURRENT")})
    for folder in databases:
        database = Rdict(
            str(folder), options=Options(raw_mode=True), access_type=AccessType.read_only()
        )
        try:
            for key, value in database.items():
                records += [bytes(key), bytes(value)]  # type: ignore[arg-type]
        finally:
            database.close()
    return records, [path for folder in databases for path in folder.iterdir() if path.is_file()]


# Restarts the worker on its RocksDB: Apache Kafka (see test_crash_restart.py).
@pytest.mark.apache_only
def test_an_erased_user_leaves_nothing_in_rocksdb(
    settings: Settings, cli_env: dict[str, str], tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    create_topics(cli_env)
    start = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
    lines = life(ERASED, start, MARKER) + life(KEPT, start, "Ada")
    erasure = event("profile.erasure_requested", ERASED, start + dt.timedelta(hours=1))
    worker = WorkerProcess(cli_env, RULES, tmp_path).start()
    workers.append(worker)
    worker.wait_ready()
    produce(cli_env, write_lines(tmp_path / "life.jsonl", lines))
    decided = len(wait_for_records(settings, DECISIONS_TOPIC, 2))
    assert worker.stop() == 0  # RocksDB written to its files (not only its log)
    before, _ = store_contents(worker.folder / "data")
    assert any(MARKER.encode() in record for record in before), "the user was never stored"

    worker.start()
    worker.wait_ready(2)
    produce(cli_env, write_lines(tmp_path / "erasure.jsonl", [erasure]))
    deadline = time.monotonic() + 90
    while not any(
        (d["user_id"], d["outcome"]) == (ERASED, "erased")
        for d in wait_for_records(settings, DECISIONS_TOPIC, decided + 1)
    ):
        assert time.monotonic() < deadline, "no erased decision within 90 s"
    assert worker.stop() == 0

    records, files = store_contents(worker.folder / "data")
    assert any(KEPT.encode() in record for record in records), "the other user was lost"
    for secret in (ERASED.encode(), MARKER.encode()):
        assert not [r for r in records if secret in r], "a key or value still holds the user"
    # Their state is compacted out of every file. Only the user id may remain, in the
    # MANIFEST's record of where an old file began or ended...
    holding = [path.name for path in files if MARKER.encode() in path.read_bytes()]
    assert holding == [], f"the erased user's state is still in the files {holding}"
    # ...until RocksDB writes a new MANIFEST when the database is next opened.
    worker.start()
    worker.wait_ready(3)
    assert worker.stop() == 0
    _, files = store_contents(worker.folder / "data")
    holding = [path.name for path in files if ERASED.encode() in path.read_bytes()]
    assert holding == [], f"the erased user's id is still in the files {holding}"
